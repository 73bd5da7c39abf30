/* bench/bench_switch.c: the cost of one switch.
 *
 *   BenchmarkSwitchRaw  two bare contexts (coro/context.h) ping-ponging with
 *                       coro__context_switch_inline, the switch the scheduler
 *                       uses: the floor, and the baseline of the scheduler
 *                       benchmarks.
 *   BenchmarkYield      two coroutines ping-ponging through coro_yield()
 *                       (run queue, pass bookkeeping, fiber switch). Both
 *                       run the same body, so each resumes at the call site
 *                       the other just called from: every `ret` after a
 *                       switch is predicted by the CPU's return-stack buffer.
 *   BenchmarkYieldTwoSites  the same with two different bodies, so coro_yield
 *                       is called from two places, as in any real program
 *                       (a producer and a consumer): each switch resumes a
 *                       call other than the last one made, and the `ret` that
 *                       leaves the switch path mispredicts.
 *   BenchmarkSwitchCall  the bare switch of SwitchRaw behind a function call
 *                       (a library call that blocks), both sides running
 *                       one body, so one call site: each `ret` after a
 *                       switch returns where the other side's call was
 *                       made, and is predicted.
 *   BenchmarkSwitchCallTwoSites  the same from two bodies, so two call
 *                       sites: each `ret` after a switch returns somewhere
 *                       other than where the return-stack buffer says (the
 *                       call made last was the other side's). No library
 *                       code at all: the floor of any hand-off between two
 *                       different coroutine bodies through a called
 *                       function (a channel's ping and pong, a generator's
 *                       consumer and producer), which sync benchmarks'
 *                       "floor" column quotes.
 * All report ns per one-way switch. */
#include "bench/bench.h"

#include "coro.h"
#include "coro/context.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- BenchmarkSwitchRaw -------------------------------------------------- */

#define RAW_STACK ((size_t)64 * 1024)

typedef struct raw {
    coro__context_t main_ctx, ping_ctx, pong_ctx;
    int64_t rounds;
    bench_clock_t clock;
    bench_run_t *r;
} raw_t;

/* Each round is two switches: ping -> pong -> ping. */
static coro__context_t *raw_ping(void *arg)
{
    raw_t *p = arg;
    bench_start(&p->clock);
    for (int64_t i = p->rounds; i > 0; i--)
        coro__context_switch_inline(&p->ping_ctx, &p->pong_ctx);
    bench_stop(&p->clock, p->r, 2 * p->rounds);
    return &p->main_ctx;
}

/* Never returns: abandoned, suspended, after ping's last round. */
static coro__context_t *raw_pong(void *arg)
{
    raw_t *p = arg;
    for (;;)
        coro__context_switch_inline(&p->pong_ctx, &p->ping_ctx);
    return NULL;
}

/* Two stacks of RAW_STACK bytes for the two sides (b usable up to
 * *b_size). Two malloc'd stacks lie a whole number of pages (plus a malloc
 * header) apart, so their tops would share their offset within a page, and
 * the loads of one side's pops would wait on the other side's pushes
 * (4 KiB store-to-load aliasing). The fibers of coro/ stagger their headers
 * by cache lines for the same reason; b's top is staggered here. */
static int raw_stacks(char **a, char **b, size_t *b_size, const char *who)
{
    *a = malloc(RAW_STACK);
    *b = malloc(RAW_STACK);
    if (!*a || !*b) {
        fprintf(stderr, "%s: out of memory\n", who);
        free(*a);
        free(*b);
        return -1;
    }
    uintptr_t a_top = (uintptr_t)*a + RAW_STACK, b_top = (uintptr_t)*b + RAW_STACK;
    *b_size = RAW_STACK - (((b_top - a_top) & 4095) + 2048);
    return 0;
}

int bench_switch_raw(bench_run_t *r)
{
    static raw_t p; /* not on the thread's stack: plain, like a scheduler's */
    char *ping_stack, *pong_stack;
    size_t pong_size;
    if (raw_stacks(&ping_stack, &pong_stack, &pong_size, "BenchmarkSwitchRaw") != 0)
        return -1;
    p.rounds = r->n / 2;
    p.r = r;
    coro__context_make(&p.ping_ctx, ping_stack, RAW_STACK, raw_ping, &p);
    coro__context_make(&p.pong_ctx, pong_stack, pong_size, raw_pong, &p);
    coro__context_switch_inline(&p.main_ctx, &p.ping_ctx);
    free(ping_stack);
    free(pong_stack);
    return 0;
}

/* ---- BenchmarkSwitchCall, BenchmarkSwitchCallTwoSites ------------------- */

