/* test/test_gen.c: generators (sync/gen.c). Values arrive in order, then
 * ENOENT ever after with fn's status; Fibonacci and a prime sieve of
 * chained generators; a producer that sleeps lets others run; a consumer
 * cancelled or timed out while waiting loses no value and gets none twice
 * (the value made meanwhile comes from the next call without resuming fn),
 * also under random deadlines and cancels; freeing an unfinished, a
 * never-started, a finished generator, from a cancelled caller, with a
 * consumer still waiting, from inside fn; misuse (EPERM, EBUSY, EINVAL,
 * EDEADLK); coro_dump names the waits; two switches per value; an
 * allocation failure leaks nothing. */
#include "test/test_sched.h"

#include <fenv.h>
#include "coro/fault.h"

/* ---- in order, then ENOENT ---------------------------------------------- */

typedef struct big {
    int64_t n;
    char text[40];
    double sq;
} big_t;

static int count_fn(coro_gen_t *g, void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n; i++)
        if (coro_gen_yield(g, &i) != 0)
            return -100;
    return 42;
}

static int big_fn(coro_gen_t *g, void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++) {
        big_t b;
        memset(&b, 0, sizeof b);
        b.n = i;
        snprintf(b.text, sizeof b.text, "value %d", i);
        b.sq = (double)i * i;
        if (coro_gen_yield(g, &b) != 0)
            return -1;
    }
    return 9;
}

static int empty_fn(coro_gen_t *g, void *arg)
{
    (void)g;
    (void)arg;
    return 3;
}

static int order_main(void *arg)
{
    (void)arg;
    int n = 100;
    coro_gen_t *g = coro_gen_new(count_fn, &n, sizeof(int));
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(coro_gen_status(g), -1);
    int v, count = 0;
    while (coro_gen_next(g, &v) == 0) {
        ASSERT_EQ(v, count);
        count++;
        ASSERT_EQ(coro_gen_status(g), -1); /* not finished yet */
    }
    ASSERT_EQ(errno, ENOENT);
    ASSERT_EQ(count, n);
    for (int i = 0; i < 3; i++)
        ASSERT_ERRNO(coro_gen_next(g, &v), ENOENT);
    ASSERT_EQ(coro_gen_status(g), 42);
    coro_gen_free(g);

    /* A larger element type: copied whole. */
    g = coro_gen_new(big_fn, NULL, sizeof(big_t));
    ASSERT_NOT_NULL(g);
    big_t b;
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(coro_gen_next(g, &b), 0);
        ASSERT_EQ(b.n, i);
        char want[40];
        snprintf(want, sizeof want, "value %d", i);
        ASSERT_STR_EQ(b.text, want);
        ASSERT(b.sq == (double)i * i);
    }
    ASSERT_ERRNO(coro_gen_next(g, &b), ENOENT);
    ASSERT_EQ(coro_gen_status(g), 9);
    coro_gen_free(g);

    /* fn that yields nothing. */
    g = coro_gen_new(empty_fn, NULL, 1);
    ASSERT_NOT_NULL(g);
    char c;
    ASSERT_ERRNO(coro_gen_next(g, &c), ENOENT);
    ASSERT_ERRNO(coro_gen_next(g, &c), ENOENT);
    ASSERT_EQ(coro_gen_status(g), 3);
    coro_gen_free(g);
    return 0;
}

TEST(gen_values_in_order_then_enoent)
{
    ASSERT_EQ(coro_main(order_main, NULL), 0);
}

/* ---- nothing runs before the first next --------------------------------- */

typedef struct lazy {
    int started;
    int yields;
} lazy_t;

static int lazy_fn(coro_gen_t *g, void *arg)
{
    lazy_t *l = arg;
    l->started = 1;
    for (int i = 0;; i++) {
        if (coro_gen_yield(g, &i) != 0)
            return 0;
        l->yields++;
    }
}

static int lazy_main(void *arg)
{
    (void)arg;
    lazy_t l = { 0, 0 };
    coro_gen_t *g = coro_gen_new(lazy_fn, &l, sizeof(int));
    ASSERT_NOT_NULL(g);
    coro_yield();
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(l.started, 0);
    int v;
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    ASSERT_EQ(v, 0);
    ASSERT_EQ(l.started, 1);
    ASSERT_EQ(l.yields, 0); /* parked in its first yield */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(l.yields, 0); /* and it stays there until asked */
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(l.yields, 1);
    coro_gen_free(g);

    /* A next before the producer has even run once. */
    memset(&l, 0, sizeof l);
    g = coro_gen_new(lazy_fn, &l, sizeof(int));
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    ASSERT_EQ(v, 0);
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    ASSERT_EQ(v, 1);
    coro_gen_free(g);
    return 0;
}

TEST(gen_starts_at_first_next)
{
    ASSERT_EQ(coro_main(lazy_main, NULL), 0);
}

/* ---- Fibonacci ------------------------------------------------------------ */

static int fib_fn(coro_gen_t *g, void *arg)
{
    int n = *(int *)arg;
    uint64_t a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        if (coro_gen_yield(g, &a) != 0)
            return -1;
        uint64_t t = a + b;
        a = b;
        b = t;
    }
    return n;
}

static int fib_main(void *arg)
{
    (void)arg;
    int n = 93; /* F(92) is the last that fits in 64 bits */
    coro_gen_t *g = coro_gen_new(fib_fn, &n, sizeof(uint64_t));
    ASSERT_NOT_NULL(g);
    uint64_t want_a = 0, want_b = 1, v;
    int count = 0;
    while (coro_gen_next(g, &v) == 0) {
        ASSERT(v == want_a);
        uint64_t t = want_a + want_b;
        want_a = want_b;
        want_b = t;
        count++;
    }
    ASSERT_EQ(errno, ENOENT);
    ASSERT_EQ(count, 93);
    ASSERT(v == 7540113804746346429ULL); /* F(92) */
    ASSERT_EQ(coro_gen_status(g), 93);
    coro_gen_free(g);
    return 0;
}

TEST(gen_fibonacci)
{
    ASSERT_EQ(coro_main(fib_main, NULL), 0);
}

