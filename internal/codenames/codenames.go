// Package codenames names codes that a querylog row stores as numbers, as the database's
// queries_readable view does: for the plugin, which writes and ships rows, and the querylog
// command, which reads them back.
package codenames

import "strconv"

// Protos are the transports by the number a row stores (three bits).
var Protos = [...]string{"udp", "tcp", "dot", "doh", "doh3", "doq", "grpc", "unix"}

// Proto is the transport numbered p.
func Proto(p int64) string { return Protos[p&7] }

// Class is a query class: IN, CH, HS, NONE, ANY, or CLASS and the number.
func Class(code int64) string {
	switch code {
	case 1:
		return "IN"
	case 3:
		return "CH"
	case 4:
		return "HS"
	case 254:
		return "NONE"
	case 255:
		return "ANY"
	}
	return "CLASS" + strconv.FormatInt(code, 10)
}
