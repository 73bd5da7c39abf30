/* test/test_sched_cancel.c: cancellation and deadlines. A cancelled sleep
 * returns ECANCELED within one loop pass and cancellation is sticky;
 * cancelling a finished, never-started, ready or already-cancelled
 * coroutine is harmless; shields hold cancellation back but not deadlines;
 * an interrupted join leaves its target joinable; coro_timeout /
 * coro_set_deadline / coro_deadline; a deadline and the event it guards
 * arriving in the same loop pass give exactly one outcome. */
#include "test/test_sched.h"

/* ---- cancel a sleeper; stickiness --------------------------------------- */

typedef struct sticky {
    coro_t *helper;
    int returned;
    int ret, err;
    int64_t slept;
    int cancelled_flag;
} sticky_t;

static int ret_after_1ms(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    return 4;
}

static int sticky_child(void *arg)
{
    sticky_t *s = arg;
    ASSERT_EQ(coro_cancelled(), 0);
    int64_t t0 = coro_now();
    errno = 0;
    s->ret = coro_sleep(10 * CORO_SEC);
    s->err = errno;
    s->slept = coro_now() - t0;
    s->returned = 1;
    s->cancelled_flag = coro_cancelled();
    /* Every later checkpoint fails too. */
    ASSERT_ERRNO(coro_sleep(CORO_MS), ECANCELED);
    ASSERT_ERRNO(coro_sleep(0), ECANCELED);
    ASSERT_ERRNO(coro_sleep(-1), ECANCELED);
    ASSERT_ERRNO(coro_sleep_until(0), ECANCELED);
    ASSERT_ERRNO(coro_sleep_until(coro_now() + CORO_MS), ECANCELED);
    ASSERT_ERRNO(coro_join(s->helper, NULL), ECANCELED);
    /* yield is not a checkpoint: it just works. */
    coro_yield();
    ASSERT_ERRNO(coro_sleep(0), ECANCELED);
    ASSERT_EQ(coro_cancelled(), 1);
    return 0;
}

static int sticky_main(void *arg)
{
    sticky_t *s = arg;
    s->helper = coro_spawn(ret_after_1ms, NULL);
    ASSERT_NOT_NULL(s->helper);
    coro_t *c = coro_spawn(sticky_child, s);
    ASSERT_NOT_NULL(c);
    coro_yield(); /* the child parks in its sleep */
    ASSERT_EQ(s->returned, 0);
    int64_t t0 = coro_now();
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(s->returned, 0); /* a cancel does not run the target itself */
    coro_yield();              /* one pass later it has run */
    ASSERT_EQ(s->returned, 1);
    ASSERT_LT(coro_now() - t0, ts_bound(200 * CORO_MS));
    ASSERT_EQ(coro_join(c, NULL), 0);
    /* The failed join left the helper to us. */
    int st = 0;
    ASSERT_EQ(coro_join(s->helper, &st), 0);
    ASSERT_EQ(st, 4);
    ASSERT_EQ(coro_cancelled(), 0); /* main itself was never cancelled */
    return 0;
}

TEST(sched_cancel_sleeping_is_prompt_and_sticky)
{
    sticky_t s;
    memset(&s, 0, sizeof s);
    ASSERT_EQ(coro_main(sticky_main, &s), 0);
    ASSERT_EQ(s.ret, -1);
    ASSERT_EQ(s.err, ECANCELED);
    ASSERT_EQ(s.cancelled_flag, 1);
    ASSERT_LT(s.slept, ts_bound(100 * CORO_MS));
}

/* ---- cancel in other states --------------------------------------------- */

typedef struct states {
    int ran;
    int cancelled_at_start;
    int first_ret, first_err;
    int resumes;
    int c0, c1;
} states_t;

static int ret5(void *arg)
{
    states_t *s = arg;
    s->ran++;
    return 5;
}

static int never_started_child(void *arg)
{
    states_t *s = arg;
    s->ran++;
    s->cancelled_at_start = coro_cancelled();
    errno = 0;
    s->first_ret = coro_sleep(0);
    s->first_err = errno;
    return 3;
}