/* The switch behind a real call: never inlined, never cloned per caller,
 * and not a tail call (the empty asm after the switch), so each use is a
 * call, the switch, and a ret. */
#if defined(__clang__)
__attribute__((noinline))
#else
__attribute__((noinline, noipa))
#endif
static void switch_call(coro__context_t *from, coro__context_t *to)
{
    coro__context_switch_inline(from, to);
    __asm__ volatile("" ::: "memory");
}

typedef struct call_side {
    raw_t *p;
    coro__context_t *self, *other;
    int timed; /* the side that starts first, times, and ends the run */
} call_side_t;

/* The one body of BenchmarkSwitchCall: both sides call switch_call from
 * here. The untimed side is abandoned, suspended, after the last round. */
static coro__context_t *call_one_site(void *arg)
{
    call_side_t *sd = arg;
    raw_t *p = sd->p;
    if (sd->timed)
        bench_start(&p->clock);
    for (int64_t i = p->rounds; i > 0; i--)
        switch_call(sd->self, sd->other);
    if (sd->timed)
        bench_stop(&p->clock, p->r, 2 * p->rounds);
    return &p->main_ctx;
}

/* BenchmarkSwitchCallTwoSites: the timed side is call_one_site, the other
 * this second body (a call site of its own). */
static coro__context_t *call_other_site(void *arg)
{
    call_side_t *sd = arg;
    for (;;) {
        switch_call(sd->self, sd->other);
        __asm__ volatile("" ::: "memory"); /* different code: not merged */
    }
    return NULL;
}

static int switch_call_run(bench_run_t *r, coro__context_fn second, const char *who)
{
    static raw_t p;
    char *a_stack, *b_stack;
    size_t b_size;
    if (raw_stacks(&a_stack, &b_stack, &b_size, who) != 0)
        return -1;
    p.rounds = r->n / 2;
    p.r = r;
    call_side_t a = { &p, &p.ping_ctx, &p.pong_ctx, 1 };
    call_side_t b = { &p, &p.pong_ctx, &p.ping_ctx, 0 };
    coro__context_make(&p.ping_ctx, a_stack, RAW_STACK, call_one_site, &a);
    coro__context_make(&p.pong_ctx, b_stack, b_size, second, &b);
    coro__context_switch_inline(&p.main_ctx, &p.ping_ctx);
    free(a_stack);
    free(b_stack);
    return 0;
}

int bench_switch_call(bench_run_t *r)
{
    return switch_call_run(r, call_one_site, "BenchmarkSwitchCall");
}

int bench_switch_call_two_sites(bench_run_t *r)
{
    return switch_call_run(r, call_other_site, "BenchmarkSwitchCallTwoSites");
}

/* ---- BenchmarkYield ------------------------------------------------------ */

static int yielder(void *arg)
{
    for (int64_t i = *(const int64_t *)arg; i > 0; i--)
        coro_yield();
    return 0;
}

/* A second body: its own call site of coro_yield (and different code, so
 * the compiler cannot fold it into yielder). */
static int yielder_other(void *arg)
{
    int64_t n = *(const int64_t *)arg;
    for (int64_t i = 0; i < n; i++) {
        coro_yield();
        __asm__ volatile("" ::: "memory");
    }
    return 0;
}

typedef struct yield_run {
    bench_run_t *r;
    coro_fn second;
} yield_run_t;

static int yield_main(void *arg)
{
    yield_run_t *yr = arg;
    bench_run_t *r = yr->r;
    int64_t each = r->n / 2;
    coro_t *a = coro_spawn(yielder, &each);
    coro_t *b = coro_spawn(yr->second, &each);
    if (!a || !b) {
        perror("BenchmarkYield: coro_spawn");
        return 1;
    }
    coro_stats_t st0, st1;
    coro_stats(&st0);
    bench_clock_t clock;
    bench_start(&clock);
    /* Parks main: a and b have the run queue to themselves. */
    if (coro_join(a, NULL) != 0 || coro_join(b, NULL) != 0) {
        perror("BenchmarkYield: coro_join");
        return 1;
    }
    bench_stop(&clock, r, 2 * each);
    coro_stats(&st1);
    snprintf(r->note, sizeof r->note, "%.3f switches/yield",
             (double)(st1.switches - st0.switches) / (double)(2 * each));
    return 0;
}

int bench_yield(bench_run_t *r)
{
    yield_run_t yr = { r, yielder };
    return bench_coro_main(yield_main, &yr, "BenchmarkYield");
}

int bench_yield_two_sites(bench_run_t *r)
{
    yield_run_t yr = { r, yielder_other };
    return bench_coro_main(yield_main, &yr, "BenchmarkYieldTwoSites");
}
