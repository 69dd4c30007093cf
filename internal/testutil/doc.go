// Package testutil holds the helpers that querylog's tests share: the in-process tests of
// plugin/querylog and the process tests of test/. Those that take no *testing.T (FreePorts,
// Scrape) also serve plain programs such as bench/loadtest. It knows the metric names and the
// table querylog writes, but must not import the plugin, whose own tests import it.
package testutil
