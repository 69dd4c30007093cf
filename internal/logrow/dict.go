package logrow

import (
	"context"
	"database/sql/driver"
	"strings"

	"github.com/querylog/querylog/internal/rawsql"
)

// Dict holds the texts of a dictionary table (names, clients) by number, as rows refer to
// them, in blocks of dictBlock consecutive numbers: rows written close together use numbers
// close together, and a few neighbours cost little more to read than one. Numbers are never
// given twice (plugin/querylog/dict.go), so a cached text stays right. At its limit of blocks
// the cache drops one block for each it reads, so memory stays flat on any file (emptying it
// all at the limit made an export within the command's memory budget 12-24% slower). A number
// missing from a block read earlier is looked for again (added since, or pruned). One
// goroutine at a time uses a Dict.
type Dict struct {
	query     string // the texts of the numbers in [?1, ?2)
	maxBlocks int
	blocks    map[int64]*dictBlockTexts
}

// dictBlockTexts are the texts of the numbers of one block; a number the table does not have
// (pruned) has none.
type dictBlockTexts struct {
	texts [dictBlock]string
	has   [dictBlock]bool
}

// dictBlock is small: a cache smaller than its dictionary drops blocks whose other numbers the
// rows never asked for. Exporting 1.6 million rows of the benchmark file (a dictionary of
// 573,842 names) within a 48 MiB budget took 37 s with blocks of 1024 numbers, 5.0-5.6 s
// with 32; without a budget 4.2 s and 4.4-4.7 s, in 80 MB and 44 MB (bench/README.md,
// "export and the dictionary's blocks").
const dictBlock = 32

// The dictionaries of the log table: the query names, the client addresses, and the clients'
// Kubernetes pods.
const (
	NamesTable   = "names"
	ClientsTable = "clients"
	PodsTable    = "pods" // texts "namespace/pod" (SplitPod): a namespace has no slash
)

// NewDict caches table, one of NamesTable, ClientsTable and PodsTable, holding about maxTexts
// texts at most (some 80 bytes each).
func NewDict(table string, maxTexts int) *Dict {
	column := "name"
	switch table {
	case ClientsTable:
		column = "addr"
	case PodsTable:
		column = "namespace || '/' || name"
	}
	return &Dict{
		query:     `SELECT id, ` + column + ` FROM ` + table + ` WHERE id >= ? AND id < ?`,
		maxBlocks: max(1, maxTexts/dictBlock),
	}
}

// Text returns the text of number n, read on dc if it is not cached; false (as the views show
// NULL) if the dictionary has no such number.
func (c *Dict) Text(ctx context.Context, dc driver.Conn, n int64) (string, bool, error) {
	block, i := n/dictBlock, n%dictBlock
	if i < 0 {
		block, i = block-1, i+dictBlock
	}
	if b := c.blocks[block]; b != nil && b.has[i] {
		return b.texts[i], true, nil
	}
	// Not read yet, or added since the block was read (tail -f reads new rows, and the texts
	// they add, in later snapshots).
	if c.blocks == nil {
		c.blocks = map[int64]*dictBlockTexts{}
	}
	for k := range c.blocks { // any one: map order is random enough
		if len(c.blocks) < c.maxBlocks {
			break
		}
		delete(c.blocks, k)
	}
	b := &dictBlockTexts{}
	err := rawsql.Each(ctx, dc, c.query, []any{block * dictBlock, (block + 1) * dictBlock}, func(v []driver.Value) error {
		j := Int(v[0]) - block*dictBlock
		b.texts[j], b.has[j] = Text(v[1])
		return nil
	})
	if err != nil {
		return "", false, err
	}
	c.blocks[block] = b
	return b.texts[i], b.has[i], nil
}

// Ref is the text of a name or client column's value v: the text itself, or that of its number
// in c; false for NULL or a number c does not have.
func (c *Dict) Ref(ctx context.Context, dc driver.Conn, v driver.Value) (string, bool, error) {
	if n, ok := v.(int64); ok {
		return c.Text(ctx, dc, n)
	}
	s, ok := Text(v)
	return s, ok, nil
}

// SplitPod splits a text of the pods dictionary into namespace and pod name.
func SplitPod(text string) (namespace, pod string) {
	namespace, pod, _ = strings.Cut(text, "/")
	return namespace, pod
}
