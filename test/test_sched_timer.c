/* test/test_sched_timer.c: sleeps and the timer heap: deadline order, FIFO
 * among equal deadlines, the edges (0, negative, 1 ns, INT64_MAX,
 * CORO_NEVER) neither overflow nor fire early, a randomized arm/cancel run
 * against a reference model, sub-millisecond accuracy, and fairness (a
 * yielding coroutine cannot starve a sleeper). The relative-sleep order
 * runs in deterministic simulations (exact to the nanosecond); the rest
 * stays on the real clock: it is about the real timer and poller. */
#include "test/test_sched.h"

/* ---- deadline order ----------------------------------------------------- */

#define ORD_N 8

typedef struct ord_state {
    int64_t base;
    int log[ORD_N];
    int n;
    int64_t late[ORD_N]; /* wake time - deadline */
    int64_t dl[ORD_N];   /* the deadline (relative sleeps: as measured) */
} ord_state_t;

static ord_state_t *ord;
static const int ord_off_ms[ORD_N] = { 7, 2, 5, 1, 8, 3, 6, 4 };

static int ord_abs_sleeper(void *arg)
{
    int i = *(const int *)arg;
    int64_t when = ord->base + ord_off_ms[i] * CORO_MS;
    ASSERT_EQ(coro_sleep_until(when), 0);
    ord->late[i] = coro_now() - when;
    ord->log[ord->n++] = i;
    return 0;
}

static int ord_rel_sleeper(void *arg)
{
    int i = *(const int *)arg;
    int64_t t0 = coro_now();
    ord->dl[i] = t0 + ord_off_ms[i] * 3 * CORO_MS;
    ASSERT_EQ(coro_sleep(ord_off_ms[i] * 3 * CORO_MS), 0);
    ord->late[i] = coro_now() - ord->dl[i];
    ord->log[ord->n++] = i;
    return 0;
}

