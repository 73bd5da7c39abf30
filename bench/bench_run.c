/* bench/bench_run.c: runs of several schedulers (coro_main_opts with
 * threads = 2, one scheduler per thread).
 *
 *   BenchmarkSpawnJoinInRun   the baseline: spawn a coroutine that returns
 *                             at once and join it, on scheduler 0 of a
 *                             2-scheduler run (BenchmarkSpawnJoin's loop,
 *                             with an idle scheduler beside it)
 *   BenchmarkSpawnOnJoin      the same loop with coro_spawn_on(1, ...): the
 *                             coroutine is made on scheduler 1 and joined
 *                             from scheduler 0. The spawn and the join are
 *                             each a message to scheduler 1 and back, and a
 *                             third message frees the coroutine there; the
 *                             scheduler the answer wakes may be asleep in
 *                             its poller. ns per spawn + join.
 *   BenchmarkThreadPingPong   the floor of BenchmarkSpawnOnJoin: two plain
 *                             threads hand a token back and forth, each
 *                             sleeping in epoll_wait on an eventfd of its
 *                             own between turns, as an idle scheduler
 *                             sleeps until a post wakes it. One op is a
 *                             round trip: two wake-ups through the kernel.
 *                             A spawn on an idle scheduler is one round
 *                             trip and the join another (the message that
 *                             frees the coroutine goes one way, and the
 *                             next spawn's shares its wake-up), so
 *                             SpawnOnJoin's floor is 2 of these. Linux
 *                             only (skipped elsewhere).
 *   BenchmarkParallelFanout/sched=1   a fixed CPU-bound workload: n tasks,
 *                             each a coroutine that does FANOUT_ROUNDS
 *                             rounds of integer mixing (a couple of ms, no
 *                             checkpoint), spawned and joined on one
 *                             scheduler (a lone coro_main): the baseline
 *   BenchmarkParallelFanout/sched=2   the same n tasks split over the two
 *                             schedulers of a run; wall ns per task. The
 *                             target is a speed-up of at least
 *                             BENCH_FANOUT_SPEEDUP (1.8x on 2 cores), i.e.
 *                             a ratio <= 1/1.8 = 0.556x in the table; the
 *                             note gives the speed-up itself. It needs two
 *                             CPUs: under an affinity mask of one (taskset
 *                             -c 1) it is skipped, with a message.
 *
 * Clocks. The spawn benchmarks' "cpu" (the primary value with -cpu) is the
 * process's CPU time per op, both schedulers' threads together: a remote
 * spawn's work is done on both. The fan-out measures wall time only,
 * whatever -cpu says (a speed-up is a matter of wall time: CPU time per
 * task does not shrink with more cores); its note gives the process's CPU
 * time per task, which should stay about the same at sched=2.
 *
 * How the fan-out splits the work: scheduler 0 spawns ONE coroutine on
 * scheduler 1 (coro_spawn_on) that spawns and joins half the tasks there,
 * runs the other half itself, then joins that coroutine. It does not call
 * coro_spawn_on once per task: a scheduler takes messages only between
 * two switches, so while scheduler 1 runs a task (which never yields) each
 * coro_spawn_on for it would wait for that task to end, and scheduler 0
 * would sit idle meanwhile. Send a scheduler its share of work, not its
 * tasks one at a time. */
#include "bench/bench.h"

#include "coro.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif

/* Each fan-out task: about 2 ms of dependent multiplies and shifts. */
#define FANOUT_ROUNDS (1L << 19)

/* Run body(arg) as every scheduler's main coroutine of a 2-scheduler run;
 * 0 if the run returned 0. */
static int run2(int (*body)(void *), void *arg, const char *what)
{
    coro_main_opts_t o = { .threads = 2 };
    int rc = coro_main_opts(body, arg, &o);
    if (rc != 0) {
        fprintf(stderr, "%s: coro_main_opts returned %d (%s)\n", what, rc,
                rc == -1 ? strerror(errno) : "the body failed");
        return -1;
    }
    return 0;
}

/* ---- spawn + join ----------------------------------------------------------- */

static int noop(void *arg)
{
    (void)arg;
    return 0;
}

