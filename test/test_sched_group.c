/* test/test_sched_group.c: task groups. FAILFAST returns the first failing
 * child's status and cancels the rest; COLLECT lets every child finish and
 * returns the first non-zero status in completion order; coro_group_next
 * hands children out in completion order; a cancelled or timed-out waiter
 * returns only after every child has ended; coro_group_free cancels and
 * waits; group children cannot be joined or detached. */
#include "test/test_sched.h"

typedef struct kid {
    int64_t until;       /* absolute sleep end */
    int status;          /* returned when the sleep completes */
    int cancel_status;   /* returned when the sleep fails */
    int ret, err;
    int finished;        /* the sleep completed */
    int cleanup;         /* the error path ran to its end */
    int64_t cleanup_ns;  /* shielded blocking cleanup on error */
    int *cleanup_counter;
} kid_t;

static int kid_body(void *arg)
{
    kid_t *k = arg;
    errno = 0;
    k->ret = coro_sleep_until(k->until);
    k->err = errno;
    if (k->ret == 0) {
        k->finished = 1;
        return k->status;
    }
    if (k->cleanup_ns) {
        coro_shield(1);
        ASSERT_EQ(coro_sleep(k->cleanup_ns), 0);
        coro_shield(0);
    }
    k->cleanup = 1;
    if (k->cleanup_counter)
        (*k->cleanup_counter)++;
    return k->cancel_status;
}

/* ---- FAILFAST ------------------------------------------------------------ */

static int failfast_main(void *arg)
{
    (void)arg;
    coro_group_t *g = coro_group_new(CORO_GROUP_FAILFAST);
    ASSERT_NOT_NULL(g);
    kid_t k[4] = {
        { .until = 2 * CORO_MS, .status = 0 },                         /* succeeds first */
        { .until = 6 * CORO_MS, .status = 7 },                         /* fails */
        { .until = 10 * CORO_SEC, .status = 0, .cancel_status = 99 },  /* cancelled, then "fails" */
        { .until = 10 * CORO_SEC, .status = 0, .cancel_status = 0 },   /* cancelled */
    };
    for (int i = 0; i < 4; i++)
        ASSERT_NOT_NULL(coro_group_spawn(g, kid_body, &k[i]));
    /* Absolute times once spawned (slow under ThreadSanitizer). */
    int64_t now = coro_now();
    for (int i = 0; i < 4; i++)
        k[i].until += now;
    int64_t t0 = coro_now();
    ASSERT_EQ(coro_group_wait(g), 7);
    /* The failure at 6 ms cancels the rest, whose cleanups take no time. */
    ASSERT_EQ(coro_now() - t0, 6 * CORO_MS);
    ASSERT_EQ(k[0].ret, 0);
    ASSERT_EQ(k[0].finished, 1);
    ASSERT_EQ(k[1].finished, 1);
    for (int i = 2; i < 4; i++) {
        ASSERT_EQ(k[i].ret, -1);
        ASSERT_EQ(k[i].err, ECANCELED);
        ASSERT_EQ(k[i].cleanup, 1);
    }
    /* Everything was collected. */
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), ENOENT);
    coro_group_free(g);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.live, 1);
    return 0;
}

TEST(sched_group_failfast_first_error_cancels_rest)
{
    /* In simulations: the times are virtual, exact (see below). */
    for (uint64_t seed = 1; seed <= 5; seed++)
        ASSERT_EQ(ts_main_sim(failfast_main, NULL, seed), 0);
}

/* ---- COLLECT ------------------------------------------------------------- */

static int collect_main(void *arg)
{
    (void)arg;
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    /* An empty group is done at once. */
    ASSERT_EQ(coro_group_wait(g), 0);

    kid_t k[4] = {
        { .until = 15 * CORO_MS, .status = 3 },
        { .until = 5 * CORO_MS, .status = 0 },
        { .until = 10 * CORO_MS, .status = 4 }, /* first non-zero to complete */
        { .until = 1 * CORO_MS, .status = 0 },
    };
    for (int i = 0; i < 4; i++)
        ASSERT_NOT_NULL(coro_group_spawn(g, kid_body, &k[i]));
    int64_t base = coro_now() + ts_bound(2 * CORO_MS);
    for (int i = 0; i < 4; i++)
        k[i].until += base;
    ASSERT_EQ(coro_group_wait(g), 4);
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(k[i].ret, 0);
        ASSERT_EQ(k[i].finished, 1);
        ASSERT_GE(coro_now(), k[i].until);
    }
    /* Reuse: all-zero statuses give 0... but the group remembers its first
     * error, so use a fresh one. */
    coro_group_free(g);
    g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    kid_t z[3] = {
        { .until = coro_now() + CORO_MS },
        { .until = coro_now() },
        { .until = 0 },
    };
    for (int i = 0; i < 3; i++)
        ASSERT_NOT_NULL(coro_group_spawn(g, kid_body, &z[i]));
    ASSERT_EQ(coro_group_wait(g), 0);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(z[i].finished, 1);
    coro_group_free(g);
    return 0;
}

