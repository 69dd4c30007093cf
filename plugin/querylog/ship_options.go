package querylog

import (
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

	"github.com/querylog/querylog/plugin/querylog/ship"
)

// shipOptions is the `ship` configuration of one querylog block: what package ship is
// started with, and the two options read only once the whole block is parsed. options are
// compared with ==, so this stays comparable.
type shipOptions struct {
	ship.Options        // Password and CAPEM are filled in by checkShip
	caFile       string // ship_ca as written, until checkShip reads it
	passwordFrom string // ship_password as written ("file PATH", "env NAME"), until checkShip reads it
}

const (
	defaultShipTable      = "querylog"
	defaultShipPort       = "9000" // ClickHouse's native protocol
	defaultSecureShipPort = "9440" // the same over TLS (tcp_port_secure)
)

// identRE is what database and table names may be: they are written into SQL unquoted.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseShipOption reads `ship URL...`, `node NAME`, `ship_password file PATH|env NAME` and
// `ship_ca FILE`.
// checkShip completes them once the whole block has been read.
func parseShipOption(c *caddy.Controller, s *shipOptions, name string, args []string) error {
	switch name {
	case "ship":
		if s.Enabled() {
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
				s.User, s.Database, s.Table, s.Secure = u.user, u.database, u.table, u.secure
			} else if u.user != s.User || u.database != s.Database || u.table != s.Table || u.secure != s.Secure {
				return c.Errf("ship %q: every address must name the same user, database, table and secure as %q", a, args[0])
			}
			addrs = append(addrs, u.addr)
		}
		s.Addrs = strings.Join(addrs, ",")
	case "node":
		if len(args) != 1 {
			return c.Errf("node needs one NAME, got %q", strings.Join(args, " "))
		}
		if err := checkNode(args[0]); err != nil {
			return c.Errf("node %q: %v", args[0], err)
		}
		s.Node = args[0]
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
	if !s.Enabled() { // parseBlock has refused node, ship_password and ship_ca without ship
		return nil
	}
	if s.caFile != "" {
		if !s.Secure {
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
		s.CAPEM, s.caFile = string(b), ""
		if _, err := s.TLSConfig("host:0"); err != nil {
			return c.Errf("ship_ca %s: %v", path, err)
		}
	}
	if s.Node == "" {
		host, err := os.Hostname()
		if err != nil {
			return c.Errf("ship: no node NAME given and the host name is unknown: %v", err)
		}
		if err := checkNode(host); err != nil {
			return c.Errf("ship: the host name %q cannot be the node name (%v); give node NAME", host, err)
		}
		s.Node = host
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
		s.Password = v
	case "file":
		path, err := resolvePath(c, "ship_password file", arg)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return c.Errf("ship_password: %v", err)
		}
		s.Password = strings.TrimRight(string(b), "\r\n")
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
