package querylog

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/querylog/querylog/internal/logrow"
)

// labelKind is what a label names. Each kind has its own numbers.
type labelKind uint8

const (
	labelServer   labelKind = logrow.LabelServer       // listener address, e.g. dns://:53
	labelPlugin   labelKind = logrow.LabelPlugin       // the plugin that wrote the reply
	labelUpstream labelKind = logrow.LabelUpstream     // the upstream forward used (forward/upstream metadata)
	numLabelKinds           = logrow.LabelUpstream + 1 // the kinds above, numbered from 0
)

// labelLimit is the largest number of each kind: the bits a row has for it (codec.go). The last
// number is kept for every text beyond the others, and reads as "(other)". The texts come from the
// Corefile (listeners, plugins, forward targets), never from queries, so the limits are far
// off in practice.
var labelLimit = [numLabelKinds]int{labelServer: 255, labelPlugin: 255, labelUpstream: 255}

// otherLabel is the text of a number past a kind's limit.
const otherLabel = "(other)"

// labels numbers the few texts that every entry repeats, so that an entry carries a byte or
// two instead of a string. Numbers start at 1 (0 means none) and are this process's own: the
// store maps them to the database's numbers (batch.dbLabel, filled by store.resolveLabels).
// Lookups on the DNS path read a map without locking; adding a text, which happens a handful of
// times per process, copies it.
type labels struct {
	mu    sync.Mutex
	known atomic.Pointer[map[labelKey]uint16]
	texts [numLabelKinds][]string // index = number - 1; guarded by mu
}

type labelKey struct {
	kind labelKind
	text string
}

// id returns the number of text, adding it if it is new. The empty text is 0.
func (l *labels) id(kind labelKind, text string) uint16 {
	if text == "" {
		return 0
	}
	if m := l.known.Load(); m != nil {
		if id, ok := (*m)[labelKey{kind, text}]; ok {
			return id
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.known.Load()
	if old != nil {
		if id, ok := (*old)[labelKey{kind, text}]; ok {
			return id
		}
	}
	if len(l.texts[kind]) >= labelLimit[kind]-1 {
		return uint16(labelLimit[kind])
	}
	l.texts[kind] = append(l.texts[kind], text)
	id := uint16(len(l.texts[kind]))
	m := make(map[labelKey]uint16, 1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[labelKey{kind, text}] = id
	l.known.Store(&m)
	return id
}

// text returns the text of a number, "" for 0.
func (l *labels) text(kind labelKind, id uint16) string {
	if id == 0 {
		return ""
	}
	if int(id) >= labelLimit[kind] {
		return otherLabel
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if int(id) > len(l.texts[kind]) {
		return otherLabel
	}
	return l.texts[kind][id-1]
}

// labelMemo keeps, for one handler, the numbers of the few texts it looks up: its server and
// the plugins that answer under it. A query then finds them with a comparison or two instead
// of a lookup in the shared map, which cost about 0.1 µs a label at saturation (a CoreDNS CPU
// profile, unique mix). Slots are replaced in turn; a text in none of them is looked up as
// before, and remembered.
type labelMemo struct {
	slots [memoSlots]atomic.Pointer[labelHit]
	next  atomic.Uint32
}

// memoSlots is how many texts a labelMemo keeps: a server block's answering plugins are
// usually fewer.
const memoSlots = 4

type labelHit struct {
	table *labels
	text  string
	id    uint16
}

// id is l.id(kind, text), remembered. A memo serves one kind only.
func (m *labelMemo) id(l *labels, kind labelKind, text string) uint16 {
	for i := range m.slots {
		if h := m.slots[i].Load(); h != nil && h.text == text && h.table == l {
			return h.id
		}
	}
	id := l.id(kind, text)
	if id != 0 {
		m.slots[m.next.Add(1)%memoSlots].Store(&labelHit{table: l, text: text, id: id})
	}
	return id
}

// keyring numbers the anonymize hash keys of the handlers sharing a writer (server blocks may
// differ), so an entry carries a small index instead of a pointer. Index 0 is no key.
type keyring struct {
	mu   sync.Mutex
	keys []*[32]byte
}

// maxKeys is what an entry's key index can hold (entry.bits).
const maxKeys = bitsKeyMask

// index returns the index of key, adding it if it is new; 0 for nil, and an error when more
// distinct keys than an entry can number are in use at once.
func (k *keyring) index(key *[32]byte) (int, error) {
	if key == nil {
		return 0, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, have := range k.keys {
		if *have == *key {
			return i + 1, nil
		}
	}
	if len(k.keys) >= maxKeys {
		return 0, fmt.Errorf("more than %d different anonymize hash keys for one database", maxKeys)
	}
	k.keys = append(k.keys, key)
	return len(k.keys), nil
}

// get returns the key of an index, nil for 0.
func (k *keyring) get(i int) *[32]byte {
	if k == nil || i == 0 {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if i > len(k.keys) {
		return nil
	}
	return k.keys[i-1]
}
