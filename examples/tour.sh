#!/bin/sh
# examples/tour.sh: a short tour of the teaching examples, run by
# `make demo` as `sh examples/tour.sh build/examples`.
#
# It opens with I/O: an echo server under load from echo_client (50
# connections for 3 s, every byte checked), stopped with SIGTERM, which it
# must survive with exit status 0; then a two-request conversation with
# http_server and its framing checks (ambiguous Content-Length and
# Transfer-Encoding get 400 and a close), the port scanner, and
# parallel_run (subprocesses, whose exit status 1 is expected: two of its
# commands fail). Then the other examples, each opening with a comment
# explaining what it shows, from the first steps to the machinery
# underneath, with a one-line banner each. Every example checks its own
# output and exits non-zero if anything unexpected happens, so the tour
# doubles as a smoke test: it stops at the first failure and exits
# non-zero.
#
# Needs nothing but a POSIX shell and coreutils. The servers listen on
# port 0 (a free port the system picks) and print it on their first line,
# "listening on 127.0.0.1:PORT", where this script reads it. The HTTP check
# talks through bash's /dev/tcp and is skipped if bash is not installed.
#
# Usage: sh examples/tour.sh [DIR]     DIR holds the built examples
#                                      (default: build/examples)

dir=${1:-build/examples}

if [ ! -d "$dir" ]; then
    echo "tour: no directory $dir (build the examples first: make)" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coro-tour.XXXXXX") || exit 2
server_pid=
# On any exit: stop a server we left running, remove the logs.
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM

# need NAME: stop the tour if the example NAME has not been built.
need() {
    if [ ! -x "$dir/$1" ]; then
        echo "tour: $dir/$1 is missing (build it with make)" >&2
        exit 2
    fi
}

# run NAME BANNER [ARGS...]: run one example under its banner; stop the
# tour if it is missing or fails.
run() {
    name=$1
    banner=$2
    shift 2
    printf '\n=== %s: %s\n' "$name" "$banner"
    need "$name"
    "$dir/$name" "$@"
    status=$?
    if [ "$status" -ne 0 ]; then
        echo "tour: $name failed (exit status $status); stopping" >&2
        exit 1
    fi
}

# start_server NAME: start the server NAME on port 0 in the background and
# wait (up to 10 s) for its "listening on ADDR:PORT" line; sets server_pid
# and server_port. Its output goes to $tmp/NAME.log.
start_server() {
    need "$1"
    log=$tmp/$1.log
    : >"$log" # exists before the background job's own redirection runs
    "$dir/$1" 0 >"$log" 2>&1 &
    server_pid=$!
    tries=0
    while [ "$tries" -lt 100 ]; do
        server_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$log")
        if [ -n "$server_port" ]; then
            echo "    (started $1: $(head -n 1 "$log"))"
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
        tries=$((tries + 1))
    done
    echo "tour: $1 did not start listening:" >&2
    cat "$log" >&2
    exit 1
}

# stop_server NAME: SIGTERM, then the server must exit with status 0
# (graceful shutdown); its log is shown indented.
stop_server() {
    kill -TERM "$server_pid"
    wait "$server_pid"
    status=$?
    server_pid=
    echo "    (sent SIGTERM; $1 said:)"
    sed 's/^/    | /' "$tmp/$1.log"
    if [ "$status" -ne 0 ]; then
        echo "tour: $1 exited with status $status after SIGTERM; stopping" >&2
        exit 1
    fi
    echo "    ($1 exited with status 0)"
}

# ---- I/O ----------------------------------------------------------------------

printf '\n=== echo_server + echo_client: %s\n' \
    "one coroutine per connection; 50 clients for 3 s, every byte verified; SIGTERM drains and exits 0"
start_server echo_server
need echo_client
"$dir/echo_client" -p "$server_port" -c 50 -s 64 -d 3
status=$?
if [ "$status" -ne 0 ]; then
    echo "tour: echo_client failed (exit status $status); stopping" >&2
    exit 1
fi
stop_server echo_server

printf '\n=== http_server: %s\n' \
    "HTTP/1.1 keep-alive and pipelining: two requests in one write, two replies, then close"