/* ---- prime sieve: a chain of generators ---------------------------------- */

#define SIEVE_PRIMES 60

typedef struct filter {
    coro_gen_t *src;
    int p;
    int cleaned; /* set when fn returns */
} filter_t;

static int numbers_fn(coro_gen_t *g, void *arg)
{
    (void)arg;
    for (int i = 2;; i++)
        if (coro_gen_yield(g, &i) != 0)
            return 0;
}

static int filter_fn(coro_gen_t *g, void *arg)
{
    filter_t *f = arg;
    int v;
    while (coro_gen_next(f->src, &v) == 0) {
        if (v % f->p == 0)
            continue;
        if (coro_gen_yield(g, &v) != 0)
            break;
    }
    f->cleaned = 1;
    return 0;
}

static int is_prime(int n)
{
    if (n < 2)
        return 0;
    for (int d = 2; d * d <= n; d++)
        if (n % d == 0)
            return 0;
    return 1;
}

static int sieve_main(void *arg)
{
    (void)arg;
    coro_gen_t *gens[SIEVE_PRIMES + 1];
    filter_t filters[SIEVE_PRIMES];
    gens[0] = coro_gen_new(numbers_fn, NULL, sizeof(int));
    ASSERT_NOT_NULL(gens[0]);
    int want = 1;
    for (int k = 0; k < SIEVE_PRIMES; k++) {
        int p;
        ASSERT_EQ(coro_gen_next(gens[k], &p), 0);
        do
            want++;
        while (!is_prime(want));
        ASSERT_EQ(p, want);
        filters[k] = (filter_t){ gens[k], p, 0 };
        gens[k + 1] = coro_gen_new(filter_fn, &filters[k], sizeof(int));
        ASSERT_NOT_NULL(gens[k + 1]);
    }
    ASSERT_EQ(want, 281); /* the 60th prime */
    /* Outermost first: each filter is parked in its yield. */
    for (int k = SIEVE_PRIMES; k >= 0; k--)
        coro_gen_free(gens[k]);
    for (int k = 0; k < SIEVE_PRIMES - 1; k++)
        ASSERT_EQ(filters[k].cleaned, 1);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.live, 1); /* only main is left */
    return 0;
}

TEST(gen_prime_sieve)
{
    ASSERT_EQ(coro_main(sieve_main, NULL), 0);
}

/* ---- a producer that sleeps --------------------------------------------- */

typedef struct sleepy {
    int ticks;
    int stop;
} sleepy_t;

static int sleepy_fn(coro_gen_t *g, void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++) {
        if (coro_sleep(2 * CORO_MS) != 0)
            return -1;
        if (coro_gen_yield(g, &i) != 0)
            return -2;
    }
    return 0;
}

static int ticker(void *arg)
{
    sleepy_t *s = arg;
    while (!s->stop) {
        s->ticks++;
        coro_yield();
        if (coro_sleep(100 * CORO_US) != 0)
            return -1;
    }
    return 0;
}

static int sleepy_main(void *arg)
{
    sleepy_t *s = arg;
    coro_t *t = coro_spawn(ticker, s);
    ASSERT_NOT_NULL(t);
    coro_gen_t *g = coro_gen_new(sleepy_fn, NULL, sizeof(int));
    ASSERT_NOT_NULL(g);
    int64_t t0 = coro_now();
    int v, prev_ticks = s->ticks;
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(coro_gen_next(g, &v), 0);
        ASSERT_EQ(v, i);
        /* The ticker ran while the producer slept. */
        ASSERT_GT(s->ticks, prev_ticks);
        prev_ticks = s->ticks;
    }
    ASSERT_ERRNO(coro_gen_next(g, &v), ENOENT);
    ASSERT_EQ(coro_gen_status(g), 0);
    ASSERT_GE(coro_now() - t0, 10 * CORO_MS);
    coro_gen_free(g);
    s->stop = 1;
    ASSERT_EQ(coro_join(t, NULL), 0);
    return 0;
}

TEST(gen_producer_sleeps_others_run)
{
    sleepy_t s = { 0, 0 };
    ASSERT_EQ(coro_main(sleepy_main, &s), 0);
    ASSERT_GT(s.ticks, 5);
}

/* ---- a consumer cancelled or timed out while waiting --------------------- */

typedef struct slow {
    coro_gen_t *g;
    int n;
    int64_t delay;
    int produced; /* values made (counted just before their yield) */
    int resumed;  /* yields that returned 0 */
    int yield_err;
    int cleanup;
    int got_ret, got_err, got_val; /* of the consumer coroutine */
} slow_t;

static int slow_fn(coro_gen_t *g, void *arg)
{
    slow_t *s = arg;
    for (int i = 0; i < s->n; i++) {
        if (coro_sleep(s->delay) != 0) {
            s->yield_err = errno;
            s->cleanup = 1;
            return -2;
        }
        s->produced++;
        if (coro_gen_yield(g, &i) != 0) {
            s->yield_err = errno;
            s->cleanup = 1;
            return -3;
        }
        s->resumed++;
    }
    s->cleanup = 1;
    return 5;
}

static int slow_consumer(void *arg)
{
    slow_t *s = arg;
    s->got_val = -1;
    errno = 0;
    s->got_ret = coro_gen_next(s->g, &s->got_val);
    s->got_err = errno;
    return 0;
}

/* Sleep until fn has made `n` values (bounded). */
static void wait_produced(slow_t *s, int n)
{
    int64_t limit = coro_now() + ts_bound(2 * CORO_SEC);
    while (s->produced < n) {
        ASSERT_LT(coro_now(), limit);
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    }
}

/* The rest of the sequence, from `from`, then ENOENT with status 5. */
static void drain_from(slow_t *s, int from)
{
    int v;
    for (int i = from; i < s->n; i++) {
        ASSERT_EQ(coro_gen_next(s->g, &v), 0);
        ASSERT_EQ(v, i);
    }
    ASSERT_ERRNO(coro_gen_next(s->g, &v), ENOENT);
    ASSERT_EQ(coro_gen_status(s->g), 5);
    ASSERT_EQ(s->produced, s->n);
}

