/* bench/bench_sync.c: the cost of synchronisation between coroutines.
 *
 *   BenchmarkChanPingPong  two coroutines, two unbuffered channels: one
 *                          sends, then receives the reply; the other
 *                          receives, then replies. ns per round trip (at
 *                          least two switches: one to the other side, one
 *                          back).
 *   BenchmarkChanBuffered  a producer and a consumer through one channel of
 *                          capacity 64. ns per item.
 *   BenchmarkMutexHandoff  two coroutines alternating on one mutex: lock,
 *                          yield while holding it (so the other one queues
 *                          on it), unlock (which hands it to the other).
 *                          ns per hand-off (one lock acquisition, and one
 *                          switch, each).
 *   BenchmarkSelect2       coro_select over two channels of capacity 1 in
 *                          one coroutine, exactly one case ready each time
 *                          (the case lists rotate so that sends and
 *                          receives, on both channels, take turns): the
 *                          cost of a select that does not block. ns per
 *                          select.
 *   BenchmarkGenNext       coro_gen_next of one int from a generator that
 *                          yields a counter. ns per value; a value is two
 *                          hand-offs (next switches to the producer, its
 *                          yield switches back).
 * All compare with BenchmarkSwitchBare (ns per one-way switch of the
 * benchmarks' own bare switch, bench/switch_bare.h; BenchmarkSwitchRaw where
 * that is not built) from the same run, with the ratio to SwitchRaw (the
 * library's switch) next to it; each note gives the switches counted per
 * operation.
 *
 * Floors (bench/main.c's "floor" column): ChanPingPong and GenNext switch
 * between two different bodies (ping/pong, consumer/producer), each switch
 * entered from a call, so every switch resumes code the CPU's return
 * predictor did not expect: their floor is two BenchmarkSwitchBareCallTwoSites,
 * before any channel or generator work (ChanPingPong's target is 1.5x
 * that). MutexHandoff's two sides run the same body and park at the same
 * call site: its floor is one BenchmarkSwitchBareCall. */
#include "bench/bench.h"

#include "coro.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Timing around a body run inside the scheduler, plus the switch count. */
typedef struct span {
    bench_clock_t clock;
    coro_stats_t st0;
} span_t;

static void span_start(span_t *s)
{
    coro_stats(&s->st0);
    bench_start(&s->clock);
}

/* Stop; note switches per op (and whatever `extra` says). */
static void span_stop(span_t *s, bench_run_t *r, int64_t ops, const char *extra)
{
    bench_stop(&s->clock, r, ops);
    coro_stats_t st1;
    coro_stats(&st1);
    snprintf(r->note, sizeof r->note, "%.3f switches/op%s%s",
             (double)(st1.switches - s->st0.switches) / (double)ops, extra ? "; " : "",
             extra ? extra : "");
}

static void report(const char *who, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", who, what, strerror(errno));
}

/* ---- BenchmarkChanPingPong ----------------------------------------------- */

typedef struct pingpong {
    coro_chan_t *there, *back;
    int64_t rounds;
    int failed;
} pingpong_t;

static int ping(void *arg)
{
    pingpong_t *p = arg;
    int64_t v = 0;
    for (int64_t i = 0; i < p->rounds; i++) {
        if (coro_chan_send(p->there, &i) != 0 || coro_chan_recv(p->back, &v) != 0) {
            report("BenchmarkChanPingPong", "ping");
            p->failed = 1;
            return 1;
        }
    }
    return v == p->rounds - 1 ? 0 : 1;
}

static int pong(void *arg)
{
    pingpong_t *p = arg;
    int64_t v;
    for (int64_t i = 0; i < p->rounds; i++) {
        if (coro_chan_recv(p->there, &v) != 0 || coro_chan_send(p->back, &v) != 0) {
            report("BenchmarkChanPingPong", "pong");
            p->failed = 1;
            return 1;
        }
    }
    return 0;
}

/* Spawn a and b on arg, time until both have ended, ops operations. */
static int run_pair(bench_run_t *r, const char *who, coro_fn a, coro_fn b, void *arg,
                    int64_t ops)
{
    coro_t *ca = coro_spawn(a, arg);
    coro_t *cb = ca ? coro_spawn(b, arg) : NULL;
    if (!ca || !cb) {
        report(who, "coro_spawn");
        if (ca) { /* it has not run yet: it ends at its first checkpoint */
            coro_cancel(ca);
            coro_join(ca, NULL);
        }
        return 1;
    }
    span_t s;
    span_start(&s);
    /* Parks main: a and b have the scheduler to themselves. */
    int sa = -1, sb = -1;
    if (coro_join(ca, &sa) != 0 || coro_join(cb, &sb) != 0) {
        report(who, "coro_join");
        return 1;
    }
    span_stop(&s, r, ops, NULL);
    if (sa != 0 || sb != 0) {
        fprintf(stderr, "%s: a coroutine failed (%d, %d)\n", who, sa, sb);
        return 1;
    }
    return 0;
}