if command -v bash >/dev/null 2>&1; then
    start_server http_server
    # Both requests go out at once (pipelining); the second asks to close.
    limit=
    command -v timeout >/dev/null 2>&1 && limit="timeout 10"
    $limit bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET / HTTP/1.1\r\nHost: tour\r\n\r\nGET /missing HTTP/1.1\r\nHost: tour\r\nConnection: close\r\n\r\n" >&3
        cat <&3' bash "$server_port" >"$tmp/http.txt"
    # (The first body has no newline; the second reply is shown on a line of its own.)
    tr -d '\r' <"$tmp/http.txt" | awk '{ sub(/!HTTP\//, "!\n    > HTTP/"); print "    > " $0 }'
    if ! grep -q "^HTTP/1.1 200 OK" "$tmp/http.txt" || ! grep -q "Hello, World!" "$tmp/http.txt" ||
        ! grep -q "HTTP/1.1 404 Not Found" "$tmp/http.txt"; then
        echo "tour: http_server did not answer 200 then 404; stopping" >&2
        exit 1
    fi
    # Framing two parsers could read differently (RFC 9112 6.3, what
    # request smuggling feeds on): one reply, the wanted status, and the
    # server closes the connection (else the timeout ends cat, non-zero).
    # What follows each body is a second request that must not be answered.
    expect_framing() { # STATUS REQUEST-HEADERS
        want=$1
        $limit bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
            printf "GET / HTTP/1.1\r\nHost: tour\r\n$2\r\nhelloGET /again HTTP/1.1\r\nHost: tour\r\n\r\n" >&3
            cat <&3' bash "$server_port" "$2" >"$tmp/framing.txt"
        closed=$?
        replies=$(grep -c '^HTTP/1.1 ' "$tmp/framing.txt")
        if [ "$closed" -ne 0 ] || [ "$replies" -ne 1 ] ||
            ! grep -q "^HTTP/1.1 $want " "$tmp/framing.txt"; then
            echo "tour: http_server: for \"$2\" wanted one $want reply and a close; got:" >&2
            cat "$tmp/framing.txt" >&2
            exit 1
        fi
    }
    expect_framing 400 'Content-Length: 5\r\nContent-Length: 6\r\n'
    expect_framing 400 'Content-Length: 5, 6\r\n'
    expect_framing 400 'Transfer-Encoding: chunked\r\nContent-Length: 5\r\n'
    expect_framing 400 'Transfer-Encoding: gzip\r\n'
    expect_framing 200 'Content-Length: 5, 5\r\nContent-Length: 5\r\n'
    echo "    > framing (RFC 9112 6.3): Content-Length 5 and 6, or \"5, 6\": 400;" \
        "Transfer-Encoding with Content-Length, or not ending in chunked: 400;" \
        "\"5, 5\" and 5: one length, 200; each connection closed after one reply"
    stop_server http_server
else
    echo "    (skipped: bash is not installed, and plain sh has no /dev/tcp)"
fi

run port_scanner "listeners on free ports, found by a scan with at most 8 connects at once and 200 ms each"

printf '\n=== parallel_run: %s\n' \
    "xargs -P 2: four shell commands, output captured through pipes, 500 ms each (the sleeper is killed), exit 1"
need parallel_run
printf '%s\n' 'echo hello from one' 'sleep 0.2; echo two, 200 ms later' \
    'echo three fails >&2; exit 3' 'sleep 10' |
    "$dir/parallel_run" -j 2 -t 0.5 >"$tmp/parallel.txt" 2>&1
status=$?
sed 's/^/    /' "$tmp/parallel.txt"
# Exit 1 (two failed); each command's end, in input order, in the summary.
if [ "$status" -ne 1 ] || ! grep -q '^\[1\]: hello from one$' "$tmp/parallel.txt" ||
    ! grep -q '^\[3\]! three fails$' "$tmp/parallel.txt" ||
    ! grep -q '^\[2\] exit 0 ' "$tmp/parallel.txt" || ! grep -q '^\[3\] exit 3 ' "$tmp/parallel.txt" ||
    ! grep -q '^\[4\] timed out after 0.5 s' "$tmp/parallel.txt" ||
    ! grep -q '^--- 2 ok, 2 failed$' "$tmp/parallel.txt"; then
    echo "tour: parallel_run did not report 2 ok, 2 failed (exit status $status); stopping" >&2
    exit 1
fi

# ---- the rest of the tour --------------------------------------------------------

run spawn_join     "spawn named coroutines, join them, collect statuses; they interleave only at switch points"
run ping_pong      "two coroutines alternate with coro_yield; what one switch costs"
run sleep_timeout  "sleeps, absolute wake-ups, and deadline scopes that bound every blocking call"
run cancel_cleanup "cancel a coroutine mid-sleep; its cleanup blocks under a shield; cancellation is sticky"
run task_group     "structured concurrency: gather in completion order, fail fast, and a deadline that cancels the children"
run producer_consumer   "backpressure: a bounded channel (capacity 4) makes a fast producer wait for a slow consumer"
run bounded_concurrency "at most 3 of 10 jobs at once with a semaphore; permits handed on in FIFO order"
run select_timeout      "select over data and quit channels with a per-iteration timeout; try_select as Go's default"
run pipeline            "fan-out/fan-in: generator -> 4 workers -> collector, shut down by closing channels and a wait group"
run prime_sieve         "the prime sieve as a chain of generators, pulled one value at a time"
run retry_backoff       "retry with exponential backoff and jitter, bounded by one overall deadline"
run circuit_breaker     "a circuit breaker fails fast while a service hangs, then probes until it recovers"
run deadlock       "a deliberate deadlock: the runtime proves it, dumps every coroutine (stderr), unwinds, EDEADLK"
run dining_philosophers "five philosophers deadlock on mutexes (dump names each one's fork); lock ordering fixes it"
run context_switch "under the hood: one context switch by hand, the saved frame, and why pop+jmp"

printf '\n=== tour: all examples passed\n'