typedef struct spawn_args {
    bench_run_t *r;
    int target;              /* the scheduler to spawn on: 0 (local) or 1 */
    const char *what;
} spawn_args_t;

static int spawn_on_join_main(void *arg)
{
    spawn_args_t *a = arg;
    if (coro_thread_index() != 0)
        return 0;            /* scheduler 1 waits, spawned on */
    bench_run_t *r = a->r;
    bench_clock_t clock;
    int64_t cpu0 = bench_cpu_now();
    bench_start(&clock);
    /* coro_spawn_on of one's own index is coro_spawn: one loop for both. */
    for (int64_t i = r->n; i > 0; i--) {
        coro_t *c = coro_spawn_on(a->target, noop, NULL);
        if (!c || coro_join(c, NULL) != 0) {
            perror(a->what);
            return 1;
        }
    }
    bench_stop(&clock, r, r->n);
    r->cpu_value = (double)(bench_cpu_now() - cpu0) / (double)r->n;
    snprintf(r->note, sizeof r->note, "cpu: the process's, both threads");
    return 0;
}

int bench_spawn_join_in_run(bench_run_t *r)
{
    spawn_args_t a = { r, 0, "BenchmarkSpawnJoinInRun" };
    return run2(spawn_on_join_main, &a, a.what);
}

int bench_spawn_on_join(bench_run_t *r)
{
    spawn_args_t a = { r, 1, "BenchmarkSpawnOnJoin" };
    return run2(spawn_on_join_main, &a, a.what);
}

/* ---- the floor: two threads waking each other through the kernel ---------- */

#ifdef __linux__
/* Each side sleeps in epoll_wait on an eventfd of its own between turns,
 * as an idle scheduler sleeps in its poller until a post's eventfd write
 * wakes it (sched/post.c, sched/poller_epoll.c). */
typedef struct pingpong {
    int efd[2], ep[2];
    int64_t n;
} pingpong_t;

static int pp_wait(pingpong_t *p, int side)
{
    struct epoll_event ev;
    int k;
    while ((k = epoll_wait(p->ep[side], &ev, 1, -1)) != 1)
        if (k < 0 && errno != EINTR)
            return -1;
    uint64_t v;
    return read(p->efd[side], &v, sizeof v) == (ssize_t)sizeof v ? 0 : -1;
}

static int pp_poke(pingpong_t *p, int side)
{
    uint64_t one = 1;
    return write(p->efd[side], &one, sizeof one) == (ssize_t)sizeof one ? 0 : -1;
}

static void *pp_other(void *arg)
{
    pingpong_t *p = arg;
    for (int64_t i = p->n; i > 0; i--)
        if (pp_wait(p, 1) != 0 || pp_poke(p, 0) != 0)
            break;
    return NULL;
}

