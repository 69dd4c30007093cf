#!/usr/bin/env bash
# The querylog command beside a loaded server: the load harness at 10,000 QPS against the real
# build, alternately without and with `querylog tail -f` and a loop of `querylog top domains
# --since 1h` (one a second) reading its database, PAIRS times (default 2), DURATION each
# (default 60s). Reports, per run, querylog's drops and flush p99 from the harness's JSON report,
# and with the readers, how long after its reply tail -f printed each row (the row's ts plus
# its duration_us against the clock when tail's line arrived) and how long each top took.
#
#   bench/querylog-cli-load.sh [PAIRS] [DURATION]
#
# The harness's reports and the readers' figures are kept in bench/out/cli-load-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-2}
duration=${2:-60s}
out=bench/out/cli-load-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2> /dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/coredns" ./cmd/coredns
go build -o "$tmp/querylog" ./cmd/querylog
q="$tmp/querylog"

# readers DB TAG: starts tail -f and the top loop on DB, their figures in $out/TAG-*, and
# sets reader_pids.
readers() {
	local db=$1 tag=$2
	mkfifo "$tmp/$tag.fifo"
	# Every line tail prints: the delay from the row's reply (ts + duration) to now, in ms.
	perl -MTime::HiRes=time -ne '
		next unless /"ts":(\d+).*"duration_us":(\d+)/;
		push @d, time() * 1000 - $1 - $2 / 1000;
		END {
			@d = sort { $a <=> $b } @d;
			my $n = @d; exit unless $n;
			my $over = grep { $_ > 2000 } @d;
			printf "tail -f: %d rows, from reply to print: median %.0f ms, p99 %.0f ms, max %.0f ms, over 2 s: %d",
				$n, $d[int($n / 2)], $d[int($n * 0.99)], $d[-1], $over;
		}' < "$tmp/$tag.fifo" > "$out/$tag-tail.txt" &
	perl_pid=$!
	"$q" tail -f --json -n 0 --db "$db" > "$tmp/$tag.fifo" 2> "$out/$tag-tail.err" &
	tail_pid=$!
	(
		trap 'exit 0' TERM # after the top that runs
		while sleep 1; do
			/usr/bin/time -f %e -a -o "$out/$tag-top.times" "$q" top domains --since 1h --db "$db" > /dev/null 2>> "$out/$tag-top.err" || true
		done
	) &
	top_pid=$!
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/summary.txt"
for pair in $(seq "$pairs"); do
	for variant in without with; do
		tag=$pair-$variant
		go run ./bench/loadtest -scenario rate -qps 10000 -duration "$duration" -keep -coredns "$tmp/coredns" \
			-json "$out/$tag.json" > "$out/$tag.txt" 2> "$out/$tag.err" &
		harness=$!
		dir=""
		for _ in $(seq 600); do
			dir=$(sed -n 's/^keeping //p' "$out/$tag.err")
			[ -n "$dir" ] && [ -e "$dir/run1-querylog/querylog.db" ] && break
			sleep 0.1
		done
		db=$dir/run1-querylog/querylog.db
		if [ "$variant" = with ]; then
			readers "$db" "$tag"
		fi
		wait "$harness" || echo "run $tag: the harness reported a failure (see $out/$tag.txt)" | tee -a "$out/summary.txt"
		if [ "$variant" = with ]; then
			kill "$tail_pid" "$top_pid"
			wait "$tail_pid" "$perl_pid" "$top_pid" || true
		fi
		rm -rf "$dir"
		drops=$(sed -n 's/^ *"dropped_total": \(.*\),$/\1/p' "$out/$tag.json" | head -1)
		p99=$(sed -n 's/^ *"flush_p99_s": \(.*\),$/\1/p' "$out/$tag.json" | head -1)
		qps=$(sed -n 's/^ *"qps_achieved": \(.*\),$/\1/p' "$out/$tag.json" | head -1)
		line="run $tag: QPS $qps, drops $drops, flush p99 ${p99} s"
		if [ "$variant" = with ]; then
			line="$line; $(cat "$out/$tag-tail.txt"); top: $(sort -g "$out/$tag-top.times" | awk '{ t[NR] = $1 } END { printf "%d runs, median %s s, max %s s", NR, t[int((NR + 1) / 2)], t[NR] }')"
		fi
		echo "$line" | tee -a "$out/summary.txt"
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.txt"
