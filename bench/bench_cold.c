/* bench/bench_cold.c: coroutines on fresh stacks, against the kernel's own
 * cost for the same pages.
 *
 *   BenchmarkPageFault         the floor of a cold start: in one
 *                              MAP_NORESERVE mapping of n stack slots
 *                              (guard + default stack, 144 KiB apart), the
 *                              top COLD_PAGES pages of each slot are
 *                              written, top first, as a coroutine's stack
 *                              is. ns per slot.
 *   BenchmarkColdStart100k     n coroutines spawned on fresh stacks (the
 *                              pool is empty: each run is a new process),
 *                              each filling a 4 KiB buffer on its stack (a
 *                              read buffer, as an echo handler has: with
 *                              the header and the frames, COLD_PAGES
 *                              pages) and parking on an event that is
 *                              never set. ns per coroutine from the first
 *                              spawn until all are parked.
 *   BenchmarkMadviseMunmap     the floor of a teardown: the same pages as
 *                              BenchmarkPageFault, written (not timed),
 *                              then given back with one madvise
 *                              (MADV_DONTNEED) and one munmap of the whole
 *                              mapping. ns per slot.
 *   BenchmarkMadviseMunmapGuarded  the same, with a guard at the bottom
 *                              of every slot as the pool makes them (a
 *                              kernel guard region, or mprotect where
 *                              there is none): what giving back guarded
 *                              stacks costs the kernel in one call. ns per
 *                              slot.
 *   BenchmarkMunmapPerSlab     the same pages in mappings of the stack
 *                              pool's slab size (coro__stack_slab_slots
 *                              slots each), given back one munmap per
 *                              mapping, as a teardown gives back its
 *                              emptied slabs: what the kernel charges
 *                              when the release comes in slab-sized
 *                              pieces rather than one call. ns per slot.
 *   BenchmarkColdVisit         the user-side floor of a teardown: the same
 *                              pages, written, then the caches flushed by
 *                              64 MiB of other writes (not timed), then a
 *                              pointer chase through each slot's top page
 *                              and the page below it, slot after slot:
 *                              each load waits for the last, as the
 *                              cancel's read of a header and then of the
 *                              waiter it names do. What visiting every
 *                              parked coroutine's two pages once costs
 *                              (a TLB and a cache miss each) before any
 *                              library code runs. ns per slot.
 *   BenchmarkColdTeardown100k  the coroutines of BenchmarkColdStart100k
 *                              (started, not timed), then each cancelled
 *                              and joined in spawn order. ns per coroutine;
 *                              against MadviseMunmap, and also against
 *                              MunmapPerSlab (the release the pool can
 *                              make), with ColdVisit the rest of its floor;
 *                              its "floor" column is MadviseMunmapGuarded.
 *   BenchmarkColdTeardownSleep100k  the same, the coroutines parked in a
 *                              one-hour sleep instead: a cancel also takes
 *                              the coroutine's timer out of the heap, whose
 *                              sift moves write the timer index into other
 *                              coroutines' headers, each on a page of its
 *                              own (a cache and TLB miss per heap level).
 *                              The difference from ColdTeardown100k is that
 *                              cost, not the stacks'.
 * The comment of the coroutine lines gives the resident memory (VmRSS):
 * before the first spawn, with all parked, after the last join (the warm
 * pool and the stacks waiting for release still held) and after coro_main
 * has returned (the pool released). A run fails if the memory after
 * coro_main is not back within COLD_RSS_SLACK of where it started. */
#include "bench/bench.h"

#include "coro.h"
#include "coro/stack.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Pages a cold coroutine touches: its header and frames in the top one,
 * its 4 KiB buffer reaching into the next. */
#define COLD_PAGES 2
#define COLD_BUFFER 4096
/* What may stay resident after coro_main: the allocator's caches. */
#define COLD_RSS_SLACK ((int64_t)16 << 20)

static double mib(int64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* ---- the floors ---------------------------------------------------------- */

typedef struct slots {
    char *map;
    size_t stride, bytes;
    int64_t n;
} slots_t;

static int slots_map(slots_t *s, int64_t n, const char *what)
{
    s->n = n;
    s->stride = coro__stack_guard_size() + coro__stack_size_for(0);
    s->bytes = s->stride * (size_t)n;
    s->map = mmap(NULL, s->bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s->map == MAP_FAILED) {
        fprintf(stderr, "%s: mmap: %s\n", what, strerror(errno));
        return -1;
    }
    return 0;
}

/* Write the top COLD_PAGES pages of every slot, top page first. */
static void slots_touch(const slots_t *s)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    for (char *top = s->map + s->stride; top <= s->map + s->bytes; top += s->stride)
        for (size_t p = 1; p <= COLD_PAGES; p++)
            *(volatile char *)(top - p * ps) = 1;
}

int bench_page_fault(bench_run_t *r)
{
    slots_t s;
    if (slots_map(&s, r->n, "BenchmarkPageFault") != 0)
        return -1;
    bench_clock_t clock;
    bench_start(&clock);
    slots_touch(&s);
    bench_stop(&clock, r, r->n);
    munmap(s.map, s.bytes);
    snprintf(r->note, sizeof r->note, "%d pages per slot, %zu KiB apart", COLD_PAGES,
             s.stride / 1024);
    return 0;
}