int bench_thread_ping_pong(bench_run_t *r)
{
    pingpong_t p = { .efd = { -1, -1 }, .ep = { -1, -1 }, .n = r->n };
    int rc = -1;
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
        if ((p.efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
            (p.ep[i] = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
            epoll_ctl(p.ep[i], EPOLL_CTL_ADD, p.efd[i], &ev) != 0) {
            perror("BenchmarkThreadPingPong");
            goto out;
        }
    }
    pthread_t t;
    if ((errno = pthread_create(&t, NULL, pp_other, &p)) != 0) {
        perror("BenchmarkThreadPingPong: pthread_create");
        goto out;
    }
    bench_clock_t clock;
    int64_t cpu0 = bench_cpu_now();
    bench_start(&clock);
    int64_t i = r->n;
    for (; i > 0; i--)
        if (pp_poke(&p, 1) != 0 || pp_wait(&p, 0) != 0)
            break;
    bench_stop(&clock, r, r->n);
    r->cpu_value = (double)(bench_cpu_now() - cpu0) / (double)r->n;
    snprintf(r->note, sizeof r->note, "cpu: the process's, both threads");
    if (i > 0) {
        perror("BenchmarkThreadPingPong");
        pp_poke(&p, 1);      /* let the other thread see an end */
    }
    pthread_join(t, NULL);
    rc = i > 0 ? -1 : 0;
out:
    for (int k = 0; k < 2; k++) {
        if (p.efd[k] >= 0)
            close(p.efd[k]);
        if (p.ep[k] >= 0)
            close(p.ep[k]);
    }
    return rc;
}
#else
int bench_thread_ping_pong(bench_run_t *r)
{
    snprintf(r->note, sizeof r->note, "eventfd and epoll are Linux's");
    return BENCH_SKIP;
}
#endif

/* ---- the fan-out --------------------------------------------------------------- */

/* One task: a chain of dependent multiply-xorshift rounds (splitmix64's
 * finaliser), which no compiler can shorten; seeded by the task's number.
 * Returns a bit of the result, so that it is used (as the status). */
static int task(void *arg)
{
    uint64_t x = (uint64_t)(uintptr_t)arg + 0x9e3779b97f4a7c15u;
    for (long i = 0; i < FANOUT_ROUNDS; i++) {
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9u;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebu;
        x ^= x >> 31;
    }
    return (int)(x & 1);
}

/* Spawn tasks first .. first + count - 1 on this scheduler, then join them
 * all; returns the sum of their statuses, or -1. */
static int run_tasks(int64_t first, int64_t count)
{
    enum { BATCH = 64 };
    coro_t *h[BATCH];
    int sum = 0;
    for (int64_t base = 0; base < count; base += BATCH) {
        int k = count - base < BATCH ? (int)(count - base) : BATCH;
        for (int i = 0; i < k; i++)
            if (!(h[i] = coro_spawn(task, (void *)(uintptr_t)(first + base + i)))) {
                perror("BenchmarkParallelFanout: coro_spawn");
                return -1;
            }
        for (int i = 0; i < k; i++) {
            int st = 0;
            if (coro_join(h[i], &st) != 0) {
                perror("BenchmarkParallelFanout: coro_join");
                return -1;
            }
            sum += st;
        }
    }
    return sum;
}

typedef struct fanout {
    bench_run_t *r;
    int64_t first, count;    /* scheduler 1's half (fanout_half's argument) */
    int sum;                 /* statuses of all tasks: the same at sched=1 and 2 */
    double others;           /* the share of the CPUs others took meanwhile; -1 unknown */
} fanout_t;

/* Ticks all CPUs spent not idle (/proc/stat's first line: user, nice,
 * system, irq, softirq, steal), and how many CPUs it counts; -1 unknown. */
static int64_t busy_ticks(int *ncpu)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    char line[512];
    long long v[8];
    int64_t busy = -1;
    *ncpu = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "cpu ", 4) == 0 &&
            sscanf(line + 4, "%lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
            busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        else if (strncmp(line, "cpu", 3) == 0 && line[3] >= '0' && line[3] <= '9')
            (*ncpu)++;
    }
    fclose(f);
    return *ncpu > 0 ? busy : -1;
}

/* The share of the machine's CPUs that other processes (or the
 * hypervisor) took over wall_ns, given our own CPU time (-1 unknown): a
 * run with much of it measured the neighbours. Ticks are coarse (10 ms),
 * so a short run reads a few percent either way. */
static double others_share(int64_t busy0, int64_t busy1, int ncpu, int64_t own_ns,
                           int64_t wall_ns)
{
    if (busy0 < 0 || busy1 < 0 || wall_ns <= 0)
        return -1;
    double busy_ns = (double)(busy1 - busy0) * 1e9 / (double)sysconf(_SC_CLK_TCK);
    double o = (busy_ns - (double)own_ns) / ((double)ncpu * (double)wall_ns);
    return o < 0 ? 0 : o;
}

/* Scheduler 1's half of the tasks. */
static int fanout_half(void *arg)
{
    fanout_t *f = arg;
    int sum = run_tasks(f->first, f->count);
    return sum < 0 ? -1 : sum;
}

