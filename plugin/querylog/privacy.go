package querylog

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"

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

// ignored reports whether e's query must not be logged.
func (f *filter) ignored(e *entry) bool {
	if len(f.ignoreNames) > 0 && f.ignoreNames.Matches(e.qname) != "" {
		return true
	}
	if len(f.ignoreClients) == 0 {
		return false
	}
	client := e.addr()
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
	e.setKeyIndex(f.keyIndex)
	if f.anonV4 == 0 && f.anonV6 == 0 {
		return
	}
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
}

// loadKey reads the hash key, creating a random one if the file is missing or empty. An empty
// file is what a crash while creating it used to leave; no entry can have been hashed with it,
// so replacing it loses nothing. A key file that group or others may access, that another user
// owns (even empty), or that is a symlink is refused: with the key, anyone can test candidate
// addresses against the pseudonyms.
func loadKey(path string) (*[32]byte, error) {
	b, mode, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && len(b) == 0 {
		if err := createKey(path); err != nil {
			return nil, fmt.Errorf("anonymize key %s: creating it: %w", path, pathErr(err))
		}
		b, mode, err = readKeyFile(path)
	}
	if refused(err) { // names the file already
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("anonymize key %s: %w", path, err)
	}
	if mode&0o077 != 0 {
		return nil, fmt.Errorf("anonymize key %s has mode %04o: group and others must have no access to it (chmod 600 %s)", path, mode, path)
	}
	raw, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(raw) < 16 {
		return nil, fmt.Errorf("anonymize key %s must hold at least 16 bytes as hex", path)
	}
	k := sha256.Sum256(raw) // any length of key material becomes 32 bytes
	return &k, nil
}

// readKeyFile reads path and returns its permission bits. It never follows a symlink
// (O_NOFOLLOW), and checks the file it opened (fstat), not the path, which may have changed
// since: a regular file owned by root or the user CoreDNS runs as. O_NONBLOCK keeps a FIFO
// planted there from blocking the open.
func readKeyFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, 0, refusal{fmt.Sprintf("anonymize key %s is a symlink, which is never followed: name the key file itself", path)}
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, errors.New("not a regular file")
	}
	if err := checkOwner("anonymize key", path, fi); err != nil {
		return nil, 0, err
	}
	b, err := io.ReadAll(f)
	return b, fi.Mode().Perm(), err
}

// createKey writes 32 random bytes as hex to path, whole or not at all: into a temporary file
// (mode 0600) in the same folder, synced, then renamed over path, and the folder synced, so
// that neither a crash nor a full disk leaves an empty or partial key behind.
func createKey(path string) error {
	var k [32]byte
	rand.Read(k[:]) // never fails (crypto/rand)
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // only there if something failed
	_, err = tmp.WriteString(hex.EncodeToString(k[:]) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
