package ship

import (
	"fmt"
	"sync"
	"time"
)

// memSource is a Source of rows held in memory, in seq order: the shipper alone, without the
// plugin's writer and its SQLite file.
type memSource struct {
	mu      sync.Mutex
	rows    []Row
	cursors map[string]int64
	read    int // rows returned by Read, in all
}

func newMemSource(rows []Row) *memSource { return &memSource{rows: rows, cursors: map[string]int64{}} }

// testRows are n rows with seqs and ordinals 1 to n, one a millisecond from start on.
func testRows(n int, start time.Time) []Row {
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{Seq: int64(i + 1), N: int64(i + 1), TS: start.UnixMilli() + int64(i), Server: "dns://:53",
			ClientIP: "192.0.2.1", Proto: "udp", Qname: fmt.Sprintf("n%d.example.org.", i), Qtype: "A", Qclass: "IN",
			Rcode: "NOERROR", Size: 64, Answers: 1, DurationUS: 100, EDE: -1}
	}
	return rows
}

func (m *memSource) LoadCursor(target string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cursors[target], nil
}

func (m *memSource) SaveCursor(target string, seq int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cursors[target] = seq
	return nil
}

func (m *memSource) OpenReader() (Reader, error) { return memReader{m}, nil }

type memReader struct{ m *memSource }

func (r memReader) Read(after int64, limit int, dst []Row) ([]Row, error) {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	for _, row := range r.m.rows {
		if len(dst) >= limit {
			break
		}
		if row.Seq > after {
			dst = append(dst, row)
			r.m.read++
		}
	}
	return dst, nil
}

func (r memReader) Progress(after int64) (newest, oldestTS int64, err error) {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if len(r.m.rows) > 0 {
		newest = r.m.rows[len(r.m.rows)-1].Seq
	}
	for _, row := range r.m.rows {
		if row.Seq > after {
			return newest, row.TS, nil
		}
	}
	return newest, 0, nil
}

func (r memReader) CountAfter(after int64) (int64, error) {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	var n int64
	for _, row := range r.m.rows {
		if row.Seq > after {
			n++
		}
	}
	return n, nil
}

func (memReader) Close() error { return nil }
