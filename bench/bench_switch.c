/* bench/bench_switch.c: the cost of one switch.
 *
 *   BenchmarkSwitchBare two bare contexts ping-ponging with the benchmarks'
 *                       own switch (bench/switch_bare.h): the six (x86-64)
 *                       or twenty (aarch64) callee-saved registers, the
 *                       stack pointer, an indirect jump, nothing else. The
 *                       floor of every switch ratio, and the baseline of the
 *                       scheduler benchmarks. Skipped (the ratios fall back
 *                       to SwitchRaw) where it is not built: CONTEXT=ucontext
 *                       builds and other CPUs.
 *   BenchmarkSwitchRaw  the same with coro__context_switch_inline
 *                       (coro/context.h), the switch the scheduler uses,
 *                       with whatever it does beyond the bare one.
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
 *   BenchmarkSwitchBareCall, BenchmarkSwitchCall  the bare switch / the
 *                       library's behind a function call (a library call
 *                       that blocks), both sides running one body, so one
 *                       call site: each `ret` after a switch returns where
 *                       the other side's call was made, and is predicted.
 *   BenchmarkSwitchBareCallTwoSites, BenchmarkSwitchCallTwoSites  the same
 *                       from two bodies, so two call sites: each `ret` after
 *                       a switch returns somewhere other than where the
 *                       return-stack buffer says (the call made last was the
 *                       other side's). The bare one has no library code at
 *                       all: the floor of any hand-off between two different
 *                       coroutine bodies through a called function (a
 *                       channel's ping and pong, a generator's consumer and
 *                       producer), which sync benchmarks' "floor" column
 *                       quotes.
 * All report ns per one-way switch. */
#include "bench/bench.h"
#include "bench/switch_bare.h"

#include "coro.h"
#include "coro/context.h"

#include <stdio.h>
#include <stdlib.h>

#define RAW_STACK ((size_t)64 * 1024)

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

/* ---- BenchmarkSwitchRaw, BenchmarkSwitchCall, BenchmarkSwitchCallTwoSites */

#define PP(name) raw_##name
#define PP_CTX coro__context_t
#define PP_MAKE coro__context_make
#define PP_SWITCH coro__context_switch_inline
#include "bench/switch_pingpong.h"
#undef PP
#undef PP_CTX
#undef PP_MAKE
#undef PP_SWITCH

int bench_switch_raw(bench_run_t *r)
{
    return raw_pingpong_run(r, "BenchmarkSwitchRaw");
}

int bench_switch_call(bench_run_t *r)
{
    return raw_call_run(r, 0, "BenchmarkSwitchCall");
}

int bench_switch_call_two_sites(bench_run_t *r)
{
    return raw_call_run(r, 1, "BenchmarkSwitchCallTwoSites");
}

/* ---- BenchmarkSwitchBare, BenchmarkSwitchBareCall, ...TwoSites --------- */

#if BENCH_HAVE_BARE
#define PP(name) bare_##name
#define PP_CTX bench_bare_ctx_t
#define PP_MAKE bench_bare_make
#define PP_SWITCH bench_bare_switch_inline
#include "bench/switch_pingpong.h"
#undef PP
#undef PP_CTX
#undef PP_MAKE
#undef PP_SWITCH

int bench_switch_bare(bench_run_t *r)
{
    return bare_pingpong_run(r, "BenchmarkSwitchBare");
}

int bench_switch_bare_call(bench_run_t *r)
{
    return bare_call_run(r, 0, "BenchmarkSwitchBareCall");
}

int bench_switch_bare_call_two_sites(bench_run_t *r)
{
    return bare_call_run(r, 1, "BenchmarkSwitchBareCallTwoSites");
}
#else
static int no_bare(bench_run_t *r)
{
    snprintf(r->note, sizeof r->note,
#if defined(CORO_CONTEXT_UCONTEXT)
             "no bare switch in a CONTEXT=ucontext build"
#else
             "no bare switch for this CPU"
#endif
             "; switch ratios are to BenchmarkSwitchRaw");
    return BENCH_SKIP;
}

int bench_switch_bare(bench_run_t *r)
{
    return no_bare(r);
}

int bench_switch_bare_call(bench_run_t *r)
{
    return no_bare(r);
}

int bench_switch_bare_call_two_sites(bench_run_t *r)
{
    return no_bare(r);
}
#endif

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