static int fanout_main(void *arg)
{
    fanout_t *f = arg;
    if (coro_thread_index() != 0)
        return 0;
    bench_run_t *r = f->r;
    int split = coro_thread_count() > 1;
    int64_t mine = split ? r->n / 2 : r->n;
    f->first = mine;
    f->count = r->n - mine;
    bench_clock_t clock;
    int ncpu;
    int64_t busy0 = busy_ticks(&ncpu), cpu0 = bench_cpu_now();
    bench_start(&clock);
    coro_t *other = split ? coro_spawn_on(1, fanout_half, f) : NULL;
    if (split && !other) {
        perror("BenchmarkParallelFanout: coro_spawn_on");
        return 1;
    }
    int sum = run_tasks(0, mine), theirs = 0;
    if (other && coro_join(other, &theirs) != 0) {
        perror("BenchmarkParallelFanout: coro_join");
        return 1;
    }
    bench_stop(&clock, r, r->n);
    if (sum < 0 || theirs < 0)
        return 1;
    f->sum = sum + theirs;
    int64_t cpu = bench_cpu_now() - cpu0;
    f->others = others_share(busy0, busy_ticks(&ncpu), ncpu, cpu, r->wall_ns);
    /* Wall time only (see the top of the file); CPU time goes in the note. */
    r->cpu_value = 0;
    snprintf(r->note, sizeof r->note, "%.2f ms-cpu/task", (double)cpu / (double)r->n / 1e6);
    return 0;
}

/* The speed-up (sched=1 over sched=2) is worked out from the medians of
 * the runs so far, as the harness interleaves them: at the last run of
 * sched=2 its note holds the final figure. */
#define MAX_FANOUT_RUNS 1000
static struct series {
    int nruns;
    int64_t n;
    double value[MAX_FANOUT_RUNS];   /* wall ns per task */
    double others[MAX_FANOUT_RUNS];  /* see others_share */
} one, two;
/* The statuses' sum of sched=1's last run: sched=2 must get the same (the
 * same tasks ran, each once). */
static int sum_one;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *runs, int k)
{
    double v[MAX_FANOUT_RUNS];
    memcpy(v, runs, (size_t)k * sizeof v[0]);
    qsort(v, (size_t)k, sizeof v[0], cmp_double);
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

/* Keep run r in s (starting afresh when n changed: -benchtime Nx's
 * sizing runs), and append the median share of others to r's note. */
static void keep(struct series *s, bench_run_t *r, double others)
{
    if (s->n != r->n)
        s->nruns = 0;
    s->n = r->n;
    if (s->nruns < MAX_FANOUT_RUNS) {
        s->value[s->nruns] = r->value;
        s->others[s->nruns++] = others;
    }
    double o = median(s->others, s->nruns);
    size_t len = strlen(r->note);
    if (o >= 0)
        snprintf(r->note + len, sizeof r->note - len, "; others %.0f%%", 100 * o);
}

/* The CPUs this process may run on. */
static int usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    return CPU_COUNT(&set);
}

int bench_fanout_one(bench_run_t *r)
{
    fanout_t f = { .r = r };
    if (bench_coro_main(fanout_main, &f, "BenchmarkParallelFanout/sched=1") != 0)
        return -1;
    keep(&one, r, f.others);
    sum_one = f.sum;
    return 0;
}

int bench_fanout_two(bench_run_t *r)
{
    if (usable_cpus() < 2) {
        snprintf(r->note, sizeof r->note,
                 "needs 2 CPUs; this process may run on 1 (its affinity mask)");
        return BENCH_SKIP;
    }
    fanout_t f = { .r = r };
    if (run2(fanout_main, &f, "BenchmarkParallelFanout/sched=2") != 0)
        return -1;
    keep(&two, r, f.others);
    if (one.nruns > 0 && one.n == two.n && f.sum != sum_one) {
        fprintf(stderr, "BenchmarkParallelFanout/sched=2: the tasks' results differ from "
                        "sched=1's (%d, not %d)\n", f.sum, sum_one);
        return -1;
    }
    if (one.nruns > 0 && one.n == two.n) {
        double speedup = median(one.value, one.nruns) / median(two.value, two.nruns);
        size_t len = strlen(r->note);
        snprintf(r->note + len, sizeof r->note - len, "; speed-up %.2fx (>= %gx: %s)", speedup,
                 BENCH_FANOUT_SPEEDUP, speedup >= BENCH_FANOUT_SPEEDUP ? "PASS" : "MISS");
    }
    return 0;
}
