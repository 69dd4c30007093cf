package main

import (
	"bufio"
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
)

type queryStats struct {
	Lines         int            `json:"lines"`
	DistinctNames int            `json:"distinct_names"`
	Seed          uint64         `json:"seed"`
	ByType        map[string]int `json:"by_type"`
	NXDOMAINShare float64        `json:"nxdomain_share"`
	Top10Share    float64        `json:"top10_share"` // share of lines for the 10 most frequent names
}

// writeQueryFile writes a deterministic dnsperf input: a Zipf-distributed pool of names under
// bench.test (a popular head and a long tail) and of reverse names under 10.in-addr.arpa,
// mostly A and AAAA with some HTTPS, MX, TXT and PTR, plus ~5% typo-like names under
// nx.bench.test that are answered NXDOMAIN.
func writeQueryFile(path string, seed uint64, names, lines int) (queryStats, error) {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	prefixes := []string{"www", "api", "cdn", "mail", "static", "img", "login", "app", "m", "edge"}
	name := func(i int) string { // distinct for every i
		return fmt.Sprintf("%s.site%d.%s", prefixes[i%len(prefixes)], i/len(prefixes), zone)
	}
	// Rank → pool index through a fixed permutation, so popularity is not ordered by name.
	perm := rng.Perm(names)
	zipf := rand.NewZipf(rng, 1.1, 2, uint64(names-1))
	ptrPool := max(names/5, 10)
	ptrPerm := rng.Perm(ptrPool)
	ptrZipf := rand.NewZipf(rng, 1.1, 2, uint64(ptrPool-1))
	type weighted struct {
		qtype string
		w     int
	}
	mix := []weighted{{"A", 55}, {"AAAA", 25}, {"HTTPS", 8}, {"PTR", 6}, {"TXT", 3}, {"MX", 3}} // of the 95% that exist
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"

	f, err := os.Create(path)
	if err != nil {
		return queryStats{}, err
	}
	w := bufio.NewWriter(f)
	st := queryStats{Lines: lines, Seed: seed, ByType: map[string]int{}}
	seen := map[string]int{}
	nx := 0
	for range lines {
		var qname, qtype string
		if rng.IntN(100) < 5 {
			n := 4 + rng.IntN(10)
			lbl := make([]byte, n)
			for i := range lbl {
				lbl[i] = letters[rng.IntN(len(letters))]
			}
			qname = string(lbl) + "." + nxZone
			qtype = "A"
			if rng.IntN(3) == 0 {
				qtype = "AAAA"
			}
			nx++
		} else {
			x := rng.IntN(100)
			for _, m := range mix {
				if x < m.w {
					qtype = m.qtype
					break
				}
				x -= m.w
			}
			if qtype == "PTR" {
				i := ptrPerm[ptrZipf.Uint64()]
				qname = fmt.Sprintf("%d.%d.%d.10.in-addr.arpa.", i%250+1, i/250%256, i/250/256)
			} else {
				qname = name(perm[zipf.Uint64()])
			}
		}
		st.ByType[qtype]++
		seen[qname]++
		fmt.Fprintf(w, "%s %s\n", qname, qtype)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return st, err
	}
	if err := f.Close(); err != nil {
		return st, err
	}
	st.DistinctNames = len(seen)
	st.NXDOMAINShare = round(float64(nx)/float64(lines), 4)
	counts := slices.SortedFunc(maps.Values(seen), func(a, b int) int { return cmp.Compare(b, a) })
	top := 0
	for _, n := range counts[:min(10, len(counts))] {
		top += n
	}
	st.Top10Share = round(float64(top)/float64(lines), 4)
	return st, nil
}
