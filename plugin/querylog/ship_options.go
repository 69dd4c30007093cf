package querylog

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/coredns/caddy"
)

// shipOptions is the `ship` configuration of one querylog block; the zero value ships nothing.
// options are compared with ==, so this stays comparable: the addresses are one string.
type shipOptions struct {
	addrs    string // "host:port,host:port": one ClickHouse, tried in this order
	user     string
	database string
	table    string
	node     string // stamped on every row; the host name unless `node` says otherwise
	password string // read from ship_password's file or variable, never from the Corefile
	secure   bool   // TLS, from ?secure=true
	caPEM    string // the certificates of ship_ca, read by checkShip; empty: the system's roots
	caFile   string // ship_ca as written, until checkShip reads it

	passwordFrom string // ship_password as written ("file PATH", "env NAME"), until checkShip reads it
}

func (s shipOptions) enabled() bool { return s.addrs != "" }

// target names where rows go, for the cursor kept in SQLite and for log lines. The addresses
// are not part of it: they may change (a replica added) without rows being sent again.
func (s shipOptions) target() string { return s.database + "." + s.table }

func (s shipOptions) addrList() []string { return strings.Split(s.addrs, ",") }

const (
	defaultShipTable      = "querylog"
	defaultShipPort       = "9000" // ClickHouse's native protocol
	defaultSecureShipPort = "9440" // the same over TLS (tcp_port_secure)
)

// tlsConfig verifies the server at addr (host:port) against ship_ca, or the system's roots.
func (s shipOptions) tlsConfig(addr string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if s.caPEM != "" {
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM([]byte(s.caPEM)) {
			return nil, fmt.Errorf("ship_ca holds no PEM certificate")
		}
	}
	return c, nil
}

// identRE is what database and table names may be: they are written into SQL unquoted.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseShipOption reads `ship URL...`, `node NAME`, `ship_password file PATH|env NAME` and
// `ship_ca FILE`.
// checkShip completes them once the whole block has been read.
func parseShipOption(c *caddy.Controller, s *shipOptions, name string, args []string) error {
	switch name {
	case "ship":
		if s.enabled() {
			return c.Errf("ship given twice; list every address of one ClickHouse on one ship line")
		}
		if len(args) == 0 {
			return c.Errf("ship needs at least one clickhouse://[USER@]HOST:PORT/DATABASE[?table=NAME]")
		}
		var addrs []string
		for i, a := range args {
			u, err := parseShipURL(a)
			if err != nil {
				// Neither the URL nor url.Parse's error may echo a password into the log.
				return c.Errf("ship %q: %s", redactURL(a), strings.ReplaceAll(err.Error(), a, redactURL(a)))
			}
			if i == 0 {
				s.user, s.database, s.table, s.secure = u.user, u.database, u.table, u.secure
			} else if u.user != s.user || u.database != s.database || u.table != s.table || u.secure != s.secure {
				return c.Errf("ship %q: every address must name the same user, database, table and secure as %q", a, args[0])
			}
			addrs = append(addrs, u.addr)
		}
		s.addrs = strings.Join(addrs, ",")
	case "node":
		if len(args) != 1 {
			return c.Errf("node needs one NAME, got %q", strings.Join(args, " "))
		}
		if err := checkNode(args[0]); err != nil {
			return c.Errf("node %q: %v", args[0], err)
		}
		s.node = args[0]
	case "ship_password":
		if len(args) != 2 || (args[0] != "file" && args[0] != "env") {
			return c.Errf("ship_password needs file PATH or env NAME, got %q", strings.Join(args, " "))
		}
		s.passwordFrom = args[0] + " " + args[1]
	case "ship_ca":
		if len(args) != 1 {
			return c.Errf("ship_ca needs one FILE of PEM certificates, got %q", strings.Join(args, " "))
		}
		s.caFile = args[0]
	}
	return nil
}

