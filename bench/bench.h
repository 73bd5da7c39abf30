/* bench/bench.h: the benchmark harness's shared declarations.
 *
 * A benchmark is a function that does r->n operations and reports what it
 * measured; bench/main.c chooses n, repeats the runs, takes the median and
 * prints Go-style lines (`BenchmarkYield  20000000  3.10 ns/op`) and a table
 * of ratios to each benchmark's baseline. The benchmarks themselves live in
 * bench/bench_*.c, one file per family. */
#ifndef CORO_BENCH_BENCH_H
#define CORO_BENCH_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* 1 where the benchmarks' own bare switch (bench/switch_bare.h) is built:
 * the assembly context backend on x86-64 and aarch64. It is the floor of
 * the switch ratios; without it they are taken to BenchmarkSwitchRaw. */
#if !defined(CORO_CONTEXT_UCONTEXT) && (defined(__x86_64__) || defined(__aarch64__))
#define BENCH_HAVE_BARE 1
#else
#define BENCH_HAVE_BARE 0
#endif

/* One run of one benchmark. */
typedef struct bench_run {
    /* In: operations to do (a multiple of the benchmark's quantum). */
    int64_t n;
    /* Out: wall time of the measured part, in ns (the harness sizes n so
     * that a run takes the time it was asked for). */
    int64_t wall_ns;
    /* Out: the result per operation, in the benchmark's unit. */
    double value;
    /* Out, optional (0 = not measured): thread CPU time per operation, in
     * ns. On a loaded machine the wall time also counts the time other
     * processes held the CPU; this does not. */
    double cpu_value;
    /* Out, optional: extra text for the line's trailing comment. */
    char note[200];
} bench_run_t;

/* Returns 0, -1 after printing what went wrong to stderr, or BENCH_SKIP
 * with the reason in r->note (the benchmark cannot run in this build). */
#define BENCH_SKIP 1
typedef int (*bench_fn)(bench_run_t *r);

enum bench_kind {
    /* n is sized for the run time (-benchtime), the run repeated -count
     * times and the median reported. */
    BENCH_TIMED,
    /* n is fixed (n_full, or n_short with -short) and the benchmark runs
     * once: it is slow and measures memory, not time. */
    BENCH_ONCE
};

typedef struct bench_def {
    const char *name;       /* "BenchmarkYield" */
    const char *unit;       /* "ns/op", "B/coroutine", ... */
    /* The benchmark this one is compared with, NULL for a baseline. */
    const char *baseline;
    enum bench_kind kind;
    /* BENCH_TIMED: n is a multiple of this (>= 1). */
    int64_t quantum;
    /* BENCH_ONCE: n. BENCH_TIMED: when n_full is set, n is fixed instead
     * of sized to -benchtime (a benchmark defined by its size, such as
     * 100k coroutines on fresh stacks), and the run still repeats -count
     * times; -benchtime Nx overrides it. */
    int64_t n_full, n_short;
    /* Optional: a second benchmark of the same family this one's ratio is
     * also shown against (the library's own switch, next to the bare one). */
    const char *also;
    /* Targets (0 = none): value <= target_ratio x the baseline's value,
     * and/or value <= target_value in the benchmark's unit, and/or
     * value <= target_floor x the floor (floor_mult x the floor's value). */
    double target_ratio;
    double target_value;
    double target_floor;
    /* Optional: a benchmark of the same family that bounds this one from
     * below whatever the library does, and how many of it one operation
     * needs; the table shows that floor as a ratio to the baseline too,
     * and this one's value as a multiple of it. */
    const char *floor;
    double floor_mult;
    /* Run in a forked child, so memory measurements start from a clean
     * process and nothing the run leaves behind affects the others. */
    int isolate;
    bench_fn fn;
} bench_def_t;

/* ---- helpers (bench/main.c) -------------------------------------------- */

