#!/bin/sh
# test/check_package.sh: what a user linking coro beside other code relies on.
#
#   sh test/check_package.sh INCLUDEDIR LIBDIR [DOCFILE]
#
# INCLUDEDIR holds coro.h (the source tree's root, or an installed include
# folder); LIBDIR holds libcoro.a and libcoro.so; DOCFILE, if given, is the
# API reference (docs/API.md). Checks, each failing the run:
#   1. every global symbol libcoro.a defines starts with coro_, so no
#      application or libc name can clash with it, and those no public
#      header declares (internals) start with coro__;
#   2. libcoro.so exports exactly the functions the public headers declare
#      (the build uses -fvisibility=hidden: nothing internal leaks);
#   3. <coro.h> compiles warning-free as strict C11 and C17 (-pedantic) with
#      every C compiler found, and as C++11 and C++20 with every C++ one;
#   4. with DOCFILE: every public function the headers declare is named in
#      it, as `name(` or in backticks, so the reference keeps up with them.
# CC/CXX name extra compilers to try besides gcc, clang, g++ and clang++.
set -eu
inc=${1:?usage: check_package.sh INCLUDEDIR LIBDIR}
lib=${2:?usage: check_package.sh INCLUDEDIR LIBDIR [DOCFILE]}
doc=${3:-}
NM=${NM:-nm}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coro-pkg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*"; failed=1; }

# 1. The static library's global names.
$NM -g --defined-only "$lib/libcoro.a" | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/static"
grep -v '^coro_' "$tmp/static" >"$tmp/foreign" || true
if [ -s "$tmp/foreign" ]; then
    fail "libcoro.a defines global symbols without the coro_ prefix:"
    sed 's/^/    /' "$tmp/foreign"
else
    echo "ok: all $(wc -l <"$tmp/static") global symbols of libcoro.a start with coro_"
fi

# 2. The shared library's exports against the public declarations. The
# headers are preprocessed (comments gone) and every `coro_name(` that is
# not a function-pointer type `(*coro_name)(` counts as a declared function.
printf '#include <coro.h>\n' >"$tmp/decl.c"
cc=${CC:-cc}
$cc -E -P -I"$inc" "$tmp/decl.c" | perl -ne 'print "$1\n" while /(?<!\(\*)\b(coro_\w+)\s*\(/g' | sort -u >"$tmp/declared"
# Internal names carry coro__: a global of libcoro.a that no public header
# declares must not look like public API.
grep -v '^coro__' "$tmp/static" | comm -23 - "$tmp/declared" >"$tmp/unprefixed"
if [ -s "$tmp/unprefixed" ]; then
    fail "libcoro.a defines internal symbols without the coro__ prefix (not declared in a public header):"
    sed 's/^/    /' "$tmp/unprefixed"
else
    echo "ok: libcoro.a's internal symbols all start with coro__"
fi
$NM -D --defined-only "$lib/libcoro.so" | awk '$2 ~ /^[TW]$/ { print $3 }' | sort -u >"$tmp/exported"
if ! diff -u "$tmp/declared" "$tmp/exported" >"$tmp/diff"; then
    fail "libcoro.so's exports differ from the public declarations (- declared only, + exported only):"
    sed -n '3,$p' "$tmp/diff" | grep '^[-+]' | sed 's/^/    /'
else
    echo "ok: libcoro.so exports exactly the $(wc -l <"$tmp/exported") public functions"
fi
other=$($NM -D --defined-only "$lib/libcoro.so" | awk '$2 !~ /^[TW]$/ { print $3 }' | grep -v '^_' || true)
[ -z "$other" ] || fail "libcoro.so exports data symbols: $other"

# 3. Strict headers. The program uses a little of each floor so the
# declarations are really parsed, not just skipped.
cat >"$tmp/strict.c" <<'EOT'
#include <coro.h>
static int body(void *arg) { (void)arg; return coro_sleep(0); }
int main(void)
{
    coro_mutex_t m = CORO_MUTEX_INIT;
    sigset_t set;
    (void)m;
    (void)set;
    return coro_main(body, 0);
}
EOT
cp "$tmp/strict.c" "$tmp/strict.cc"
checked=0
# strict SOURCE COMPILERS STDS: compile SOURCE with each compiler found,
# as each standard, -pedantic -Werror.
strict() {
    src=$1 compilers=$2 stds=$3
    for c in $compilers; do
        command -v "$c" >/dev/null 2>&1 || continue
        for std in $stds; do
            if "$c" -std=$std -pedantic -Wall -Wextra -Werror -I"$inc" -c "$src" -o "$tmp/s.o" 2>"$tmp/err"; then
                echo "ok: <coro.h> as $std -pedantic with $c"
            else
                fail "<coro.h> does not compile as $std -pedantic with $c:"; sed 's/^/    /' "$tmp/err"
            fi
            checked=$((checked + 1))
        done
    done
}
strict "$tmp/strict.c" "gcc clang ${CC:-}" "c11 c17"
strict "$tmp/strict.cc" "g++ clang++ ${CXX:-}" "c++11 c++20"
[ "$checked" -gt 0 ] || fail "no compiler found to check the headers with"

# 4. The reference names every public function: `name(` (not as the tail
# of a longer name) or `name` in backticks.
if [ -n "$doc" ]; then
    if [ ! -r "$doc" ]; then
        fail "cannot read the API reference $doc"
    else
        : >"$tmp/undocumented"
        while read -r name; do
            grep -Eq "(^|[^A-Za-z0-9_])$name\(|\`$name\`" "$doc" || echo "$name" >>"$tmp/undocumented"
        done <"$tmp/declared"
        if [ -s "$tmp/undocumented" ]; then
            fail "public functions missing from $doc (document them there):"
            sed 's/^/    /' "$tmp/undocumented"
        else
            echo "ok: $doc names all $(wc -l <"$tmp/declared") public functions"
        fi
    fi
fi
exit $failed