TEST(sched_group_collect_all_finish_first_error_in_completion_order)
{
    ASSERT_EQ(coro_main(collect_main, NULL), 0);
}

/* ---- coro_group_next ------------------------------------------------------ */

static int next_main(void *arg)
{
    (void)arg;
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    static const int off[4] = { 30, 10, 20, 5 };
    static const char *names[4] = { "k30", "k10", "k20", "k5" };
    kid_t k[4];
    coro_t *h[4];
    for (int i = 0; i < 4; i++) {
        k[i] = (kid_t){ .until = off[i] * CORO_MS, .status = i + 1 };
        h[i] = coro_group_spawn_opts(g, kid_body, &k[i], &(coro_opts_t){ .name = names[i] });
        ASSERT_NOT_NULL(h[i]);
    }
    int64_t base = coro_now() + ts_bound(2 * CORO_MS);
    for (int i = 0; i < 4; i++)
        k[i].until += base;
    /* A deadline interrupts next (it is checked before anything else); the
     * children keep running. */
    int64_t saved = coro_set_deadline(base);
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), ETIMEDOUT);
    coro_set_deadline(saved);

    static const int expect[4] = { 3, 1, 2, 0 };
    for (int n = 0; n < 4; n++) {
        int st = -1;
        coro_t *c = coro_group_next(g, &st);
        ASSERT_PTR_EQ(c, h[expect[n]]);
        ASSERT_EQ(st, expect[n] + 1);
        ASSERT_STR_EQ(coro_name(c), names[expect[n]]);
        ASSERT_EQ(k[expect[n]].finished, 1);
    }
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), ENOENT);
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), ENOENT);
    /* The first non-zero status in completion order: k5's 4. */
    ASSERT_EQ(coro_group_wait(g), 4);
    coro_group_free(g);

    /* Children that all ended before anyone asked still come out in the
     * order they ended. */
    g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    for (int i = 0; i < 4; i++) {
        k[i] = (kid_t){ .until = off[i] * CORO_MS / 5, .status = i + 1 };
        h[i] = coro_group_spawn(g, kid_body, &k[i]);
        ASSERT_NOT_NULL(h[i]);
    }
    base = coro_now() + ts_bound(2 * CORO_MS);
    for (int i = 0; i < 4; i++)
        k[i].until += base;
    ASSERT_EQ(coro_sleep_until(base + 10 * CORO_MS), 0);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(k[i].finished, 1);
    for (int n = 0; n < 4; n++) {
        int st = -1;
        ASSERT_PTR_EQ(coro_group_next(g, &st), h[expect[n]]);
        ASSERT_EQ(st, expect[n] + 1);
    }
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), ENOENT);
    coro_group_free(g);
    return 0;
}

TEST(sched_group_next_in_completion_order)
{
    ASSERT_EQ(coro_main(next_main, NULL), 0);
}

/* ---- a waiter interrupted: children are cancelled and awaited ------------ */

typedef struct waiter {
    int flags;
    int by_deadline;
    int cleanups;
    int ret, err;
    int cleanups_at_return;
    int64_t waited;
    int64_t deadline_after;
    int64_t deadline_set;
    int shield_after;
    kid_t k[3];
} waiter_t;

