/* bench/icount.c: the scenarios `make icount` counts instructions of
 * (bench/icount.sh runs each under Callgrind for two sizes and prints the
 * difference per step). It links the library as built (build/libcoro.a)
 * and does nothing but the scenario, so that every instruction between
 * the two runs' totals belongs to the steps.
 *
 *   icount SCENARIO N
 *
 *   yield   two coroutines yielding to each other; a step is a pair of
 *           yields (one each)
 *   mutex   two coroutines alternating on one coro_mutex (lock, yield while
 *           holding it so the other queues, unlock: a hand-off); a step is
 *           two hand-offs (one each)
 *   chan    an unbuffered channel round trip: one coroutine sends and
 *           receives the reply, the other receives and replies (two
 *           channels); a step is a round trip
 *   spawn   spawn a coroutine that returns at once, join it; a step is one
 *   gen     coro_gen_next of one int from a generator; a step is one value
 *   select  coro_select over two channels of capacity 1, exactly one case
 *           ready (as BenchmarkSelect2); a step is one select
 *
 * Exits 0 when the N steps ran, 1 (with a message) otherwise, 2 on usage. */
#include "coro.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long steps;

static void fail(const char *what)
{
    fprintf(stderr, "icount: %s: %s\n", what, strerror(errno));
}

/* Spawn a and b on arg and join both: 0 if both returned 0. */
static int pair(coro_fn a, coro_fn b, void *arg)
{
    coro_t *ca = coro_spawn(a, arg);
    coro_t *cb = ca ? coro_spawn(b, arg) : NULL;
    if (!ca || !cb) {
        fail("coro_spawn");
        return 1;
    }
    int sa = -1, sb = -1;
    if (coro_join(ca, &sa) != 0 || coro_join(cb, &sb) != 0) {
        fail("coro_join");
        return 1;
    }
    return sa != 0 || sb != 0;
}

/* ---- yield ---------------------------------------------------------------- */

static int yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < steps; i++)
        coro_yield();
    return 0;
}

static int yield_main(void *arg)
{
    (void)arg;
    return pair(yielder, yielder, NULL);
}

/* ---- mutex ---------------------------------------------------------------- */

static coro_mutex_t mutex = CORO_MUTEX_INIT;

static int locker(void *arg)
{
    (void)arg;
    for (long i = 0; i < steps; i++) {
        if (coro_mutex_lock(&mutex) != 0) {
            fail("coro_mutex_lock");
            return 1;
        }
        coro_yield(); /* the other one runs and queues on the mutex */
        if (coro_mutex_unlock(&mutex) != 0) {
            fail("coro_mutex_unlock");
            return 1;
        }
    }
    return 0;
}

static int mutex_main(void *arg)
{
    (void)arg;
    return pair(locker, locker, NULL);
}

/* ---- chan ----------------------------------------------------------------- */

static coro_chan_t *there, *back;

static int ping(void *arg)
{
    (void)arg;
    int v = 0;
    for (long i = 0; i < steps; i++) {
        if (coro_chan_send(there, &v) != 0 || coro_chan_recv(back, &v) != 0) {
            fail("ping");
            return 1;
        }
    }
    return 0;
}

static int pong(void *arg)
{
    (void)arg;
    int v;
    for (long i = 0; i < steps; i++) {
        if (coro_chan_recv(there, &v) != 0 || coro_chan_send(back, &v) != 0) {
            fail("pong");
            return 1;
        }
        v++;
    }
    return 0;
}

static int chan_main(void *arg)
{
    (void)arg;
    there = coro_chan_new(sizeof(int), 0);
    back = coro_chan_new(sizeof(int), 0);
    if (!there || !back) {
        fail("coro_chan_new");
        return 1;
    }
    int rc = pair(ping, pong, NULL);
    coro_chan_free(there);
    coro_chan_free(back);
    return rc;
}

/* ---- spawn ---------------------------------------------------------------- */

static int noop(void *arg)
{
    (void)arg;
    return 0;
}

static int spawn_main(void *arg)
{
    (void)arg;
    for (long i = 0; i < steps; i++) {
        coro_t *c = coro_spawn(noop, NULL);
        if (!c || coro_join(c, NULL) != 0) {
            fail("spawn+join");
            return 1;
        }
    }
    return 0;
}

/* ---- gen ------------------------------------------------------------------ */

static int counter(coro_gen_t *g, void *arg)
{
    (void)arg;
    for (int i = 0;; i++)
        if (coro_gen_yield(g, &i) != 0)
            return errno == ECANCELED ? 0 : 1;
}

static int gen_main(void *arg)
{
    (void)arg;
    coro_gen_t *g = coro_gen_new(counter, NULL, sizeof(int));
    if (!g) {
        fail("coro_gen_new");
        return 1;
    }
    int v = -1, rc = 0;
    for (long i = 0; i < steps; i++) {
        if (coro_gen_next(g, &v) != 0) {
            fail("coro_gen_next");
            rc = 1;
            break;
        }
    }
    coro_gen_free(g);
    return rc;
}

/* ---- select --------------------------------------------------------------- */

/* Four case lists used in turn, one case ready in each (a and b start
 * empty): send a; recv a; send b; recv b. */
static int select_main(void *arg)
{
    (void)arg;
    coro_chan_t *a = coro_chan_new(sizeof(int), 1);
    coro_chan_t *b = coro_chan_new(sizeof(int), 1);
    int rc = 1;
    if (!a || !b) {
        fail("coro_chan_new");
        goto out;
    }
    int out_a = 1, out_b = 2, in_a = 0, in_b = 0;
    coro_case_t lists[4][2] = {
        { { a, CORO_SEND, &out_a, 0 }, { b, CORO_RECV, &in_b, 0 } },
        { { a, CORO_RECV, &in_a, 0 }, { b, CORO_RECV, &in_b, 0 } },
        { { a, CORO_RECV, &in_a, 0 }, { b, CORO_SEND, &out_b, 0 } },
        { { a, CORO_RECV, &in_a, 0 }, { b, CORO_RECV, &in_b, 0 } },
    };
    static const int want[4] = { 0, 0, 1, 1 };
    for (long i = 0; i < steps; i++) {
        int k = (int)(i & 3);
        int got = coro_select(lists[k], 2);
        if (got != want[k]) {
            if (got < 0)
                fail("coro_select");
            else
                fprintf(stderr, "icount: select: case %d chosen, expected %d\n", got, want[k]);
            goto out;
        }
    }
    rc = 0;
out:
    if (a)
        coro_chan_free(a);
    if (b)
        coro_chan_free(b);
    return rc;
}

/* ---- main ----------------------------------------------------------------- */

static const struct {
    const char *name;
    coro_fn fn;
} scenarios[] = {
    { "yield", yield_main }, { "mutex", mutex_main }, { "chan", chan_main },
    { "spawn", spawn_main }, { "gen", gen_main },     { "select", select_main },
};

int main(int argc, char **argv)
{
    char *end = NULL;
    if (argc == 3)
        steps = strtol(argv[2], &end, 10);
    if (argc != 3 || !end || *end || steps < 1) {
        fprintf(stderr, "usage: icount yield|mutex|chan|spawn|gen|select N\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        if (strcmp(argv[1], scenarios[i].name) != 0)
            continue;
        int rc = coro_main(scenarios[i].fn, NULL);
        if (rc != 0) {
            fprintf(stderr, "icount: %s: coro_main returned %d\n", argv[1], rc);
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "icount: unknown scenario %s\n", argv[1]);
    return 2;
}