static int cancel_consumer_main(void *arg)
{
    slow_t *s = arg;
    s->n = 4;
    s->delay = ts_bound(20 * CORO_MS);
    s->g = coro_gen_new(slow_fn, s, sizeof(int));
    ASSERT_NOT_NULL(s->g);
    coro_t *c = coro_spawn(slow_consumer, s);
    ASSERT_NOT_NULL(c);
    /* Let c reach next and fn its sleep (a hand-off queues behind coroutines
     * that are ready, so give them a moment rather than one yield). */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(s->produced, 0);
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(s->got_ret, -1);
    ASSERT_EQ(s->got_err, ECANCELED);
    ASSERT_EQ(s->got_val, -1); /* nothing written */

    /* fn goes on to its yield; nobody waits, so the value is kept. */
    wait_produced(s, 1);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(s->resumed, 0);
    ASSERT_EQ(s->produced, 1);

    /* The next call returns it at once, without resuming fn. */
    int v = -1;
    coro_stats_t before, after;
    coro_stats(&before);
    ASSERT_EQ(coro_gen_next(s->g, &v), 0);
    coro_stats(&after);
    ASSERT_EQ(v, 0);
    /* Not one switch: neither fn nor anyone else ran (a time bound here
     * would fail on a stalled machine and prove less). */
    ASSERT_EQ(after.switches - before.switches, 0);
    ASSERT_EQ(s->resumed, 0);
    ASSERT_EQ(s->produced, 1);
    /* Only the one after resumes it. */
    ASSERT_EQ(coro_gen_next(s->g, &v), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(s->resumed, 1);
    drain_from(s, 2);
    coro_gen_free(s->g);
    return 0;
}

TEST(gen_consumer_cancelled_value_kept)
{
    slow_t s;
    memset(&s, 0, sizeof s);
    ASSERT_EQ(coro_main(cancel_consumer_main, &s), 0);
}

/* A cancelled consumer that shields itself gets the kept value; a cancelled
 * one unshielded keeps failing (sticky). */
static int shielded_consumer(void *arg)
{
    slow_t *s = arg;
    int v = -1;
    ASSERT_ERRNO(coro_gen_next(s->g, &v), ECANCELED);
    ASSERT_EQ(v, -1);
    /* Sticky: unshielded it keeps failing, and takes nothing. */
    ASSERT_ERRNO(coro_gen_next(s->g, &v), ECANCELED);
    int old = coro_shield(1);
    /* Wait for fn to make its value (sleeping is allowed while shielded). */
    int64_t limit = coro_now() + ts_bound(2 * CORO_SEC);
    while (s->produced < 1) {
        ASSERT_LT(coro_now(), limit);
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    }
    ASSERT_EQ(coro_gen_next(s->g, &v), 0);
    ASSERT_EQ(v, 0);
    coro_shield(old);
    return 0;
}

static int shielded_main(void *arg)
{
    slow_t *s = arg;
    s->n = 3;
    s->delay = ts_bound(10 * CORO_MS);
    s->g = coro_gen_new(slow_fn, s, sizeof(int));
    ASSERT_NOT_NULL(s->g);
    coro_t *c = coro_spawn(shielded_consumer, s);
    ASSERT_NOT_NULL(c);
    /* Let c reach next and fn its sleep (a hand-off queues behind coroutines
     * that are ready, so give them a moment rather than one yield). */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    drain_from(s, 1);
    coro_gen_free(s->g);
    return 0;
}

TEST(gen_cancelled_consumer_shielded_gets_kept_value)
{
    slow_t s;
    memset(&s, 0, sizeof s);
    ASSERT_EQ(coro_main(shielded_main, &s), 0);
}

static int deadline_main(void *arg)
{
    slow_t *s = arg;
    s->n = 4;
    s->delay = ts_bound(20 * CORO_MS);
    s->g = coro_gen_new(slow_fn, s, sizeof(int));
    ASSERT_NOT_NULL(s->g);
    int v = -1;
    int64_t t0 = coro_now(); /* before the deadline: it counts from there */
    int64_t saved = coro_timeout(ts_bound(3 * CORO_MS));
    ASSERT_ERRNO(coro_gen_next(s->g, &v), ETIMEDOUT);
    ASSERT_GE(coro_now() - t0, 3 * CORO_MS);
    ASSERT_EQ(v, -1);
    /* Still past the deadline: refused at once (checkpoint first). */
    ASSERT_ERRNO(coro_gen_next(s->g, &v), ETIMEDOUT);
    coro_set_deadline(saved);

    wait_produced(s, 1);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(s->resumed, 0);
    ASSERT_EQ(coro_gen_next(s->g, &v), 0); /* the kept value, at once */
    ASSERT_EQ(v, 0);
    ASSERT_EQ(s->resumed, 0);

    /* Time out again while fn sleeps before value 1; then one more next
     * waits for it (fn was resumed by the timed-out call). */
    saved = coro_timeout(ts_bound(2 * CORO_MS));
    ASSERT_ERRNO(coro_gen_next(s->g, &v), ETIMEDOUT);
    coro_set_deadline(saved);
    ASSERT_EQ(s->resumed, 1);
    ASSERT_EQ(coro_gen_next(s->g, &v), 0);
    ASSERT_EQ(v, 1);
    drain_from(s, 2);
    coro_gen_free(s->g);
    return 0;
}

TEST(gen_consumer_deadline_value_kept)
{
    slow_t s;
    memset(&s, 0, sizeof s);
    ASSERT_EQ(coro_main(deadline_main, &s), 0);
}

/* fn's own deadline ends its wait after a value was kept for a consumer
 * that gave up; fn yields again: the kept value still comes first, then
 * the new one, nothing lost. */
typedef struct pdl {
    int consumer_err;
    int wait_err;   /* what fn's first yield returned */
    int yields_done;
    coro_gen_t *g;
} pdl_t;

static int pdl_fn(coro_gen_t *g, void *arg)
{
    pdl_t *p = arg;
    int v = 100;
    if (coro_sleep(ts_bound(5 * CORO_MS)) != 0)
        return -1;
    /* The consumer has given up by now: 100 is kept, and our wait for the
     * next request times out. */
    int64_t saved = coro_timeout(ts_bound(2 * CORO_MS));
    errno = 0;
    ASSERT_EQ(coro_gen_yield(g, &v), -1);
    p->wait_err = errno;
    coro_set_deadline(saved);
    for (v = 101; v < 104; v++) {
        if (coro_gen_yield(g, &v) != 0)
            return -2;
        p->yields_done++;
    }
    return 8;
}

static int pdl_consumer(void *arg)
{
    pdl_t *p = arg;
    int v;
    errno = 0;
    ASSERT_EQ(coro_gen_next(p->g, &v), -1);
    p->consumer_err = errno;
    return 0;
}

static int pdl_main(void *arg)
{
    pdl_t *p = arg;
    p->g = coro_gen_new(pdl_fn, p, sizeof(int));
    ASSERT_NOT_NULL(p->g);
    coro_t *c = coro_spawn(pdl_consumer, p);
    ASSERT_NOT_NULL(c);
    /* Let c reach next and fn its sleep (a hand-off queues behind coroutines
     * that are ready, so give them a moment rather than one yield). */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(p->consumer_err, ECANCELED);
    /* fn's timed-out yield, then its next yield, which waits. */
    int64_t limit = coro_now() + ts_bound(2 * CORO_SEC);
    while (p->wait_err == 0) {
        ASSERT_LT(coro_now(), limit);
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    }
    ASSERT_EQ(p->wait_err, ETIMEDOUT);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(p->yields_done, 0);
    int v;
    for (int want = 100; want < 104; want++) {
        ASSERT_EQ(coro_gen_next(p->g, &v), 0);
        ASSERT_EQ(v, want);
    }
    ASSERT_ERRNO(coro_gen_next(p->g, &v), ENOENT);
    ASSERT_EQ(coro_gen_status(p->g), 8);
    coro_gen_free(p->g);
    return 0;
}

TEST(gen_producer_deadline_keeps_kept_value_first)
{
    pdl_t p;
    memset(&p, 0, sizeof p);
    ASSERT_EQ(coro_main(pdl_main, &p), 0);
}

/* ---- random deadlines and cancels: no value lost or doubled -------------- */

typedef struct rnd {
    coro_gen_t *g;
    int n;
    uint64_t seed;
    int64_t *delays;
    /* The consumer coroutine of the cancel variant. */
    int ret, err, val;
} rnd_t;

static int rnd_fn(coro_gen_t *g, void *arg)
{
    rnd_t *r = arg;
    for (int i = 0; i < r->n; i++) {
        if (r->delays[i] && coro_sleep(r->delays[i]) != 0)
            return -1;
        if (coro_gen_yield(g, &i) != 0)
            return -2;
    }
    return 11;
}

static int rnd_consumer(void *arg)
{
    rnd_t *r = arg;
    errno = 0;
    r->val = -1;
    r->ret = coro_gen_next(r->g, &r->val);
    r->err = errno;
    return 0;
}

static int rnd_main(void *arg)
{
    rnd_t *r = arg;
    r->n = (int)ts_count(300, 60);
    r->delays = calloc((size_t)r->n, sizeof *r->delays);
    ASSERT_NOT_NULL(r->delays);
    for (int i = 0; i < r->n; i++) {
        uint64_t x = ts_rand(&r->seed) % 4;
        r->delays[i] = x == 0 ? 0 : (int64_t)(ts_rand(&r->seed) % 300) * CORO_US;
    }
    r->g = coro_gen_new(rnd_fn, r, sizeof(int));
    ASSERT_NOT_NULL(r->g);
    int expect = 0, failures = 0, v;
    for (int round = 0; expect < r->n; round++) {
        ASSERT_LT(round, 20 * r->n);
        int64_t wait = (int64_t)(ts_rand(&r->seed) % 400) * CORO_US;
        if (round % 2 == 0) {
            /* A deadline on main itself. */
            int64_t saved = coro_timeout(wait);
            errno = 0;
            v = -1;
            int ret = coro_gen_next(r->g, &v);
            int e = errno;
            coro_set_deadline(saved);
            if (ret == 0) {
                ASSERT_EQ(v, expect);
                expect++;
            } else {
                ASSERT_EQ(e, ETIMEDOUT);
                ASSERT_EQ(v, -1);
                failures++;
            }
        } else {
            /* A consumer coroutine cancelled after a random time (perhaps
             * after it got its value: then its call still succeeded). */
            coro_t *c = coro_spawn(rnd_consumer, r);
            ASSERT_NOT_NULL(c);
            if (wait)
                ASSERT_EQ(coro_sleep(wait), 0);
            ASSERT_EQ(coro_cancel(c), 0);
            ASSERT_EQ(coro_join(c, NULL), 0);
            if (r->ret == 0) {
                ASSERT_EQ(r->val, expect);
                expect++;
            } else if (r->err == ENOENT) {
                break;
            } else {
                ASSERT_EQ(r->err, ECANCELED);
                ASSERT_EQ(r->val, -1);
                failures++;
            }
        }
    }
    ASSERT_EQ(expect, r->n);
    ASSERT_ERRNO(coro_gen_next(r->g, &v), ENOENT);
    ASSERT_EQ(coro_gen_status(r->g), 11);
    printf("%d values, %d interrupted calls\n", r->n, failures);
    ASSERT_GT(failures, 0);
    coro_gen_free(r->g);
    free(r->delays);
    return 0;
}

TEST(gen_random_deadlines_and_cancels_lose_nothing)
{
    for (uint64_t seed = 1; seed <= 3; seed++) {
        rnd_t r;
        memset(&r, 0, sizeof r);
        r.seed = seed * 0x9E3779B97F4A7C15ULL;
        ASSERT_EQ(coro_main(rnd_main, &r), 0);
    }
}

/* ---- freeing ---------------------------------------------------------------- */

typedef struct inf {
    int called;
    int yields_ok;
    int yield_ret, yield_err;
    int cleanup;
    int shield; /* fn shields itself */
    int64_t cleanup_sleep; /* fn's cleanup blocks this long (shielded) */
} inf_t;

static int inf_fn(coro_gen_t *g, void *arg)
{
    inf_t *f = arg;
    f->called = 1;
    if (f->shield)
        coro_shield(1);
    for (int i = 0;; i++) {
        errno = 0;
        int r = coro_gen_yield(g, &i);
        if (r != 0) {
            f->yield_ret = r;
            f->yield_err = errno;
            break;
        }
        f->yields_ok++;
    }
    if (f->cleanup_sleep) {
        coro_shield(1);
        ASSERT_EQ(coro_sleep(f->cleanup_sleep), 0);
    }
    f->cleanup = 1;
    return 1;
}

static int free_unfinished_main(void *arg)
{
    (void)arg;
    for (int shield = 0; shield <= 1; shield++) {
        inf_t f;
        memset(&f, 0, sizeof f);
        f.shield = shield;
        coro_gen_t *g = coro_gen_new(inf_fn, &f, sizeof(int));
        ASSERT_NOT_NULL(g);
        int v;
        for (int i = 0; i < 3; i++) {
            ASSERT_EQ(coro_gen_next(g, &v), 0);
            ASSERT_EQ(v, i);
        }
        coro_gen_free(g); /* fn is parked in its 3rd yield */
        ASSERT_EQ(f.called, 1);
        ASSERT_EQ(f.yield_ret, -1);
        ASSERT_EQ(f.yield_err, ECANCELED);
        ASSERT_EQ(f.yields_ok, 2);
        ASSERT_EQ(f.cleanup, 1);
    }
    /* Freed while fn is busy elsewhere (sleeping): the cancel reaches it
     * there, and fn returns. */
    slow_t s;
    memset(&s, 0, sizeof s);
    s.n = 3;
    s.delay = 10 * CORO_SEC;
    s.g = coro_gen_new(slow_fn, &s, sizeof(int));
    ASSERT_NOT_NULL(s.g);
    coro_t *c = coro_spawn(slow_consumer, &s);
    ASSERT_NOT_NULL(c);
    /* Let c reach next and fn its sleep (a hand-off queues behind coroutines
     * that are ready, so give them a moment rather than one yield). */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_cancel(c), 0); /* leaves fn sleeping */
    ASSERT_EQ(coro_join(c, NULL), 0);
    int64_t t0 = coro_now();
    coro_gen_free(s.g);
    ASSERT_LT(coro_now() - t0, ts_bound(CORO_SEC));
    ASSERT_EQ(s.yield_err, ECANCELED);
    ASSERT_EQ(s.cleanup, 1);

    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.live, 1);
    return 0;
}