static int chan_ping_pong_main(void *arg)
{
    bench_run_t *r = arg;
    pingpong_t p = { NULL, NULL, r->n, 0 };
    int rc = 1;
    p.there = coro_chan_new(sizeof(int64_t), 0);
    p.back = coro_chan_new(sizeof(int64_t), 0);
    if (!p.there || !p.back)
        report("BenchmarkChanPingPong", "coro_chan_new");
    else
        rc = run_pair(r, "BenchmarkChanPingPong", ping, pong, &p, r->n);
    if (p.there)
        coro_chan_free(p.there);
    if (p.back)
        coro_chan_free(p.back);
    return rc;
}

int bench_chan_ping_pong(bench_run_t *r)
{
    return bench_coro_main(chan_ping_pong_main, r, "BenchmarkChanPingPong");
}

/* ---- BenchmarkChanBuffered ----------------------------------------------- */

#define BUFFERED_CAP 64

typedef struct flow {
    coro_chan_t *ch;
    int64_t items;
} flow_t;

static int producer(void *arg)
{
    flow_t *f = arg;
    for (int64_t i = 0; i < f->items; i++)
        if (coro_chan_send(f->ch, &i) != 0) {
            report("BenchmarkChanBuffered", "coro_chan_send");
            return 1;
        }
    return 0;
}

static int consumer(void *arg)
{
    flow_t *f = arg;
    int64_t v, expect = 0;
    for (int64_t i = 0; i < f->items; i++) {
        if (coro_chan_recv(f->ch, &v) != 0) {
            report("BenchmarkChanBuffered", "coro_chan_recv");
            return 1;
        }
        if (v != expect++) {
            fprintf(stderr, "BenchmarkChanBuffered: got %lld, expected %lld\n",
                    (long long)v, (long long)(expect - 1));
            return 1;
        }
    }
    return 0;
}

static int chan_buffered_main(void *arg)
{
    bench_run_t *r = arg;
    flow_t f = { coro_chan_new(sizeof(int64_t), BUFFERED_CAP), r->n };
    if (!f.ch) {
        report("BenchmarkChanBuffered", "coro_chan_new");
        return 1;
    }
    int rc = run_pair(r, "BenchmarkChanBuffered", producer, consumer, &f, r->n);
    coro_chan_free(f.ch);
    return rc;
}

int bench_chan_buffered(bench_run_t *r)
{
    return bench_coro_main(chan_buffered_main, r, "BenchmarkChanBuffered");
}

/* ---- BenchmarkMutexHandoff ----------------------------------------------- */

typedef struct contended {
    coro_mutex_t m;
    int64_t each;      /* lock acquisitions per coroutine */
    coro_t *last;      /* the previous owner */
    int64_t handoffs;  /* acquisitions from the other coroutine */
} contended_t;

static int locker(void *arg)
{
    contended_t *c = arg;
    coro_t *self = coro_self();
    for (int64_t i = 0; i < c->each; i++) {
        if (coro_mutex_lock(&c->m) != 0) {
            report("BenchmarkMutexHandoff", "coro_mutex_lock");
            return 1;
        }
        c->handoffs += c->last && c->last != self;
        c->last = self;
        coro_yield(); /* the other one runs and queues on the mutex */
        if (coro_mutex_unlock(&c->m) != 0) {
            report("BenchmarkMutexHandoff", "coro_mutex_unlock");
            return 1;
        }
    }
    return 0;
}

static int mutex_handoff_main(void *arg)
{
    bench_run_t *r = arg;
    contended_t c = { CORO_MUTEX_INIT, r->n / 2, NULL, 0 };
    if (run_pair(r, "BenchmarkMutexHandoff", locker, locker, &c, r->n) != 0)
        return 1;
    /* Every acquisition but the first should come from the other side. */
    if (c.handoffs < r->n - 1) {
        fprintf(stderr, "BenchmarkMutexHandoff: only %lld of %lld acquisitions were "
                        "hand-offs\n",
                (long long)c.handoffs, (long long)r->n);
        return 1;
    }
    return 0;
}