static int twice_child(void *arg)
{
    states_t *s = arg;
    errno = 0;
    s->first_ret = coro_sleep(10 * CORO_SEC);
    s->first_err = errno;
    s->resumes++;
    ASSERT_ERRNO(coro_sleep(CORO_MS), ECANCELED);
    return 6;
}

static int ready_child(void *arg)
{
    states_t *s = arg;
    s->c0 = coro_cancelled();
    coro_yield();
    s->c1 = coro_cancelled();
    errno = 0;
    s->first_ret = coro_sleep(CORO_MS);
    s->first_err = errno;
    return 8;
}

static int states_main(void *arg)
{
    (void)arg;
    int st;

    /* Finished, not yet joined: harmless, status unchanged. */
    states_t a = { 0 };
    coro_t *ca = coro_spawn(ret5, &a);
    ASSERT_NOT_NULL(ca);
    coro_yield();
    ASSERT_EQ(a.ran, 1);
    ASSERT_EQ(coro_cancel(ca), 0);
    ASSERT_EQ(coro_cancel(ca), 0);
    st = 0;
    ASSERT_EQ(coro_join(ca, &st), 0);
    ASSERT_EQ(st, 5);

    /* Never started: it still runs, and its first checkpoint fails. */
    states_t b = { 0 };
    coro_t *cb = coro_spawn(never_started_child, &b);
    ASSERT_NOT_NULL(cb);
    ASSERT_EQ(coro_cancel(cb), 0);
    ASSERT_EQ(b.ran, 0);
    st = 0;
    ASSERT_EQ(coro_join(cb, &st), 0);
    ASSERT_EQ(st, 3);
    ASSERT_EQ(b.ran, 1);
    ASSERT_EQ(b.cancelled_at_start, 1);
    ASSERT_EQ(b.first_ret, -1);
    ASSERT_EQ(b.first_err, ECANCELED);

    /* Already cancelled (and already woken, now READY): a second and third
     * cancel change nothing; it resumes exactly once. */
    states_t c = { 0 };
    coro_t *cc = coro_spawn(twice_child, &c);
    ASSERT_NOT_NULL(cc);
    coro_yield();
    ASSERT_EQ(coro_cancel(cc), 0);
    ASSERT_EQ(coro_cancel(cc), 0);
    ASSERT_EQ(coro_cancel(cc), 0);
    st = 0;
    ASSERT_EQ(coro_join(cc, &st), 0);
    ASSERT_EQ(st, 6);
    ASSERT_EQ(c.resumes, 1);
    ASSERT_EQ(c.first_ret, -1);
    ASSERT_EQ(c.first_err, ECANCELED);

    /* Ready (yielded, not parked): it keeps running; its next checkpoint
     * fails. */
    states_t d = { 0 };
    coro_t *cd = coro_spawn(ready_child, &d);
    ASSERT_NOT_NULL(cd);
    coro_yield(); /* d ran up to its yield */
    ASSERT_EQ(coro_cancel(cd), 0);
    st = 0;
    ASSERT_EQ(coro_join(cd, &st), 0);
    ASSERT_EQ(st, 8);
    ASSERT_EQ(d.c0, 0);
    ASSERT_EQ(d.c1, 1);
    ASSERT_EQ(d.first_ret, -1);
    ASSERT_EQ(d.first_err, ECANCELED);
    return 0;
}

TEST(sched_cancel_finished_never_started_ready_twice)
{
    ASSERT_EQ(coro_main(states_main, NULL), 0);
}

/* ---- shield -------------------------------------------------------------- */

typedef struct shield {
    int64_t shielded_sleep;
    int64_t deadline_sleep;
    int done;
} shield_t;