TEST(gen_free_unfinished_cancels_fn)
{
    ASSERT_EQ(coro_main(free_unfinished_main, NULL), 0);
}

static int free_never_started_main(void *arg)
{
    (void)arg;
    inf_t f;
    /* Freed before the producer ever ran. */
    memset(&f, 0, sizeof f);
    coro_gen_t *g = coro_gen_new(inf_fn, &f, sizeof(int));
    ASSERT_NOT_NULL(g);
    coro_gen_free(g);
    ASSERT_EQ(f.called, 0);
    /* Freed while the producer waits for the first next. */
    memset(&f, 0, sizeof f);
    g = coro_gen_new(inf_fn, &f, sizeof(int));
    ASSERT_NOT_NULL(g);
    coro_yield();
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    coro_gen_free(g);
    ASSERT_EQ(f.called, 0);
    /* The same from a cancelled caller. */
    memset(&f, 0, sizeof f);
    g = coro_gen_new(inf_fn, &f, sizeof(int));
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(coro_cancel(coro_self()), 0);
    coro_gen_free(g);
    ASSERT_EQ(f.called, 0);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.live, 1);
    return 0;
}

TEST(gen_free_never_started_never_calls_fn)
{
    ASSERT_EQ(coro_main(free_never_started_main, NULL), 0);
}

