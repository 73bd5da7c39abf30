/* bench/bench_idle.c: what an idle coroutine costs in memory.
 *
 *   BenchmarkIdle1M          1,000,000 coroutines (default stack size,
 *                            guards on), each parked in a one-hour sleep.
 *                            Resident memory (VmRSS) grown from before the
 *                            first spawn to when all are parked, per
 *                            coroutine; page tables (VmPTE) in the comment.
 *                            Then all are cancelled and the group waited for.
 *   BenchmarkIdle1MBaseline  the floor: one byte touched in each of 1,000,000
 *                            pages spaced one stack slot (guard + default
 *                            stack, 144 KiB) apart in one MAP_NORESERVE
 *                            mapping: RSS per touched page.
 * Each runs once, in a child process of its own (bench/main.c). */
#include "bench/bench.h"

#include "coro.h"
#include "coro/stack.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static int idler(void *arg)
{
    (void)arg;
    /* Parked until cancelled. */
    if (coro_sleep(3600 * CORO_SEC) == -1 && errno == ECANCELED)
        return 0;
    return 1;
}

static int idle_main(void *arg)
{
    bench_run_t *r = arg;
    int64_t rss0 = bench_proc_status_bytes("VmRSS:");
    int64_t pte0 = bench_proc_status_bytes("VmPTE:");
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    if (!g) {
        perror("BenchmarkIdle1M: coro_group_new");
        return 1;
    }
    int64_t t0 = bench_now();
    for (int64_t i = 0; i < r->n; i++) {
        if (!coro_group_spawn(g, idler, NULL)) {
            fprintf(stderr, "BenchmarkIdle1M: coro_group_spawn #%lld: %s\n",
                    (long long)i, strerror(errno));
            coro_group_free(g);
            return 1;
        }
    }
    /* To the back of the run queue: every child runs and parks first. */
    coro_yield();
    int64_t t1 = bench_now();
    coro_stats_t st;
    coro_stats(&st);
    int64_t rss1 = bench_proc_status_bytes("VmRSS:");
    int64_t pte1 = bench_proc_status_bytes("VmPTE:");
    if (st.live != (uint64_t)r->n + 1 || st.timers != (uint64_t)r->n) {
        fprintf(stderr, "BenchmarkIdle1M: %llu live, %llu timers: not all parked\n",
                (unsigned long long)st.live, (unsigned long long)st.timers);
        coro_group_free(g);
        return 1;
    }
    coro_group_cancel(g);
    int rc = coro_group_wait(g);
    coro_group_free(g);
    int64_t t2 = bench_now();
    if (rc != 0) {
        fprintf(stderr, "BenchmarkIdle1M: a child did not end with ECANCELED\n");
        return 1;
    }
    r->wall_ns = t2 - t0;
    r->value = (double)(rss1 - rss0) / (double)r->n;
    snprintf(r->note, sizeof r->note,
             "VmPTE %.0f B/coroutine, guards %s; spawn+park %.0f ns, cancel+wait %.0f ns per coroutine",
             (double)(pte1 - pte0) / (double)r->n, coro__stack_guard_kind(),
             (double)(t1 - t0) / (double)r->n, (double)(t2 - t1) / (double)r->n);
    return 0;
}

int bench_idle(bench_run_t *r)
{
    return bench_coro_main(idle_main, r, "BenchmarkIdle1M");
}

int bench_idle_baseline(bench_run_t *r)
{
    size_t stride = coro__stack_guard_size() + coro__stack_size_for(0);
    size_t bytes = stride * (size_t)r->n;
    char *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        perror("BenchmarkIdle1MBaseline: mmap");
        return -1;
    }
    int64_t rss0 = bench_proc_status_bytes("VmRSS:");
    int64_t pte0 = bench_proc_status_bytes("VmPTE:");
    int64_t t0 = bench_now();
    for (size_t off = 0; off < bytes; off += stride)
        *(volatile char *)(map + off) = 1;
    r->wall_ns = bench_now() - t0;
    int64_t rss1 = bench_proc_status_bytes("VmRSS:");
    int64_t pte1 = bench_proc_status_bytes("VmPTE:");
    munmap(map, bytes);
    r->value = (double)(rss1 - rss0) / (double)r->n;
    snprintf(r->note, sizeof r->note, "VmPTE %.0f B/page, %zu KiB apart; %.0f ns/fault",
             (double)(pte1 - pte0) / (double)r->n, stride / 1024,
             (double)r->wall_ns / (double)r->n);
    return 0;
}
