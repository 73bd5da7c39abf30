/* bench/main.c: the benchmark harness: flags, sizing, repetition, Go-style
 * result lines and the table of ratios.
 *
 *   coro_bench [-bench REGEX] [-count N] [-short] [-benchtime 300ms|1s|5000x]
 *              [-cpu] [-nobaseline]
 *
 * Benchmarks come in families: a baseline and the benchmarks compared with
 * it. A family runs as a unit: each timed benchmark is sized first (n so
 * that one run takes -benchtime, unless the benchmark fixes n, as the
 * 100k-coroutine cold-stack ones do), then the runs are interleaved
 * (baseline, a, b, baseline, a, b, ...) -count times, so that a ratio
 * compares runs that saw the same load on this shared, noisy machine. Each
 * line reports the median over the runs, with min and max in the comment,
 * and the median of the other clock: thread CPU time next to wall time
 * (CLOCK_MONOTONIC, the default), or wall time with -cpu. When the two
 * differ, other processes took the CPU during the runs.
 * Memory benchmarks run once, each in a child process of its own.
 *
 * Selecting a benchmark with -bench also runs its baseline (a ratio needs
 * both). The switch family's baseline is BenchmarkSwitchBare, the
 * benchmarks' own bare switch (bench/switch_bare.h: callee-saved registers
 * and the stack pointer, nothing else), and each ratio to it is shown with
 * the ratio to BenchmarkSwitchRaw, the library's switch, next to it
 * ("also"); where the bare switch is not built (CONTEXT=ucontext, other
 * CPUs) it is skipped with a message and the ratios are to SwitchRaw.
 * A benchmark may name a floor (a benchmark of its family that
 * bounds it from below whatever the library does, such as the bare switch
 * behind a call from two different call sites for a ping-pong); the table
 * shows it as a ratio to the baseline, and the benchmark as a multiple of
 * it, so a target below its floor reads as such; a target may also be a
 * multiple of the floor (selecting the benchmark runs its floor too).
 * The exit status is 0 even when a target is missed (MISS is information);
 * it is 1 only when a benchmark failed to run. */
#include "bench/bench.h"
#include "bench/bench_net.h"

#include "coro.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the benchmarks ------------------------------------------------------ */

/* The floor of the switch ratios: the benchmarks' own bare switch where it
 * is built (bench/switch_bare.h), the library's otherwise. The library's
 * own switch (SwitchRaw) is shown next to it. */
#if BENCH_HAVE_BARE
#define SWITCH_FLOOR "BenchmarkSwitchBare"
#define SWITCH_ALSO "BenchmarkSwitchRaw"
#define CALL_FLOOR "BenchmarkSwitchBareCall"
#define CALL2_FLOOR "BenchmarkSwitchBareCallTwoSites"
#else
#define SWITCH_FLOOR "BenchmarkSwitchRaw"
#define SWITCH_ALSO NULL
#define CALL_FLOOR "BenchmarkSwitchCall"
#define CALL2_FLOOR "BenchmarkSwitchCallTwoSites"
#endif