static int waiter_body(void *arg)
{
    waiter_t *w = arg;
    coro_group_t *g = coro_group_new(w->flags);
    ASSERT_NOT_NULL(g);
    for (int i = 0; i < 3; i++) {
        w->k[i] = (kid_t){ .until = coro_now() + 10 * CORO_SEC, .cancel_status = 0,
                           .cleanup_ns = (i + 1) * CORO_MS,
                           .cleanup_counter = &w->cleanups };
        ASSERT_NOT_NULL(coro_group_spawn(g, kid_body, &w->k[i]));
    }
    if (w->by_deadline) {
        coro_timeout(5 * CORO_MS);
        w->deadline_set = coro_deadline();
    }
    int64_t t0 = coro_now();
    errno = 0;
    w->ret = coro_group_wait(g);
    w->err = errno;
    w->waited = coro_now() - t0;
    w->cleanups_at_return = w->cleanups;
    w->deadline_after = coro_deadline();
    w->shield_after = coro_shield(0);
    coro_set_deadline(CORO_NEVER);
    coro_group_free(g);
    return 0;
}

static int waiter_main(void *arg)
{
    waiter_t *w = arg;
    coro_t *c = coro_spawn(waiter_body, w);
    ASSERT_NOT_NULL(c);
    if (!w->by_deadline) {
        ASSERT_EQ(coro_sleep(2 * CORO_MS), 0);
        ASSERT_EQ(coro_cancel(c), 0);
    }
    ASSERT_EQ(coro_join(c, NULL), 0);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.live, 1);
    return 0;
}

static void waiter_run(int flags, int by_deadline)
{
    waiter_t w;
    memset(&w, 0, sizeof w);
    w.flags = flags;
    w.by_deadline = by_deadline;
    ASSERT_EQ(ts_main_sim(waiter_main, &w, (uint64_t)(flags * 2 + by_deadline + 1)), 0);
    ASSERT_EQ(w.ret, -1);
    ASSERT_EQ(w.err, by_deadline ? ETIMEDOUT : ECANCELED);
    /* Every child's cleanup (which blocks up to 3 ms) ran before the wait
     * returned. */
    ASSERT_EQ(w.cleanups_at_return, 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(w.k[i].ret, -1);
        ASSERT_EQ(w.k[i].err, ECANCELED);
        ASSERT_EQ(w.k[i].cleanup, 1);
    }
    ASSERT_GE(w.waited, 3 * CORO_MS);
    ASSERT_LT(w.waited, ts_bound(500 * CORO_MS));
    /* The waiter's own shield and deadline are as they were. */
    ASSERT_EQ(w.shield_after, 0);
    ASSERT_EQ(w.deadline_after, by_deadline ? w.deadline_set : CORO_NEVER);
}

TEST(sched_group_wait_cancelled_returns_after_children_ended)
{
    waiter_run(CORO_GROUP_COLLECT, 0);
    waiter_run(CORO_GROUP_FAILFAST, 0);
}

TEST(sched_group_wait_deadline_returns_after_children_ended)
{
    waiter_run(CORO_GROUP_COLLECT, 1);
    waiter_run(CORO_GROUP_FAILFAST, 1);
}

/* ---- coro_group_free / coro_group_cancel --------------------------------- */

static int free_main(void *arg)
{
    (void)arg;
    int cleanups = 0;
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    kid_t k[5];
    for (int i = 0; i < 5; i++) {
        k[i] = (kid_t){ .until = coro_now() + 10 * CORO_SEC,
                        .cleanup_ns = i == 0 ? 2 * CORO_MS : 0,
                        .cleanup_counter = &cleanups };
        ASSERT_NOT_NULL(coro_group_spawn(g, kid_body, &k[i]));
    }
    /* One that ends uncollected. */
    kid_t done = { .until = 0, .status = 5 };
    ASSERT_NOT_NULL(coro_group_spawn(g, kid_body, &done));
    coro_yield(); /* they park in their sleeps */
    coro_yield();
    ASSERT_EQ(done.finished, 1);
    /* Two more that never started. */
    kid_t late[2];
    for (int i = 0; i < 2; i++) {
        late[i] = (kid_t){ .until = coro_now() + 10 * CORO_SEC, .cleanup_counter = &cleanups };
        ASSERT_NOT_NULL(coro_group_spawn(g, kid_body, &late[i]));
    }
    int64_t t0 = coro_now();
    coro_group_free(g);
    int64_t took = coro_now() - t0;
    ASSERT_EQ(cleanups, 7);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(k[i].err, ECANCELED);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(late[i].err, ECANCELED);
    ASSERT_GE(took, 2 * CORO_MS);
    ASSERT_LT(took, ts_bound(500 * CORO_MS));
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.live, 1);
    coro_group_free(NULL); /* harmless */
    return 0;
}

