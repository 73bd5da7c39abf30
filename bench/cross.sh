#!/bin/sh
# bench/cross.sh: channels across two threads, coro against Go, in one
# session (`make bench-cross`). coro: BenchmarkSharedChanPingPong and
# BenchmarkSharedChanStream (two schedulers of a run, bench/bench_shared.c);
# Go: the same workloads with GOMAXPROCS=2 (bench/go/chan_test.go). Each
# side runs COUNT times (default 5), alternating, and the medians are
# compared. Without go, says so and shows coro's figures alone.
#
#   bench/cross.sh BENCH_BINARY
set -u
bin=${1:?usage: bench/cross.sh path/to/coro_bench}
count=${COUNT:-5}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

have_go=1
command -v go >/dev/null 2>&1 || have_go=0
[ $have_go -eq 1 ] || echo "cross.sh: go is not installed: coro's figures alone (apt-get install golang-go for the comparison)"

i=0
while [ $i -lt "$count" ]; do
    "$bin" -bench 'SharedChan|CacheLinePingPong' -count 1 2>/dev/null |
        grep -E '^Benchmark(SharedChan[A-Za-z]*|CacheLinePingPong) ' >> "$tmp/coro"
    if [ $have_go -eq 1 ]; then
        (cd "$here/go" && GOMAXPROCS=2 GOFLAGS=-mod=mod go test -run '^$' -bench . -count 1 2>/dev/null) |
            grep '^BenchmarkGoChan' >> "$tmp/go"
    fi
    i=$((i + 1))
done
cat "$tmp/coro"
[ $have_go -eq 1 ] && cat "$tmp/go"

# median <file> <name-prefix>: the median ns/op of the lines for that name.
median() {
    grep "^$2" "$1" 2>/dev/null | awk '{ for (k = 1; k < NF; k++) if ($(k + 1) == "ns/op") print $k }' |
        sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

echo
printf '%-30s %12s %12s %8s  %s\n' name coro go ratio target
row() {
    c=$(median "$tmp/coro" "$1 ")
    g=$(median "$tmp/go" "$2-")
    if [ -n "$c" ] && [ -n "$g" ]; then
        r=$(awk -v c="$c" -v g="$g" 'BEGIN { printf "%.2f", c / g }')
        ok=$(awk -v r="$r" -v t="$3" 'BEGIN { print (r <= t) ? "PASS" : "MISS" }')
        printf '%-30s %12s %12s %7sx  <= %sx %s\n' "$1" "$c" "$g" "$r" "$3" "$ok"
    else
        printf '%-30s %12s %12s %8s\n' "$1" "${c:--}" "${g:--}" -
    fi
}
row BenchmarkSharedChanPingPong BenchmarkGoChanPingPong 1.5
row BenchmarkSharedChanStream BenchmarkGoChanStream 1.0

# The round trip's physical floor on this machine: two threads on two
# cores spinning on one word each (BenchmarkCacheLinePingPong). Go runs its
# ping-pong on one thread (the woken goroutine goes to the waker's P), so
# its figure can be below any cross-core round trip; a target under this
# floor cannot be met by any runtime whose two sides run on two cores.
f=$(median "$tmp/coro" "BenchmarkCacheLinePingPong ")
c=$(median "$tmp/coro" "BenchmarkSharedChanPingPong ")
g=$(median "$tmp/go" "BenchmarkGoChanPingPong-")
if [ -n "$f" ] && [ -n "$c" ]; then
    printf '%-30s %12s %12s %7sx  (SharedChanPingPong over the cross-core floor)\n' \
        BenchmarkCacheLinePingPong "$f" - "$(awk -v c="$c" -v f="$f" 'BEGIN { printf "%.2f", c / f }')"
    [ -n "$g" ] && awk -v f="$f" -v g="$g" 'BEGIN {
        if (1.5 * g < f) printf "note: the round-trip target (1.5 x Go = %.0f ns) is below the cross-core floor (%.0f ns)\n", 1.5 * g, f }'
fi