static int ord_main(void *arg)
{
    coro_fn fn = *(coro_fn *)arg;
    static int idx[ORD_N];
    coro_t *c[ORD_N];
    for (int i = 0; i < ORD_N; i++) {
        idx[i] = i;
        c[i] = coro_spawn(fn, &idx[i]);
        ASSERT_NOT_NULL(c[i]);
    }
    /* Times are taken after the spawns (slow under ThreadSanitizer); the
     * children read them when they first run. */
    ord->base = coro_now() + ts_bound(5 * CORO_MS);
    for (int i = 0; i < ORD_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    return 0;
}

/* Absolute sleeps: fails unless the wake order is right. Relative ones:
 * returns 0 when it is right, 1 when it is not (a sleeper that stalled
 * between its clock read and its sleep, on the real clock). */
static int check_ord(const ord_state_t *st, int relative)
{
    ASSERT_EQ(st->n, ORD_N);
    int stalled = 0;
    for (int k = 0; k < ORD_N; k++) {
        ASSERT_GE(st->late[k], 0);
        if (!relative) {
            /* offsets are a permutation of 1..8 */
            ASSERT_EQ(ord_off_ms[st->log[k]], k + 1);
        } else if (k > 0) {
            /* Relative sleeps start at slightly different times (a lot
             * under Valgrind on a loaded machine): the order is that of
             * the deadlines as measured at the start. A sleeper that
             * stalled between that measure and the sleep's own clock read
             * (several ms, seen under Valgrind on a loaded machine) armed
             * a later deadline than it recorded, and rightly woke after a
             * neighbour; its wake time cannot tell that from a wrong
             * order, but a stall does not come back run after run. */
            if (st->dl[st->log[k - 1]] > st->dl[st->log[k]])
                stalled = 1;
        }
    }
    return stalled;
}

TEST(sched_timer_wakes_in_deadline_order)
{
    ord_state_t st = { .n = 0 };
    ord = &st;
    coro_fn fn = ord_abs_sleeper;
    ASSERT_EQ(coro_main(ord_main, &fn), 0);
    ASSERT_EQ(check_ord(&st, 0), 0);

    /* The same with relative sleeps, 3 ms apart, in simulations: each
     * sleeper's clock read and its sleep are one virtual instant, so the
     * deadlines are exactly as recorded, each wakes exactly on time and
     * in order, whatever order the seed runs them in. (On the real clock a
     * sleeper that stalls between the two arms a later deadline than it
     * recorded, which made this part flaky under load.) */
    for (uint64_t seed = 1; seed <= 20; seed++) {
        memset(&st, 0, sizeof st);
        fn = ord_rel_sleeper;
        coro_sim_t sim = { .seed = seed };
        coro_main_opts_t o = { .sim = &sim };
        ASSERT_EQ(coro_main_opts(ord_main, &fn, &o), 0);
        ASSERT_EQ(check_ord(&st, 1), 0);
        for (int k = 0; k < ORD_N; k++) {
            ASSERT_EQ(st.late[k], 0);
            ASSERT_EQ(ord_off_ms[st.log[k]], k + 1);
        }
    }
}

/* ---- equal deadlines: FIFO by arm order --------------------------------- */

#define FIFO_N 64

typedef struct tfifo {
    int64_t when[FIFO_N];
    int arm_order[FIFO_N], narm;
    int wake_order[FIFO_N], nwake;
    int armed_late;
} tfifo_t;

static tfifo_t *tf;

static int tfifo_sleeper(void *arg)
{
    int i = *(const int *)arg;
    /* Arm in an order that is not the spawn order. */
    for (int y = 0; y < (i * 7) % 5; y++)
        coro_yield();
    if (coro_now() >= tf->when[i])
        tf->armed_late++;
    tf->arm_order[tf->narm++] = i;
    ASSERT_EQ(coro_sleep_until(tf->when[i]), 0);
    ASSERT_GE(coro_now(), tf->when[i]);
    tf->wake_order[tf->nwake++] = i;
    return 0;
}

static int tfifo_main(void *arg)
{
    int spread = *(int *)arg; /* 0: all equal; 1: T-1, T, T+1 ns mixed */
    static int idx[FIFO_N];
    coro_t *c[FIFO_N];
    for (int i = 0; i < FIFO_N; i++) {
        idx[i] = i;
        c[i] = coro_spawn(tfifo_sleeper, &idx[i]);
        ASSERT_NOT_NULL(c[i]);
    }
    /* After the spawns, which are slow under ThreadSanitizer. */
    int64_t t = coro_now() + ts_bound(50 * CORO_MS);
    for (int i = 0; i < FIFO_N; i++)
        tf->when[i] = t + (spread ? (i * 5 % 3) - 1 : 0);
    for (int i = 0; i < FIFO_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    return 0;
}

static void tfifo_run(int spread)
{
    static tfifo_t st;
    memset(&st, 0, sizeof st);
    tf = &st;
    ASSERT_EQ(coro_main(tfifo_main, &spread), 0);
    ASSERT_EQ(st.armed_late, 0);
    ASSERT_EQ(st.narm, FIFO_N);
    ASSERT_EQ(st.nwake, FIFO_N);
    /* The arm order really differs from the spawn order. */
    int differs = 0;
    for (int k = 0; k < FIFO_N; k++)
        differs |= st.arm_order[k] != k;
    ASSERT(differs);
    /* Expected: arm order, stably sorted by deadline. */
    int expect[FIFO_N], n = 0;
    for (int d = -1; d <= 1; d++)
        for (int k = 0; k < FIFO_N; k++) {
            int i = st.arm_order[k];
            int64_t rel = spread ? (i * 5 % 3) - 1 : 0;
            if (rel == d)
                expect[n++] = i;
        }
    ASSERT_EQ(n, FIFO_N);
    for (int k = 0; k < FIFO_N; k++)
        ASSERT_EQ(st.wake_order[k], expect[k]);
}

TEST(sched_timer_equal_deadlines_fire_fifo)
{
    tfifo_run(0);
}

TEST(sched_timer_nanosecond_apart_deadlines_keep_order)
{
    tfifo_run(1);
}

/* ---- 0, negative, 1 ns --------------------------------------------------- */

typedef struct spin {
    long count;
    int stop;
} spin_t;

static int spinner(void *arg)
{
    spin_t *s = arg;
    while (!s->stop) {
        s->count++;
        coro_yield();
    }
    return 0;
}

static int zero_main(void *arg)
{
    (void)arg;
    spin_t s = { 0, 0 };
    coro_t *sp = coro_spawn(spinner, &s);
    ASSERT_NOT_NULL(sp);
    int64_t t0 = coro_now();
    long c;

    /* Each returns 0 at once, but lets the others run (it yields). */
    c = s.count;
    ASSERT_EQ(coro_sleep(0), 0);
    ASSERT_GT(s.count, c);
    c = s.count;
    ASSERT_EQ(coro_sleep(-1), 0);
    ASSERT_GT(s.count, c);
    c = s.count;
    ASSERT_EQ(coro_sleep(-5 * CORO_SEC), 0);
    ASSERT_GT(s.count, c);
    c = s.count;
    ASSERT_EQ(coro_sleep(INT64_MIN), 0);
    ASSERT_GT(s.count, c);
    c = s.count;
    ASSERT_EQ(coro_sleep_until(0), 0);
    ASSERT_GT(s.count, c);
    c = s.count;
    ASSERT_EQ(coro_sleep_until(INT64_MIN), 0);
    ASSERT_GT(s.count, c);
    c = s.count;
    ASSERT_EQ(coro_sleep_until(coro_now() - 1), 0);
    ASSERT_GT(s.count, c);
    c = s.count;
    ASSERT_EQ(coro_sleep_until(coro_now()), 0);
    ASSERT_GT(s.count, c);
    /* None of them waited. */
    ASSERT_LT(coro_now() - t0, ts_bound(100 * CORO_MS));

    /* 1 ns: a real (tiny) sleep that neither overflows nor hangs. */
    for (int i = 0; i < 10; i++) {
        int64_t a = coro_now();
        ASSERT_EQ(coro_sleep(1), 0);
        ASSERT_GE(coro_now(), a + 1);
        a = coro_now();
        ASSERT_EQ(coro_sleep_until(a + 1), 0);
        ASSERT_GE(coro_now(), a + 1);
    }
    ASSERT_LT(coro_now() - t0, ts_bound(200 * CORO_MS));
    s.stop = 1;
    ASSERT_EQ(coro_join(sp, NULL), 0);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.timers, 0);
    return 0;
}

TEST(sched_sleep_zero_negative_and_1ns)
{
    ASSERT_EQ(coro_main(zero_main, NULL), 0);
}

/* ---- CORO_NEVER and INT64_MAX ------------------------------------------- */

typedef struct never {
    int ret, err;
    int64_t mode;
} never_t;

static int never_main(void *arg)
{
    never_t *n = arg;
    errno = 0;
    n->ret = n->mode ? coro_sleep(INT64_MAX) : coro_sleep_until(CORO_NEVER);
    n->err = errno;
    return 5;
}

TEST(sched_sleep_forever_alone_deadlocks)
{
    for (int mode = 0; mode < 2; mode++) {
        never_t n = { 99, 0, mode };
        ts_capture_t cap;
        ts_capture_begin(&cap);
        errno = 0;
        int r = coro_main(never_main, &n);
        int e = errno;
        char *out = ts_capture_end(&cap);
        ASSERT_EQ(r, -1);
        ASSERT_EQ(e, EDEADLK);
        /* The sleep was unwound, not fired. */
        ASSERT_EQ(n.ret, -1);
        ASSERT_EQ(n.err, ECANCELED);
        ASSERT_CONTAINS(out, "deadlock");
        ASSERT_CONTAINS(out, "\"main\" [parked, sleep");
        free(out);
    }
}

#define HUGE_N 6

typedef struct huge {
    int which;
    int done;
    int ret, err;
} huge_t;

static int huge_sleeper(void *arg)
{
    huge_t *h = arg;
    int64_t now = coro_now();
    errno = 0;
    switch (h->which) {
    case 0: h->ret = coro_sleep(INT64_MAX); break;
    case 1: h->ret = coro_sleep_until(INT64_MAX); break;
    case 2: h->ret = coro_sleep(INT64_MAX - 1); break;
    case 3: h->ret = coro_sleep_until(INT64_MAX - 1); break;
    case 4: h->ret = coro_sleep(INT64_MAX - now + 1); break; /* lands exactly on INT64_MAX + 1 */
    default: h->ret = coro_sleep(INT64_MAX / 2); break;
    }
    h->err = errno;
    h->done = 1;
    return 0;
}

static int huge_main(void *arg)
{
    (void)arg;
    huge_t h[HUGE_N];
    coro_t *c[HUGE_N];
    for (int i = 0; i < HUGE_N; i++) {
        h[i] = (huge_t){ i, 0, 0, 0 };
        c[i] = coro_spawn(huge_sleeper, &h[i]);
        ASSERT_NOT_NULL(c[i]);
    }
    /* Others run for 10 ms: a spinner and a short sleep. */
    spin_t s = { 0, 0 };
    coro_t *sp = coro_spawn(spinner, &s);
    ASSERT_NOT_NULL(sp);
    int64_t t0 = coro_now();
    ASSERT_EQ(coro_sleep(10 * CORO_MS), 0);
    int64_t slept = coro_now() - t0;
    ASSERT_GE(slept, 10 * CORO_MS);
    ASSERT_LT(slept, ts_bound(500 * CORO_MS));
    s.stop = 1;
    ASSERT_EQ(coro_join(sp, NULL), 0);
    ASSERT_GT(s.count, 0);
    for (int i = 0; i < HUGE_N; i++)
        ASSERT_EQ(h[i].done, 0);

    for (int i = 0; i < HUGE_N; i++)
        ASSERT_EQ(coro_cancel(c[i]), 0);
    for (int i = 0; i < HUGE_N; i++) {
        ASSERT_EQ(coro_join(c[i], NULL), 0);
        ASSERT_EQ(h[i].done, 1);
        ASSERT_EQ(h[i].ret, -1);
        ASSERT_EQ(h[i].err, ECANCELED);
    }
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.timers, 0);
    return 0;
}