static int free_finished_main(void *arg)
{
    (void)arg;
    int n = 3, v;
    coro_gen_t *g = coro_gen_new(count_fn, &n, sizeof(int));
    ASSERT_NOT_NULL(g);
    while (coro_gen_next(g, &v) == 0)
        ;
    ASSERT_EQ(errno, ENOENT);
    coro_gen_free(g);
    coro_gen_free(NULL);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.live, 1);
    return 0;
}

TEST(gen_free_finished)
{
    ASSERT_EQ(coro_main(free_finished_main, NULL), 0);
}

/* The caller of free is cancelled (and past its deadline): free still
 * waits for fn's cleanup, which blocks; the caller's shield and deadline
 * come back afterwards. */
typedef struct cfree {
    inf_t f;
    int freed;
    int64_t deadline_after;
    int shield_after;
    int sleep_err_after;
} cfree_t;

static int cancelled_freer(void *arg)
{
    cfree_t *cf = arg;
    coro_gen_t *g = coro_gen_new(inf_fn, &cf->f, sizeof(int));
    ASSERT_NOT_NULL(g);
    int v;
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    ASSERT_ERRNO(coro_sleep(10 * CORO_SEC), ECANCELED); /* main cancels us */
    coro_timeout(0); /* and our deadline has passed too */
    int64_t dl = coro_deadline();
    coro_gen_free(g);
    cf->freed = 1;
    cf->deadline_after = coro_deadline() - dl;
    cf->shield_after = coro_shield(0);
    errno = 0;
    coro_sleep(0);
    cf->sleep_err_after = errno;
    return 0;
}

static int cancelled_free_main(void *arg)
{
    cfree_t *cf = arg;
    cf->f.cleanup_sleep = 5 * CORO_MS;
    coro_t *c = coro_spawn(cancelled_freer, cf);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(cf->freed, 1);
    return 0;
}

TEST(gen_free_by_cancelled_caller_waits)
{
    cfree_t cf;
    memset(&cf, 0, sizeof cf);
    ASSERT_EQ(coro_main(cancelled_free_main, &cf), 0);
    ASSERT_EQ(cf.f.yield_err, ECANCELED);
    ASSERT_EQ(cf.f.cleanup, 1); /* fn's blocking cleanup finished first */
    ASSERT_EQ(cf.deadline_after, 0);
    ASSERT_EQ(cf.shield_after, 0);
    ASSERT_EQ(cf.sleep_err_after, ECANCELED);
}