/* CLOCK_MONOTONIC and CLOCK_PROCESS_CPUTIME_ID, in ns. */
int64_t bench_now(void);
int64_t bench_cpu_now(void);
/* The timed part of a run: bench_start() before it, bench_stop() after
 * `ops` operations sets r->wall_ns, r->value (wall ns per op) and
 * r->cpu_value (thread CPU ns per op). */
typedef struct bench_clock {
    int64_t wall, cpu;
} bench_clock_t;
void bench_start(bench_clock_t *c);
void bench_stop(const bench_clock_t *c, bench_run_t *r, int64_t ops);
/* A "Key:   123 kB" line of /proc/self/status, in bytes; -1 if absent. */
int64_t bench_proc_status_bytes(const char *key);
/* Run body(r) as the first coroutine of a scheduler; 0 if it returned 0. */
int bench_coro_main(int (*body)(void *), void *arg, const char *what);
/* A deterministic PRNG (xorshift64*), for reproducible inputs. */
uint64_t bench_rand(uint64_t *state);

/* ---- the benchmarks ------------------------------------------------------ */

/* bench/bench_switch.c */
int bench_switch_bare(bench_run_t *r);
int bench_switch_bare_call(bench_run_t *r);
int bench_switch_bare_call_two_sites(bench_run_t *r);
int bench_switch_raw(bench_run_t *r);
int bench_switch_call(bench_run_t *r);
int bench_switch_call_two_sites(bench_run_t *r);
int bench_yield(bench_run_t *r);
int bench_yield_two_sites(bench_run_t *r);
/* bench/bench_spawn.c */
int bench_spawn_join(bench_run_t *r);
int bench_spawn_batch(bench_run_t *r);
#define BENCH_BATCH 1000
/* bench/bench_sleep.c */
#define BENCH_SLEEPERS 100000
int bench_sleep(bench_run_t *r);
int bench_sleep_baseline(bench_run_t *r);
/* bench/bench_idle.c */
int bench_idle(bench_run_t *r);
int bench_idle_baseline(bench_run_t *r);
/* bench/bench_cold.c: per coroutine (or per stack slot, for the floors);
 * a run is BENCH_COLD coroutines. */
#define BENCH_COLD 100000
int bench_page_fault(bench_run_t *r);
int bench_cold_start(bench_run_t *r);
int bench_madvise_munmap(bench_run_t *r);
int bench_madvise_munmap_guarded(bench_run_t *r);
int bench_munmap_per_slab(bench_run_t *r);
int bench_cold_visit(bench_run_t *r);
int bench_cold_teardown(bench_run_t *r);
int bench_cold_teardown_sleep(bench_run_t *r);
/* bench/bench_sync.c */
int bench_chan_ping_pong(bench_run_t *r);
int bench_chan_buffered(bench_run_t *r);
int bench_mutex_handoff(bench_run_t *r);
int bench_select2(bench_run_t *r);
int bench_gen_next(bench_run_t *r);
/* bench/bench_shared.c */
/* A spinning thread's pause (bench/bench_shared.c's floors). */
static inline void bench_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int bench_thread_cond_ping_pong(bench_run_t *r);
int bench_cache_line_ping_pong(bench_run_t *r);
int bench_shared_chan_ping_pong(bench_run_t *r);
int bench_shared_chan_stream(bench_run_t *r);

/* bench/bench_run.c: runs of two schedulers. The fan-out's n is a count
 * of tasks (each a couple of ms of computation); its target is a speed-up
 * of BENCH_FANOUT_SPEEDUP with two schedulers. */
int bench_spawn_join_in_run(bench_run_t *r);
int bench_spawn_on_join(bench_run_t *r);
int bench_thread_ping_pong(bench_run_t *r);
#define BENCH_FANOUT_TASKS 64
#define BENCH_FANOUT_TASKS_SHORT 16
#define BENCH_FANOUT_SPEEDUP 1.8
int bench_fanout_one(bench_run_t *r);
int bench_fanout_two(bench_run_t *r);

#endif /* CORO_BENCH_BENCH_H */