// checkShip validates the ship options of a whole block, fills in the node name and reads the
// password.
func checkShip(c *caddy.Controller, s *shipOptions) error {
	if !s.enabled() { // parseBlock has refused node, ship_password and ship_ca without ship
		return nil
	}
	if s.caFile != "" {
		if !s.secure {
			return c.Errf("ship_ca %s: the ship URL needs ?secure=true", s.caFile)
		}
		path, err := resolvePath(c, "ship_ca", s.caFile)
		if err != nil {
			return err
		}
		b, err := readBounded(path, maxCAFile)
		if err != nil {
			return c.Errf("ship_ca: %v", err)
		}
		s.caPEM, s.caFile = string(b), ""
		if _, err := s.tlsConfig("host:0"); err != nil {
			return c.Errf("ship_ca %s: %v", path, err)
		}
	}
	if s.node == "" {
		host, err := os.Hostname()
		if err != nil {
			return c.Errf("ship: no node NAME given and the host name is unknown: %v", err)
		}
		if err := checkNode(host); err != nil {
			return c.Errf("ship: the host name %q cannot be the node name (%v); give node NAME", host, err)
		}
		s.node = host
	}
	if s.passwordFrom == "" {
		return nil
	}
	kind, arg, _ := strings.Cut(s.passwordFrom, " ")
	switch kind {
	case "env":
		v, ok := os.LookupEnv(arg)
		if !ok {
			return c.Errf("ship_password: environment variable %s is not set", arg)
		}
		s.password = v
	case "file":
		path, err := resolvePath(c, "ship_password file", arg)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return c.Errf("ship_password: %v", err)
		}
		s.password = strings.TrimRight(string(b), "\r\n")
	}
	s.passwordFrom = ""
	return nil
}

type shipURL struct {
	addr, user, database, table string
	secure                      bool
}

// maxCAFile bounds what ship_ca reads: a bundle of every public root is about 200 KB.
const maxCAFile = 1 << 20

// readBounded reads a file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, err
}

// redactURL hides the password of a URL written with one, as url.URL.Redacted does, even
// where s does not parse.
func redactURL(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	authority, _, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(authority[:at], ":")
	if !hasPassword {
		return s
	}
	return strings.Replace(s, authority[:at], user+":xxxxx", 1)
}

// parseShipURL reads clickhouse://[USER@]HOST[:PORT]/DATABASE[?table=NAME][&secure=true].
func parseShipURL(s string) (shipURL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return shipURL{}, err
	}
	if u.Scheme != "clickhouse" {
		return shipURL{}, fmt.Errorf("the scheme must be clickhouse://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return shipURL{}, fmt.Errorf("no HOST")
	}
	out := shipURL{user: "default", table: defaultShipTable}
	if u.User != nil {
		if _, set := u.User.Password(); set {
			return shipURL{}, fmt.Errorf("a password does not belong in the Corefile; use ship_password file PATH or env NAME")
		}
		out.user = u.User.Username()
	}
	out.database = strings.TrimPrefix(u.Path, "/")
	if !identRE.MatchString(out.database) {
		return shipURL{}, fmt.Errorf("DATABASE %q must be a name of letters, digits and _", out.database)
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return shipURL{}, err
	}
	for k, v := range query {
		switch {
		case len(v) != 1:
			return shipURL{}, fmt.Errorf("parameter %q given %d times", k, len(v))
		case k == "table":
			out.table = v[0]
		case k == "secure":
			if out.secure, err = strconv.ParseBool(v[0]); err != nil {
				return shipURL{}, fmt.Errorf("secure=%q: want true or false", v[0])
			}
		default:
			return shipURL{}, fmt.Errorf("unknown parameter %q; only table=NAME and secure=true are accepted", k)
		}
	}
	port := u.Port()
	if port == "" {
		port = defaultShipPort
		if out.secure {
			port = defaultSecureShipPort
		}
	}
	out.addr = net.JoinHostPort(u.Hostname(), port)
	if !identRE.MatchString(out.table) {
		return shipURL{}, fmt.Errorf("table %q must be a name of letters, digits and _", out.table)
	}
	if u.Fragment != "" || u.Opaque != "" {
		return shipURL{}, fmt.Errorf("unexpected %q", s)
	}
	return out, nil
}

// checkNode accepts printable names without spaces or ':' (which separates the node from the
// sequence in the query ids the shipper gives its inserts), at most 128 bytes.
func checkNode(n string) error {
	if n == "" || len(n) > 128 {
		return fmt.Errorf("must be 1 to 128 bytes")
	}
	for _, r := range n {
		if r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("must not contain spaces, ':' or control characters")
		}
	}
	return nil
}
