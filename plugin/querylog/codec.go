package querylog

// A row of the log table packs an entry into a few integer columns, because SQLite's cost per
// row grows with the number of columns bound (BenchmarkStoreWrite: six values per row write at
// about half the CPU of twelve) and small integers take one to four bytes. The views decode
// the columns with the expressions below, kept next to the Go code that packs them;
// TestCodecRoundTrip writes entries and reads them back through the views.
//
//	id   (arrival ms << 8) + n, n counting rows within a batch: see writestate.go
//	late (id >> 8) - arrival ms, so ts = (id >> 8) - late
//	a    qtype | flags << 16 | rcode << 23 | (qclass ^ 1) << 35
//	b    plugin | server << 8 | proto << 16 | upstream << 19 | answers << 27 | (ede + 1) << 39
//	c    size | duration_us << 24
//
// With the common values first, a is three bytes for a NOERROR reply of any common type, b four
// and c six. Sizes above 16 MiB (a very long zone transfer), durations above six days and more
// than 4095 answers are stored as those maxima.

const (
	maxSize       = 1<<24 - 1
	maxAnswers    = 1<<12 - 1
	maxDurationUS = 1<<39 - 1
)

// packA packs the question and the outcome.
func packA(e *entry) int64 {
	return int64(e.qtype) | int64(e.flags&^flagV4)<<16 | int64(e.rcode&0xfff)<<23 | int64(e.qclass^1)<<35
}

// packB packs who answered and the reply's shape; the label numbers are the database's.
func packB(e *entry, plugin, server, upstream int64) int64 {
	return plugin | server<<8 | int64(e.proto())<<16 | upstream<<19 |
		int64(min(e.answers, maxAnswers))<<27 | int64(e.ede)<<39
}

// packC packs the reply size and the time to answer.
func packC(e *entry) int64 {
	return int64(min(e.size, maxSize)) | min(int64(e.duration), maxDurationUS)<<24
}

// SQL expressions over a log row l, for the views (logColumns in schema.go).
const (
	sqlTS       = `(l.id >> 8) - l.late`
	sqlQtype    = `l.a & 65535`
	sqlRcode    = `(l.a >> 23) & 4095`
	sqlQclass   = `(((l.a >> 35) & 65535) | 1) - ((l.a >> 35) & 1)` // xor 1: SQLite has no ^
	sqlFlag     = `(l.a >> %d) & 1`                                 // with the flag's bit, 16 + its position
	sqlPlugin   = `l.b & 255`
	sqlServer   = `(l.b >> 8) & 255`
	sqlProto    = `(l.b >> 16) & 7`
	sqlUpstream = `(l.b >> 19) & 255`
	sqlAnswers  = `(l.b >> 27) & 4095`
	sqlEDE      = `nullif(l.b >> 39, 0) - 1`
	sqlSize     = `l.c & 16777215`
	sqlDuration = `l.c >> 24`
)

// flagColumns are the flag columns of the views, in bit order (flags in entry.go).
var flagColumns = []string{"aa", "tc", "rd", "ra", "ad", "cd", `"do"`}