static int shield_child(void *arg)
{
    shield_t *s = arg;
    ASSERT_EQ(coro_shield(1), 0);
    int64_t t0 = coro_now();
    ASSERT_EQ(coro_sleep(20 * CORO_MS), 0); /* cancelled meanwhile: completes anyway */
    s->shielded_sleep = coro_now() - t0;
    ASSERT_EQ(coro_cancelled(), 1);
    ASSERT_EQ(coro_sleep(0), 0);
    ASSERT_EQ(coro_sleep(CORO_US), 0);

    /* A deadline still applies under a shield. */
    t0 = coro_now(); /* before the deadline is set: it counts from there */
    int64_t saved = coro_timeout(5 * CORO_MS);
    ASSERT_EQ(saved, CORO_NEVER);
    ASSERT_ERRNO(coro_sleep(CORO_SEC), ETIMEDOUT);
    s->deadline_sleep = coro_now() - t0;
    coro_set_deadline(saved);

    /* Unshielded: the next checkpoint fails. Any non-zero value shields;
     * the old value comes back as 0/1. */
    ASSERT_EQ(coro_shield(0), 1);
    ASSERT_ERRNO(coro_sleep(0), ECANCELED);
    ASSERT_ERRNO(coro_sleep(CORO_MS), ECANCELED);
    ASSERT_EQ(coro_shield(7), 0);
    ASSERT_EQ(coro_shield(1), 1);
    ASSERT_EQ(coro_sleep(CORO_US), 0);
    ASSERT_EQ(coro_shield(0), 1);
    ASSERT_ERRNO(coro_sleep(0), ECANCELED);
    s->done = 1;
    return 0;
}

static int shield_main(void *arg)
{
    shield_t *s = arg;
    coro_t *c = coro_spawn(shield_child, s);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_sleep(2 * CORO_MS), 0);
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    return 0;
}

TEST(sched_shield_holds_cancel_not_deadline)
{
    /* Logic, not the clock: in simulations the sleeps are exact (the
     * cancel lands 2 ms into the shielded 20 ms sleep, which still lasts
     * 20 ms; the deadline ends the next one at exactly 5 ms). */
    for (uint64_t seed = 1; seed <= 5; seed++) {
        shield_t s = { 0, 0, 0 };
        coro_sim_t sim = { .seed = seed };
        coro_main_opts_t o = { .sim = &sim };
        ASSERT_EQ(coro_main_opts(shield_main, &s, &o), 0);
        ASSERT_EQ(s.done, 1);
        ASSERT_EQ(s.shielded_sleep, 20 * CORO_MS);
        ASSERT_EQ(s.deadline_sleep, 5 * CORO_MS);
    }
}

/* ---- an interrupted join leaves the target joinable ---------------------- */

typedef struct ij {
    int release;
    coro_t *target;
    int ret, err;
    int second_ret, second_status;
} ij_t;

static int ij_target(void *arg)
{
    ij_t *j = arg;
    while (!j->release)
        ASSERT_EQ(coro_sleep(CORO_MS / 2), 0);
    return 11;
}

static int ij_joiner(void *arg)
{
    ij_t *j = arg;
    int st = -7;
    errno = 0;
    j->ret = coro_join(j->target, &st);
    j->err = errno;
    ASSERT_EQ(st, -7); /* untouched on failure */
    return 0;
}

static int ij_second(void *arg)
{
    ij_t *j = arg;
    j->second_status = -1;
    j->second_ret = coro_join(j->target, &j->second_status);
    return 0;
}

static int ij_main(void *arg)
{
    ij_t *j = arg;
    j->target = coro_spawn(ij_target, j);
    ASSERT_NOT_NULL(j->target);
    coro_t *jn = coro_spawn(ij_joiner, j);
    ASSERT_NOT_NULL(jn);
    coro_yield(); /* the joiner parks in its join */
    ASSERT_EQ(coro_cancel(jn), 0);
    ASSERT_EQ(coro_join(jn, NULL), 0);
    ASSERT_EQ(j->ret, -1);
    ASSERT_EQ(j->err, ECANCELED);

    /* By deadline, from main itself. */
    int64_t saved = coro_timeout(3 * CORO_MS);
    int st = -7;
    ASSERT_ERRNO(coro_join(j->target, &st), ETIMEDOUT);
    ASSERT_EQ(st, -7);
    coro_set_deadline(saved);

    /* Another coroutine can still join it: no stale joiner was left. */
    coro_t *k = coro_spawn(ij_second, j);
    ASSERT_NOT_NULL(k);
    coro_yield();
    j->release = 1;
    ASSERT_EQ(coro_join(k, NULL), 0);
    ASSERT_EQ(j->second_ret, 0);
    ASSERT_EQ(j->second_status, 11);
    return 0;
}

