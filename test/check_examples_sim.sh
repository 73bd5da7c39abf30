#!/bin/sh
# test/check_examples_sim.sh BUILD: the examples' simulated runs
# (`make check-examples-sim`, part of `make test-native`). retry_backoff and
# circuit_breaker run with --sim under several seeds: each must exit 0
# (the examples check themselves), print the same output twice for one
# seed, cover minutes to hours of virtual time in well under a second of
# wall time, and different seeds must give different runs. Runs under
# TEST_EXEC (an emulator) too, without the wall-time bound.
set -u
build=${1:-build}
status=0
fail() {
    echo "check_examples_sim: $*" >&2
    status=1
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coro-exsim.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

for ex in retry_backoff circuit_breaker; do
    bin="$build/examples/$ex"
    [ -x "$bin" ] || { fail "$bin not built"; continue; }
    sums=""
    for seed in 1 2 3 42; do
        a="$tmp/$ex.$seed.a"
        # shellcheck disable=SC2086
        if ! ${TEST_EXEC:-} "$bin" --sim "$seed" >"$a" 2>"$tmp/err"; then
            fail "$ex --sim $seed failed:"
            cat "$tmp/err" >&2
            continue
        fi
        wall=$(sed -n 's/.*simulated run took \([0-9.]*\) s of wall time.*/\1/p' "$tmp/err")
        # shellcheck disable=SC2086
        ${TEST_EXEC:-} "$bin" --sim "$seed" >"$tmp/b" 2>/dev/null
        cmp -s "$a" "$tmp/b" || fail "$ex --sim $seed: two runs printed different output"
        if [ -z "$wall" ]; then
            fail "$ex --sim $seed: no wall time reported"
        elif [ -z "${TEST_EXEC:-}" ] && ! awk -v w="$wall" 'BEGIN { exit !(w < 1.0) }'; then
            fail "$ex --sim $seed: took $wall s of wall time"
        fi
        sums="$sums $(cksum <"$a" | cut -d' ' -f1)"
    done
    distinct=$(for x in $sums; do echo "$x"; done | sort -u | wc -l)
    [ "$distinct" -ge 3 ] || fail "$ex: the seeds gave only $distinct different runs of 4"
done
# The virtual time covered: minutes (retry_backoff's runs 3 and 4), hours
# (circuit_breaker's two hours of calls).
grep -q "budget 15 min" "$tmp/retry_backoff.42.a" 2>/dev/null || fail "retry_backoff: no minutes-long run"
grep -q "for 7200 s" "$tmp/circuit_breaker.42.a" 2>/dev/null || fail "circuit_breaker: no two-hour run"

[ $status -eq 0 ] && echo "check_examples_sim: retry_backoff and circuit_breaker --sim: exact, repeatable per seed, varied across seeds, under a second each"
exit $status