TEST(sched_sleep_int64_max_does_not_fire)
{
    ASSERT_EQ(coro_main(huge_main, NULL), 0);
}

/* ---- randomized arm/cancel against a reference model -------------------- */

#define RND_MAX 400

typedef struct rnd_entry {
    int64_t when;        /* the sleep's absolute end */
    int victim;          /* 0 no, 1 cancelled right after every sleeper armed, 2 at cancel_at */
    int64_t cancel_at;
    int64_t cancel_issued;
    uint64_t arm_seq, wake_seq;
    int64_t armed_at, woke_at;
    int ret, err;
    coro_t *c;
} rnd_entry_t;

typedef struct rnd_state {
    rnd_entry_t e[RND_MAX];
    int n;
    uint64_t arm_seq, wake_seq;
    int order[RND_MAX]; /* timed victims, by cancel_at */
    int norder;
} rnd_state_t;

static rnd_state_t *rnd;

static int rnd_sleeper(void *arg)
{
    rnd_entry_t *e = arg;
    e->armed_at = coro_now();
    e->arm_seq = rnd->arm_seq++;
    errno = 0;
    e->ret = coro_sleep_until(e->when);
    e->err = errno;
    e->woke_at = coro_now();
    e->wake_seq = rnd->wake_seq++;
    return 0;
}