TEST(sched_group_free_cancels_and_waits_for_children)
{
    ASSERT_EQ(coro_main(free_main, NULL), 0); /* relies on FIFO dispatch: real scheduler */
}

static int cancel_main(void *arg)
{
    (void)arg;
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    kid_t k[3];
    for (int i = 0; i < 3; i++) {
        k[i] = (kid_t){ .until = coro_now() + 10 * CORO_SEC, .cancel_status = 20 + i };
        ASSERT_NOT_NULL(coro_group_spawn(g, kid_body, &k[i]));
    }
    coro_yield();
    coro_group_cancel(g);
    coro_group_cancel(g); /* idempotent */
    coro_group_cancel(NULL);
    /* Cancelling the children does not cancel the waiter. */
    ASSERT_EQ(coro_group_wait(g), 20);
    ASSERT_EQ(coro_cancelled(), 0);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(k[i].err, ECANCELED);
    coro_group_free(g);
    return 0;
}

TEST(sched_group_cancel_cancels_children_only)
{
    ASSERT_EQ(coro_main(cancel_main, NULL), 0);
}

/* ---- ownership and bad arguments ----------------------------------------- */

static int ret6(void *arg)
{
    (void)arg;
    coro_yield();
    return 6;
}

static int owner_main(void *arg)
{
    (void)arg;
    ASSERT_NULL_ERRNO(coro_group_new(4), EINVAL);
    ASSERT_NULL_ERRNO(coro_group_new(CORO_GROUP_REAP | 8), EINVAL);
    ASSERT_NULL_ERRNO(coro_group_new(-1), EINVAL);
    ASSERT_NULL_ERRNO(coro_group_new(CORO_GROUP_COLLECT | 4), EINVAL);

    coro_group_t *g = coro_group_new(CORO_GROUP_FAILFAST);
    ASSERT_NOT_NULL(g);
    ASSERT_NULL_ERRNO(coro_group_spawn(NULL, ret6, NULL), EINVAL);
    ASSERT_NULL_ERRNO(coro_group_spawn(g, NULL, NULL), EINVAL);
    ASSERT_NULL_ERRNO(coro_group_spawn_opts(g, ret6, NULL, &(coro_opts_t){ .stack_size = 1 }),
                      EINVAL);
    ASSERT_ERRNO(coro_group_wait(NULL), EINVAL);
    ASSERT_NULL_ERRNO(coro_group_next(NULL, NULL), EINVAL);

    coro_t *c = coro_group_spawn(g, ret6, NULL);
    ASSERT_NOT_NULL(c);
    int st = -1;
    ASSERT_ERRNO(coro_join(c, &st), EINVAL);
    ASSERT_EQ(st, -1);
    coro_detach(c); /* ignored */
    /* Still the group's: it comes out of coro_group_next. */
    ASSERT_PTR_EQ(coro_group_next(g, &st), c);
    ASSERT_EQ(st, 6);
    /* Also not joinable once ended and handed out. */
    ASSERT_ERRNO(coro_join(c, NULL), EINVAL);
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), ENOENT);
    /* FAILFAST: the first non-zero status (6) is the group's result. */
    ASSERT_EQ(coro_group_wait(g), 6);
    coro_group_free(g);
    return 0;
}

TEST(sched_group_children_not_joinable_bad_args)
{
    ASSERT_EQ(coro_main(owner_main, NULL), 0);
}

/* A child's own -1 and a failure of coro_group_wait both return -1: errno
 * tells them apart (0 for the child's status). */
static int returns_minus_one(void *arg)
{
    (void)arg;
    errno = EIO; /* whatever the child leaves in errno must not leak out */
    return -1;
}

static int minus_one_main(void *arg)
{
    (void)arg;
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    ASSERT_NOT_NULL(coro_group_spawn(g, returns_minus_one, NULL));
    errno = EBADF;
    ASSERT_EQ(coro_group_wait(g), -1);
    ASSERT_EQ(errno, 0);
    coro_group_free(g);

    /* The call's own failure keeps its errno. */
    g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    ASSERT_NOT_NULL(coro_group_spawn(g, returns_minus_one, NULL));
    coro_cancel(coro_self());
    ASSERT_EQ(coro_group_wait(g), -1);
    ASSERT_EQ(errno, ECANCELED);
    coro_group_free(g);
    return 0;
}

TEST(sched_group_wait_child_minus_one_has_errno_zero)
{
    ASSERT_EQ(coro_main(minus_one_main, NULL), 0);
}
