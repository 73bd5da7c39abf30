/* bench/bench_sleep.c: timers.
 *
 *   BenchmarkSleep          100,000 coroutines, each sleeping a random time
 *                           in [0, 10 ms) (fixed seed), all joined. The
 *                           result is CPU time per sleep: the wall time is
 *                           mostly the sleeps themselves, the CPU time is
 *                           what the scheduler spent (spawn, arm, expire,
 *                           wake, switch, exit, join, free).
 *   BenchmarkSleepBaseline  the same 100,000 times pushed into and popped
 *                           from a plain binary min-heap array: what timer
 *                           bookkeeping alone costs. CPU ns per push+pop.
 * Several rounds of 100,000 make one run when a round is short. */
#include "bench/bench.h"

#include "coro.h"

#include <stdio.h>
#include <stdlib.h>

#define SLEEP_SPAN (10 * CORO_MS)

/* The sleeps, the same for every round and for the baseline. */
static int64_t sleeps[BENCH_SLEEPERS];

static void make_sleeps(void)
{
    static int done;
    if (done)
        return;
    uint64_t seed = 0x5EED5EED12345678u;
    for (int i = 0; i < BENCH_SLEEPERS; i++)
        sleeps[i] = (int64_t)(bench_rand(&seed) % (uint64_t)SLEEP_SPAN);
    done = 1;
}

/* ---- BenchmarkSleep ------------------------------------------------------ */

typedef struct sleep_run {
    bench_run_t *r;
    coro_t **handles;
    int failed;
} sleep_run_t;

static int sleeper(void *arg)
{
    const int64_t *ns = arg;
    return coro_sleep(*ns) == 0 ? 0 : 1;
}

static int sleep_main(void *arg)
{
    sleep_run_t *sr = arg;
    bench_run_t *r = sr->r;
    int64_t rounds = r->n / BENCH_SLEEPERS, late = 0, spawn_cpu = 0;
    bench_clock_t clock;
    bench_start(&clock);
    int64_t c0 = bench_cpu_now();
    for (int64_t round = 0; round < rounds; round++) {
        int64_t s0 = bench_cpu_now();
        for (int i = 0; i < BENCH_SLEEPERS; i++) {
            if (!(sr->handles[i] = coro_spawn(sleeper, &sleeps[i]))) {
                perror("BenchmarkSleep: coro_spawn");
                return 1;
            }
        }
        spawn_cpu += bench_cpu_now() - s0;
        for (int i = 0; i < BENCH_SLEEPERS; i++) {
            int status;
            if (coro_join(sr->handles[i], &status) != 0) {
                perror("BenchmarkSleep: coro_join");
                return 1;
            }
            late += status;
        }
    }
    int64_t cpu = bench_cpu_now() - c0;
    bench_stop(&clock, r, r->n);
    if (late) {
        fprintf(stderr, "BenchmarkSleep: %lld sleeps failed\n", (long long)late);
        return 1;
    }
    coro_stats_t st;
    coro_stats(&st);
    /* What is reported: the process's CPU time (the scheduler's cost). */
    r->value = (double)cpu / (double)r->n;
    r->cpu_value = 0;
    snprintf(r->note, sizeof r->note,
             "process CPU time, %.0f%% of it in the spawn loop; wall %.0f ms/round, "
             "max timer lag %.0f ms",
             100.0 * (double)spawn_cpu / (double)(cpu > 0 ? cpu : 1),
             (double)r->wall_ns / 1e6 / (double)rounds, (double)st.max_loop_lag_ns / 1e6);
    return 0;
}

int bench_sleep(bench_run_t *r)
{
    make_sleeps();
    sleep_run_t sr = { r, malloc(BENCH_SLEEPERS * sizeof(coro_t *)), 0 };
    if (!sr.handles) {
        fprintf(stderr, "BenchmarkSleep: out of memory\n");
        return -1;
    }
    int rc = bench_coro_main(sleep_main, &sr, "BenchmarkSleep");
    free(sr.handles);
    return rc;
}

/* ---- BenchmarkSleepBaseline ------------------------------------------------ */

/* A timer as the scheduler orders them: by time, then by arming order. */
typedef struct timer {
    int64_t when;
    uint64_t seq;
} heap_item;

static int before(const heap_item *a, const heap_item *b)
{
    return a->when != b->when ? a->when < b->when : a->seq < b->seq;
}

static void heap_push(heap_item *h, size_t *len, heap_item t)
{
    size_t i = (*len)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&t, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = t;
}

static heap_item heap_pop(heap_item *h, size_t *len)
{
    heap_item top = h[0], last = h[--*len];
    size_t n = *len, i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const heap_item *best = &last;
        if (l < n && before(&h[l], best)) {
            m = l;
            best = &h[l];
        }
        if (r < n && before(&h[r], best))
            m = r;
        if (m == i)
            break;
        h[i] = h[m];
        i = m;
    }
    if (n)
        h[i] = last;
    return top;
}

int bench_sleep_baseline(bench_run_t *r)
{
    make_sleeps();
    heap_item *heap = malloc(BENCH_SLEEPERS * sizeof *heap);
    if (!heap) {
        fprintf(stderr, "BenchmarkSleepBaseline: out of memory\n");
        return -1;
    }
    int64_t rounds = r->n / BENCH_SLEEPERS;
    uint64_t seq = 0, sum = 0;
    int disorder = 0;
    bench_clock_t clock;
    bench_start(&clock);
    int64_t c0 = bench_cpu_now();
    for (int64_t round = 0; round < rounds; round++) {
        size_t len = 0;
        /* As the scheduler sees them: absolute times. */
        int64_t now = bench_now();
        for (int i = 0; i < BENCH_SLEEPERS; i++)
            heap_push(heap, &len, (heap_item){ now + sleeps[i], seq++ });
        int64_t prev = INT64_MIN;
        while (len) {
            heap_item t = heap_pop(heap, &len);
            disorder |= t.when < prev;
            prev = t.when;
            sum += t.seq;
        }
    }
    int64_t cpu = bench_cpu_now() - c0;
    bench_stop(&clock, r, r->n);
    free(heap);
    if (disorder || sum != seq * (seq - 1) / 2) {
        fprintf(stderr, "BenchmarkSleepBaseline: the heap is broken\n");
        return -1;
    }
    r->value = (double)cpu / (double)r->n;
    r->cpu_value = 0;
    snprintf(r->note, sizeof r->note, "process CPU time per push+pop");
    return 0;
}