static int rnd_controller(void *arg)
{
    (void)arg;
    /* Every sleeper ran before us and is parked now. */
    for (int i = 0; i < rnd->n; i++)
        if (rnd->e[i].victim == 1)
            ASSERT_EQ(coro_cancel(rnd->e[i].c), 0);
    for (int k = 0; k < rnd->norder; k++) {
        rnd_entry_t *e = &rnd->e[rnd->order[k]];
        ASSERT_EQ(coro_sleep_until(e->cancel_at), 0);
        e->cancel_issued = coro_now();
        ASSERT_EQ(coro_cancel(e->c), 0);
    }
    return 0;
}

static int rnd_main(void *arg)
{
    uint64_t *seed = arg;
    rnd_state_t *st = rnd;
    /* Offsets first; absolute times once every coroutine is spawned
     * (spawning is slow under ThreadSanitizer), before any of them runs. */
    for (int i = 0; i < st->n; i++) {
        rnd_entry_t *e = &st->e[i];
        memset(e, 0, sizeof *e);
        e->when = (int64_t)(ts_rand(seed) % 21) * CORO_MS;
        if (ts_rand(seed) % 8 == 0)
            e->when += (int64_t)(ts_rand(seed) % CORO_MS); /* some off the grid */
        uint64_t v = ts_rand(seed) % 8;
        e->victim = v == 0 ? 1 : v == 1 ? 2 : 0;
        e->cancel_at = (int64_t)(ts_rand(seed) % 21) * CORO_MS;
    }
    st->norder = 0;
    for (int i = 0; i < st->n; i++)
        if (st->e[i].victim == 2)
            st->order[st->norder++] = i;
    /* sort timed victims by cancel time (insertion sort; n is small) */
    for (int a = 1; a < st->norder; a++)
        for (int b = a; b > 0 && st->e[st->order[b]].cancel_at < st->e[st->order[b - 1]].cancel_at; b--) {
            int t = st->order[b];
            st->order[b] = st->order[b - 1];
            st->order[b - 1] = t;
        }
    for (int i = 0; i < st->n; i++) {
        st->e[i].c = coro_spawn(rnd_sleeper, &st->e[i]);
        ASSERT_NOT_NULL(st->e[i].c);
    }
    coro_t *ctl = coro_spawn(rnd_controller, NULL);
    ASSERT_NOT_NULL(ctl);
    int64_t base = coro_now() + ts_bound(30 * CORO_MS);
    for (int i = 0; i < st->n; i++) {
        st->e[i].when += base;
        st->e[i].cancel_at += base;
    }
    /* The controller first: it cancels handles that must not have been
     * joined (freed) yet. */
    ASSERT_EQ(coro_join(ctl, NULL), 0);
    for (int i = 0; i < st->n; i++)
        ASSERT_EQ(coro_join(st->e[i].c, NULL), 0);
    coro_stats_t s;
    coro_stats(&s);
    ASSERT_EQ(s.timers, 0);
    ASSERT_EQ(s.live, 1);
    return 0;
}

