#!/usr/bin/env bash
# Counts the instructions per op of one benchmark of plugin/querylog under valgrind's
# callgrind: the benchmark run N times less run once (building its inputs, starting the test
# binary), divided by N - 1, with the allocations per op of the N run. Instruction counts
# repeat where wall time on shared cores does not: BenchmarkServeDNS and BenchmarkAppendRow
# repeat within 0.1%; BenchmarkStoreWrite moves by a few percent with the checkpointer and, with
# rollups, with how many rollup flushes fall in the run (both go by the clock).
#
#   bench/callgrind.sh 'ServeDNS/querylog-cluster$' [N]     # default N: 200000
#   bench/callgrind.sh 'AppendRow$'
#   bench/callgrind.sh 'StoreWrite/mix=kube/schema=v2-norollups$'
#
# GOGC=off: the garbage collector's share, which depends on when it runs, is left out (the
# allocations say what it will have to do); GOMAXPROCS=1: no idle Ps spinning. callgrind needs
# GODEBUG asyncpreemptoff=1 (it asserts on the preemption signal) and, with valgrind 3.19,
# cpu.rdtscp=off (it does not decode RDTSCP, which runtime.cputicks uses).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:?usage: bench/callgrind.sh BENCHMARK-REGEXP [N]}
n=${2:-200000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/querylog.test" ./plugin/querylog/

# run N: prints the instructions of a run of the benchmark N times, and its -benchmem line.
run() {
	GOGC=off GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind \
		--callgrind-out-file="$tmp/cg.$1.out" "$tmp/querylog.test" -test.run '^$' -test.bench "$bench" \
		-test.benchtime "${1}x" -test.benchmem >"$tmp/out.$1" 2>&1
	grep -m1 'refs:' "$tmp/out.$1" | sed 's/.*refs: *//; s/,//g'
}
once=$(run 1)
many=$(run "$n")
grep -E '^Benchmark' "$tmp/out.$n"
echo "instructions per op: $(((many - once) / (n - 1))) ($many for $n, $once for 1)"
