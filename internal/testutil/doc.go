// Package testutil holds the helpers that querylog's tests share: the in-process tests of
// plugin/querylog and the process tests of test/. It knows the metric names and the table
// querylog writes, but must not import the plugin, whose own tests import it. What plain
// programs such as bench/loadtest need too (free ports, a ClickHouse server) lives in
// internal/freeport and internal/chserver, which these helpers wrap.
package testutil