TEST(sched_join_interrupted_target_stays_joinable)
{
    ij_t j;
    memset(&j, 0, sizeof j);
    ASSERT_EQ(coro_main(ij_main, &j), 0);
}

/* The target ends after its joiner was cancelled but before the joiner
 * ran to see it: the end must not wake the joiner a second time, and the
 * failed join must not leave itself behind as the target's joiner. */
typedef struct late_end {
    int go;
    coro_t *target;
    int join_ret, join_err;
} late_end_t;

static int late_end_target(void *arg)
{
    late_end_t *l = arg;
    while (!l->go)
        coro_yield();
    return 5;
}

static int late_end_joiner(void *arg)
{
    late_end_t *l = arg;
    errno = 0;
    l->join_ret = coro_join(l->target, NULL);
    l->join_err = errno;
    return 0;
}

static int late_end_main(void *arg)
{
    late_end_t *l = arg;
    l->target = coro_spawn(late_end_target, l);
    coro_t *j = coro_spawn(late_end_joiner, l);
    ASSERT_NOT_NULL(l->target);
    ASSERT_NOT_NULL(j);
    coro_yield(); /* the target yields, the joiner parks in its join */
    ASSERT_EQ(coro_cancel(j), 0);
    l->go = 1;
    coro_yield(); /* the target ends, then the cancelled joiner runs */
    ASSERT_EQ(coro_join(j, NULL), 0);
    ASSERT_EQ(l->join_ret, -1);
    ASSERT_EQ(l->join_err, ECANCELED);
    int st = 0;
    ASSERT_EQ(coro_join(l->target, &st), 0);
    ASSERT_EQ(st, 5);
    return 0;
}

TEST(sched_join_cancelled_joiner_then_target_ends)
{
    late_end_t l;
    memset(&l, 0, sizeof l);
    ASSERT_EQ(coro_main(late_end_main, &l), 0);
}

/* A join that need not block still checks the checkpoint first. */
static int quick(void *arg)
{
    (void)arg;
    return 12;
}

static int join_done_main(void *arg)
{
    (void)arg;
    coro_t *c = coro_spawn(quick, NULL);
    ASSERT_NOT_NULL(c);
    coro_yield(); /* c has ended */
    int64_t saved = coro_set_deadline(coro_now() - 1);
    ASSERT_EQ(saved, CORO_NEVER);
    int st = -1;
    ASSERT_ERRNO(coro_join(c, &st), ETIMEDOUT);
    ASSERT_EQ(st, -1);
    coro_set_deadline(saved);
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 12);
    return 0;
}

TEST(sched_join_of_finished_still_checks_deadline)
{
    ASSERT_EQ(coro_main(join_done_main, NULL), 0);
}

static int cancelled_joiner(void *arg)
{
    coro_t *target = arg;
    coro_yield(); /* the target ends; main cancels us */
    int st = -1;
    ASSERT_ERRNO(coro_join(target, &st), ECANCELED);
    ASSERT_EQ(st, -1);
    return 0;
}

static int join_done_cancel_main(void *arg)
{
    (void)arg;
    coro_t *t = coro_spawn(quick, NULL);
    coro_t *j = coro_spawn(cancelled_joiner, t);
    ASSERT_NOT_NULL(t);
    ASSERT_NOT_NULL(j);
    coro_yield();
    ASSERT_EQ(coro_cancel(j), 0);
    ASSERT_EQ(coro_join(j, NULL), 0);
    int st = 0;
    ASSERT_EQ(coro_join(t, &st), 0);
    ASSERT_EQ(st, 12);
    return 0;
}

TEST(sched_join_of_finished_still_checks_cancel)
{
    ASSERT_EQ(coro_main(join_done_cancel_main, NULL), 0);
}

/* ---- timeout / set_deadline / deadline ----------------------------------- */

