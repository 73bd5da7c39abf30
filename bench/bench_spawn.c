/* bench/bench_spawn.c: a coroutine's whole life.
 *
 *   BenchmarkSpawnJoin       spawn a coroutine that returns at once, join it;
 *                            one at a time (the stack comes back warm from
 *                            the pool every time).
 *   BenchmarkSpawnBatch1000  spawn 1000, then join all 1000: 1000 stacks in
 *                            use at once, run back to back.
 * Both report ns per coroutine (spawn + run + exit + join + free). */
#include "bench/bench.h"

#include "coro.h"

#include <stdio.h>

static int noop(void *arg)
{
    (void)arg;
    return 0;
}

static int spawn_join_main(void *arg)
{
    bench_run_t *r = arg;
    bench_clock_t clock;
    bench_start(&clock);
    for (int64_t i = r->n; i > 0; i--) {
        coro_t *c = coro_spawn(noop, NULL);
        if (!c || coro_join(c, NULL) != 0) {
            perror("BenchmarkSpawnJoin");
            return 1;
        }
    }
    bench_stop(&clock, r, r->n);
    return 0;
}

int bench_spawn_join(bench_run_t *r)
{
    return bench_coro_main(spawn_join_main, r, "BenchmarkSpawnJoin");
}

static int spawn_batch_main(void *arg)
{
    bench_run_t *r = arg;
    static coro_t *batch[BENCH_BATCH];
    bench_clock_t clock;
    bench_start(&clock);
    for (int64_t round = r->n / BENCH_BATCH; round > 0; round--) {
        for (int i = 0; i < BENCH_BATCH; i++) {
            if (!(batch[i] = coro_spawn(noop, NULL))) {
                perror("BenchmarkSpawnBatch1000: coro_spawn");
                return 1;
            }
        }
        for (int i = 0; i < BENCH_BATCH; i++) {
            if (coro_join(batch[i], NULL) != 0) {
                perror("BenchmarkSpawnBatch1000: coro_join");
                return 1;
            }
        }
    }
    bench_stop(&clock, r, r->n);
    return 0;
}

int bench_spawn_batch(bench_run_t *r)
{
    return bench_coro_main(spawn_batch_main, r, "BenchmarkSpawnBatch1000");
}
