package ship

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
)

// Options say where one database's rows go; the zero value ships nothing. A writer compares
// them with == to know whether its shipper must be replaced, so they stay comparable: the
// addresses are one string.
type Options struct {
	Addrs    string // "host:port,host:port": one ClickHouse, tried in this order
	User     string
	Database string
	Table    string
	Node     string // stamped on every row
	Password string
	Secure   bool   // TLS
	CAPEM    string // the certificates to verify the server with; empty: the system's roots
}

// Enabled reports whether rows are shipped.
func (o Options) Enabled() bool { return o.Addrs != "" }

// Target names where rows go, for the cursor kept in SQLite and for log lines. The addresses
// are not part of it: they may change (a replica added) without rows being sent again.
func (o Options) Target() string { return o.Database + "." + o.Table }

func (o Options) addrList() []string { return strings.Split(o.Addrs, ",") }

// TLSConfig verifies the server at addr (host:port) against CAPEM, or the system's roots.
func (o Options) TLSConfig(addr string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if o.CAPEM != "" {
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM([]byte(o.CAPEM)) {
			return nil, fmt.Errorf("ship_ca holds no PEM certificate")
		}
	}
	return c, nil
}
