package querylog

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/coredns/coredns/plugin"
)

// filter is the per-server-block choice of what to log, how to store the client and which
// optional fields to add: unlike options it may differ between server blocks sharing a
// database.
type filter struct {
	ignoreNames   plugin.Zones   // names (and their subdomains) not logged
	ignoreClients []netip.Prefix // clients not logged
	anonV4        int            // prefix bits kept of IPv4 clients; 0 keeps the address
	anonV6        int            // prefix bits kept of IPv6 clients; 0 keeps the address
	hash          bool           // store a keyed hash instead of the address
	keyFile       string         // the hash key; created beside the database if missing
	key           *[32]byte      // loaded in OnStartup
	keyIndex      int            // key's number in the writer's keyring, set in OnStartup
	metadata      []string       // metadata labels whose values are stored (metadata option)
	answers       bool           // store answer data (answers option)
}

// ignored reports whether a query must not be logged.
func (f *filter) ignored(qname string, client netip.Addr) bool {
	if len(f.ignoreNames) > 0 && f.ignoreNames.Matches(qname) != "" {
		return true
	}
	for _, p := range f.ignoreClients {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// anonymize truncates the client address to the configured prefix. Hashing happens later, in
// the flusher, where its cost is off the DNS path: the entry only says which key.
func (f *filter) anonymize(e *entry) {
	a := e.addr()
	bits := f.anonV6
	if a.Is4() {
		bits = f.anonV4
	}
	if bits > 0 {
		if p, err := a.Prefix(bits); err == nil {
			e.setAddr(p.Addr())
		}
	}
	e.setKeyIndex(f.keyIndex)
}

// loadKey reads the hash key, creating a random one (mode 0600) if the file does not exist.
func loadKey(path string) (*[32]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var k [32]byte
		if _, err := rand.Read(k[:]); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("anonymize key %s: %w", path, err)
		}
		_, err = f.WriteString(hex.EncodeToString(k[:]) + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("anonymize key %s: %w", path, err)
		}
		return loadKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("anonymize key %s: %w", path, err)
	}
	raw, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(raw) < 16 {
		return nil, fmt.Errorf("anonymize key %s must hold at least 16 bytes as hex", path)
	}
	k := sha256.Sum256(raw) // any length of key material becomes 32 bytes
	return &k, nil
}