int bench_mutex_handoff(bench_run_t *r)
{
    return bench_coro_main(mutex_handoff_main, r, "BenchmarkMutexHandoff");
}

/* ---- BenchmarkSelect2 ----------------------------------------------------- */

/* Four case lists over channels a and b (capacity 1, both empty at the
 * start), used in turn; in each exactly one case is ready:
 *   0: send a | recv b   a empty: the send        -> a full
 *   1: recv a | recv b   a full: the receive      -> both empty
 *   2: recv a | send b   b empty: the send        -> b full
 *   3: recv a | recv b   b full: the receive      -> both empty
 * so the ready case's index alternates, and so do its channel and op. */
static int select2_main(void *arg)
{
    bench_run_t *r = arg;
    coro_chan_t *a = coro_chan_new(sizeof(int64_t), 1);
    coro_chan_t *b = coro_chan_new(sizeof(int64_t), 1);
    int rc = 1;
    if (!a || !b) {
        report("BenchmarkSelect2", "coro_chan_new");
        goto out;
    }
    int64_t out_a = 1, out_b = 2, in_a = 0, in_b = 0;
    coro_case_t lists[4][2] = {
        { { a, CORO_SEND, &out_a, 0 }, { b, CORO_RECV, &in_b, 0 } },
        { { a, CORO_RECV, &in_a, 0 }, { b, CORO_RECV, &in_b, 0 } },
        { { a, CORO_RECV, &in_a, 0 }, { b, CORO_SEND, &out_b, 0 } },
        { { a, CORO_RECV, &in_a, 0 }, { b, CORO_RECV, &in_b, 0 } },
    };
    static const int want[4] = { 0, 0, 1, 1 };
    span_t s;
    span_start(&s);
    for (int64_t i = 0; i < r->n; i += 4) {
        for (int k = 0; k < 4; k++) {
            int got = coro_select(lists[k], 2);
            if (__builtin_expect(got != want[k], 0)) {
                if (got < 0)
                    report("BenchmarkSelect2", "coro_select");
                else
                    fprintf(stderr, "BenchmarkSelect2: list %d: case %d chosen, expected %d\n",
                            k, got, want[k]);
                goto out;
            }
        }
    }
    span_stop(&s, r, r->n, NULL);
    if (in_a != 1 || in_b != 2) {
        fprintf(stderr, "BenchmarkSelect2: received %lld and %lld\n", (long long)in_a,
                (long long)in_b);
        goto out;
    }
    rc = 0;
out:
    if (a)
        coro_chan_free(a);
    if (b)
        coro_chan_free(b);
    return rc;
}

int bench_select2(bench_run_t *r)
{
    return bench_coro_main(select2_main, r, "BenchmarkSelect2");
}

/* ---- BenchmarkGenNext ----------------------------------------------------- */

static int counter(coro_gen_t *g, void *arg)
{
    (void)arg;
    for (unsigned i = 0;; i++) /* wraps, harmlessly */
        if (coro_gen_yield(g, &i) != 0)
            return errno == ECANCELED ? 0 : 1;
}

static int gen_next_main(void *arg)
{
    bench_run_t *r = arg;
    coro_gen_t *g = coro_gen_new(counter, NULL, sizeof(unsigned));
    if (!g) {
        report("BenchmarkGenNext", "coro_gen_new");
        return 1;
    }
    unsigned v = 1;
    int rc = 0;
    /* The first next starts the producer: not timed. */
    if (coro_gen_next(g, &v) != 0 || v != 0) {
        report("BenchmarkGenNext", "coro_gen_next");
        coro_gen_free(g);
        return 1;
    }
    span_t s;
    span_start(&s);
    for (int64_t i = 0; i < r->n; i++) {
        if (__builtin_expect(coro_gen_next(g, &v) != 0, 0)) {
            report("BenchmarkGenNext", "coro_gen_next");
            rc = 1;
            break;
        }
    }
    if (rc == 0) {
        span_stop(&s, r, r->n, NULL);
        size_t len = strlen(r->note);
        snprintf(r->note + len, sizeof r->note - len, "; %.2f ns per hand-off (2 per value)",
                 r->value / 2);
        if (v != (unsigned)r->n) {
            fprintf(stderr, "BenchmarkGenNext: last value %u, expected %u\n", v,
                    (unsigned)r->n);
            rc = 1;
        }
    }
    coro_gen_free(g);
    return rc;
}

int bench_gen_next(bench_run_t *r)
{
    return bench_coro_main(gen_next_main, r, "BenchmarkGenNext");
}