/* Time giving the slots back: one madvise and one munmap of the whole
 * mapping. */
static int slots_release_timed(bench_run_t *r, const slots_t *s, const char *what)
{
    bench_clock_t clock;
    bench_start(&clock);
    int rc = madvise(s->map, s->bytes, MADV_DONTNEED);
    int rc2 = munmap(s->map, s->bytes);
    bench_stop(&clock, r, r->n);
    if (rc != 0 || rc2 != 0) {
        perror(what);
        return -1;
    }
    return 0;
}

int bench_madvise_munmap(bench_run_t *r)
{
    slots_t s;
    if (slots_map(&s, r->n, "BenchmarkMadviseMunmap") != 0)
        return -1;
    slots_touch(&s);
    int64_t rss0 = bench_proc_status_bytes("VmRSS:");
    if (slots_release_timed(r, &s, "BenchmarkMadviseMunmap") != 0)
        return -1;
    int64_t rss1 = bench_proc_status_bytes("VmRSS:");
    snprintf(r->note, sizeof r->note, "%.0f MiB given back", mib(rss0 - rss1));
    return 0;
}

/* A guard at the bottom of every slot, as the pool makes them: a kernel
 * guard region where there is one, else mprotect. Returns how, or NULL. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13+, include/uapi/asm-generic/mman-common.h */
#endif
static const char *slots_guard(const slots_t *s)
{
    size_t guard = coro__stack_guard_size();
    const char *how = strcmp(coro__stack_guard_kind(), "mprotect") == 0 ? "mprotect"
                                                                         : "guard-region";
    for (int64_t i = 0; i < s->n; i++) {
        char *g = s->map + (size_t)i * s->stride;
        if (how[0] == 'g' && madvise(g, guard, MADV_GUARD_INSTALL) == 0)
            continue;
        how = "mprotect";
        if (mprotect(g, guard, PROT_NONE) != 0)
            return NULL;
    }
    return how;
}

int bench_madvise_munmap_guarded(bench_run_t *r)
{
    slots_t s;
    if (slots_map(&s, r->n, "BenchmarkMadviseMunmapGuarded") != 0)
        return -1;
    const char *how = slots_guard(&s);
    if (!how) {
        perror("BenchmarkMadviseMunmapGuarded: guard");
        munmap(s.map, s.bytes);
        return -1;
    }
    slots_touch(&s);
    if (slots_release_timed(r, &s, "BenchmarkMadviseMunmapGuarded") != 0)
        return -1;
    snprintf(r->note, sizeof r->note, "a %zu KiB %s guard per slot",
             coro__stack_guard_size() / 1024, how);
    return 0;
}

int bench_munmap_per_slab(bench_run_t *r)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t stride = coro__stack_guard_size() + coro__stack_size_for(0);
    int64_t per = coro__stack_slab_slots(coro__stack_size_for(0));
    int64_t nslabs = (r->n + per - 1) / per;
    char **slabs = calloc((size_t)nslabs, sizeof *slabs);
    if (!slabs) {
        perror("BenchmarkMunmapPerSlab");
        return -1;
    }
    int rc = 0;
    for (int64_t k = 0; k < nslabs && rc == 0; k++) {
        slabs[k] = mmap(NULL, stride * (size_t)per, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (slabs[k] == MAP_FAILED) {
            fprintf(stderr, "BenchmarkMunmapPerSlab: mmap: %s\n", strerror(errno));
            slabs[k] = NULL;
            rc = -1;
            break;
        }
        for (int64_t i = 1; i <= per; i++)
            for (size_t p = 1; p <= COLD_PAGES; p++)
                *(volatile char *)(slabs[k] + (size_t)i * stride - p * ps) = 1;
    }
    bench_clock_t clock;
    bench_start(&clock);
    for (int64_t k = 0; k < nslabs; k++)
        if (slabs[k] && munmap(slabs[k], stride * (size_t)per) != 0)
            rc = -1;
    bench_stop(&clock, r, r->n);
    free(slabs);
    if (rc != 0) {
        perror("BenchmarkMunmapPerSlab");
        return -1;
    }
    snprintf(r->note, sizeof r->note, "%lld slots per slab, %lld munmaps",
             (long long)per, (long long)nslabs);
    return 0;
}