static const bench_def_t benches[] = {
    /* Skips (with a message) where BENCH_HAVE_BARE is 0. */
    { .name = "BenchmarkSwitchBare", .unit = "ns/op", .kind = BENCH_TIMED, .quantum = 2,
      .fn = bench_switch_bare },
#if BENCH_HAVE_BARE
    { .name = "BenchmarkSwitchRaw", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .kind = BENCH_TIMED, .quantum = 2, .fn = bench_switch_raw },
#else
    { .name = "BenchmarkSwitchRaw", .unit = "ns/op", .kind = BENCH_TIMED, .quantum = 2,
      .fn = bench_switch_raw },
#endif
    { .name = "BenchmarkSwitchBareCall", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .kind = BENCH_TIMED, .quantum = 2, .fn = bench_switch_bare_call },
    { .name = "BenchmarkSwitchBareCallTwoSites", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .kind = BENCH_TIMED, .quantum = 2, .fn = bench_switch_bare_call_two_sites },
    { .name = "BenchmarkSwitchCall", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = 2, .fn = bench_switch_call },
    { .name = "BenchmarkSwitchCallTwoSites", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = 2,
      .fn = bench_switch_call_two_sites },
    { .name = "BenchmarkYield", .unit = "ns/op", .baseline = SWITCH_FLOOR, .also = SWITCH_ALSO,
      .kind = BENCH_TIMED, .quantum = 2, .target_ratio = 1.5, .fn = bench_yield },
    { .name = "BenchmarkYieldTwoSites", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = 2, .fn = bench_yield_two_sites },
    { .name = "BenchmarkSpawnJoin", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = 1, .target_ratio = 12,
      .fn = bench_spawn_join },
    { .name = "BenchmarkSpawnBatch1000", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = BENCH_BATCH,
      .fn = bench_spawn_batch },
    /* A round trip is two switches, each entered from a call, at two
     * different sites (ping's and pong's): its floor is two two-site
     * switches, and the target is 1.5x that. */
    { .name = "BenchmarkChanPingPong", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = 1, .target_floor = 1.5,
      .floor = CALL2_FLOOR, .floor_mult = 2, .fn = bench_chan_ping_pong },
    { .name = "BenchmarkChanBuffered", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = 1, .fn = bench_chan_buffered },
    { .name = "BenchmarkMutexHandoff", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = 2, .target_ratio = 3,
      .floor = CALL_FLOOR, .floor_mult = 1, .fn = bench_mutex_handoff },
    { .name = "BenchmarkSelect2", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = 4, .fn = bench_select2 },
    /* Per value, which is two hand-offs (next and yield, from two sites):
     * the target is 3x the bare switch per hand-off. */
    { .name = "BenchmarkGenNext", .unit = "ns/op", .baseline = SWITCH_FLOOR,
      .also = SWITCH_ALSO, .kind = BENCH_TIMED, .quantum = 1, .target_ratio = 6,
      .floor = CALL2_FLOOR, .floor_mult = 2, .fn = bench_gen_next },
    /* Across two schedulers of a run (bench/bench_shared.c): the floor is
     * two plain threads handing a token over with a mutex and condition
     * variables. Go's figures for the same workloads: bench/cross.sh. */
    { .name = "BenchmarkThreadCondPingPong", .unit = "ns/op", .kind = BENCH_TIMED, .quantum = 1,
      .fn = bench_thread_cond_ping_pong },
    /* The physical floor of a round trip between two cores: two threads
     * spinning on one word each. */
    { .name = "BenchmarkCacheLinePingPong", .unit = "ns/op", .kind = BENCH_TIMED, .quantum = 1,
      .fn = bench_cache_line_ping_pong },
    { .name = "BenchmarkSharedChanPingPong", .unit = "ns/op",
      .baseline = "BenchmarkThreadCondPingPong", .kind = BENCH_TIMED, .quantum = 1,
      .floor = "BenchmarkCacheLinePingPong", .floor_mult = 1, .fn = bench_shared_chan_ping_pong },
    { .name = "BenchmarkSharedChanStream", .unit = "ns/op",
      .baseline = "BenchmarkThreadCondPingPong", .kind = BENCH_TIMED, .quantum = 1,
      .fn = bench_shared_chan_stream },
    /* Runs of two schedulers, one per thread (bench/bench_run.c): a spawn
     * and join across schedulers against the same on one scheduler of the
     * run, with its floor (two threads waking each other through the
     * kernel: a remote spawn + join is two such round trips); and a
     * CPU-bound fan-out on one scheduler, then on two, whose target is a
     * speed-up (on time per task: 1.8x faster is a ratio of 1/1.8). */
    { .name = "BenchmarkSpawnJoinInRun", .unit = "ns/op", .kind = BENCH_TIMED, .quantum = 1,
      .fn = bench_spawn_join_in_run },
    { .name = "BenchmarkThreadPingPong", .unit = "ns/op", .baseline = "BenchmarkSpawnJoinInRun",
      .kind = BENCH_TIMED, .quantum = 1, .fn = bench_thread_ping_pong },
    { .name = "BenchmarkSpawnOnJoin", .unit = "ns/op", .baseline = "BenchmarkSpawnJoinInRun",
      .kind = BENCH_TIMED, .quantum = 1, .floor = "BenchmarkThreadPingPong", .floor_mult = 2,
      .fn = bench_spawn_on_join },
    { .name = "BenchmarkParallelFanout/sched=1", .unit = "ns/task", .kind = BENCH_TIMED,
      .quantum = 2, .n_full = BENCH_FANOUT_TASKS, .n_short = BENCH_FANOUT_TASKS_SHORT,
      .fn = bench_fanout_one },
    { .name = "BenchmarkParallelFanout/sched=2", .unit = "ns/task",
      .baseline = "BenchmarkParallelFanout/sched=1", .kind = BENCH_TIMED, .quantum = 2,
      .n_full = BENCH_FANOUT_TASKS, .n_short = BENCH_FANOUT_TASKS_SHORT,
      .target_ratio = 1 / BENCH_FANOUT_SPEEDUP, .fn = bench_fanout_two },
    { .name = "BenchmarkSleepBaseline", .unit = "ns/op", .kind = BENCH_TIMED,
      .quantum = BENCH_SLEEPERS, .fn = bench_sleep_baseline },
    { .name = "BenchmarkSleep", .unit = "ns/op", .baseline = "BenchmarkSleepBaseline",
      .kind = BENCH_TIMED, .quantum = BENCH_SLEEPERS, .fn = bench_sleep },
    { .name = "BenchmarkIdle1MBaseline", .unit = "B/page", .kind = BENCH_ONCE,
      .n_full = 1000000, .n_short = 100000, .isolate = 1, .fn = bench_idle_baseline },
    { .name = "BenchmarkIdle1M", .unit = "B/coroutine", .baseline = "BenchmarkIdle1MBaseline",
      .kind = BENCH_ONCE, .n_full = 1000000, .n_short = 100000, .target_value = 4608,
      .isolate = 1, .fn = bench_idle },
    /* Fresh stacks (bench/bench_cold.c): each run is a new process, so the
     * stack pool starts empty; the floors are the kernel's own cost for the
     * same pages. */
    { .name = "BenchmarkPageFault", .unit = "ns/op", .kind = BENCH_TIMED,
      .quantum = 1, .n_full = BENCH_COLD, .isolate = 1, .fn = bench_page_fault },
    { .name = "BenchmarkColdStart100k", .unit = "ns/op", .baseline = "BenchmarkPageFault",
      .kind = BENCH_TIMED, .quantum = 1, .n_full = BENCH_COLD, .target_ratio = 1.25,
      .isolate = 1, .fn = bench_cold_start },
    { .name = "BenchmarkMadviseMunmap", .unit = "ns/op", .kind = BENCH_TIMED,
      .quantum = 1, .n_full = BENCH_COLD, .isolate = 1, .fn = bench_madvise_munmap },
    { .name = "BenchmarkMadviseMunmapGuarded", .unit = "ns/op", .kind = BENCH_TIMED,
      .quantum = 1, .n_full = BENCH_COLD, .isolate = 1, .fn = bench_madvise_munmap_guarded },
    { .name = "BenchmarkMunmapPerSlab", .unit = "ns/op", .kind = BENCH_TIMED,
      .quantum = 1, .n_full = BENCH_COLD, .isolate = 1, .fn = bench_munmap_per_slab },
    { .name = "BenchmarkColdVisit", .unit = "ns/op", .kind = BENCH_TIMED,
      .quantum = 1, .n_full = BENCH_COLD, .isolate = 1, .fn = bench_cold_visit },
    { .name = "BenchmarkColdTeardown100k", .unit = "ns/op",
      .baseline = "BenchmarkMadviseMunmap", .also = "BenchmarkMunmapPerSlab",
      .floor = "BenchmarkMadviseMunmapGuarded", .floor_mult = 1,
      .kind = BENCH_TIMED, .quantum = 1,
      .n_full = BENCH_COLD, .target_ratio = 3, .isolate = 1, .fn = bench_cold_teardown },
    { .name = "BenchmarkColdTeardownSleep100k", .unit = "ns/op",
      .baseline = "BenchmarkMadviseMunmap", .kind = BENCH_TIMED, .quantum = 1,
      .n_full = BENCH_COLD, .isolate = 1, .fn = bench_cold_teardown_sleep },
    /* Network (bench/bench_net.c): coro servers against plain epoll ones. */
    { .name = "BenchmarkEchoPingPong/conns=1/epoll", .unit = "p50-ns", .kind = BENCH_TIMED,
      .quantum = 1, .fn = bench_echo1_epoll },
    { .name = "BenchmarkEchoPingPong/conns=1/coro", .unit = "p50-ns",
      .baseline = "BenchmarkEchoPingPong/conns=1/epoll", .kind = BENCH_TIMED, .quantum = 1,
      .target_ratio = 1.1, .fn = bench_echo1_coro },
    { .name = "BenchmarkEchoPingPong/conns=100/epoll", .unit = "ns/op", .kind = BENCH_TIMED,
      .quantum = 1, .fn = bench_echo100_epoll },
    { .name = "BenchmarkEchoPingPong/conns=100/coro", .unit = "ns/op",
      .baseline = "BenchmarkEchoPingPong/conns=100/epoll", .kind = BENCH_TIMED, .quantum = 1,
      .target_ratio = BENCH_NET_THROUGHPUT_RATIO, .fn = bench_echo100_coro },
    { .name = "BenchmarkEchoPingPong/conns=1000/epoll", .unit = "ns/op", .kind = BENCH_TIMED,
      .quantum = 1, .fn = bench_echo1000_epoll },
    { .name = "BenchmarkEchoPingPong/conns=1000/coro", .unit = "ns/op",
      .baseline = "BenchmarkEchoPingPong/conns=1000/epoll", .kind = BENCH_TIMED, .quantum = 1,
      .target_ratio = BENCH_NET_THROUGHPUT_RATIO, .fn = bench_echo1000_coro },
    { .name = "BenchmarkHTTP/conns=100/epoll", .unit = "ns/op", .kind = BENCH_TIMED,
      .quantum = 1, .fn = bench_http_epoll },
    { .name = "BenchmarkHTTP/conns=100/coro", .unit = "ns/op",
      .baseline = "BenchmarkHTTP/conns=100/epoll", .kind = BENCH_TIMED, .quantum = 1,
      .target_ratio = BENCH_NET_THROUGHPUT_RATIO, .fn = bench_http_coro },
    { .name = "BenchmarkIdleConns10k/epoll", .unit = "B/conn", .kind = BENCH_ONCE,
      .n_full = 10000, .n_short = 10000, .isolate = 1, .fn = bench_idle_conns_epoll },
    { .name = "BenchmarkIdleConns10k/coro", .unit = "B/conn",
      .baseline = "BenchmarkIdleConns10k/epoll", .kind = BENCH_ONCE, .n_full = 10000,
      .n_short = 10000, .target_value = 8192, .isolate = 1, .fn = bench_idle_conns_coro },
};
#define NBENCH (sizeof benches / sizeof benches[0])

