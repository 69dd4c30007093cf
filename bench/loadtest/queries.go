package main

import (
	"bufio"
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// The query mixes (-mix). Each names what dnsperf sends; see bench/README.md.
const (
	mixDefault = "default" // Zipf over 50,000 names, ~5% random NXDOMAIN names, one client address
	mixSkewed  = "skewed"  // Zipf over 20,000 names, ~10% of them NXDOMAIN, one dnsperf per client address
	mixUnique  = "unique"  // every name new: a random-subdomain flood
)

const (
	// uniqueAssumedQPS sizes the unique mix's file when the rate is not fixed: above what
	// CoreDNS answers unthrottled on the reference machine (about 20,000 QPS at GOMAXPROCS=1).
	uniqueAssumedQPS = 60000
	// uniqueMaxLines bounds the unique mix's file (about 34 bytes a line).
	uniqueMaxLines = 10_000_000
)

type queryStats struct {
	Lines         int            `json:"lines"`
	DistinctNames int            `json:"distinct_names"`
	Seed          uint64         `json:"seed"`
	ByType        map[string]int `json:"by_type"`
	NXDOMAINShare float64        `json:"nxdomain_share"`
	Top10Share    float64        `json:"top10_share"`         // share of lines for the 10 most frequent names
	NamePool      int            `json:"name_pool,omitempty"` // names the mix draws from (-names); some of the tail may never be drawn
	Files         int            `json:"files,omitempty"`     // one per dnsperf process, each lines/files long
	LinesPerFile  []int          `json:"-"`
	WriteSeconds  float64        `json:"write_seconds"` // writing the files, before any load
}

// queryLine returns the next line of a mix: a name, its type, and whether it gets NXDOMAIN.
type queryLine func() (qname, qtype string, nx bool)

// writeQueries writes the query files of c's mix into dir, one per client address (dnsperf
// process), lines split evenly between them in the order they are drawn.
func writeQueries(c *config, dir string) ([]string, queryStats, error) {
	start := time.Now()
	var next queryLine
	switch c.mix {
	case mixDefault:
		next = defaultMix(c.seed, c.names)
	case mixSkewed:
		next = skewedMix(c.seed, c.names)
	case mixUnique:
		next = uniqueMix(c.seed)
	}
	// Every name of the unique mix is distinct by construction: a map of millions of them
	// would cost more than the file.
	counting := c.mix != mixUnique
	st := queryStats{Lines: c.lines, Seed: c.seed, ByType: map[string]int{}, Files: c.clientAddrs}
	if c.mix != mixUnique {
		st.NamePool = c.names
	}
	seen := map[string]int{}
	nx := 0
	var paths []string
	for i := range c.clientAddrs {
		path := filepath.Join(dir, "queries.txt")
		if c.clientAddrs > 1 {
			path = filepath.Join(dir, "queries-"+strconv.Itoa(i+1)+".txt")
		}
		n := c.lines*(i+1)/c.clientAddrs - c.lines*i/c.clientAddrs
		f, err := os.Create(path)
		if err != nil {
			return nil, st, err
		}
		w := bufio.NewWriterSize(f, 1<<16)
		for range n {
			qname, qtype, isNX := next()
			st.ByType[qtype]++
			if counting {
				seen[qname]++
			}
			if isNX {
				nx++
			}
			w.WriteString(qname)
			w.WriteByte(' ')
			w.WriteString(qtype)
			w.WriteByte('\n')
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return nil, st, err
		}
		if err := f.Close(); err != nil {
			return nil, st, err
		}
		paths = append(paths, path)
		st.LinesPerFile = append(st.LinesPerFile, n)
	}
	st.NXDOMAINShare = round(float64(nx)/float64(c.lines), 4)
	if counting {
		st.DistinctNames = len(seen)
		counts := slices.SortedFunc(maps.Values(seen), func(a, b int) int { return cmp.Compare(b, a) })
		top := 0
		for _, n := range counts[:min(10, len(counts))] {
			top += n
		}
		st.Top10Share = round(float64(top)/float64(c.lines), 4)
	} else {
		st.DistinctNames = c.lines
		st.Top10Share = round(float64(min(10, c.lines))/float64(c.lines), 4)
	}
	st.WriteSeconds = round(time.Since(start).Seconds(), 3)
	return paths, st, nil
}

// uniqueLines sizes the unique mix's file: enough for one pass at the target rate (or at
// uniqueAssumedQPS when unthrottled) with 10% to spare, bounded by uniqueMaxLines.
func uniqueLines(qps int, d time.Duration) int {
	if qps == 0 {
		qps = uniqueAssumedQPS
	}
	return min(max(int(1.1*float64(qps)*d.Seconds()), 1000), uniqueMaxLines)
}

var (
	sitePrefixes = []string{"www", "api", "cdn", "mail", "static", "img", "login", "app", "m", "edge"}
	// The types of existing names: mostly A and AAAA with some HTTPS, PTR, TXT and MX.
	defaultTypes = []weighted{{"A", 55}, {"AAAA", 25}, {"HTTPS", 8}, {"PTR", 6}, {"TXT", 3}, {"MX", 3}}
	// The skewed mix has no reverse names: PTR's share goes to A.
	skewedTypes = []weighted{{"A", 61}, {"AAAA", 25}, {"HTTPS", 8}, {"TXT", 3}, {"MX", 3}}
)

type weighted struct {
	qtype string
	w     int // of 100
}

func pick(rng *rand.Rand, types []weighted) string {
	x := rng.IntN(100)
	for _, t := range types {
		if x < t.w {
			return t.qtype
		}
		x -= t.w
	}
	return types[0].qtype
}

// siteName is distinct for every i.
func siteName(i int) string {
	return fmt.Sprintf("%s.site%d.%s", sitePrefixes[i%len(sitePrefixes)], i/len(sitePrefixes), zone)
}

// defaultMix draws from a Zipf-distributed pool of names under bench.test (a popular head
// and a long tail) and of reverse names under 10.in-addr.arpa, plus ~5% typo-like names
// under nx.bench.test, mostly unique, that are answered NXDOMAIN. The sequence is the one
// every report before -mix was made with.
func defaultMix(seed uint64, names int) queryLine {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	// Rank → pool index through a fixed permutation, so popularity is not ordered by name.
	perm := rng.Perm(names)
	zipf := rand.NewZipf(rng, 1.1, 2, uint64(names-1))
	ptrPool := max(names/5, 10)
	ptrPerm := rng.Perm(ptrPool)
	ptrZipf := rand.NewZipf(rng, 1.1, 2, uint64(ptrPool-1))
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	return func() (string, string, bool) {
		if rng.IntN(100) < 5 {
			lbl := make([]byte, 4+rng.IntN(10))
			for i := range lbl {
				lbl[i] = letters[rng.IntN(len(letters))]
			}
			qtype := "A"
			if rng.IntN(3) == 0 {
				qtype = "AAAA"
			}
			return string(lbl) + "." + nxZone, qtype, true
		}
		qtype := pick(rng, defaultTypes)
		if qtype == "PTR" {
			i := ptrPerm[ptrZipf.Uint64()]
			return fmt.Sprintf("%d.%d.%d.10.in-addr.arpa.", i%250+1, i/250%256, i/250/256), qtype, false
		}
		return siteName(perm[zipf.Uint64()]), qtype, false
	}
}

// skewedMix draws every line from one pool of names with Zipf popularity: 90% of the lines
// from names under bench.test (the first 9/10 of the pool), 10% from names under
// nx.bench.test that are answered NXDOMAIN, each part with its own popular head.
func skewedMix(seed uint64, names int) queryLine {
	rng := rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc909))
	nxNames := names / 10
	okNames := names - nxNames
	perm := rng.Perm(okNames)
	zipf := rand.NewZipf(rng, 1.1, 2, uint64(okNames-1))
	nxPerm := rng.Perm(nxNames)
	nxZipf := rand.NewZipf(rng, 1.1, 2, uint64(nxNames-1))
	return func() (string, string, bool) {
		if rng.IntN(100) < 10 {
			qtype := "A"
			if rng.IntN(3) == 0 {
				qtype = "AAAA"
			}
			return fmt.Sprintf("typo%d.%s", nxPerm[nxZipf.Uint64()], nxZone), qtype, true
		}
		return siteName(perm[zipf.Uint64()]), pick(rng, skewedTypes), false
	}
}

// uniqueMix makes every name new, as a random-subdomain ("water torture") flood does: a
// random-looking label under nx.bench.test, answered NXDOMAIN, A or AAAA (2:1). The label
// is a bijective mix of the line number, so no two lines share a name.
func uniqueMix(seed uint64) queryLine {
	var i uint64
	return func() (string, string, bool) {
		i++
		qtype := "A"
		if i%3 == 0 {
			qtype = "AAAA"
		}
		return strconv.FormatUint(mix64(i+seed*0x9e3779b97f4a7c15), 36) + "." + nxZone, qtype, true
	}
}

// mix64 is splitmix64's finalizer, a bijection on uint64.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
