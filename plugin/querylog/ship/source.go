package ship

// Source is the SQLite side of shipping, which the plugin's writer provides: the cursor kept in
// the database file, and readers of the rows after it. The shipper tells the writer what may be
// deleted through Bound.
type Source interface {
	// LoadCursor returns target's cursor, the highest seq ClickHouse has acknowledged (0 if none).
	LoadCursor(target string) (int64, error)
	// SaveCursor records target's cursor.
	SaveCursor(target string, seq int64) error
	// OpenReader opens a reader of its own for the shipper, so that reading a batch (tens of
	// milliseconds) does not hold up the writer.
	OpenReader() (Reader, error)
}

// Reader reads the rows of the database for the shipper. One goroutine at a time uses it (the
// shipper, or its read-ahead).
type Reader interface {
	// Read appends to dst the rows with a seq above after, in seq order, until dst holds limit.
	Read(after int64, limit int, dst []Row) ([]Row, error)
	// Progress returns the newest seq, and the arrival (Unix ms) of the oldest row after the
	// seq after (0 if there is none), for the lag.
	Progress(after int64) (newest, oldestTS int64, err error)
	// CountAfter counts the rows with a seq above after.
	CountAfter(after int64) (int64, error)
	Close() error
}

// Row is one row as shipped, field for field the ClickHouse table (columnDefs in clickhouse.go,
// in the same order, after node). Rows of schema 1 (queries_v1, after an upgrade) have zero
// values for the fields schema 2 added, and EDE -1.
type Row struct {
	Seq        int64 // the row's id: with node, its identity in ClickHouse
	N          int64 // the row's ordinal: rows written before it, plus one (batches)
	TS         int64 // Unix milliseconds when the query arrived
	Server     string
	ClientIP   string
	Proto      string
	Qname      string
	Qtype      string // names, as in queries_readable
	Qclass     string
	Rcode      string
	Size       uint32
	Answers    uint16
	DurationUS int64
	DO         uint8
	Plugin     string // answering plugin
	AA, TC, RD uint8
	RA, AD, CD uint8
	EDE        int32 // Extended DNS Error code, -1 when absent
	Upstream   string
	Metadata   string
	AnswerData string
}