/* ---- helpers for the benchmarks ------------------------------------------ */

int64_t bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t thread_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_start(bench_clock_t *c)
{
    c->cpu = thread_cpu_now();
    c->wall = bench_now();
}

void bench_stop(const bench_clock_t *c, bench_run_t *r, int64_t ops)
{
    int64_t wall = bench_now(), cpu = thread_cpu_now();
    r->wall_ns = wall - c->wall;
    r->value = (double)r->wall_ns / (double)ops;
    r->cpu_value = (double)(cpu - c->cpu) / (double)ops;
}

int64_t bench_proc_status_bytes(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    int64_t v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0) {
            v = strtoll(line + klen, NULL, 10) * 1024; /* "kB" */
            break;
        }
    }
    fclose(f);
    return v;
}

int bench_coro_main(int (*body)(void *), void *arg, const char *what)
{
    int rc = coro_main(body, arg);
    if (rc != 0) {
        fprintf(stderr, "%s: coro_main returned %d (%s)\n", what, rc,
                rc == -1 ? strerror(errno) : "the body failed");
        return -1;
    }
    return 0;
}

uint64_t bench_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Du;
}

/* ---- options ------------------------------------------------------------- */

static struct {
    const char *filter; /* -bench */
    regex_t re;
    int have_re;
    int count;          /* -count */
    int is_short;       /* -short */
    int no_baseline;    /* -nobaseline: do not add the selected ones' baselines */
    int use_cpu;        /* -cpu: report thread CPU time instead of wall time */
    int64_t run_ns;     /* -benchtime D: target time of one run */
    int64_t fixed_n;    /* -benchtime Nx: n itself */
} opt = { .count = 5, .run_ns = 300 * 1000 * 1000 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: coro_bench [-bench REGEX] [-count N] [-short] [-benchtime D] [-cpu]\n"
            "                  [-nobaseline]\n"
            "  -bench REGEX   run the benchmarks whose name matches (extended regex or\n"
            "                 substring; the \"Benchmark\" prefix is optional); their\n"
            "                 baselines run too\n"
            "  -count N       runs per timed benchmark, median reported (default 5)\n"
            "  -short         quick: 50 ms runs, 100k coroutines for Idle1M\n"
            "  -benchtime D   time per run (300ms, 0.5s, ...; default 300ms) or Nx for\n"
            "                 exactly N operations per run\n"
            "  -cpu           report the thread's CPU time instead of wall time for the\n"
            "                 timed benchmarks (steadier when other processes compete\n"
            "                 for the CPU; the other clock is in the comment either way)\n"
            "  -nobaseline    do not add the baselines of the selected benchmarks (to\n"
            "                 profile one benchmark alone)\n");
}