/* A consumer parked in next when another coroutine frees the generator:
 * fn is cancelled, returns, and the consumer gets ENOENT. */
static int free_with_waiter_main(void *arg)
{
    slow_t *s = arg;
    s->n = 3;
    s->delay = 10 * CORO_SEC;
    s->g = coro_gen_new(slow_fn, s, sizeof(int));
    ASSERT_NOT_NULL(s->g);
    coro_t *c = coro_spawn(slow_consumer, s);
    ASSERT_NOT_NULL(c);
    /* Let c reach next and fn its sleep (a hand-off queues behind coroutines
     * that are ready, so give them a moment rather than one yield). */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    coro_gen_free(s->g);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(s->got_ret, -1);
    ASSERT_EQ(s->got_err, ENOENT);
    ASSERT_EQ(s->cleanup, 1);
    return 0;
}

TEST(gen_free_wakes_waiting_consumer)
{
    slow_t s;
    memset(&s, 0, sizeof s);
    ASSERT_EQ(coro_main(free_with_waiter_main, &s), 0);
}

/* Freed with a kept value nobody took, and with a cancelled consumer that
 * has not run since: nothing leaks, nothing is touched afterwards. */
static int free_pending_main(void *arg)
{
    slow_t *s = arg;
    s->n = 5;
    s->delay = ts_bound(20 * CORO_MS);
    s->g = coro_gen_new(slow_fn, s, sizeof(int));
    ASSERT_NOT_NULL(s->g);
    int v;
    ASSERT_EQ(coro_gen_next(s->g, &v), 0);
    ASSERT_EQ(v, 0);
    int64_t saved = coro_timeout(ts_bound(2 * CORO_MS));
    ASSERT_ERRNO(coro_gen_next(s->g, &v), ETIMEDOUT);
    coro_set_deadline(saved);
    wait_produced(s, 2);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    coro_gen_free(s->g); /* value 1 kept, never taken */
    ASSERT_EQ(s->yield_err, ECANCELED);

    /* A consumer cancelled while waiting, freed before it runs again. */
    memset(s, 0, sizeof *s);
    s->n = 5;
    s->delay = 10 * CORO_SEC;
    s->g = coro_gen_new(slow_fn, s, sizeof(int));
    ASSERT_NOT_NULL(s->g);
    coro_t *c = coro_spawn(slow_consumer, s);
    ASSERT_NOT_NULL(c);
    /* Let c reach next and fn its sleep (a hand-off queues behind coroutines
     * that are ready, so give them a moment rather than one yield). */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_cancel(c), 0); /* c is ready, has not run */
    coro_gen_free(s->g);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(s->got_ret, -1);
    ASSERT_NE(s->got_err, 0);
    return 0;
}

TEST(gen_free_with_kept_value_and_stale_consumer)
{
    slow_t s;
    memset(&s, 0, sizeof s);
    ASSERT_EQ(coro_main(free_pending_main, &s), 0);
}

/* fn frees its own generator: its yields fail, g goes when fn returns, the
 * consumer waiting in next gets ENOENT. */
typedef struct selfree {
    int yield_err;
    int returned;
} selfree_t;

static int selfree_fn(coro_gen_t *g, void *arg)
{
    selfree_t *sf = arg;
    int v = 1;
    ASSERT_EQ(coro_gen_yield(g, &v), 0);
    coro_gen_free(g);
    errno = 0;
    ASSERT_EQ(coro_gen_yield(g, &v), -1);
    sf->yield_err = errno;
    sf->returned = 1;
    return 0;
}

static int selfree_main(void *arg)
{
    selfree_t *sf = arg;
    coro_gen_t *g = coro_gen_new(selfree_fn, sf, sizeof(int));
    ASSERT_NOT_NULL(g);
    int v;
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    ASSERT_EQ(v, 1);
    ASSERT_ERRNO(coro_gen_next(g, &v), ENOENT); /* the last use of g */
    ASSERT_EQ(sf->returned, 1);
    return 0;
}

TEST(gen_free_from_inside_fn)
{
    selfree_t sf = { 0, 0 };
    ASSERT_EQ(coro_main(selfree_main, &sf), 0);
    ASSERT_EQ(sf.yield_err, ECANCELED);
}

/* ---- misuse ---------------------------------------------------------------- */

typedef struct misuse {
    coro_gen_t *g;
    int other_err;
    int self_next_err;
} misuse_t;

static int intruder(void *arg)
{
    misuse_t *m = arg;
    int v = 9;
    errno = 0;
    coro_gen_yield(m->g, &v);
    m->other_err = errno;
    return 0;
}

/* Another generator's fn yields into m->g. */
static int foreign_fn(coro_gen_t *g, void *arg)
{
    misuse_t *m = arg;
    int v = 5;
    ASSERT_ERRNO(coro_gen_yield(m->g, &v), EPERM);
    /* Handed out; the consumer then frees f, so this yield fails. */
    ASSERT_ERRNO(coro_gen_yield(g, &v), ECANCELED);
    return 0;
}

static int self_next_fn(coro_gen_t *g, void *arg)
{
    misuse_t *m = arg;
    int v;
    errno = 0;
    coro_gen_next(g, &v);
    m->self_next_err = errno;
    v = 0;
    ASSERT_ERRNO(coro_gen_yield(g, &v), ECANCELED);
    return 0;
}

