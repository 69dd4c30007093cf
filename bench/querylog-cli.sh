#!/usr/bin/env bash
# Measures the querylog command's targets on the benchmark database that
# TestGenerateBenchDB writes (README, "Asking the log: the querylog command"): each command
# is run RUNS times (default 7) and timed by /usr/bin/time (wall time of the whole process,
# its start and the opening of the database included); prints the median, the fastest and
# the slowest, the peak RSS, and the load average before and after. Windows are relative to
# now and the rows end when the database was generated: run this right after generating it.
#
#   QUERYLOG_GENDB=/tmp/bench.db go test -run TestGenerateBenchDB -count=1 -timeout 2h ./plugin/querylog/
#   bench/querylog-cli.sh /tmp/bench.db [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:?usage: bench/querylog-cli.sh DB [RUNS]}
runs=${2:-7}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/querylog" ./cmd/querylog
q="$tmp/querylog"
rows=$("$q" stats --db "$db" --json | sed -n 's/^  "rows": \([0-9]*\),$/\1/p')

echo "database: $db ($(du -h "$db" | cut -f1), $rows rows); $(nproc) cores; runs: $runs"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| command | median | min | max | peak RSS | rows/s (median) |"
echo "|---|---|---|---|---|---|"

# measure NAME OUT ARGS...: runs querylog ARGS with stdout to OUT, RUNS times.
measure() {
	local name=$1 out=$2
	shift 2
	local times=() rss=0
	for _ in $(seq "$runs"); do
		/usr/bin/time -f '%e %M' -o "$tmp/time" "$q" "$@" --db "$db" > "$out"
		read -r t m < "$tmp/time"
		times+=("$t")
		rss=$((m > rss ? m : rss))
	done
	local sorted
	sorted=$(printf '%s\n' "${times[@]}" | sort -g)
	local median min max
	median=$(echo "$sorted" | sed -n "$(((runs + 1) / 2))p")
	min=$(echo "$sorted" | head -1)
	max=$(echo "$sorted" | tail -1)
	local rate=""
	if [ "$name" != "${name#export}" ]; then
		rate=$(awk -v r="$rows" -v t="$median" 'BEGIN { printf "%.0f", r / t }')
	fi
	echo "| \`querylog $name\` | ${median} s | ${min} s | ${max} s | $((rss / 1024)) MiB | $rate |"
}

measure "top domains --since 30d" /dev/null top domains --since 30d
measure "top domains --since 1h" /dev/null top domains --since 1h
measure "top clients --since 30d" /dev/null top clients --since 30d
measure "search --name example.org --since 1h" /dev/null search --name example.org --since 1h
measure "search --name rare.example.net --since 1h" /dev/null search --name rare.example.net --since 1h --timeout 60s
measure "stats" /dev/null stats
measure "top upstreams --since 30d" /dev/null top upstreams --since 30d
measure "top upstreams --since 1h" /dev/null top upstreams --since 1h
# Export to a file on disk; a tenth of the rows for comparison of the peak RSS.
measure "export (csv) > file" "$tmp/export" export
measure "export --format jsonl > file" "$tmp/export" export --format jsonl
first=$("$q" stats --db "$db" --json | sed -n 's/^  "first": "\(.*\)",$/\1/p')
until=$(date -u -d "$first + 100 seconds" +%Y-%m-%dT%H:%M:%SZ)
rows=$((rows / 10))
runs=3 measure "export --until $until (a tenth) > file" "$tmp/export" export --until "$until"

echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