/* "300ms", "0.3s", "2" (seconds), or "5000x". */
static int parse_benchtime(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0)
        return -1;
    if (strcmp(end, "x") == 0) {
        opt.fixed_n = (int64_t)v;
        return opt.fixed_n > 0 ? 0 : -1;
    }
    double scale = strcmp(end, "ns") == 0   ? 1
                   : strcmp(end, "us") == 0 ? 1e3
                   : strcmp(end, "ms") == 0 ? 1e6
                   : (strcmp(end, "s") == 0 || *end == '\0') ? 1e9
                                                              : -1;
    if (scale < 0)
        return -1;
    opt.run_ns = (int64_t)(v * scale);
    return opt.run_ns > 0 ? 0 : -1;
}

static void parse_args(int argc, char **argv)
{
    int benchtime_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            fprintf(stderr, "coro_bench: unexpected argument %s\n", a);
            usage(stderr);
            exit(2);
        }
        a += a[1] == '-' ? 2 : 1; /* -flag or --flag */
        char name[32];
        const char *val = strchr(a, '=');
        size_t nlen = val ? (size_t)(val - a) : strlen(a);
        if (nlen >= sizeof name)
            nlen = sizeof name - 1;
        memcpy(name, a, nlen);
        name[nlen] = '\0';
        if (val)
            val++;
        if (strcmp(name, "h") == 0 || strcmp(name, "help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(name, "short") == 0) {
            opt.is_short = 1;
            continue;
        }
        if (strcmp(name, "nobaseline") == 0) {
            opt.no_baseline = 1;
            continue;
        }
        if (strcmp(name, "cpu") == 0) {
            opt.use_cpu = 1;
            continue;
        }
        if (strcmp(name, "bench") && strcmp(name, "count") && strcmp(name, "benchtime")) {
            fprintf(stderr, "coro_bench: unknown flag %s\n", argv[i]);
            usage(stderr);
            exit(2);
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "coro_bench: %s needs a value\n", argv[i]);
                exit(2);
            }
            val = argv[++i];
        }
        if (strcmp(name, "bench") == 0) {
            opt.filter = val;
        } else if (strcmp(name, "count") == 0) {
            char *end;
            long n = strtol(val, &end, 10);
            if (*end || n < 1 || n > 1000) {
                fprintf(stderr, "coro_bench: bad -count %s\n", val);
                exit(2);
            }
            opt.count = (int)n;
        } else {
            if (parse_benchtime(val) != 0) {
                fprintf(stderr, "coro_bench: bad -benchtime %s\n", val);
                exit(2);
            }
            benchtime_given = 1;
        }
    }
    if (opt.is_short && !benchtime_given)
        opt.run_ns = 50 * 1000 * 1000;
    if (opt.filter && regcomp(&opt.re, opt.filter, REG_EXTENDED | REG_NOSUB) == 0)
        opt.have_re = 1;
}