static int misuse_main(void *arg)
{
    misuse_t *m = arg;
    int n = 5, v = 0;
    m->g = coro_gen_new(count_fn, &n, sizeof(int));
    ASSERT_NOT_NULL(m->g);
    ASSERT_ERRNO(coro_gen_yield(m->g, &v), EPERM); /* before it started */
    ASSERT_EQ(coro_gen_next(m->g, &v), 0);
    ASSERT_ERRNO(coro_gen_yield(m->g, &v), EPERM); /* from the consumer */
    coro_t *c = coro_spawn(intruder, m);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(m->other_err, EPERM);
    coro_gen_t *f = coro_gen_new(foreign_fn, m, sizeof(int));
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(coro_gen_next(f, &v), 0);
    ASSERT_EQ(v, 5);
    coro_gen_free(f);
    /* None of that disturbed the sequence. */
    for (int i = 1; i < n; i++) {
        ASSERT_EQ(coro_gen_next(m->g, &v), 0);
        ASSERT_EQ(v, i);
    }
    ASSERT_ERRNO(coro_gen_next(m->g, &v), ENOENT);

    /* Bad arguments. */
    ASSERT_NULL_ERRNO(coro_gen_new(count_fn, &n, 0), EINVAL);
    ASSERT_NULL_ERRNO(coro_gen_new(NULL, &n, sizeof(int)), EINVAL);
    ASSERT_NULL_ERRNO(coro_gen_new(NULL, &n, 0), EINVAL);
    ASSERT_NULL_ERRNO(coro_gen_new(count_fn, &n, SIZE_MAX), EINVAL);
    ASSERT_ERRNO(coro_gen_next(NULL, &v), EINVAL);
    ASSERT_ERRNO(coro_gen_next(m->g, NULL), EINVAL);
    ASSERT_ERRNO(coro_gen_yield(NULL, &v), EINVAL);
    ASSERT_ERRNO(coro_gen_status(NULL), EINVAL);

    /* fn asking its own generator for a value. */
    coro_gen_t *s = coro_gen_new(self_next_fn, m, sizeof(int));
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(coro_gen_next(s, &v), 0);
    ASSERT_EQ(m->self_next_err, EDEADLK);
    coro_gen_free(s);
    return 0;
}

static misuse_t outside_m;

TEST(gen_misuse_eperm_einval)
{
    ASSERT_EQ(coro_main(misuse_main, &outside_m), 0);
    /* Outside a scheduler: new and next are EPERM; the status is still
     * readable and free only releases the memory (the producer ended with
     * the scheduler). */
    int n = 1, v;
    ASSERT_NULL_ERRNO(coro_gen_new(count_fn, &n, sizeof(int)), EPERM);
    ASSERT_ERRNO(coro_gen_next(outside_m.g, &v), EPERM);
    ASSERT_EQ(coro_gen_status(outside_m.g), 42);
    coro_gen_free(outside_m.g);
}

typedef struct busy {
    slow_t s;
    int second_err;
} busy_t;

static int busy_main(void *arg)
{
    busy_t *b = arg;
    slow_t *s = &b->s;
    s->n = 3;
    s->delay = ts_bound(5 * CORO_MS);
    s->g = coro_gen_new(slow_fn, s, sizeof(int));
    ASSERT_NOT_NULL(s->g);
    coro_t *c = coro_spawn(slow_consumer, s);
    ASSERT_NOT_NULL(c);
    coro_yield(); /* c waits in next */
    int v = -1;
    ASSERT_ERRNO(coro_gen_next(s->g, &v), EBUSY);
    ASSERT_EQ(v, -1);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(s->got_ret, 0);
    ASSERT_EQ(s->got_val, 0);
    drain_from(s, 1);
    coro_gen_free(s->g);
    return 0;
}

TEST(gen_two_consumers_second_ebusy)
{
    busy_t b;
    memset(&b, 0, sizeof b);
    ASSERT_EQ(coro_main(busy_main, &b), 0);
}

static int dump_main(void *arg)
{
    slow_t *s = arg;
    s->n = 3;
    /* Long enough that fn is still asleep when the dump is taken, even if
     * a loaded machine stalls this process for a while. */
    s->delay = ts_bound(100 * CORO_MS);
    s->g = coro_gen_new(slow_fn, s, sizeof(int));
    ASSERT_NOT_NULL(s->g);
    coro_t *c = coro_spawn_opts(slow_consumer, s, &(coro_opts_t){ .name = "consumer" });
    ASSERT_NOT_NULL(c);
    /* Let c reach next and fn its sleep (a hand-off queues behind coroutines
     * that are ready, so give them a moment rather than one yield). */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    char *out = ts_dump_text();
    char line[512], ptr[64];
    snprintf(ptr, sizeof ptr, "%p", (void *)s->g);
    ts_line_with(out, "\"consumer\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, gen next");
    ASSERT_CONTAINS(line, ptr);
    ts_line_with(out, "\"generator\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, sleep"); /* fn's own wait */
    free(out);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(s->got_val, 0);
    out = ts_dump_text();
    ts_line_with(out, "\"generator\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, gen yield");
    ASSERT_CONTAINS(line, ptr);
    free(out);
    coro_gen_free(s->g);
    return 0;
}

TEST(gen_dump_shows_waits)
{
    slow_t s;
    memset(&s, 0, sizeof s);
    ASSERT_EQ(coro_main(dump_main, &s), 0);
}

/* ---- coro_gen_new_opts ------------------------------------------------------ */

/* Yields the sum of a frame twice the default stack size: it fits only
 * on the larger stack asked for (on the default one it would die of a
 * stack overflow), so passing opts->stack_size on is checked. */
#define DEEP_FRAME (2 * CORO_STACK_DEFAULT)

static int deep_fn(coro_gen_t *g, void *arg)
{
    (void)arg;
    volatile unsigned char frame[DEEP_FRAME];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (unsigned char)i;
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof frame; i++)
        sum += frame[i];
    return coro_gen_yield(g, &sum) == 0 ? 0 : 1;
}

/* Rounds upward and yields the mode it sees, twice. */
static int round_fn(coro_gen_t *g, void *arg)
{
    (void)arg;
    fesetround(FE_UPWARD);
    for (int i = 0; i < 2; i++) {
        int r = fegetround();
        if (coro_gen_yield(g, &r) != 0)
            return 1;
    }
    return 0;
}