static rnd_state_t *rnd_sort_base;

static int by_model(const void *a, const void *b)
{
    const rnd_entry_t *x = &rnd_sort_base->e[*(const int *)a];
    const rnd_entry_t *y = &rnd_sort_base->e[*(const int *)b];
    if (x->when != y->when)
        return x->when < y->when ? -1 : 1;
    return x->arm_seq < y->arm_seq ? -1 : x->arm_seq > y->arm_seq;
}

static int by_observed(const void *a, const void *b)
{
    const rnd_entry_t *x = &rnd_sort_base->e[*(const int *)a];
    const rnd_entry_t *y = &rnd_sort_base->e[*(const int *)b];
    return x->wake_seq < y->wake_seq ? -1 : x->wake_seq > y->wake_seq;
}

TEST(sched_timer_random_arm_cancel_matches_model)
{
    static rnd_state_t st;
    rnd = &st;
    rnd_sort_base = &st;
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    int waves = (int)ts_count(4, 2);
    int total_cancelled = 0, total_fired = 0;
    for (int w = 0; w < waves; w++) {
        st.n = (int)ts_count(RND_MAX, 60);
        st.arm_seq = st.wake_seq = 0;
        ASSERT_EQ(coro_main(rnd_main, &seed), 0);
        int fired[RND_MAX], nf = 0;
        for (int i = 0; i < st.n; i++) {
            rnd_entry_t *e = &st.e[i];
            ASSERT_LT(e->armed_at, e->when); /* the setup margin held */
            if (e->ret == 0) {
                /* Never early. */
                ASSERT_GE(e->woke_at, e->when);
                ASSERT_NE(e->victim, 1); /* cancelled while surely parked */
                if (e->victim == 2)
                    ASSERT_LE(e->when, e->cancel_issued); /* its timer won the race */
                fired[nf++] = i;
            } else {
                ASSERT_EQ(e->ret, -1);
                ASSERT_EQ(e->err, ECANCELED);
                ASSERT_NE(e->victim, 0);
                if (e->victim == 2)
                    ASSERT_GE(e->woke_at, e->cancel_at);
                total_cancelled++;
            }
        }
        total_fired += nf;
        int model[RND_MAX], seen[RND_MAX];
        memcpy(model, fired, sizeof(int) * (size_t)nf);
        memcpy(seen, fired, sizeof(int) * (size_t)nf);
        qsort(model, (size_t)nf, sizeof(int), by_model);
        qsort(seen, (size_t)nf, sizeof(int), by_observed);
        for (int k = 0; k < nf; k++) {
            if (model[k] != seen[k])
                test_fail(__FILE__, __LINE__,
                          "wave %d: wake #%d was sleeper %d (when +%lld ns, arm %llu), "
                          "model says %d (when +%lld ns, arm %llu)", w, k, seen[k],
                          (long long)(st.e[seen[k]].when - st.e[0].when),
                          (unsigned long long)st.e[seen[k]].arm_seq, model[k],
                          (long long)(st.e[model[k]].when - st.e[0].when),
                          (unsigned long long)st.e[model[k]].arm_seq);
        }
    }
    /* The run exercised both outcomes. */
    ASSERT_GT(total_cancelled, 0);
    ASSERT_GT(total_fired, total_cancelled);
}