static int name_matches(const char *name)
{
    if (!opt.filter)
        return 1;
    const char *bare = strncmp(name, "Benchmark", 9) == 0 ? name + 9 : name;
    if (opt.have_re)
        return regexec(&opt.re, name, 0, NULL, 0) == 0 ||
               regexec(&opt.re, bare, 0, NULL, 0) == 0;
    return strstr(name, opt.filter) != NULL;
}

/* ---- running ------------------------------------------------------------- */

#define MAX_RUNS 1000

typedef struct result {
    int selected;  /* to run: matched, or the baseline of one that matched */
    int failed;
    int skipped;   /* BENCH_SKIP: cannot run in this build (why: note) */
    int nruns;
    int64_t n;
    double runs[MAX_RUNS];
    double median, min, max;
    /* The other clock (see bench_run_t.cpu_value): per run, its median. */
    double other[MAX_RUNS];
    int nother;
    double other_median;
    char note[200];
} result_t;

static result_t results[NBENCH];

static int index_of(const char *name)
{
    for (size_t i = 0; i < NBENCH; i++)
        if (name && strcmp(benches[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* One run, in this process or in a child of its own. */
static int run_one(const bench_def_t *d, bench_run_t *r)
{
    if (!d->isolate)
        return d->fn(r);
    fflush(stdout);
    fflush(stderr);
    int fds[2];
    if (pipe(fds) != 0) {
        perror("coro_bench: pipe");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("coro_bench: fork");
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        int rc = d->fn(r);
        if ((rc == 0 || rc == BENCH_SKIP) && write(fds[1], r, sizeof *r) != (ssize_t)sizeof *r)
            rc = -1;
        fflush(stderr);
        _exit(rc == 0 ? 0 : rc == BENCH_SKIP ? 77 : 1);
    }
    close(fds[1]);
    ssize_t got = 0, k;
    while (got < (ssize_t)sizeof *r &&
           (k = read(fds[0], (char *)r + got, sizeof *r - (size_t)got)) != 0) {
        if (k < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += k;
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got == (ssize_t)sizeof *r && WIFEXITED(status) && WEXITSTATUS(status) == 77)
        return BENCH_SKIP;
    if (got != (ssize_t)sizeof *r || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFSIGNALED(status))
            fprintf(stderr, "%s: killed by signal %d\n", d->name, WTERMSIG(status));
        else
            fprintf(stderr, "%s: the run failed\n", d->name);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of runs[0..k), and its min and max. */
static double median_of(const double *runs, int k, double *min, double *max)
{
    double v[MAX_RUNS];
    memcpy(v, runs, (size_t)k * sizeof v[0]);
    qsort(v, (size_t)k, sizeof v[0], cmp_double);
    if (min)
        *min = v[0];
    if (max)
        *max = v[k - 1];
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

static void summarise(result_t *res)
{
    res->median = median_of(res->runs, res->nruns, &res->min, &res->max);
    if (res->nother == res->nruns)
        res->other_median = median_of(res->other, res->nother, NULL, NULL);
}

/* Record a run: its value, and the other clock's when it was measured. */
static void record(result_t *res, const bench_run_t *r)
{
    double v = r->value, other = 0;
    if (r->cpu_value > 0) {
        other = opt.use_cpu ? r->value : r->cpu_value;
        v = opt.use_cpu ? r->cpu_value : r->value;
    }
    res->runs[res->nruns++] = v;
    if (other > 0)
        res->other[res->nother++] = other;
    memcpy(res->note, r->note, sizeof res->note);
}

/* n rounded to the nearest 1, 2, 3 or 5 x 10^k quanta (on a log scale). */
static int64_t nice_n(double want, int64_t quantum)
{
    double q = want / (double)quantum;
    if (q <= 1)
        return quantum;
    static const double steps[] = { 1, 2, 3, 5, 10 };
    double p = 1;
    while (p * 10 <= q)
        p *= 10;
    double best = p;
    for (size_t i = 1; i < sizeof steps / sizeof steps[0]; i++) {
        double lo = steps[i - 1] * p, hi = steps[i] * p;
        if (q >= lo && q <= hi)
            best = q * q < lo * hi ? lo : hi; /* geometric midpoint */
    }
    if (best > 1e15)
        best = 1e15;
    return (int64_t)best * quantum;
}

/* Choose n so that one run takes about opt.run_ns: grow n until a run
 * takes a fifth of that (these runs also warm up), then scale. If the last
 * of these runs already had the chosen n (a benchmark whose smallest run is
 * long), it counts as the first measured run. */
static int size_run(const bench_def_t *d, result_t *res)
{
    int64_t q = d->quantum;
    if (opt.fixed_n) {
        res->n = (opt.fixed_n + q - 1) / q * q;
        return 0;
    }
    int64_t probe_ns = opt.run_ns / 5, n = q;
    bench_run_t r;
    for (;;) {
        memset(&r, 0, sizeof r);
        r.n = n;
        int rc = run_one(d, &r);
        if (rc == BENCH_SKIP) {
            res->skipped = 1;
            memcpy(res->note, r.note, sizeof res->note);
            return 0;
        }
        if (rc != 0)
            return -1;
        if (r.wall_ns >= probe_ns || n >= (int64_t)1e13)
            break;
        double per = r.wall_ns > 0 ? (double)r.wall_ns / (double)n : 0.1;
        double want = 1.2 * (double)probe_ns / per;
        if (want > 100.0 * (double)n)
            want = 100.0 * (double)n;
        if (want < 2.0 * (double)n)
            want = 2.0 * (double)n;
        n = ((int64_t)want + q - 1) / q * q;
    }
    double per = (double)r.wall_ns / (double)n;
    res->n = nice_n((double)opt.run_ns / (per > 0 ? per : 0.1), q);
    if (res->n == n)
        record(res, &r);
    return 0;
}

static const char *fmt_value(char *buf, size_t size, double v)
{
    if (v >= 99.95)
        snprintf(buf, size, "%.0f", v);
    else if (v >= 9.995)
        snprintf(buf, size, "%.1f", v);
    else
        snprintf(buf, size, "%.2f", v);
    return buf;
}

static void print_line(const bench_def_t *d, const result_t *res)
{
    char med[32], lo[32], hi[32], other[48] = "";
    if (res->failed) {
        printf("--- FAIL: %s\n", d->name);
        return;
    }
    if (res->skipped) {
        printf("--- SKIP: %s\n    %s\n", d->name, res->note);
        return;
    }
    if (res->nother == res->nruns && res->nother > 0) {
        char v[32];
        snprintf(other, sizeof other, "; %s %s", opt.use_cpu ? "wall" : "cpu",
                 fmt_value(v, sizeof v, res->other_median));
    }
    printf("%-32s %10lld %10s %-12s", d->name, (long long)res->n,
           fmt_value(med, sizeof med, res->median), d->unit);
    if (res->nruns > 1)
        printf("  (median of %d, min %s, max %s%s%s%s)\n", res->nruns,
               fmt_value(lo, sizeof lo, res->min), fmt_value(hi, sizeof hi, res->max),
               other, res->note[0] ? "; " : "", res->note);
    else
        printf("  (1 run%s%s%s)\n", other, res->note[0] ? "; " : "", res->note);
    fflush(stdout);
}

/* A baseline and the selected benchmarks compared with it. */
static void run_family(int base)
{
    int members[NBENCH], m = 0;
    for (size_t i = 0; i < NBENCH; i++)
        if (results[i].selected &&
            ((int)i == base || index_of(benches[i].baseline) == base))
            members[m++] = (int)i;
    if (m == 0)
        return;
    int rounds = 1;
    for (int k = 0; k < m; k++) {
        const bench_def_t *d = &benches[members[k]];
        result_t *res = &results[members[k]];
        if (d->kind == BENCH_ONCE) {
            res->n = opt.fixed_n ? opt.fixed_n : opt.is_short ? d->n_short : d->n_full;
        } else {
            if (d->n_full && !opt.fixed_n)
                res->n = opt.is_short && d->n_short ? d->n_short : d->n_full;
            else if (size_run(d, res) != 0)
                res->failed = 1;
            rounds = opt.count;
        }
    }
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < m; k++) {
            const bench_def_t *d = &benches[members[k]];
            result_t *res = &results[members[k]];
            if (res->failed || res->skipped || (d->kind == BENCH_ONCE && round > 0) ||
                res->nruns >= opt.count)
                continue;
            bench_run_t r;
            memset(&r, 0, sizeof r);
            r.n = res->n;
            int rc = run_one(d, &r);
            if (rc == BENCH_SKIP) {
                res->skipped = 1;
                memcpy(res->note, r.note, sizeof res->note);
                continue;
            }
            if (rc != 0) {
                res->failed = 1;
                continue;
            }
            record(res, &r);
        }
    }
    for (int k = 0; k < m; k++) {
        result_t *res = &results[members[k]];
        if (!res->failed && !res->skipped && res->nruns == 0)
            res->failed = 1;
        if (!res->failed && !res->skipped)
            summarise(res);
        print_line(&benches[members[k]], res);
    }
}

/* ---- the table ----------------------------------------------------------- */

/* A usable median: selected, run, neither failed nor skipped. */
static int have(int i)
{
    return i >= 0 && results[i].selected && !results[i].failed && !results[i].skipped &&
           results[i].median > 0;
}

static const char *short_name(const char *name)
{
    return strncmp(name, "Benchmark", 9) == 0 ? name + 9 : name;
}

/* Columns: the median; its ratio to the baseline (for the switch family,
 * the bare switch) and to a second reference ("also": the library's own
 * switch); the target (a ratio to the baseline, a value, or a multiple of
 * the floor) and PASS/MISS; the floor as a ratio to the baseline, and the
 * median as a multiple of that floor. */
static void print_table(void)
{
    printf("\n%-32s %10s  %-11s %-20s %7s  %-18s %-14s %-6s %s\n", "name", "median", "unit",
           "baseline", "ratio", "also", "target", "result", "floor");
    for (size_t i = 0; i < NBENCH; i++) {
        const bench_def_t *d = &benches[i];
        const result_t *res = &results[i];
        if (!res->selected)
            continue;
        const char *base = d->baseline ? short_name(d->baseline) : "-";
        if (res->failed || res->skipped) {
            printf("%-32s %10s  %-11s %-20s %7s  %-18s %-14s %s\n", d->name, "-", d->unit,
                   base, "-", "-", "-", res->failed ? "FAIL" : "SKIP");
            continue;
        }
        char med[32], ratio[32] = "-", also[48] = "-", target[48] = "-", floor[96] = "";
        const char *verdict = "-";
        int b = index_of(d->baseline), a = index_of(d->also), f = index_of(d->floor);
        double r = -1, fl = -1;
        if (have(b)) {
            r = res->median / results[b].median;
            snprintf(ratio, sizeof ratio, "%.2fx", r);
        }
        if (have(a))
            snprintf(also, sizeof also, "%.2fx %s", res->median / results[a].median,
                     short_name(d->also));
        if (have(f))
            fl = d->floor_mult * results[f].median; /* the floor, in the unit */
        int pass = 1, have_target = 0;
        size_t tl = 0;
        if (d->target_ratio > 0) {
            have_target = 1;
            tl += (size_t)snprintf(target + tl, sizeof target - tl, "<= %gx", d->target_ratio);
            pass = r >= 0 && r <= d->target_ratio;
        }
        if (d->target_value > 0 && tl < sizeof target) {
            have_target = 1;
            char unit[16];
            snprintf(unit, sizeof unit, "%.*s", (int)strcspn(d->unit, "/"), d->unit);
            tl += (size_t)snprintf(target + tl, sizeof target - tl, "%s<= %g %s",
                                   tl ? ", " : "", d->target_value, unit);
            pass = pass && res->median <= d->target_value;
        }
        if (d->target_floor > 0 && tl < sizeof target) {
            have_target = 1;
            snprintf(target + tl, sizeof target - tl, "%s<= %gx floor", tl ? ", " : "",
                     d->target_floor);
            pass = pass && fl > 0 && res->median <= d->target_floor * fl;
        }
        if (have_target)
            verdict = pass ? "PASS" : "MISS";
        if (fl > 0 && r >= 0)
            snprintf(floor, sizeof floor, "%.2fx (%g x %s); %.2fx the floor",
                     fl / results[b].median, d->floor_mult, short_name(d->floor),
                     res->median / fl);
        else if (fl > 0)
            snprintf(floor, sizeof floor, "%g x %s; %.2fx the floor", d->floor_mult,
                     short_name(d->floor), res->median / fl);
        printf("%-32s %10s  %-11s %-20s %7s  %-18s %-14s %-6s %s\n", d->name,
               fmt_value(med, sizeof med, res->median), d->unit, base, ratio, also, target,
               verdict, floor);
    }
}

static void print_header(void)
{
    char model[128] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                const char *p = strchr(line, ':');
                if (p) {
                    p += 1 + strspn(p + 1, " \t");
                    snprintf(model, sizeof model, "%.*s", (int)strcspn(p, "\n"), p);
                }
                break;
            }
        }
        fclose(f);
    }
    printf("goos: linux\n");
#if defined(__x86_64__)
    printf("goarch: amd64\n");
#elif defined(__aarch64__)
    printf("goarch: arm64\n");
#endif
    printf("pkg: coro\ncpu: %s (%ld online)\n", model, sysconf(_SC_NPROCESSORS_ONLN));
    if (opt.fixed_n)
        printf("# %d runs per benchmark of %lld ops each, median reported\n", opt.count,
               (long long)opt.fixed_n);
    else
        printf("# %d runs per benchmark of ~%.0f ms each, median reported%s\n", opt.count,
               (double)opt.run_ns / 1e6, opt.is_short ? " (-short)" : "");
#if BENCH_HAVE_BARE
    printf("# switch ratios: to BenchmarkSwitchBare (the benchmarks' own bare switch, "
           "bench/switch_bare.h); \"also\": to BenchmarkSwitchRaw (the library's switch)\n");
#else
    printf("# switch ratios: to BenchmarkSwitchRaw (no bare switch in this build)\n");
#endif
    if (opt.use_cpu)
        printf("# timed benchmarks: thread CPU time per op (-cpu); \"wall\" in the comment: "
               "median wall time\n");
    else
        printf("# timed benchmarks: wall time (CLOCK_MONOTONIC) per op; \"cpu\" in the "
               "comment: median thread CPU time\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    int any = 0;
    for (size_t i = 0; i < NBENCH; i++) {
        if (!name_matches(benches[i].name))
            continue;
        results[i].selected = 1;
        int b = index_of(benches[i].baseline);
        if (b >= 0 && !opt.no_baseline)
            results[b].selected = 1;
        int f = index_of(benches[i].floor);
        if (f >= 0 && !opt.no_baseline)
            results[f].selected = 1;
        int a = index_of(benches[i].also);
        if (a >= 0 && !opt.no_baseline)
            results[a].selected = 1;
        any = 1;
    }
    if (!any) {
        fprintf(stderr, "coro_bench: no benchmark matches %s\n", opt.filter);
        return 2;
    }
    print_header();
    int64_t t0 = bench_now();
    for (size_t i = 0; i < NBENCH; i++)
        if (!benches[i].baseline)
            run_family((int)i);
    print_table();
    printf("# total %.1f s\n", (double)(bench_now() - t0) / 1e9);
    int failed = 0;
    for (size_t i = 0; i < NBENCH; i++)
        failed |= results[i].selected && results[i].failed;
    if (opt.have_re)
        regfree(&opt.re);
    return failed ? 1 : 0;
}
