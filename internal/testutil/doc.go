// Package testutil holds the helpers that querylog's tests share: the in-process tests of
// plugin/querylog, the process tests of test/, and the load harness of bench/. It knows the
// metric names and the table querylog writes, but not the plugin's code, which it must not
// import (the plugin's own tests import this package).
package testutil