static int timeout_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_deadline(), CORO_NEVER);
    int64_t before = coro_now();
    int64_t old = coro_timeout(10 * CORO_MS);
    int64_t after = coro_now();
    ASSERT_EQ(old, CORO_NEVER);
    int64_t d = coro_deadline();
    ASSERT_GE(d, before + 10 * CORO_MS);
    ASSERT_LE(d, after + 10 * CORO_MS);

    int64_t t0 = coro_now();
    ASSERT_ERRNO(coro_sleep(CORO_SEC), ETIMEDOUT);
    int64_t t1 = coro_now();
    ASSERT_GE(t1, d);
    ASSERT_LT(t1 - t0, ts_bound(200 * CORO_MS));
    /* The deadline stays passed until restored: every checkpoint fails,
     * even one that would not block. */
    ASSERT_ERRNO(coro_sleep(0), ETIMEDOUT);
    ASSERT_ERRNO(coro_sleep_until(0), ETIMEDOUT);
    ASSERT_ERRNO(coro_sleep(CORO_MS), ETIMEDOUT);
    coro_yield(); /* not a checkpoint */
    ASSERT_EQ(coro_cancelled(), 0);

    ASSERT_EQ(coro_set_deadline(old), d);
    ASSERT_EQ(coro_deadline(), CORO_NEVER);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    return 0;
}

TEST(sched_timeout_fails_sleep_and_restores)
{
    ASSERT_EQ(coro_main(timeout_main, NULL), 0);
}

static int child_deadline(void *arg)
{
    int64_t *out = arg;
    *out = coro_deadline();
    return 0;
}

static int deadline_api_main(void *arg)
{
    (void)arg;
    int64_t now = coro_now();
    int64_t x = now + 50 * CORO_MS;
    ASSERT_EQ(coro_set_deadline(x), CORO_NEVER);
    ASSERT_EQ(coro_deadline(), x);

    /* coro_timeout never extends. */
    ASSERT_EQ(coro_timeout(CORO_SEC), x);
    ASSERT_EQ(coro_deadline(), x);
    ASSERT_EQ(coro_timeout(INT64_MAX), x); /* saturates, no overflow */
    ASSERT_EQ(coro_deadline(), x);
    /* ...but it shortens. */
    int64_t b = coro_now();
    ASSERT_EQ(coro_timeout(CORO_MS), x);
    int64_t y = coro_deadline();
    ASSERT_GE(y, b + CORO_MS);
    ASSERT_LT(y, x);

    /* coro_set_deadline sets outright, also later. */
    ASSERT_EQ(coro_set_deadline(x + 1), y);
    ASSERT_EQ(coro_deadline(), x + 1);
    ASSERT_EQ(coro_set_deadline(CORO_NEVER), x + 1);
    ASSERT_EQ(coro_deadline(), CORO_NEVER);

    /* From no deadline, INT64_MAX stays "none". */
    ASSERT_EQ(coro_timeout(INT64_MAX), CORO_NEVER);
    ASSERT_EQ(coro_deadline(), CORO_NEVER);
    ASSERT_EQ(coro_sleep(CORO_US), 0);

    /* A negative timeout is already over. */
    ASSERT_EQ(coro_timeout(-5), CORO_NEVER);
    ASSERT_LT(coro_deadline(), coro_now());
    ASSERT_ERRNO(coro_sleep(0), ETIMEDOUT);
    coro_set_deadline(CORO_NEVER);
    ASSERT_EQ(coro_sleep(0), 0);

    /* A deadline belongs to one coroutine. */
    coro_set_deadline(now + CORO_SEC);
    int64_t cd = 0;
    coro_t *c = coro_spawn(child_deadline, &cd);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(coro_deadline(), now + CORO_SEC);
    coro_set_deadline(CORO_NEVER);
    return 0;
}

TEST(sched_deadline_api)
{
    ASSERT_EQ(coro_main(deadline_api_main, NULL), 0);
}

/* ---- a child inherits none of its spawner's scope -------------------------- */

typedef struct inherit {
    int64_t deadline;
    int cancelled, shield_was;
    int sleep_ret, sleep_err;
} inherit_t;

/* Outlives the spawner's deadline. */
#define INHERIT_SLEEP (60 * CORO_MS)

