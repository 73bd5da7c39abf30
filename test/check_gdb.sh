#!/bin/sh
# test/check_gdb.sh TARGET: tools/coro-gdb.py, checked in gdb against
# TARGET (test/gdb/target.c built with -g; `make check-gdb`, and part of
# `make test-native`). Run from the repository's top folder.
#
# test/gdb/check.py drives gdb: it stops TARGET with coroutines parked in a
# sleep, a channel receive and a mutex lock, one ready, and one parked on a
# second thread, then checks `info coroutines` (states, what they wait on,
# functions, names), `coro bt` of each (its own function names), that the
# registers and the selected frame are given back, and that TARGET then
# exits normally; then the same from a core file gdb wrote at the
# breakpoint (TARGET.core, removed after), where the stacks are in it. Prints one line on success, gdb's whole output on failure
# (exit 1).
#
# Skipped, with a line saying why and exit status 0, where it cannot run:
# no gdb, a gdb without Python, TEST_EXEC set (the program runs through an
# emulator or a wrapper), or a system that does not let gdb trace a
# program (ptrace refused, as in some containers).
set -u
target=${1:?usage: test/check_gdb.sh TARGET}
GDB=${GDB:-gdb}

skip() {
    echo "check_gdb: skipped: $*"
    exit 0
}

if [ -n "${TEST_EXEC:-}" ]; then
    skip "TEST_EXEC is set (programs run through \"$TEST_EXEC\")"
fi
command -v "$GDB" >/dev/null 2>&1 || skip "gdb not found"
# LeakSanitizer (SANITIZE=address) refuses to run under ptrace.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
export ASAN_OPTIONS
limit=
command -v timeout >/dev/null 2>&1 && limit="timeout 120"

# gdb with Python?
out=$($limit "$GDB" -batch -nx -ex 'python print(6 * 7)' 2>&1)
case $out in
*42*) ;;
*) skip "this gdb has no Python ($(echo "$out" | head -n 1))" ;;
esac

# Can gdb run a program here? (ptrace may be refused.)
out=$($limit "$GDB" -batch -nx -ex run "$target" 2>&1)
case $out in
*"exited normally"*) ;;
*"ptrace: Operation not permitted"*|*"Could not trace the inferior"*|*"Couldn't get registers"*)
    skip "gdb cannot trace a program here ($(echo "$out" | grep -m 1 -E 'ptrace|trace|registers'))" ;;
*)
    echo "$out"
    echo "check_gdb: FAILED: $target does not run to its end under gdb"
    exit 1 ;;
esac

core=$target.core
rm -f "$core"
# No core file from a sanitizer build: gdb would write the sanitizer's
# shadow memory into it, terabytes of address space (a CI run once filled
# its disk that way).
if nm "$target" 2>/dev/null | grep -qE '__(asan|tsan)_init'; then
    core=
fi
log=$(CORO_GDB_SCRIPT=tools/coro-gdb.py CORO_GDB_CORE=$core $limit "$GDB" -batch -nx \
      -x test/gdb/check.py "$target" 2>&1)
status=$?
[ -n "$core" ] && rm -f "$core"
last=$(echo "$log" | grep '^check_gdb: ' | tail -n 1)
if [ $status -eq 0 ] && echo "$last" | grep -q '^check_gdb: ok'; then
    echo "$last: info coroutines and coro bt of tools/coro-gdb.py, with $("$GDB" --version | head -n 1)"
    exit 0
fi
echo "$log"
echo "check_gdb: FAILED (gdb exit status $status): tools/coro-gdb.py, see above"
exit 1
