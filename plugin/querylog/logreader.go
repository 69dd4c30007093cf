package querylog

import (
	"context"
	"database/sql/driver"

	"github.com/querylog/querylog/internal/logrow"
)

// logCacheLimit bounds each dictionary cache of a log reader, in texts (about 100 bytes each).
const logCacheLimit = 200_000

// logReader and logRow give the shipper (ship_store.go) logrow's reader in the shape it reads
// rows in; asInt and asText, logrow's values. Once the shipper is a package of its own it uses
// logrow directly, and these go.
type logReader struct {
	r    *logrow.Reader
	rows []logrow.Row
}

type logRow struct {
	id int64
	logrow.Fields
	qname, clientIP          string
	server, plugin, upstream string
	metadata, answerData     string
}

func newLogReader() *logReader { return &logReader{r: logrow.NewReader(logCacheLimit)} }

func (r *logReader) read(ctx context.Context, dc driver.Conn, after int64, limit int, meta, answers bool, dst []logRow) ([]logRow, error) {
	var err error
	r.rows, err = r.r.Read(ctx, dc, after, limit, meta, answers, r.rows[:0])
	for i := range r.rows {
		l := &r.rows[i]
		dst = append(dst, logRow{id: l.ID, Fields: l.Fields, qname: l.QName, clientIP: l.ClientIP,
			server: l.ServerLabel, plugin: l.PluginLabel, upstream: l.UpstreamLabel, metadata: l.Metadata, answerData: l.AnswerData})
	}
	clear(r.rows)
	return dst, err
}

func asInt(v driver.Value) int64 { return logrow.Int(v) }

func asText(v driver.Value) string {
	s, _ := logrow.Text(v)
	return s
}
