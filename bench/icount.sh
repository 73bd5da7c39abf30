#!/bin/sh
# bench/icount.sh: instructions per step of the library's hot paths
# (`make icount`), counted by Valgrind's Callgrind.
#
#   sh bench/icount.sh [ICOUNT_BINARY [N]]     (default build/bench/icount 100000)
#
# Each scenario of bench/icount.c (yield, mutex, chan, spawn, gen, select)
# runs twice under `valgrind --tool=callgrind --collect-atstart=yes`, for N
# and for 2N steps, and the instructions executed in user space by the
# whole process are read from the `totals:` line of the profile Callgrind
# writes (--callgrind-out-file; `summary:` when there is no `totals:`).
# Start-up, scheduler set-up, the first stack's allocation and the exit
# cost the same in both runs, so (I(2N) - I(N)) / N is the cost of one
# step: the library's path plus the driver's loop (a compare, an increment
# and a branch or so). Unlike the timings of `make bench`, these counts
# are deterministic and do not depend on the machine's load; they say
# nothing about cache misses or mispredictions.
#
# Under Valgrind the library knows it is (RUNNING_ON_VALGRIND): a spawn
# then marks the new stack's header as undefined for Memcheck (a client
# request: a handful of no-op instructions natively, counted here) and the
# epoll poller avoids epoll_pwait2 (not on these paths). The counts are
# otherwise those of the library as built: the driver links the build's
# libcoro.a (by default -O2, CONTEXT=asm).
#
# Each line: the scenario, instructions per step, the target where there
# is one and PASS/MISS. Exits 0 whether or not a target is met (MISS is
# information), 1 if a run failed; prints a message and exits 0 when
# Valgrind is not installed.
set -u

bin=${1:-build/bench/icount}
n=${2:-100000}
valgrind=${VALGRIND-valgrind}

if [ -z "$valgrind" ] || ! command -v "$valgrind" >/dev/null 2>&1; then
    echo "icount: valgrind not installed (or VALGRIND= empty in this configuration): skipped"
    exit 0
fi
if [ ! -x "$bin" ]; then
    echo "icount: $bin not built (make $bin)" >&2
    exit 1
fi
case $n in
    ''|*[!0-9]*|0) echo "icount: N must be a positive integer, not '$n'" >&2; exit 2 ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coro-icount.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

# The instructions (Ir) of one run: scenario, steps.
count() {
    out="$tmp/$1.$2.out"
    if ! "$valgrind" --tool=callgrind --collect-atstart=yes \
            --callgrind-out-file="$out" --log-file="$tmp/$1.$2.log" \
            "$bin" "$1" "$2"; then
        echo "icount: $bin $1 $2 failed under callgrind:" >&2
        cat "$tmp/$1.$2.log" >&2
        return 1
    fi
    # "events: Ir" is the only event without cache or branch simulation;
    # totals: and summary: give one number per event.
    awk '/^totals:/ { t = $2 } /^summary:/ { s = $2 }
         END { if (t != "") print t; else if (s != "") print s; else exit 1 }' "$out"
}

echo "# instructions per step, (I(2N) - I(N)) / N for N=$n, callgrind ($("$valgrind" --version))"
status=0
# scenario  name  target (0: none)
for spec in "yield yield-pair 105" "mutex mutex-2handoffs 300" "chan chan-roundtrip 350" \
            "spawn spawn-join 420" "gen gen-next 0" "select select2 0"; do
    set -- $spec
    i1=$(count "$1" "$n") && i2=$(count "$1" $((2 * n))) || { status=1; continue; }
    awk -v name="$2" -v i1="$i1" -v i2="$i2" -v n="$n" -v target="$3" 'BEGIN {
        per = (i2 - i1) / n
        # Whole numbers in practice: every step runs the same path.
        line = sprintf("ICount/%-18s " (per == int(per) ? "%6d" : "%6.1f") " instr/step", name, per)
        if (target > 0)
            line = line sprintf("  target %4d  %s", target, per <= target ? "PASS" : "MISS")
        print line
    }'
done
exit $status
