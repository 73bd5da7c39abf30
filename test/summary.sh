#!/bin/sh
# test/summary.sh: the closing lines of `make test`, which runs the suite
# twice (natively, then under Valgrind) and lets both halves run whatever
# the first gave.
#
#   sh test/summary.sh NAME COUNTS STATUS [NAME COUNTS STATUS ...]
#
# For each half: its name, the file its runner wrote its counts to
# (CORO_TEST_SUMMARY: "<passed> <failed> <skipped>") and the exit status of
# its make. Prints one line for all halves, then the sum alone on the last
# line, and exits non-zero if any half failed:
#
#   native: 263 passed, 0 failed, 2 skipped; valgrind: 254 passed, 0 failed, 11 skipped
#   517 passed, 0 failed, 13 skipped
#
# A half that exited non-zero without writing its counts (it could not
# start, or its runner crashed) is shown as "did not finish" and counted as
# one failure, so the last line never says "0 failed" for a failed run. A
# half that exited 0 without counts did not run (Valgrind not installed, or
# a configuration without it) and is shown as "not run".
set -u

line=
passed=0 failed=0 skipped=0 bad=0
while [ $# -ge 3 ]; do
    name=$1 counts=$2 status=$3
    shift 3
    part=
    if [ -s "$counts" ] && read -r p f s <"$counts" &&
       [ -n "$p" ] && [ -n "$f" ] && [ -n "$s" ]; then
        part="$p passed, $f failed, $s skipped"
        passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
        if [ "$status" != 0 ]; then
            # Failed without a failed test: no test matched, a duplicate
            # name, or Valgrind's own errors.
            [ "$f" = 0 ] && part="$part, but exit status $status"
            bad=1
        fi
    elif [ "$status" != 0 ]; then
        part="did not finish (exit $status), counted as 1 failed"
        failed=$((failed + 1))
        bad=1
    else
        part="not run"
    fi
    line="${line:+$line; }$name: $part"
done
if [ $# -ne 0 ]; then
    echo "usage: sh test/summary.sh NAME COUNTS STATUS [NAME COUNTS STATUS ...]" >&2
    exit 2
fi

echo "$line"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$bad" = 0 ] && [ "$failed" = 0 ]
