#!/bin/sh
# test/check_layers.sh: the layering, checked on the sources (run from the
# repository's top folder; `make check-layers`, and part of `make test`).
#
#   coro/   the ground floor: includes nothing of the floors above
#   sched/  may include coro/
#   sync/   may include coro/, and of sched/ only sched/wait.h (park and
#           wake) and the public sched/sched.h
#   io/     may include coro/, sync/'s public header, and of sched/ only
#           sched/wait.h, sched/io_wait.h and sched/sched.h
#
# and sync/ and io/ never touch the scheduler's or a coroutine's fields:
# they call the functions of sched/wait.h and sched/io_wait.h. (Those are
# inline, so the compiler cannot hide the fields from them; this check
# does.) Exits 1 and names each violation.
set -u
status=0

fail() {
    echo "check_layers: $*" >&2
    status=1
}

# includes <folder> <allowed-regex>
includes() {
    folder=$1
    allowed=$2
    for f in "$folder"/*.c "$folder"/*.h; do
        [ -e "$f" ] || continue
        grep -n '^#include "' "$f" | sed 's/^\([0-9]*\):#include "\([^"]*\)".*/\1 \2/' |
        while read -r line inc; do
            if ! echo "$inc" | grep -Eq "^($allowed)\$"; then
                echo "$f:$line includes $inc, which is not below $folder/ (or not its interface)"
            fi
        done
    done
}

out=$( {
    includes coro 'coro/[a-z_]+\.h'
    includes sched 'coro/[a-z_]+\.h|sched/[a-z_]+\.h'
    includes sync 'coro/[a-z_]+\.h|sync/[a-z_]+\.h|sched/wait\.h|sched/sched\.h'
    includes io 'coro/[a-z_]+\.h|io/[a-z_]+\.h|sync/sync\.h|sched/wait\.h|sched/io_wait\.h|sched/sched\.h'
} )
[ -n "$out" ] && fail "$out"

# Fields of struct sched and struct coro (sched/sched_int.h) whose names no
# other struct of sync/ or io/ uses.
fields='current|runq_head|runq_tail|runq_len|pass_left|poll_waiters|io_waits|heap|heap_len|heap_cap|timer_seq|loop_now|wait_what|wait_obj|wait_num|wait_since|wake_at|timer_index|timer_when|joiner|end_more|attn|cancelled|killed|shielded|deadline|next_ready|fiber|signal_waiters|fd_chunks|posts|reap|switches'
out=$(grep -nE "(->|\.)($fields)\b" sync/*.c sync/*.h io/*.c io/*.h |
      grep -vE '^[^:]*:[0-9]+:\s*(/\*|\*)')
[ -n "$out" ] && fail "sync/ or io/ touches the scheduler's fields (use sched/wait.h):
$out"

[ $status -eq 0 ] && echo "check_layers: coro/ < sched/ < sync/ < io/, and sync/ and io/ use only sched/'s wait interface"
exit $status
