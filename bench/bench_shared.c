/* bench/bench_shared.c: shared channels between two schedulers of a run
 * (one thread each), against two plain threads doing the same with a
 * mutex and condition variables (the floor any cross-thread hand-off
 * built on them pays):
 *
 *   BenchmarkThreadCondPingPong   two threads pass a token back and forth
 *                                 through a mutex and two condition
 *                                 variables; ns per round trip (the
 *                                 baseline)
 *   BenchmarkSharedChanPingPong   scheduler 0 sends on an unbuffered shared
 *                                 channel, scheduler 1 answers on another;
 *                                 ns per round trip
 *   BenchmarkSharedChanStream     scheduler 0 streams items into a shared
 *                                 channel of capacity 1024, scheduler 1
 *                                 receives them; ns per item
 *
 * bench/cross.sh runs the same two channel workloads in Go (when go is
 * installed) in the same session, for the comparison with goroutines. */
#include "bench/bench.h"
#include "coro.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* ---- BenchmarkThreadCondPingPong ------------------------------------------ */

typedef struct tpp {
    pthread_mutex_t mu;
    pthread_cond_t cv[2];
    int turn;
    int64_t rounds;
} tpp_t;

static void *tpp_other(void *arg)
{
    tpp_t *t = arg;
    pthread_mutex_lock(&t->mu);
    for (int64_t i = 0; i < t->rounds; i++) {
        while (t->turn != 1)
            pthread_cond_wait(&t->cv[1], &t->mu);
        t->turn = 0;
        pthread_cond_signal(&t->cv[0]);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int bench_thread_cond_ping_pong(bench_run_t *r)
{
    tpp_t t = { .turn = 0, .rounds = r->n };
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv[0], NULL);
    pthread_cond_init(&t.cv[1], NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, tpp_other, &t) != 0) {
        fprintf(stderr, "BenchmarkThreadCondPingPong: pthread_create failed\n");
        return -1;
    }
    bench_clock_t c;
    bench_start(&c);
    pthread_mutex_lock(&t.mu);
    for (int64_t i = 0; i < r->n; i++) {
        t.turn = 1;
        pthread_cond_signal(&t.cv[1]);
        while (t.turn != 0)
            pthread_cond_wait(&t.cv[0], &t.mu);
    }
    pthread_mutex_unlock(&t.mu);
    bench_stop(&c, r, r->n);
    pthread_join(th, NULL);
    pthread_cond_destroy(&t.cv[0]);
    pthread_cond_destroy(&t.cv[1]);
    pthread_mutex_destroy(&t.mu);
    r->cpu_value = 0; /* two threads: one thread's CPU time says little */
    return 0;
}

/* ---- BenchmarkCacheLinePingPong --------------------------------------------
 *
 * The physical floor of any round trip between two threads on two cores:
 * each side spins on a word the other writes, so a round trip is two
 * cache-line transfers each way and nothing else. A shared channel's
 * round trip across schedulers can approach this, never beat it. */

typedef struct clpp {
    _Alignas(64) int64_t ping;
    _Alignas(64) int64_t pong;
    int64_t rounds;
} clpp_t;

static void *clpp_other(void *arg)
{
    clpp_t *t = arg;
    for (int64_t i = 1; i <= t->rounds; i++) {
        while (__atomic_load_n(&t->ping, __ATOMIC_ACQUIRE) != i)
            bench_relax();
        __atomic_store_n(&t->pong, i, __ATOMIC_RELEASE);
    }
    return NULL;
}

int bench_cache_line_ping_pong(bench_run_t *r)
{
    static clpp_t t; /* static: the alignment holds */
    t.ping = t.pong = 0;
    t.rounds = r->n;
    pthread_t th;
    if (pthread_create(&th, NULL, clpp_other, &t) != 0) {
        fprintf(stderr, "BenchmarkCacheLinePingPong: pthread_create failed\n");
        return -1;
    }
    bench_clock_t c;
    bench_start(&c);
    for (int64_t i = 1; i <= r->n; i++) {
        __atomic_store_n(&t.ping, i, __ATOMIC_RELEASE);
        while (__atomic_load_n(&t.pong, __ATOMIC_ACQUIRE) != i)
            bench_relax();
    }
    bench_stop(&c, r, r->n);
    pthread_join(th, NULL);
    r->cpu_value = 0;
    return 0;
}

/* ---- the two channel benchmarks --------------------------------------- */

typedef struct shared_run {
    bench_run_t *r;
    coro_chan_t *a, *b;
    int stream;  /* 1: stream on a; 0: ping on a, pong on b */
    int failed;
} shared_run_t;

static int shared_side(void *arg)
{
    shared_run_t *s = arg;
    int64_t n = s->r->n, v = 0;
    if (coro_thread_index() == 0) {
        bench_clock_t c;
        bench_start(&c);
        for (int64_t i = 0; i < n; i++) {
            if (coro_chan_send(s->a, &i) != 0 || (!s->stream && coro_chan_recv(s->b, &v) != 0)) {
                fprintf(stderr, "shared channel benchmark: %s\n", strerror(errno));
                s->failed = 1;
                return 1;
            }
        }
        if (s->stream && coro_chan_recv(s->b, &v) != 0) /* the receiver's last word */
            s->failed = 1;
        bench_stop(&c, s->r, n);
        s->r->cpu_value = 0;
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        if (coro_chan_recv(s->a, &v) != 0 || v != i ||
            (!s->stream && coro_chan_send(s->b, &v) != 0)) {
            fprintf(stderr, "shared channel benchmark: item %lld: %s\n", (long long)i,
                    strerror(errno));
            s->failed = 1;
            return 1;
        }
    }
    if (s->stream && coro_chan_send(s->b, &v) != 0)
        s->failed = 1;
    return 0;
}

static int run_shared(bench_run_t *r, int stream, const char *who)
{
    shared_run_t s = { r, coro_chan_new_shared(sizeof(int64_t), stream ? 1024 : 0),
                       coro_chan_new_shared(sizeof(int64_t), 0), stream, 0 };
    int rc = -1;
    if (!s.a || !s.b) {
        fprintf(stderr, "%s: coro_chan_new_shared: %s\n", who, strerror(errno));
    } else {
        coro_main_opts_t o = { .threads = 2 };
        int st = coro_main_opts(shared_side, &s, &o);
        if (st != 0 || s.failed)
            fprintf(stderr, "%s: the run failed (%d)\n", who, st);
        else
            rc = 0;
    }
    coro_chan_free(s.a);
    coro_chan_free(s.b);
    return rc;
}

int bench_shared_chan_ping_pong(bench_run_t *r)
{
    return run_shared(r, 0, "BenchmarkSharedChanPingPong");
}

int bench_shared_chan_stream(bench_run_t *r)
{
    return run_shared(r, 1, "BenchmarkSharedChanStream");
}