static int inherit_child(void *arg)
{
    inherit_t *x = arg;
    x->deadline = coro_deadline();
    x->cancelled = coro_cancelled();
    x->shield_was = coro_shield(0);
    errno = 0;
    x->sleep_ret = coro_sleep(INHERIT_SLEEP);
    x->sleep_err = errno;
    return 0;
}

static int inherit_main(void *arg)
{
    inherit_t *x = arg; /* spawn, spawn_opts, group spawn, group spawn_opts */
    /* The spawner: under a 10 ms deadline, cancelled, shielded. */
    int64_t saved = coro_timeout(10 * CORO_MS);
    ASSERT_EQ(coro_shield(1), 0);
    ASSERT_EQ(coro_cancel(coro_self()), 0);
    ASSERT_EQ(coro_cancelled(), 1);
    coro_t *c[2];
    c[0] = coro_spawn(inherit_child, &x[0]);
    c[1] = coro_spawn_opts(inherit_child, &x[1], &(coro_opts_t){ .name = "opts" });
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    ASSERT_NOT_NULL(coro_group_spawn(g, inherit_child, &x[2]));
    ASSERT_NOT_NULL(coro_group_spawn_opts(g, inherit_child, &x[3], &(coro_opts_t){ .name = "g" }));
    ASSERT_NOT_NULL(c[0]);
    ASSERT_NOT_NULL(c[1]);
    /* The spawner's own deadline is real: it passes while the children
     * sleep on. */
    ASSERT_ERRNO(coro_sleep(INHERIT_SLEEP), ETIMEDOUT);
    coro_set_deadline(saved);
    /* (Still shielded: the cancellation is held back while it waits.) */
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    ASSERT_EQ(coro_group_wait(g), 0);
    coro_group_free(g);
    coro_shield(0);
    ASSERT_ERRNO(coro_sleep(0), ECANCELED);
    return 0;
}

TEST(sched_spawned_child_inherits_no_deadline_cancel_or_shield)
{
    inherit_t x[4];
    memset(x, 0, sizeof x);
    ASSERT_EQ(coro_main(inherit_main, x), 0);
    for (int i = 0; i < 4; i++) {
        printf("child %d: deadline %lld, cancelled %d, shielded %d, sleep %d (errno %d)\n", i,
               (long long)x[i].deadline, x[i].cancelled, x[i].shield_was, x[i].sleep_ret,
               x[i].sleep_err);
        ASSERT_EQ(x[i].deadline, CORO_NEVER);
        ASSERT_EQ(x[i].cancelled, 0);
        ASSERT_EQ(x[i].shield_was, 0);
        ASSERT_EQ(x[i].sleep_ret, 0);
    }
}

/* ---- one loop pass, two outcomes: exactly one is delivered --------------- */

#define EQ_N 16

typedef struct eqd {
    int64_t t;
    int ret[EQ_N], err[EQ_N];
    int64_t woke[EQ_N];
    int resumes[EQ_N];
} eqd_t;

static eqd_t *eqd;

static int eq_sleeper(void *arg)
{
    int i = *(const int *)arg;
    int64_t saved = coro_set_deadline(eqd->t);
    errno = 0;
    eqd->ret[i] = coro_sleep_until(eqd->t);
    eqd->err[i] = errno;
    eqd->woke[i] = coro_now();
    eqd->resumes[i]++;
    coro_set_deadline(saved);
    /* No stray timer of the old wait is left to fire into this one. */
    int64_t t0 = coro_now();
    ASSERT_EQ(coro_sleep(2 * CORO_MS), 0);
    ASSERT_GE(coro_now() - t0, 2 * CORO_MS);
    return 0;
}