int bench_cold_visit(bench_run_t *r)
{
    slots_t s;
    if (slots_map(&s, r->n, "BenchmarkColdVisit") != 0)
        return -1;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    /* Slot i's top page points at its second page, which points at slot
     * i+1's top page; the last points nowhere. */
    for (int64_t i = 0; i < s.n; i++) {
        char *top = s.map + (size_t)(i + 1) * s.stride - ps;
        char *second = top - ps;
        char *next = i + 1 < s.n ? s.map + (size_t)(i + 2) * s.stride - ps : NULL;
        *(char **)(void *)top = second;
        *(char **)(void *)second = next;
    }
    size_t flush_bytes = (size_t)64 << 20;
    char *flush = malloc(flush_bytes);
    if (!flush) {
        munmap(s.map, s.bytes);
        perror("BenchmarkColdVisit");
        return -1;
    }
    memset(flush, 1, flush_bytes);
    bench_clock_t clock;
    bench_start(&clock);
    int64_t visited = 0;
    for (char *p = s.map + s.stride - ps; p; p = *(char **)(void *)p)
        visited++;
    bench_stop(&clock, r, r->n);
    free(flush);
    munmap(s.map, s.bytes);
    if (visited != 2 * s.n) {
        fprintf(stderr, "BenchmarkColdVisit: %lld pages visited, not %lld\n",
                (long long)visited, (long long)(2 * s.n));
        return -1;
    }
    snprintf(r->note, sizeof r->note, "%d dependent loads per slot", COLD_PAGES);
    return 0;
}

/* ---- the coroutines ------------------------------------------------------ */

typedef struct cold_run {
    bench_run_t *r;
    const char *what;
    int time_teardown; /* 0: time the start; 1: the teardown */
    int sleep;         /* park in a sleep (a timer) rather than on the event */
    coro_event_t never; /* never set */
    int64_t parked;
    int64_t rss_before, rss_parked, rss_joined;
    coro_t **handles;
} cold_run_t;

static int cold_body(void *arg)
{
    cold_run_t *cr = arg;
    char buf[COLD_BUFFER];
    memset(buf, 'x', sizeof buf);
    /* The compiler must believe the buffer is read. */
    __asm__ volatile("" : : "r"(buf) : "memory");
    cr->parked++;
    int rc = cr->sleep ? coro_sleep(3600 * CORO_SEC) : coro_event_wait(&cr->never);
    return rc == -1 && errno == ECANCELED ? 0 : 1;
}

static int cold_main(void *arg)
{
    cold_run_t *cr = arg;
    bench_run_t *r = cr->r;
    const char *what = cr->what;
    coro_event_init(&cr->never);
    cr->rss_before = bench_proc_status_bytes("VmRSS:");
    bench_clock_t clock;
    bench_start(&clock);
    for (int64_t i = 0; i < r->n; i++) {
        if (!(cr->handles[i] = coro_spawn(cold_body, cr))) {
            fprintf(stderr, "%s: coro_spawn #%lld: %s\n", what, (long long)i, strerror(errno));
            return 1;
        }
    }
    /* To the back of the run queue: every coroutine runs and parks first. */
    coro_yield();
    if (!cr->time_teardown)
        bench_stop(&clock, r, r->n);
    cr->rss_parked = bench_proc_status_bytes("VmRSS:");
    if (cr->parked != r->n) {
        fprintf(stderr, "%s: %lld of %lld parked\n", what, (long long)cr->parked,
                (long long)r->n);
        return 1;
    }
    if (cr->time_teardown)
        bench_start(&clock);
    int bad = 0;
    for (int64_t i = 0; i < r->n; i++) {
        int status = 1;
        coro_cancel(cr->handles[i]);
        if (coro_join(cr->handles[i], &status) != 0 || status != 0)
            bad++;
    }
    if (cr->time_teardown)
        bench_stop(&clock, r, r->n);
    cr->rss_joined = bench_proc_status_bytes("VmRSS:");
    if (bad) {
        fprintf(stderr, "%s: %d coroutines did not end with ECANCELED\n", what, bad);
        return 1;
    }
    return 0;
}

static int cold(bench_run_t *r, int time_teardown, int sleep, const char *what)
{
    cold_run_t cr = { .r = r, .what = what, .time_teardown = time_teardown, .sleep = sleep };
    cr.handles = calloc((size_t)r->n, sizeof *cr.handles);
    if (!cr.handles) {
        perror(what);
        return -1;
    }
    int rc = bench_coro_main(cold_main, &cr, what);
    free(cr.handles);
    if (rc != 0)
        return -1;
    int64_t rss_after = bench_proc_status_bytes("VmRSS:");
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    snprintf(r->note, sizeof r->note,
             "%.2f pages/coroutine; RSS MiB: %.0f before, %.0f parked, %.0f joined, %.0f after "
             "coro_main",
             (double)(cr.rss_parked - cr.rss_before) / (double)ps / (double)r->n,
             mib(cr.rss_before), mib(cr.rss_parked), mib(cr.rss_joined), mib(rss_after));
    if (rss_after - cr.rss_before > COLD_RSS_SLACK) {
        fprintf(stderr, "%s: RSS not back after coro_main: %.0f MiB before, %.0f MiB after\n",
                what, mib(cr.rss_before), mib(rss_after));
        return -1;
    }
    return 0;
}

int bench_cold_start(bench_run_t *r)
{
    return cold(r, 0, 0, "BenchmarkColdStart100k");
}

int bench_cold_teardown(bench_run_t *r)
{
    return cold(r, 1, 0, "BenchmarkColdTeardown100k");
}

int bench_cold_teardown_sleep(bench_run_t *r)
{
    return cold(r, 1, 1, "BenchmarkColdTeardownSleep100k");
}
