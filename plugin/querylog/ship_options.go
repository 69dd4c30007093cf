package querylog

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
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

	passwordFrom string // ship_password as written ("file PATH", "env NAME"), until checkShip reads it
}

func (s shipOptions) enabled() bool { return s.addrs != "" }

// target names where rows go, for the cursor kept in SQLite and for log lines. The addresses
// are not part of it: they may change (a replica added) without rows being sent again.
func (s shipOptions) target() string { return s.database + "." + s.table }

func (s shipOptions) addrList() []string { return strings.Split(s.addrs, ",") }

const (
	defaultShipTable = "querylog"
	defaultShipPort  = "9000" // ClickHouse's native protocol
)

// identRE is what database and table names may be: they are written into SQL unquoted.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseShipOption reads `ship URL...`, `node NAME` and `ship_password file PATH|env NAME`.
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
				return c.Errf("ship %q: %v", a, err)
			}
			if i == 0 {
				s.user, s.database, s.table = u.user, u.database, u.table
			} else if u.user != s.user || u.database != s.database || u.table != s.table {
				return c.Errf("ship %q: every address must name the same user, database and table as %q", a, args[0])
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
	}
	return nil
}

// checkShip validates the ship options of a whole block, fills in the node name and reads the
// password.
func checkShip(c *caddy.Controller, s *shipOptions) error {
	if !s.enabled() {
		if s.node != "" || s.passwordFrom != "" {
			return c.Errf("node and ship_password need a ship line")
		}
		return nil
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

type shipURL struct{ addr, user, database, table string }

// parseShipURL reads clickhouse://[USER@]HOST[:PORT]/DATABASE[?table=NAME].
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
	port := u.Port()
	if port == "" {
		port = defaultShipPort
	}
	out.addr = net.JoinHostPort(u.Hostname(), port)
	out.database = strings.TrimPrefix(u.Path, "/")
	if !identRE.MatchString(out.database) {
		return shipURL{}, fmt.Errorf("DATABASE %q must be a name of letters, digits and _", out.database)
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return shipURL{}, err
	}
	for k, v := range query {
		if k != "table" || len(v) != 1 {
			return shipURL{}, fmt.Errorf("unknown parameter %q; only table=NAME is accepted", k)
		}
		out.table = v[0]
	}
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