/* ---- sub-millisecond accuracy -------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int submilli_main(void *arg)
{
    int64_t *median = arg;
    enum { N = 21 };
    int64_t d[N];
    for (int i = 0; i < N; i++) {
        int64_t t0 = coro_now();
        ASSERT_EQ(coro_sleep(200 * CORO_US), 0);
        d[i] = coro_now() - t0;
        ASSERT_GE(d[i], 200 * CORO_US);
    }
    qsort(d, N, sizeof d[0], cmp_i64);
    *median = d[N / 2];
    return 0;
}

TEST(sched_sleep_sub_millisecond)
{
    int64_t median = 0;
    ASSERT_EQ(coro_main(submilli_main, &median), 0);
    printf("200 us sleep: median %lld us\n", (long long)(median / CORO_US));
    if (!test_under_valgrind())
        ASSERT_LT(median, ts_bound(5 * CORO_MS));
}

/* ---- fairness ------------------------------------------------------------ */

typedef struct fair {
    spin_t spin;
    int64_t waits[10];
} fair_t;

static int fair_sleeper(void *arg)
{
    fair_t *f = arg;
    for (int i = 0; i < 10; i++) {
        int64_t ns = i == 0 ? 5 * CORO_MS : CORO_MS;
        int64_t t0 = coro_now();
        ASSERT_EQ(coro_sleep(ns), 0);
        f->waits[i] = coro_now() - t0;
        ASSERT_GE(f->waits[i], ns);
    }
    f->spin.stop = 1;
    return 0;
}

static int fair_main(void *arg)
{
    fair_t *f = arg;
    coro_t *a = coro_spawn(spinner, &f->spin);
    coro_t *b = coro_spawn(spinner, &f->spin);
    coro_t *s = coro_spawn(fair_sleeper, f);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(coro_join(s, NULL), 0);
    ASSERT_EQ(coro_join(a, NULL), 0);
    ASSERT_EQ(coro_join(b, NULL), 0);
    return 0;
}

/* Run main_fn (fair_main or lone_main) and check that the spinners really
 * spun while the sleeper waited, and that the sleeper still woke, in
 * bounded time: starvation would be never (the spinners only stop when it
 * is done); the bounds leave room for a loaded machine descheduling the
 * whole process. */
static void check_fair_run(coro_fn main_fn)
{
    fair_t f;
    memset(&f, 0, sizeof f);
    ASSERT_EQ(coro_main(main_fn, &f), 0);
    ASSERT_GT(f.spin.count, 100);
    for (int i = 0; i < 10; i++)
        ASSERT_LT(f.waits[i], ts_bound(500 * CORO_MS));
}

TEST(sched_fairness_yield_loop_does_not_starve_sleeper)
{
    check_fair_run(fair_main);
}

/* One spinner alone in the run queue: its yields find nobody else ready,
 * and return at once only while there is nothing for a pass end to look
 * at (coro__pass_unbounded). Here a sleeper's timer is armed, so they must
 * go round the pass end, where the timer fires. */
static int lone_main(void *arg)
{
    fair_t *f = arg;
    coro_t *s = coro_spawn(fair_sleeper, f);
    ASSERT_NOT_NULL(s);
    coro_yield(); /* the sleeper parks */
    spinner(&f->spin);
    ASSERT_EQ(coro_join(s, NULL), 0);
    return 0;
}

TEST(sched_fairness_lone_yield_loop_lets_timers_fire)
{
    check_fair_run(lone_main);
}
