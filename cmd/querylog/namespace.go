package main

import (
	"context"
	"database/sql/driver"
	"encoding/json"

	"github.com/querylog/querylog/internal/logrow"
)

// A row says its client's Kubernetes namespace in its pod column (schema 3: a number of the
// pods dictionary, whose texts are namespace/pod). Rows written before schema 3 said it in the
// metadata JSON, under the kubernetes plugin's label, when the metadata option listed it; they
// are read that way where the pod column is NULL.

// namespaceLabel is the metadata label of the namespace in rows of older files.
const namespaceLabel = "kubernetes/client-namespace"

// namespaceKnown refuses --namespace (flag, the option's spelling) on a file no row of which
// can say a namespace: neither the pod column nor the metadata column.
func (d *database) namespaceKnown(flag, ns string) error {
	if ns == "" || d.cluster || d.extra {
		return nil
	}
	return usageError("%s %q: no row of %s says its namespace: the log has no pod column (written from the first row whose client the kubernetes plugin's metadata names) and no metadata column",
		flag, ns, d.path)
}

// namespaceCond is an SQL condition that log row l's client is in the namespace of parameter
// param (?4, say): by its pod, else by its metadata.
func (d *database) namespaceCond(param string) string {
	meta := `0`
	if d.extra {
		meta = `coalesce(CASE WHEN json_valid(l.metadata) THEN json_extract(l.metadata, '$."` + namespaceLabel + `"') END = ` + param + `, 0)`
	}
	if !d.cluster {
		return meta
	}
	// Not "l.pod IN (...)" alone: NULL IN an empty list is false, not NULL.
	return `CASE WHEN l.pod IS NOT NULL THEN l.pod IN (SELECT id FROM pods WHERE namespace = ` + param + `) ELSE ` + meta + ` END`
}

// namespaces names the namespace of rows read one by one: their pod column's value, else their
// metadata text's label, each number and text worked out once.
type namespaces struct {
	d    *database
	meta map[string]string
}

func newNamespaces(d *database) *namespaces { return &namespaces{d: d, meta: map[string]string{}} }

// of returns the namespace and pod of a row with pod column value pod and metadata meta
// (either may be nil), "" where none is known; an older row's metadata names no pod.
func (n *namespaces) of(ctx context.Context, pod, meta driver.Value) (ns, name string, err error) {
	if p, ok := pod.(int64); ok {
		text, _, err := n.d.reader.Pods.Text(ctx, n.d.dc, p) // cached
		if err != nil {
			return "", "", err
		}
		ns, name = logrow.SplitPod(text)
		return ns, name, nil
	}
	m, _ := logrow.Text(meta)
	if m == "" {
		return "", "", nil
	}
	ns, ok := n.meta[m]
	if !ok {
		var md map[string]any
		if json.Unmarshal([]byte(m), &md) == nil {
			ns, _ = md[namespaceLabel].(string)
		}
		n.meta[m] = ns
	}
	return ns, "", nil
}
