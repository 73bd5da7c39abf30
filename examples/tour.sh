#!/bin/sh
# examples/tour.sh: a short tour of the teaching examples, run by
# `make demo` as `sh examples/tour.sh build/examples`.
#
# Each example opens with a comment explaining what it shows; this script
# runs them from the first steps to the machinery underneath, with a
# one-line banner each. Every example checks its own output and exits
# non-zero if anything unexpected happens, so the tour doubles as a smoke
# test: it stops at the first failure and exits non-zero.
#
# Usage: sh examples/tour.sh [DIR]     DIR holds the built examples
#                                      (default: build/examples)

dir=${1:-build/examples}

if [ ! -d "$dir" ]; then
    echo "tour: no directory $dir (build the examples first: make)" >&2
    exit 2
fi

# run NAME BANNER: run one example under its banner; stop the tour if it
# is missing or fails.
run() {
    name=$1
    banner=$2
    printf '\n=== %s: %s\n' "$name" "$banner"
    if [ ! -x "$dir/$name" ]; then
        echo "tour: $dir/$name is missing (build it with make)" >&2
        exit 2
    fi
    "$dir/$name"
    status=$?
    if [ "$status" -ne 0 ]; then
        echo "tour: $name failed (exit status $status); stopping" >&2
        exit 1
    fi
}

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