static int opts_main(void *arg)
{
    (void)arg;
    /* A name and a small stack. */
    coro_opts_t o = { .stack_size = 64 * 1024, .name = "primes" };
    coro_gen_t *g = coro_gen_new_opts(count_fn, &(int){ 5 }, sizeof(int), &o);
    ASSERT_NOT_NULL(g);
    int v;
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    ASSERT_EQ(v, 0);
    char *out = ts_dump_text();
    char line[512];
    ts_line_with(out, "\"primes\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, gen yield");
    ASSERT(strstr(out, "\"generator\"") == NULL);
    free(out);
    coro_gen_free(g);

    coro_gen_t *d = coro_gen_new_opts(deep_fn, NULL, sizeof(unsigned),
                                      &(coro_opts_t){ .stack_size = 4 * DEEP_FRAME });
    ASSERT_NOT_NULL(d);
    unsigned sum, want = 0;
    for (size_t i = 0; i < DEEP_FRAME; i++)
        want += (unsigned char)i;
    ASSERT_EQ(coro_gen_next(d, &sum), 0);
    ASSERT_EQ(sum, want);
    ASSERT_ERRNO(coro_gen_next(d, &sum), ENOENT);
    ASSERT_EQ(coro_gen_status(d), 0);
    coro_gen_free(d);

    /* No name: "generator", as coro_gen_new; NULL opts: the defaults. */
    g = coro_gen_new_opts(count_fn, &(int){ 5 }, sizeof(int), &(coro_opts_t){ 0 });
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    out = ts_dump_text();
    ts_line_with(out, "\"generator\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, gen yield");
    free(out);
    coro_gen_free(g);
    g = coro_gen_new_opts(count_fn, &(int){ 5 }, sizeof(int), NULL);
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    coro_gen_free(g);

    /* The flags go to the producer: an unknown bit fails, and
     * CORO_OWN_FPENV gives it its own rounding mode, not the consumer's. */
    errno = 0;
    ASSERT_NULL(coro_gen_new_opts(count_fn, &(int){ 5 }, sizeof(int), &(coro_opts_t){ .flags = 4 }));
    ASSERT_EQ(errno, EINVAL);
    g = coro_gen_new_opts(round_fn, NULL, sizeof(int), &(coro_opts_t){ .flags = CORO_OWN_FPENV });
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    ASSERT_EQ(v, FE_UPWARD);
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    ASSERT_EQ(coro_gen_next(g, &v), 0);
    ASSERT_EQ(v, FE_UPWARD);
    coro_gen_free(g);

    /* A bad stack size is the spawn's EINVAL, and nothing leaks. */
    errno = 0;
    ASSERT(coro_gen_new_opts(count_fn, NULL, sizeof(int), &(coro_opts_t){ .stack_size = 1 }) ==
           NULL);
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT(coro_gen_new_opts(NULL, NULL, sizeof(int), &o) == NULL);
    ASSERT_EQ(errno, EINVAL);
    return 0;
}

TEST(gen_new_opts_name_and_stack)
{
    ASSERT_EQ(coro_main(opts_main, NULL), 0);
}

/* ---- two switches per value ------------------------------------------------- */

static int switches_main(void *arg)
{
    int n = *(int *)arg;
    coro_gen_t *g = coro_gen_new(count_fn, &n, sizeof(int));
    ASSERT_NOT_NULL(g);
    int v;
    ASSERT_EQ(coro_gen_next(g, &v), 0); /* started */
    coro_stats_t a, b;
    coro_stats(&a);
    for (int i = 1; i < n; i++) {
        ASSERT_EQ(coro_gen_next(g, &v), 0);
        ASSERT_EQ(v, i);
    }
    coro_stats(&b);
    uint64_t sw = b.switches - a.switches;
    printf("%llu switches for %d values\n", (unsigned long long)sw, n - 1);
    ASSERT_EQ(sw, 2 * (uint64_t)(n - 1));
    coro_gen_free(g);
    return 0;
}

/* With other coroutines ready and sleeping around it: still a direct
 * hand-off (nobody else runs in between). */
/* Always ready: counts how often it gets to run. */
static int spinner(void *arg)
{
    long *ran = arg;
    while (*ran >= 0) {
        (*ran)++;
        coro_yield();
    }
    return 0;
}

/* A generator loop must not starve coroutines that are ready: with one
 * ready, each hand-off queues behind it instead of jumping ahead, so it
 * runs about once per hand-off. (Alone, a hand-off is a direct switch:
 * gen_two_switches_per_value.) */
static int fair_main(void *arg)
{
    (void)arg;
    long ran = 0;
    int n = 1000, v;
    coro_t *sp = coro_spawn(spinner, &ran);
    ASSERT_NOT_NULL(sp);
    coro_gen_t *g = coro_gen_new(count_fn, &n, sizeof(int));
    ASSERT_NOT_NULL(g);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(coro_gen_next(g, &v), 0);
        ASSERT_EQ(v, i);
    }
    ASSERT_ERRNO(coro_gen_next(g, &v), ENOENT);
    ASSERT_GE(ran, n); /* two hand-offs per value, the spinner ran between */
    ran = -1;
    coro_gen_free(g);
    ASSERT_EQ(coro_join(sp, NULL), 0);
    return 0;
}

TEST(gen_two_switches_per_value)
{
    int n = (int)ts_count(100000, 2000);
    ASSERT_EQ(coro_main(switches_main, &n), 0);
}

TEST(gen_hand_off_does_not_starve_ready_coroutines)
{
    ASSERT_EQ(coro_main(fair_main, NULL), 0);
}

/* ---- allocation failures -------------------------------------------------------- */

static int fault_main(void *arg)
{
    (void)arg;
    int n = 3, v;
    /* The generator itself, then the producer's name. */
    for (int nth = 1; nth <= 2; nth++) {
        coro__fault_arm(CORO_FAULT_MALLOC, nth);
        ASSERT_NULL_ERRNO(coro_gen_new(count_fn, &n, sizeof(int)), ENOMEM);
        coro__fault_arm(CORO_FAULT_MALLOC, 0);
    }
    coro_gen_t *g = coro_gen_new(count_fn, &n, sizeof(int));
    ASSERT_NOT_NULL(g);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(coro_gen_next(g, &v), 0);
        ASSERT_EQ(v, i);
    }
    coro_gen_free(g);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.live, 1);
    return 0;
}

TEST(gen_fault_malloc_enomem_no_leak)
{
    ASSERT_EQ(coro_main(fault_main, NULL), 0);
}