static int eq_main(void *arg)
{
    (void)arg;
    static int idx[EQ_N];
    coro_t *c[EQ_N];
    for (int i = 0; i < EQ_N; i++) {
        idx[i] = i;
        c[i] = coro_spawn(eq_sleeper, &idx[i]);
        ASSERT_NOT_NULL(c[i]);
    }
    eqd->t = coro_now() + ts_bound(10 * CORO_MS);
    for (int i = 0; i < EQ_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);

    /* Clear-cut cases on either side. */
    int64_t t = coro_now() + 5 * CORO_MS;
    coro_set_deadline(t);
    ASSERT_ERRNO(coro_sleep_until(t + 30 * CORO_MS), ETIMEDOUT);
    coro_set_deadline(CORO_NEVER);
    t = coro_now() + 5 * CORO_MS;
    coro_set_deadline(t + 30 * CORO_MS);
    ASSERT_EQ(coro_sleep_until(t), 0);
    coro_set_deadline(CORO_NEVER);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.timers, 0);
    return 0;
}

TEST(sched_deadline_equal_to_sleep_end_one_outcome)
{
    eqd_t s;
    memset(&s, 0, sizeof s);
    eqd = &s;
    ASSERT_EQ(coro_main(eq_main, NULL), 0);
    for (int i = 0; i < EQ_N; i++) {
        ASSERT_EQ(s.resumes[i], 1);
        ASSERT_GE(s.woke[i], s.t);
        if (s.ret[i] != 0) {
            ASSERT_EQ(s.ret[i], -1);
            ASSERT_EQ(s.err[i], ETIMEDOUT);
        }
    }
}

/* A join whose target ends in the same pass as the joiner's deadline. */
typedef struct jd {
    int64_t t_target, t_deadline;
    int variant;
    int target_ran;
} jd_t;

static int jd_target(void *arg)
{
    jd_t *j = arg;
    if (j->variant == 3) {
        /* Ends by running (not by a timer) in the pass where the joiner's
         * deadline comes due. */
        while (coro_now() < j->t_target)
            coro_yield();
    } else {
        ASSERT_EQ(coro_sleep_until(j->t_target), 0);
    }
    j->target_ran++;
    return 9;
}

static int jd_spinner(void *arg)
{
    jd_t *j = arg;
    while (coro_now() < j->t_deadline + CORO_MS)
        coro_yield();
    return 0;
}

static int jd_main(void *arg)
{
    int *counts = arg; /* [0] joins that succeeded, [1] that timed out */
    int reps = (int)ts_count(20, 3);
    for (int rep = 0; rep < reps; rep++) {
        for (int variant = 0; variant < 4; variant++) {
            jd_t j = { 0, 0, variant, 0 };
            coro_t *x = coro_spawn(jd_target, &j);
            ASSERT_NOT_NULL(x);
            coro_t *sp = coro_spawn(jd_spinner, &j);
            ASSERT_NOT_NULL(sp);
            int64_t t = coro_now() + ts_bound(2 * CORO_MS);
            j.t_target = t + (variant == 1 ? 1 : 0);
            j.t_deadline = t + (variant == 2 ? 1 : 0);
            if (rep & 1)
                coro_yield(); /* the target arms its timer first */
            int64_t saved = coro_set_deadline(j.t_deadline);
            int st = -1;
            errno = 0;
            int r = coro_join(x, &st);
            int e = errno;
            coro_set_deadline(saved);
            if (r == 0) {
                ASSERT_EQ(st, 9);
                counts[0]++;
            } else {
                ASSERT_EQ(r, -1);
                ASSERT_EQ(e, ETIMEDOUT);
                ASSERT_EQ(st, -1);
                counts[1]++;
                /* Still joinable, exactly once. */
                ASSERT_EQ(coro_join(x, &st), 0);
                ASSERT_EQ(st, 9);
            }
            ASSERT_EQ(j.target_ran, 1);
            ASSERT_EQ(coro_join(sp, NULL), 0);
        }
    }
    coro_stats_t s;
    coro_stats(&s);
    ASSERT_EQ(s.timers, 0);
    ASSERT_EQ(s.live, 1);
    return 0;
}

TEST(sched_join_vs_deadline_same_pass_one_outcome)
{
    int counts[2] = { 0, 0 };
    ASSERT_EQ(coro_main(jd_main, counts), 0);
    ASSERT_EQ(counts[0] + counts[1], 4 * (int)ts_count(20, 3));
    printf("join won %d, deadline won %d\n", counts[0], counts[1]);
}
