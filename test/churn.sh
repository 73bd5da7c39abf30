#!/bin/sh
# test/churn.sh: the example servers' memory under connection churn, run
# by `make churn` as `sh test/churn.sh BUILD`.
#
# For echo_server and http_server in turn: start it on port 0, make
# WARMUP sequential connections (test/churn/churn_client.c: each does one
# echo or one HTTP request, then closes), read the server's VmRSS from
# /proc/PID/status, make N more, read it again. Every connection must be
# served and the RSS may grow by at most MAX_GROWTH_KIB. Then the same
# with CORO_STACK_GUARD=mprotect (the guards of kernels before 6.13, where
# every stack splits its slab's mapping twice and a process tops out near
# 32k stacks) and MPROTECT_N connections, all of which must be served.
# Each server must then exit 0 on SIGTERM. One line per run, e.g.
#   echo_server  guards=default  20000 conns: RSS 1756 -> 1756 KiB (+0), maps 40 -> 40  ok
#
# A server whose task group kept its ended connections failed all of this:
# 20,000 connections took echo_server from 10 to 90 MB, and under mprotect
# guards every connection after about the 32,750th was refused.
#
# Linux only (/proc). Takes about 20 s on a 2-core machine, so it is not
# part of `make test`. Settings, from the environment:
#   CHURN_N=20000 CHURN_MPROTECT_N=40000 CHURN_WARMUP=1000
#   CHURN_MAX_GROWTH_KIB=4096 CHURN_SERVERS="echo_server http_server"
#
# Usage: sh test/churn.sh [BUILD]    BUILD holds examples/ and
#                                    test/churn_client (default: build)

build=${1:-build}
n=${CHURN_N:-20000}
mprotect_n=${CHURN_MPROTECT_N:-40000}
warmup=${CHURN_WARMUP:-1000}
max_growth=${CHURN_MAX_GROWTH_KIB:-4096}
servers=${CHURN_SERVERS:-"echo_server http_server"}
client=$build/test/churn_client

if [ ! -r /proc/self/status ]; then
    echo "churn: skipped (needs Linux's /proc/PID/status)"
    exit 0
fi
for f in "$client" $(for s in $servers; do echo "$build/examples/$s"; done); do
    if [ ! -x "$f" ]; then
        echo "churn: $f is missing (make churn builds it)" >&2
        exit 2
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coro-churn.XXXXXX") || exit 2
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM

failed=0
fail() {
    echo "churn: FAILED: $*" >&2
    failed=1
}

# rss_kib PID / maps PID: the process's VmRSS in KiB, its mappings.
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$1/status"; }
maps() { wc -l <"/proc/$1/maps" | tr -d ' '; }

# start NAME GUARD: start the server (CORO_STACK_GUARD=GUARD unless
# "default") on port 0; sets server_pid and server_port.
start() {
    log=$tmp/$1.log
    : >"$log"
    if [ "$2" = default ]; then
        "$build/examples/$1" 0 >"$log" 2>&1 &
    else
        CORO_STACK_GUARD=$2 "$build/examples/$1" 0 >"$log" 2>&1 &
    fi
    server_pid=$!
    tries=0
    while [ "$tries" -lt 100 ]; do
        server_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$log")
        [ -n "$server_port" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
        tries=$((tries + 1))
    done
    cat "$log" >&2
    fail "$1 did not start listening"
    return 1
}

# stop NAME: SIGTERM; the server must exit 0. Its log goes to stdout,
# indented, if anything went wrong.
stop() {
    kill -TERM "$server_pid"
    wait "$server_pid"
    status=$?
    server_pid=
    if [ "$status" -ne 0 ]; then
        sed 's/^/    | /' "$tmp/$1.log"
        fail "$1 exited with status $status after SIGTERM"
    elif grep -q "no coroutine" "$tmp/$1.log"; then
        sed 's/^/    | /' "$tmp/$1.log"
    fi
}

# run NAME GUARD COUNT CHECK_RSS: one churn run.
run() {
    name=$1 guard=$2 count=$3 check_rss=$4
    case $name in http_server) mode=http ;; *) mode=echo ;; esac
    start "$name" "$guard" || return
    if ! "$client" "$mode" "$server_port" "$warmup" >"$tmp/warmup.out"; then
        cat "$tmp/warmup.out"
        fail "$name: the warm-up's connections were not all served"
    fi
    rss0=$(rss_kib "$server_pid") maps0=$(maps "$server_pid")
    "$client" "$mode" "$server_port" "$count" >"$tmp/run.out"
    client_status=$?
    rss1=$(rss_kib "$server_pid") maps1=$(maps "$server_pid")
    growth=$((rss1 - rss0))
    verdict=ok
    if [ "$client_status" -ne 0 ]; then
        verdict="NOT ALL SERVED: $(cat "$tmp/run.out")"
        fail "$name (guards=$guard): $(cat "$tmp/run.out")"
    fi
    if [ "$check_rss" = 1 ] && [ "$growth" -gt "$max_growth" ]; then
        verdict="RSS GREW BY MORE THAN $max_growth KiB"
        fail "$name (guards=$guard): RSS grew $rss0 -> $rss1 KiB over $count connections"
    fi
    printf '%-12s guards=%-8s %6d conns: RSS %d -> %d KiB (%+d), maps %d -> %d  %s\n' \
        "$name" "$guard" "$count" "$rss0" "$rss1" "$growth" "$maps0" "$maps1" "$verdict"
    stop "$name"
}

echo "churn: $warmup warm-up connections, then $n (RSS growth <= $max_growth KiB), then $mprotect_n with mprotect guards"
for s in $servers; do
    run "$s" default "$n" 1
    run "$s" mprotect "$mprotect_n" 1
done
if [ "$failed" -ne 0 ]; then
    echo "churn: FAILED"
    exit 1
fi
echo "churn: ok"
