/* test/test_sync_locks.c: the lock-like primitives of sync/: mutex,
 * condition, semaphore, event, wait group, read-write lock and once.
 * Mutual exclusion and bounds under contention, FIFO hand-off (an unlock or
 * release gives the lock or permit straight to the first waiter, so a
 * newcomer cannot take it meanwhile), every documented errno, cancellation
 * of a queued waiter (ECANCELED, gone from the queue, the next in line
 * served), the hand-off-then-cancel race (the granted waiter keeps what it
 * was given; its next checkpoint fails), a deadline passing in the same
 * loop pass as the hand-off, checkpoints that fail before a call that
 * would not block, and the deadlock detector naming the mutex wait. */
#include "test/test_sched.h"

#include <limits.h>

/* Let every ready coroutine run n times (each yield sends the caller to
 * the back of the run queue). */
static void settle(int n)
{
    for (int i = 0; i < n; i++)
        coro_yield();
}

static coro_t *spawn_named(coro_fn fn, void *arg, const char *name)
{
    coro_t *c = coro_spawn_opts(fn, arg, &(coro_opts_t){ .name = name });
    ASSERT_NOT_NULL(c);
    return c;
}

/* Busy-wait (no checkpoint, no switch: the loop cannot run a timer
 * meanwhile) until the clock passes t. */
static void spin_until(int64_t t)
{
    while (coro_now() <= t) {
    }
}

#define UNSET 99 /* a return value no call gives */

/* ======================================================================== */
/* mutex                                                                    */
/* ======================================================================== */

/* ---- mutual exclusion under contention ---------------------------------- */

enum { MX_N = 8 };

typedef struct mx {
    coro_mutex_t m;
    long counter, iters;
    int inside, max_inside;
} mx_t;

static int mx_worker(void *arg)
{
    mx_t *x = arg;
    for (long i = 0; i < x->iters; i++) {
        ASSERT_EQ(coro_mutex_lock(&x->m), 0);
        ASSERT_EQ(x->m.owner, coro_id(coro_self()));
        x->inside++;
        if (x->inside > x->max_inside)
            x->max_inside = x->inside;
        long v = x->counter; /* read, let everyone run, write back */
        coro_yield();
        if (i % 3 == 0)
            coro_yield();
        if (i % 64 == 0)
            ASSERT_EQ(coro_sleep(10 * CORO_US), 0);
        x->counter = v + 1;
        x->inside--;
        ASSERT_EQ(coro_mutex_unlock(&x->m), 0);
        if (i & 1)
            coro_yield();
    }
    return 0;
}

static int mx_main(void *arg)
{
    mx_t *x = arg;
    coro_t *c[MX_N];
    for (int i = 0; i < MX_N; i++)
        c[i] = spawn_named(mx_worker, x, "worker");
    for (int i = 0; i < MX_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    return 0;
}

TEST(sync_mutex_exclusion_counter_exact)
{
    mx_t x;
    memset(&x, 0, sizeof x);
    coro_mutex_init(&x.m);
    x.iters = ts_count(300, 100);
    ASSERT_EQ(coro_main(mx_main, &x), 0);
    ASSERT_EQ(x.counter, MX_N * x.iters);
    ASSERT_EQ(x.max_inside, 1);
    ASSERT_EQ(x.m.owner, 0);
}

/* ---- FIFO hand-off -------------------------------------------------------- */

enum { FF_N = 5 };

typedef struct ff {
    coro_mutex_t m;
    coro_t *c[FF_N], *main;
    uint64_t cid[FF_N], main_id; /* the ids, which outlive the handles */
    int idx[FF_N];
    int order[FF_N + 1], n;
    uint64_t next_owner[FF_N];
    int newcomer_ran;
} ff_t;

static ff_t *ff;

static int ff_waiter(void *arg)
{
    int i = *(const int *)arg;
    ASSERT_EQ(coro_mutex_lock(&ff->m), 0);
    ASSERT_EQ(ff->m.owner, coro_id(coro_self()));
    ff->order[ff->n++] = i;
    settle(2); /* the others stay queued meanwhile */
    ASSERT_EQ(ff->m.owner, coro_id(coro_self()));
    ASSERT_EQ(coro_mutex_unlock(&ff->m), 0);
    /* Straight to the next in line, before it even runs. */
    ff->next_owner[i] = ff->m.owner;
    ASSERT_ERRNO(coro_mutex_trylock(&ff->m), EBUSY);
    return 0;
}

static int ff_newcomer(void *arg)
{
    (void)arg;
    ASSERT_ERRNO(coro_mutex_trylock(&ff->m), EBUSY);
    ff->newcomer_ran++;
    return 0;
}

static int ff_main(void *arg)
{
    (void)arg;
    ff->main = coro_self();
    ff->main_id = coro_id(ff->main);
    ASSERT_EQ(coro_mutex_lock(&ff->m), 0);
    for (int i = 0; i < FF_N; i++) {
        ff->idx[i] = i;
        ff->c[i] = spawn_named(ff_waiter, &ff->idx[i], "waiter");
        ff->cid[i] = coro_id(ff->c[i]);
    }
    settle(1); /* each queues, in spawn order */
    ASSERT_EQ(ff->n, 0);
    ASSERT_EQ(ff->m.owner, coro_id(coro_self()));
    ASSERT_EQ(coro_mutex_unlock(&ff->m), 0);
    /* The mutex went straight to the first waiter: it is not free for a
     * newcomer, main included. */
    ASSERT_EQ(ff->m.owner, coro_id(ff->c[0]));
    ASSERT_ERRNO(coro_mutex_trylock(&ff->m), EBUSY);
    coro_t *nc = spawn_named(ff_newcomer, NULL, "newcomer");
    /* main queues behind the five. */
    ASSERT_EQ(coro_mutex_lock(&ff->m), 0);
    ASSERT_EQ(ff->m.owner, coro_id(coro_self()));
    ASSERT_EQ(ff->n, FF_N);
    ff->order[ff->n++] = -1;
    ASSERT_EQ(coro_mutex_unlock(&ff->m), 0);
    ASSERT_EQ(ff->m.owner, 0);
    for (int i = 0; i < FF_N; i++)
        ASSERT_EQ(coro_join(ff->c[i], NULL), 0);
    ASSERT_EQ(coro_join(nc, NULL), 0);
    return 0;
}

TEST(sync_mutex_fifo_handoff)
{
    ff_t f;
    memset(&f, 0, sizeof f);
    coro_mutex_init(&f.m);
    ff = &f;
    ASSERT_EQ(coro_main(ff_main, NULL), 0);
    for (int i = 0; i < FF_N; i++)
        ASSERT_EQ(f.order[i], i);
    ASSERT_EQ(f.order[FF_N], -1);
    for (int i = 0; i + 1 < FF_N; i++)
        ASSERT_EQ(f.next_owner[i], f.cid[i + 1]);
    ASSERT_EQ(f.next_owner[FF_N - 1], f.main_id);
    ASSERT_EQ(f.newcomer_ran, 1);
}

/* ---- errors ----------------------------------------------------------------- */

static int me_other(void *arg)
{
    coro_mutex_t *m = arg;
    uint64_t owner = m->owner;
    ASSERT_NE(owner, 0);
    ASSERT_ERRNO(coro_mutex_unlock(m), EPERM);
    ASSERT_ERRNO(coro_mutex_trylock(m), EBUSY);
    ASSERT_EQ(m->owner, owner); /* untouched */
    return 0;
}

static int me_main(void *arg)
{
    (void)arg;
    coro_mutex_t m = CORO_MUTEX_INIT;
    ASSERT_ERRNO(coro_mutex_unlock(&m), EPERM); /* not locked at all */
    ASSERT_EQ(m.owner, 0);
    ASSERT_EQ(coro_mutex_lock(&m), 0);
    ASSERT_EQ(m.owner, coro_id(coro_self()));
    ASSERT_ERRNO(coro_mutex_lock(&m), EDEADLK);
    ASSERT_ERRNO(coro_mutex_trylock(&m), EBUSY); /* the caller included */
    ASSERT_EQ(m.owner, coro_id(coro_self()));
    coro_t *o = spawn_named(me_other, &m, "other");
    ASSERT_EQ(coro_join(o, NULL), 0);
    ASSERT_EQ(m.owner, coro_id(coro_self()));
    ASSERT_EQ(coro_mutex_unlock(&m), 0);
    ASSERT_EQ(m.owner, 0);
    ASSERT_ERRNO(coro_mutex_unlock(&m), EPERM); /* twice */
    ASSERT_EQ(coro_mutex_trylock(&m), 0);
    ASSERT_EQ(m.owner, coro_id(coro_self()));
    ASSERT_EQ(coro_mutex_unlock(&m), 0);

    ASSERT_ERRNO(coro_mutex_lock(NULL), EINVAL);
    ASSERT_ERRNO(coro_mutex_trylock(NULL), EINVAL);
    ASSERT_ERRNO(coro_mutex_unlock(NULL), EINVAL);
    coro_cond_t c = CORO_COND_INIT;
    ASSERT_ERRNO(coro_cond_wait(NULL, &m), EINVAL);
    ASSERT_ERRNO(coro_cond_wait(&c, NULL), EINVAL);
    ASSERT_ERRNO(coro_cond_signal(NULL), EINVAL);
    ASSERT_ERRNO(coro_cond_broadcast(NULL), EINVAL);
    /* Signals with nobody waiting are fine (and not remembered: below). */
    ASSERT_EQ(coro_cond_signal(&c), 0);
    ASSERT_EQ(coro_cond_broadcast(&c), 0);
    return 0;
}

TEST(sync_mutex_errors)
{
    ASSERT_EQ(coro_main(me_main, NULL), 0);
}

/* A static mutex's wait list is made when the mutex is bound to the
 * scheduler, by whichever call comes first: the fast paths then take it
 * as made. Each way of binding, then a waiter queued and handed the lock. */
static int bind_waiter(void *arg)
{
    coro_mutex_t *m = arg;
    ASSERT_EQ(coro_mutex_lock(m), 0); /* parks: main holds it */
    ASSERT_EQ(m->owner, coro_id(coro_self()));
    ASSERT_EQ(coro_mutex_unlock(m), 0);
    return 0;
}

static int bind_main(void *arg)
{
    (void)arg;
    for (int how = 0; how < 3; how++) {
        coro_mutex_t m = CORO_MUTEX_INIT;
        if (how == 0) {
            ASSERT_EQ(coro_mutex_trylock(&m), 0);
        } else if (how == 1) {
            ASSERT_ERRNO(coro_mutex_unlock(&m), EPERM);
            ASSERT_EQ(coro_mutex_lock(&m), 0);
        } else {
            ASSERT_EQ(coro_mutex_lock(&m), 0);
        }
        coro_t *w = coro_spawn(bind_waiter, &m);
        ASSERT_NOT_NULL(w);
        coro_yield(); /* w queues on m */
        ASSERT_EQ(coro_mutex_unlock(&m), 0); /* handed to w */
        ASSERT_EQ(m.owner, coro_id(w));
        ASSERT_EQ(coro_join(w, NULL), 0);
        ASSERT_EQ(m.owner, 0);
    }
    return 0;
}

TEST(sync_mutex_static_bound_by_any_call_queues_waiters)
{
    ASSERT_EQ(coro_main(bind_main, NULL), 0);
}

/* Outside a coroutine every call that needs a caller says EPERM. */
static int once_never(void *arg)
{
    int *ran = arg;
    (*ran)++;
    return 0;
}

TEST(sync_outside_coroutine_eperm)
{
    coro_mutex_t m = CORO_MUTEX_INIT;
    ASSERT_ERRNO(coro_mutex_lock(&m), EPERM);
    ASSERT_ERRNO(coro_mutex_trylock(&m), EPERM);
    ASSERT_ERRNO(coro_mutex_unlock(&m), EPERM);
    ASSERT_EQ(m.owner, 0);
    coro_cond_t c = CORO_COND_INIT;
    ASSERT_ERRNO(coro_cond_wait(&c, &m), EPERM);
    coro_sem_t s = CORO_SEM_INIT(1);
    ASSERT_ERRNO(coro_sem_acquire(&s), EPERM);
    ASSERT_EQ(coro_sem_value(&s), 1);
    coro_event_t e = CORO_EVENT_INIT;
    ASSERT_ERRNO(coro_event_wait(&e), EPERM);
    coro_wg_t wg = CORO_WG_INIT;
    ASSERT_ERRNO(coro_wg_wait(&wg), EPERM);
    coro_rwlock_t l = CORO_RWLOCK_INIT;
    ASSERT_ERRNO(coro_rwlock_rdlock(&l), EPERM);
    ASSERT_ERRNO(coro_rwlock_wrlock(&l), EPERM);
    ASSERT_ERRNO(coro_rwlock_tryrdlock(&l), EPERM);
    ASSERT_ERRNO(coro_rwlock_trywrlock(&l), EPERM);
    ASSERT_ERRNO(coro_rwlock_unlock(&l), EPERM);
    ASSERT_EQ(l.readers, 0);
    coro_once_t o = CORO_ONCE_INIT;
    int ran = 0;
    ASSERT_ERRNO(coro_once(&o, once_never, &ran), EPERM);
    ASSERT_EQ(ran, 0);
}

/* ---- cancel a queued waiter --------------------------------------------- */

typedef struct mc {
    coro_mutex_t m;
    coro_t *c[3];
    uint64_t cid[3];
    int idx[3];
    int ret[3], err[3];
    int order[3], n;
    uint64_t next_owner[3];
} mc_t;

static mc_t *mc;

static int mc_waiter(void *arg)
{
    int i = *(const int *)arg;
    errno = 0;
    int r = coro_mutex_lock(&mc->m);
    mc->ret[i] = r;
    mc->err[i] = errno;
    if (r == 0) {
        ASSERT_EQ(mc->m.owner, coro_id(coro_self()));
        mc->order[mc->n++] = i;
        coro_yield();
        ASSERT_EQ(coro_mutex_unlock(&mc->m), 0);
        mc->next_owner[i] = mc->m.owner;
    } else {
        ASSERT(mc->m.owner != coro_id(coro_self()));
        ASSERT_ERRNO(coro_mutex_unlock(&mc->m), EPERM);
        ASSERT_ERRNO(coro_mutex_lock(&mc->m), ECANCELED); /* sticky */
    }
    return 0;
}

static int mc_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_mutex_lock(&mc->m), 0);
    for (int i = 0; i < 3; i++) {
        mc->idx[i] = i;
        mc->ret[i] = UNSET;
        mc->c[i] = spawn_named(mc_waiter, &mc->idx[i], "waiter");
        mc->cid[i] = coro_id(mc->c[i]);
    }
    settle(1); /* all three queue */
    ASSERT_EQ(coro_cancel(mc->c[1]), 0);
    settle(1); /* within one pass the cancelled one has returned */
    ASSERT_EQ(mc->ret[1], -1);
    ASSERT_EQ(mc->err[1], ECANCELED);
    ASSERT_EQ(mc->ret[0], UNSET);
    ASSERT_EQ(mc->ret[2], UNSET);
    ASSERT_EQ(mc->m.owner, coro_id(coro_self()));
    /* Free its stack (its waiter lived there) before anyone walks the
     * queue: a stale entry would be a use after free. */
    ASSERT_EQ(coro_join(mc->c[1], NULL), 0);
    ASSERT_EQ(coro_mutex_unlock(&mc->m), 0);
    ASSERT_EQ(mc->m.owner, coro_id(mc->c[0]));
    ASSERT_EQ(coro_join(mc->c[0], NULL), 0);
    ASSERT_EQ(coro_join(mc->c[2], NULL), 0);
    return 0;
}

TEST(sync_mutex_cancel_queued_waiter)
{
    mc_t s;
    memset(&s, 0, sizeof s);
    coro_mutex_init(&s.m);
    mc = &s;
    ASSERT_EQ(coro_main(mc_main, NULL), 0);
    ASSERT_EQ(s.ret[0], 0);
    ASSERT_EQ(s.ret[2], 0);
    ASSERT_EQ(s.n, 2);
    ASSERT_EQ(s.order[0], 0);
    ASSERT_EQ(s.order[1], 2);
    ASSERT_EQ(s.next_owner[0], s.cid[2]); /* the cancelled one was skipped */
    ASSERT_EQ(s.next_owner[2], 0);
    ASSERT_EQ(s.m.owner, 0);
}

/* ---- hand-off, then the waiter is cancelled or its deadline passes ------- */

enum { HC_CANCEL, HC_DEADLINE_BEFORE_UNLOCK, HC_DEADLINE_AFTER_UNLOCK };

typedef struct hc {
    int variant;
    coro_mutex_t m, other;
    coro_t *w, *x;
    uint64_t x_id;
    int64_t w_deadline;
    int w_ret, w_err, w_owned, next_ret, next_err, other_ret, other_err;
    uint64_t after_w_unlock;
    int x_ret;
} hc_t;

static hc_t *hc;

static int hc_w(void *arg)
{
    (void)arg;
    int64_t saved = CORO_NEVER;
    if (hc->variant != HC_CANCEL) {
        saved = coro_timeout(ts_bound(20 * CORO_MS));
        hc->w_deadline = coro_deadline();
    }
    errno = 0;
    hc->w_ret = coro_mutex_lock(&hc->m);
    hc->w_err = errno;
    hc->w_owned = hc->m.owner == coro_id(coro_self());
    /* The cancellation or the deadline shows at the next checkpoint. */
    errno = 0;
    hc->next_ret = coro_sleep(0);
    hc->next_err = errno;
    errno = 0;
    hc->other_ret = coro_mutex_lock(&hc->other); /* free, still fails */
    hc->other_err = errno;
    ASSERT_EQ(hc->other.owner, 0);
    if (hc->w_owned) {
        ASSERT_EQ(coro_mutex_unlock(&hc->m), 0);
        hc->after_w_unlock = hc->m.owner;
    }
    coro_set_deadline(saved);
    return 0;
}

static int hc_x(void *arg)
{
    (void)arg;
    hc->x_ret = coro_mutex_lock(&hc->m);
    ASSERT_EQ(hc->x_ret, 0);
    ASSERT_EQ(hc->m.owner, coro_id(coro_self()));
    ASSERT_EQ(coro_mutex_unlock(&hc->m), 0);
    return 0;
}

static int hc_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_mutex_lock(&hc->m), 0);
    hc->w = spawn_named(hc_w, NULL, "w");
    hc->x = spawn_named(hc_x, NULL, "x");
    hc->x_id = coro_id(hc->x);
    settle(1); /* w, then x, queue */
    ASSERT_EQ(hc->m.owner, coro_id(coro_self()));
    switch (hc->variant) {
    case HC_CANCEL:
        ASSERT_EQ(coro_mutex_unlock(&hc->m), 0);
        ASSERT_EQ(hc->m.owner, coro_id(hc->w));
        ASSERT_EQ(coro_cancel(hc->w), 0); /* before w runs */
        break;
    case HC_DEADLINE_BEFORE_UNLOCK:
        /* w's deadline has passed, but no loop pass has run its timer: the
         * unlock still picks w, and that is final. */
        spin_until(hc->w_deadline);
        ASSERT_EQ(coro_mutex_unlock(&hc->m), 0);
        ASSERT_EQ(hc->m.owner, coro_id(hc->w));
        break;
    case HC_DEADLINE_AFTER_UNLOCK:
        ASSERT_EQ(coro_mutex_unlock(&hc->m), 0);
        ASSERT_EQ(hc->m.owner, coro_id(hc->w));
        spin_until(hc->w_deadline);
        break;
    }
    /* Nobody else can have it meanwhile. */
    ASSERT_ERRNO(coro_mutex_trylock(&hc->m), EBUSY);
    ASSERT_EQ(hc->m.owner, coro_id(hc->w));
    ASSERT_EQ(coro_join(hc->w, NULL), 0);
    ASSERT_EQ(coro_join(hc->x, NULL), 0);
    ASSERT_EQ(hc->m.owner, 0);
    return 0;
}

static void hc_run(int variant, int want_err)
{
    hc_t s;
    memset(&s, 0, sizeof s);
    coro_mutex_init(&s.m);
    coro_mutex_init(&s.other);
    s.variant = variant;
    s.w_ret = s.x_ret = UNSET;
    hc = &s;
    ASSERT_EQ(coro_main(hc_main, NULL), 0);
    ASSERT_EQ(s.w_ret, 0);
    ASSERT_EQ(s.w_owned, 1);
    ASSERT_EQ(s.next_ret, -1);
    ASSERT_EQ(s.next_err, want_err);
    ASSERT_EQ(s.other_ret, -1);
    ASSERT_EQ(s.other_err, want_err);
    ASSERT_EQ(s.after_w_unlock, s.x_id); /* passed on, not lost */
    ASSERT_EQ(s.x_ret, 0);
}

TEST(sync_mutex_handoff_then_cancel_keeps_lock)
{
    hc_run(HC_CANCEL, ECANCELED);
}

TEST(sync_mutex_handoff_deadline_same_pass_keeps_lock)
{
    hc_run(HC_DEADLINE_BEFORE_UNLOCK, ETIMEDOUT);
    hc_run(HC_DEADLINE_AFTER_UNLOCK, ETIMEDOUT);
}

/* ---- a timed-out waiter leaves the queue --------------------------------- */

typedef struct mt {
    coro_mutex_t m;
    int t_ret, t_err;
    int64_t waited;
    int y_got;
} mt_t;

static int mt_timed(void *arg)
{
    mt_t *s = arg;
    int64_t t0 = coro_now();
    int64_t saved = coro_timeout(2 * CORO_MS);
    errno = 0;
    s->t_ret = coro_mutex_lock(&s->m);
    s->t_err = errno;
    s->waited = coro_now() - t0;
    coro_set_deadline(saved);
    ASSERT(s->m.owner != coro_id(coro_self()));
    return 0;
}

static int mt_y(void *arg)
{
    mt_t *s = arg;
    ASSERT_EQ(coro_mutex_lock(&s->m), 0);
    s->y_got = 1;
    ASSERT_EQ(coro_mutex_unlock(&s->m), 0);
    return 0;
}

static int mt_main(void *arg)
{
    mt_t *s = arg;
    ASSERT_EQ(coro_mutex_lock(&s->m), 0);
    coro_t *t = spawn_named(mt_timed, s, "timed");
    coro_t *y = spawn_named(mt_y, s, "y");
    ASSERT_EQ(coro_join(t, NULL), 0); /* main holds m across t's deadline */
    ASSERT_EQ(s->t_ret, -1);
    ASSERT_EQ(s->t_err, ETIMEDOUT);
    ASSERT_EQ(coro_mutex_unlock(&s->m), 0);
    ASSERT_EQ(s->m.owner, coro_id(y));
    ASSERT_EQ(coro_join(y, NULL), 0);
    return 0;
}

TEST(sync_mutex_timed_out_waiter_leaves_queue)
{
    mt_t s;
    memset(&s, 0, sizeof s);
    /* In simulations, under several seeds (either waiter may queue
     * first): the timed-out wait lasts exactly its 2 ms. */
    for (uint64_t seed = 1; seed <= 6; seed++) {
        memset(&s, 0, sizeof s);
        coro_mutex_init(&s.m);
        ASSERT_EQ(ts_main_sim(mt_main, &s, seed), 0);
        ASSERT_EQ(s.y_got, 1);
        ASSERT_EQ(s.waited, 2 * CORO_MS);
    }
}

/* ---- a checkpoint comes first, even when nothing would block ------------- */

static int cp_fn(void *arg)
{
    int *ran = arg;
    (*ran)++;
    return 0;
}

/* Every blocking call of sync/ on an object where it would not block fails
 * with `want`; the try_ calls, unlocks and releases still work. */
static void checkpoint_first(int want)
{
    coro_mutex_t m = CORO_MUTEX_INIT;
    ASSERT_ERRNO(coro_mutex_lock(&m), want);
    ASSERT_EQ(m.owner, 0);
    ASSERT_EQ(coro_mutex_trylock(&m), 0);
    coro_cond_t c = CORO_COND_INIT;
    ASSERT_ERRNO(coro_cond_wait(&c, &m), want);
    ASSERT_EQ(m.owner, coro_id(coro_self())); /* still held */
    ASSERT_EQ(coro_mutex_unlock(&m), 0);
    ASSERT_EQ(m.owner, 0);

    coro_sem_t s = CORO_SEM_INIT(2);
    ASSERT_ERRNO(coro_sem_acquire(&s), want);
    ASSERT_EQ(coro_sem_value(&s), 2);
    ASSERT_EQ(coro_sem_try_acquire(&s), 0);
    ASSERT_EQ(coro_sem_release(&s), 0);
    ASSERT_EQ(coro_sem_value(&s), 2);

    coro_event_t e = CORO_EVENT_INIT;
    ASSERT_EQ(coro_event_set(&e), 0);
    ASSERT_ERRNO(coro_event_wait(&e), want);
    ASSERT_EQ(coro_event_clear(&e), 0);

    coro_wg_t wg = CORO_WG_INIT;
    ASSERT_ERRNO(coro_wg_wait(&wg), want);
    ASSERT_EQ(coro_wg_add(&wg, 1), 0);
    ASSERT_EQ(coro_wg_done(&wg), 0);

    coro_rwlock_t l = CORO_RWLOCK_INIT;
    ASSERT_ERRNO(coro_rwlock_rdlock(&l), want);
    ASSERT_ERRNO(coro_rwlock_wrlock(&l), want);
    ASSERT_EQ(l.readers, 0);
    ASSERT_EQ(l.writer, 0);
    ASSERT_EQ(coro_rwlock_tryrdlock(&l), 0);
    ASSERT_EQ(coro_rwlock_unlock(&l), 0);
    ASSERT_EQ(coro_rwlock_trywrlock(&l), 0);
    ASSERT_EQ(coro_rwlock_unlock(&l), 0);

    coro_once_t o = CORO_ONCE_INIT;
    int ran = 0;
    ASSERT_ERRNO(coro_once(&o, cp_fn, &ran), want);
    ASSERT_EQ(ran, 0);
    ASSERT_EQ(o.state, 0);
}

static int cp_child(void *arg)
{
    (void)arg;
    coro_yield(); /* main cancels us meanwhile */
    ASSERT_EQ(coro_cancelled(), 1);
    checkpoint_first(ECANCELED);
    return 0;
}

static int cp_main(void *arg)
{
    (void)arg;
    coro_t *c = spawn_named(cp_child, NULL, "cancelled");
    coro_yield();
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);

    int64_t saved = coro_set_deadline(coro_now() - 1);
    checkpoint_first(ETIMEDOUT);
    coro_set_deadline(saved);
    return 0;
}

TEST(sync_checkpoint_first_even_when_free)
{
    ASSERT_EQ(coro_main(cp_main, NULL), 0);
}

/* ---- the deadlock detector names the mutex waits -------------------------- */

typedef struct dlk {
    coro_mutex_t a, b;
    int unwound;
    int main_ret, main_err;
} dlk_t;

static dlk_t *dlk;

static int dlk_locker(void *arg)
{
    int first = arg != NULL;
    coro_mutex_t *x = first ? &dlk->a : &dlk->b;
    coro_mutex_t *y = first ? &dlk->b : &dlk->a;
    ASSERT_EQ(coro_mutex_lock(x), 0);
    coro_yield(); /* the other one takes its first mutex */
    ASSERT_ERRNO(coro_mutex_lock(y), ECANCELED);
    ASSERT(y->owner != coro_id(coro_self()));
    ASSERT_EQ(coro_mutex_unlock(x), 0);
    dlk->unwound++;
    return 0;
}

static int dlk_main(void *arg)
{
    (void)arg;
    coro_t *a = spawn_named(dlk_locker, (void *)1, "locker-ab");
    coro_t *b = spawn_named(dlk_locker, NULL, "locker-ba");
    errno = 0;
    dlk->main_ret = coro_join(a, NULL);
    dlk->main_err = errno;
    (void)b; /* freed by the scheduler at the end */
    return 0;
}

TEST(sync_mutex_deadlock_detected_and_named)
{
    dlk_t d;
    memset(&d, 0, sizeof d);
    coro_mutex_init(&d.a);
    coro_mutex_init(&d.b);
    dlk = &d;
    ts_capture_t cap;
    ts_capture_begin(&cap);
    errno = 0;
    int r = coro_main(dlk_main, NULL);
    int e = errno;
    char *out = ts_capture_end(&cap);
    printf("%s", out);
    ASSERT_EQ(r, -1);
    ASSERT_EQ(e, EDEADLK);
    ASSERT_EQ(d.main_ret, -1);
    ASSERT_EQ(d.main_err, ECANCELED);
    ASSERT_EQ(d.unwound, 2);
    ASSERT_EQ(d.a.owner, 0);
    ASSERT_EQ(d.b.owner, 0);
    ASSERT_CONTAINS(out, "deadlock");
    ASSERT_EQ(ts_count_lines_with(out, "\"locker-ab\" [parked, mutex"), 1);
    ASSERT_EQ(ts_count_lines_with(out, "\"locker-ba\" [parked, mutex"), 1);
    free(out);
}

/* ======================================================================== */
/* condition                                                                */
/* ======================================================================== */

enum { CV_N = 4 };

typedef struct cv {
    coro_mutex_t m;
    coro_cond_t c;
    int tokens, waiting, wakes;
    int idx[CV_N];
    int order[CV_N], n;
} cv_t;

static cv_t *cv;

static int cv_waiter(void *arg)
{
    int i = *(const int *)arg;
    ASSERT_EQ(coro_mutex_lock(&cv->m), 0);
    while (cv->tokens == 0) {
        cv->waiting++;
        ASSERT_EQ(coro_cond_wait(&cv->c, &cv->m), 0);
        ASSERT_EQ(cv->m.owner, coro_id(coro_self()));
        cv->waiting--;
        cv->wakes++;
    }
    cv->tokens--;
    cv->order[cv->n++] = i;
    ASSERT_EQ(coro_mutex_unlock(&cv->m), 0);
    return 0;
}

static int cv_main(void *arg)
{
    (void)arg;
    coro_t *c[CV_N];
    for (int i = 0; i < CV_N; i++) {
        cv->idx[i] = i;
        c[i] = spawn_named(cv_waiter, &cv->idx[i], "waiter");
    }
    settle(1);
    ASSERT_EQ(cv->waiting, CV_N);
    ASSERT_EQ(cv->m.owner, 0); /* each wait released it */

    /* signal: exactly one (the first) wakes, and only once main lets go
     * of the mutex. */
    ASSERT_EQ(coro_mutex_lock(&cv->m), 0);
    cv->tokens = 1;
    ASSERT_EQ(coro_cond_signal(&cv->c), 0);
    settle(3);
    ASSERT_EQ(cv->n, 0);
    ASSERT_EQ(cv->m.owner, coro_id(coro_self()));
    ASSERT_EQ(coro_mutex_unlock(&cv->m), 0);
    settle(3);
    ASSERT_EQ(cv->wakes, 1);
    ASSERT_EQ(cv->n, 1);
    ASSERT_EQ(cv->order[0], 0);
    ASSERT_EQ(cv->waiting, CV_N - 1);

    /* broadcast: all the rest, relocking in FIFO order. */
    ASSERT_EQ(coro_mutex_lock(&cv->m), 0);
    cv->tokens = CV_N - 1;
    ASSERT_EQ(coro_cond_broadcast(&cv->c), 0);
    ASSERT_EQ(coro_mutex_unlock(&cv->m), 0);
    for (int i = 0; i < CV_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    ASSERT_EQ(cv->wakes, CV_N);
    ASSERT_EQ(cv->n, CV_N);
    for (int i = 0; i < CV_N; i++)
        ASSERT_EQ(cv->order[i], i);

    /* A signal with nobody waiting is not remembered. */
    ASSERT_EQ(coro_cond_signal(&cv->c), 0);
    ASSERT_EQ(coro_mutex_lock(&cv->m), 0);
    int64_t t0 = coro_now();
    int64_t saved = coro_timeout(2 * CORO_MS);
    ASSERT_ERRNO(coro_cond_wait(&cv->c, &cv->m), ETIMEDOUT);
    coro_set_deadline(saved);
    ASSERT_GE(coro_now() - t0, 2 * CORO_MS);
    ASSERT_EQ(cv->m.owner, coro_id(coro_self())); /* held again, also on error */
    ASSERT_EQ(coro_mutex_unlock(&cv->m), 0);
    return 0;
}

TEST(sync_cond_signal_broadcast)
{
    cv_t s;
    memset(&s, 0, sizeof s);
    coro_mutex_init(&s.m);
    coro_cond_init(&s.c);
    cv = &s;
    ASSERT_EQ(coro_main(cv_main, NULL), 0);
}

/* ---- EPERM --------------------------------------------------------------- */

static int ce_holder(void *arg)
{
    coro_mutex_t *m = arg;
    ASSERT_EQ(coro_mutex_lock(m), 0);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_mutex_unlock(m), 0);
    return 0;
}

static int ce_main(void *arg)
{
    (void)arg;
    coro_mutex_t m = CORO_MUTEX_INIT;
    coro_cond_t c = CORO_COND_INIT;
    ASSERT_ERRNO(coro_cond_wait(&c, &m), EPERM); /* m free */
    ASSERT_EQ(m.owner, 0);
    coro_t *h = spawn_named(ce_holder, &m, "holder");
    coro_yield();
    ASSERT_EQ(m.owner, coro_id(h));
    ASSERT_ERRNO(coro_cond_wait(&c, &m), EPERM); /* m held by another */
    ASSERT_EQ(m.owner, coro_id(h));
    ASSERT_EQ(coro_join(h, NULL), 0);
    ASSERT_EQ(m.owner, 0);
    return 0;
}

TEST(sync_cond_wait_without_mutex_eperm)
{
    ASSERT_EQ(coro_main(ce_main, NULL), 0);
}

/* ---- a failed wait still holds the mutex -------------------------------- */

typedef struct cc {
    coro_mutex_t m;
    coro_cond_t c;
    int deadline; /* the variant: time out instead of being cancelled */
    int ret, err, owned, returned;
    int main_released;
    int64_t timeout, w_deadline, waited;
} cc_t;

static int cc_waiter(void *arg)
{
    cc_t *s = arg;
    ASSERT_EQ(coro_mutex_lock(&s->m), 0);
    int64_t t0 = coro_now();
    int64_t saved = s->deadline ? coro_timeout(s->timeout) : CORO_NEVER;
    s->w_deadline = coro_deadline();
    errno = 0;
    s->ret = coro_cond_wait(&s->c, &s->m);
    s->err = errno;
    s->waited = coro_now() - t0;
    coro_set_deadline(saved);
    s->owned = s->m.owner == coro_id(coro_self());
    s->returned = 1;
    /* It could not return before main let go of m. */
    ASSERT_EQ(s->main_released, 1);
    if (s->owned)
        ASSERT_EQ(coro_mutex_unlock(&s->m), 0);
    return 0;
}

static int cc_main(void *arg)
{
    cc_t *s = arg;
    coro_t *w = spawn_named(cc_waiter, s, "waiter");
    settle(1); /* w waits; m is free */
    ASSERT_EQ(s->m.owner, 0);
    ASSERT_EQ(coro_mutex_lock(&s->m), 0);
    if (s->deadline) /* w's deadline passes meanwhile */
        ASSERT_EQ(coro_sleep_until(s->w_deadline + CORO_MS), 0);
    else
        ASSERT_EQ(coro_cancel(w), 0);
    settle(3);
    ASSERT_EQ(s->returned, 0); /* woken, but it needs m back first */
    ASSERT_EQ(s->m.owner, coro_id(coro_self()));
    s->main_released = 1;
    ASSERT_EQ(coro_mutex_unlock(&s->m), 0);
    ASSERT_EQ(s->m.owner, coro_id(w)); /* handed to its relock */
    ASSERT_EQ(coro_join(w, NULL), 0);
    ASSERT_EQ(s->m.owner, 0);
    return 0;
}

TEST(sync_cond_cancelled_wait_holds_mutex)
{
    cc_t s;
    memset(&s, 0, sizeof s);
    coro_mutex_init(&s.m);
    coro_cond_init(&s.c);
    ASSERT_EQ(coro_main(cc_main, &s), 0);
    ASSERT_EQ(s.returned, 1);
    ASSERT_EQ(s.ret, -1);
    ASSERT_EQ(s.err, ECANCELED);
    ASSERT_EQ(s.owned, 1);
}

TEST(sync_cond_timeout_holds_mutex)
{
    cc_t s;
    memset(&s, 0, sizeof s);
    coro_mutex_init(&s.m);
    coro_cond_init(&s.c);
    s.deadline = 1;
    s.timeout = ts_bound(10 * CORO_MS); /* it must still be ahead when w parks */
    ASSERT_EQ(coro_main(cc_main, &s), 0);
    ASSERT_EQ(s.returned, 1);
    ASSERT_EQ(s.ret, -1);
    ASSERT_EQ(s.err, ETIMEDOUT);
    ASSERT_EQ(s.owned, 1);
    ASSERT_GE(s.waited, s.timeout);
}

/* ---- a signal to a waiter cancelled before it runs is not lost ------------ */

typedef struct cs {
    coro_mutex_t m;
    coro_cond_t c;
    int w_ret, w_err, w_owned, w_next_err;
    int x_ret, x_returned;
} cs_t;

static int cs_w(void *arg)
{
    cs_t *s = arg;
    ASSERT_EQ(coro_mutex_lock(&s->m), 0);
    errno = 0;
    s->w_ret = coro_cond_wait(&s->c, &s->m);
    s->w_err = errno;
    s->w_owned = s->m.owner == coro_id(coro_self());
    errno = 0;
    ASSERT_EQ(coro_sleep(0), -1);
    s->w_next_err = errno;
    ASSERT_EQ(coro_mutex_unlock(&s->m), 0);
    return 0;
}

static int cs_x(void *arg)
{
    cs_t *s = arg;
    ASSERT_EQ(coro_mutex_lock(&s->m), 0);
    s->x_ret = coro_cond_wait(&s->c, &s->m);
    s->x_returned = 1;
    ASSERT_EQ(s->m.owner, coro_id(coro_self()));
    ASSERT_EQ(coro_mutex_unlock(&s->m), 0);
    return 0;
}

static int cs_main(void *arg)
{
    cs_t *s = arg;
    coro_t *w = spawn_named(cs_w, s, "w");
    coro_t *x = spawn_named(cs_x, s, "x");
    settle(1); /* w, then x, wait */
    ASSERT_EQ(coro_cond_signal(&s->c), 0); /* picks w */
    ASSERT_EQ(coro_cancel(w), 0);         /* before w runs */
    ASSERT_EQ(coro_join(w, NULL), 0);
    settle(2);
    ASSERT_EQ(s->x_returned, 0); /* the signal went to w only */
    ASSERT_EQ(coro_cond_signal(&s->c), 0);
    ASSERT_EQ(coro_join(x, NULL), 0);
    ASSERT_EQ(s->x_returned, 1);
    return 0;
}

TEST(sync_cond_signal_then_cancel_not_lost)
{
    cs_t s;
    memset(&s, 0, sizeof s);
    coro_mutex_init(&s.m);
    coro_cond_init(&s.c);
    s.w_ret = s.x_ret = UNSET;
    ASSERT_EQ(coro_main(cs_main, &s), 0);
    ASSERT_EQ(s.w_ret, 0);
    ASSERT_EQ(s.w_owned, 1);
    ASSERT_EQ(s.w_next_err, ECANCELED);
    ASSERT_EQ(s.x_ret, 0);
}

/* ======================================================================== */
/* semaphore                                                                */
/* ======================================================================== */

enum { SB_N = 10, SB_PERMITS = 3 };

typedef struct sb {
    coro_sem_t s;
    int inside, max_inside;
    long iters;
} sb_t;

static int sb_worker(void *arg)
{
    sb_t *b = arg;
    for (long i = 0; i < b->iters; i++) {
        ASSERT_EQ(coro_sem_acquire(&b->s), 0);
        b->inside++;
        if (b->inside > b->max_inside)
            b->max_inside = b->inside;
        coro_yield();
        if (i % 16 == 0)
            ASSERT_EQ(coro_sleep(10 * CORO_US), 0);
        b->inside--;
        ASSERT_EQ(coro_sem_release(&b->s), 0);
        coro_yield();
    }
    return 0;
}

static int sb_main(void *arg)
{
    sb_t *b = arg;
    coro_t *c[SB_N];
    for (int i = 0; i < SB_N; i++)
        c[i] = spawn_named(sb_worker, b, "worker");
    for (int i = 0; i < SB_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    return 0;
}

TEST(sync_sem_bound_respected)
{
    sb_t b;
    memset(&b, 0, sizeof b);
    ASSERT_EQ(coro_sem_init(&b.s, SB_PERMITS), 0);
    b.iters = ts_count(200, 50);
    ASSERT_EQ(coro_main(sb_main, &b), 0);
    ASSERT_EQ(b.max_inside, SB_PERMITS);
    ASSERT_EQ(b.inside, 0);
    ASSERT_EQ(coro_sem_value(&b.s), SB_PERMITS);
}

/* ---- FIFO, and a release goes to the waiter, not the count ---------------- */

enum { SF_N = 5 };

typedef struct sf {
    coro_sem_t s;
    int idx[SF_N];
    int order[SF_N], n;
} sf_t;

static sf_t *sf;

static int sf_waiter(void *arg)
{
    int i = *(const int *)arg;
    ASSERT_EQ(coro_sem_acquire(&sf->s), 0);
    sf->order[sf->n++] = i;
    return 0;
}

static int sf_main(void *arg)
{
    (void)arg;
    coro_t *c[SF_N];
    for (int i = 0; i < SF_N; i++) {
        sf->idx[i] = i;
        c[i] = spawn_named(sf_waiter, &sf->idx[i], "waiter");
    }
    settle(1);
    ASSERT_EQ(sf->n, 0);
    for (int i = 0; i < SF_N; i++) {
        ASSERT_EQ(coro_sem_release(&sf->s), 0);
        /* Handed over: the count did not move, and main cannot take it. */
        ASSERT_EQ(coro_sem_value(&sf->s), 0);
        ASSERT_ERRNO(coro_sem_try_acquire(&sf->s), EAGAIN);
        settle(1);
        ASSERT_EQ(sf->n, i + 1);
    }
    for (int i = 0; i < SF_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    ASSERT_EQ(coro_sem_release(&sf->s), 0); /* nobody waits: the count */
    ASSERT_EQ(coro_sem_value(&sf->s), 1);
    return 0;
}

TEST(sync_sem_fifo_handoff)
{
    sf_t s;
    memset(&s, 0, sizeof s);
    coro_sem_t init = CORO_SEM_INIT(0);
    s.s = init;
    sf = &s;
    ASSERT_EQ(coro_main(sf_main, NULL), 0);
    for (int i = 0; i < SF_N; i++)
        ASSERT_EQ(s.order[i], i);
}

/* ---- try_acquire, value, init, overflow ----------------------------------- */

static int se_main(void *arg)
{
    (void)arg;
    coro_sem_t s = CORO_SEM_INIT(2);
    ASSERT_EQ(coro_sem_value(&s), 2);
    ASSERT_EQ(coro_sem_try_acquire(&s), 0);
    ASSERT_EQ(coro_sem_value(&s), 1);
    ASSERT_EQ(coro_sem_acquire(&s), 0);
    ASSERT_EQ(coro_sem_value(&s), 0);
    ASSERT_ERRNO(coro_sem_try_acquire(&s), EAGAIN);
    ASSERT_EQ(coro_sem_value(&s), 0);
    ASSERT_EQ(coro_sem_release(&s), 0);
    ASSERT_EQ(coro_sem_release(&s), 0);
    ASSERT_EQ(coro_sem_release(&s), 0); /* more than it started with: fine */
    ASSERT_EQ(coro_sem_value(&s), 3);

    ASSERT_ERRNO(coro_sem_init(&s, -1), EINVAL);
    ASSERT_EQ(coro_sem_value(&s), 3); /* untouched */
    ASSERT_ERRNO(coro_sem_init(&s, LONG_MIN), EINVAL);
    ASSERT_ERRNO(coro_sem_init(NULL, 1), EINVAL);
    ASSERT_EQ(coro_sem_init(&s, 0), 0);
    ASSERT_EQ(coro_sem_value(&s), 0);

    ASSERT_EQ(coro_sem_init(&s, LONG_MAX - 1), 0);
    ASSERT_EQ(coro_sem_release(&s), 0);
    ASSERT_EQ(coro_sem_value(&s), LONG_MAX);
    ASSERT_ERRNO(coro_sem_release(&s), EOVERFLOW);
    ASSERT_EQ(coro_sem_value(&s), LONG_MAX);
    ASSERT_EQ(coro_sem_acquire(&s), 0);
    ASSERT_EQ(coro_sem_value(&s), LONG_MAX - 1);

    ASSERT_ERRNO(coro_sem_acquire(NULL), EINVAL);
    ASSERT_ERRNO(coro_sem_try_acquire(NULL), EINVAL);
    ASSERT_ERRNO(coro_sem_release(NULL), EINVAL);
    ASSERT_EQ(coro_sem_value(NULL), 0);
    return 0;
}

TEST(sync_sem_try_value_init_overflow)
{
    ASSERT_EQ(coro_main(se_main, NULL), 0);
}

/* ---- hand-off vs cancellation ---------------------------------------------- */

typedef struct sc {
    coro_sem_t s;
    int before; /* the variant: cancel before the release picks w */
    int w_ret, w_err, w_next_err;
    int x_ret;
    long value_after_w;
} sc_t;

static int sc_w(void *arg)
{
    sc_t *s = arg;
    errno = 0;
    s->w_ret = coro_sem_acquire(&s->s);
    s->w_err = errno;
    errno = 0;
    ASSERT_EQ(coro_sleep(0), -1);
    s->w_next_err = errno;
    if (s->w_ret == 0) {
        ASSERT_EQ(coro_sem_release(&s->s), 0);
        s->value_after_w = coro_sem_value(&s->s);
    }
    return 0;
}

static int sc_x(void *arg)
{
    sc_t *s = arg;
    s->x_ret = coro_sem_acquire(&s->s);
    ASSERT_EQ(s->x_ret, 0);
    coro_yield();
    ASSERT_EQ(coro_sem_release(&s->s), 0);
    return 0;
}

static int sc_main(void *arg)
{
    sc_t *s = arg;
    ASSERT_EQ(coro_sem_acquire(&s->s), 0); /* the only permit */
    coro_t *w = spawn_named(sc_w, s, "w");
    coro_t *x = spawn_named(sc_x, s, "x");
    settle(1); /* w, then x, wait */
    if (s->before) {
        ASSERT_EQ(coro_cancel(w), 0);
        ASSERT_EQ(coro_join(w, NULL), 0); /* its waiter's stack is gone */
        ASSERT_EQ(coro_sem_release(&s->s), 0); /* goes to x */
    } else {
        ASSERT_EQ(coro_sem_release(&s->s), 0); /* goes to w */
        ASSERT_EQ(coro_cancel(w), 0);         /* before w runs */
    }
    ASSERT_EQ(coro_sem_value(&s->s), 0);
    ASSERT_ERRNO(coro_sem_try_acquire(&s->s), EAGAIN);
    if (!s->before)
        ASSERT_EQ(coro_join(w, NULL), 0);
    ASSERT_EQ(coro_join(x, NULL), 0);
    ASSERT_EQ(coro_sem_value(&s->s), 1); /* conserved */
    return 0;
}

TEST(sync_sem_handoff_then_cancel_keeps_permit)
{
    sc_t s;
    memset(&s, 0, sizeof s);
    ASSERT_EQ(coro_sem_init(&s.s, 1), 0);
    s.w_ret = s.x_ret = UNSET;
    ASSERT_EQ(coro_main(sc_main, &s), 0);
    ASSERT_EQ(s.w_ret, 0);
    ASSERT_EQ(s.w_next_err, ECANCELED);
    ASSERT_EQ(s.value_after_w, 0); /* w's release went on to x */
    ASSERT_EQ(s.x_ret, 0);
    ASSERT_EQ(coro_sem_value(&s.s), 1);
}

TEST(sync_sem_cancel_before_handoff_passes_on)
{
    sc_t s;
    memset(&s, 0, sizeof s);
    ASSERT_EQ(coro_sem_init(&s.s, 1), 0);
    s.before = 1;
    s.w_ret = s.x_ret = UNSET;
    ASSERT_EQ(coro_main(sc_main, &s), 0);
    ASSERT_EQ(s.w_ret, -1);
    ASSERT_EQ(s.w_err, ECANCELED);
    ASSERT_EQ(s.w_next_err, ECANCELED);
    ASSERT_EQ(s.x_ret, 0);
    ASSERT_EQ(coro_sem_value(&s.s), 1);
}

/* ======================================================================== */
/* event                                                                    */
/* ======================================================================== */

enum { EV_N = 4 };

typedef struct ev {
    coro_event_t e;
    int woke, ran;
    int c_ret, c_err;
    int t_ret, t_err;
} ev_t;

static int ev_waiter(void *arg)
{
    ev_t *s = arg;
    ASSERT_EQ(coro_event_wait(&s->e), 0);
    ASSERT_EQ(coro_event_is_set(&s->e), 1);
    s->woke++;
    return 0;
}

static int ev_cancelled(void *arg)
{
    ev_t *s = arg;
    errno = 0;
    s->c_ret = coro_event_wait(&s->e);
    s->c_err = errno;
    return 0;
}

static int ev_marker(void *arg)
{
    ev_t *s = arg;
    s->ran = 1;
    return 0;
}

static int ev_timed(void *arg)
{
    ev_t *s = arg;
    int64_t saved = coro_timeout(2 * CORO_MS);
    errno = 0;
    s->t_ret = coro_event_wait(&s->e);
    s->t_err = errno;
    coro_set_deadline(saved);
    return 0;
}

static int ev_main(void *arg)
{
    ev_t *s = arg;
    ASSERT_EQ(coro_event_is_set(&s->e), 0);
    coro_t *c[EV_N];
    for (int i = 0; i < EV_N; i++)
        c[i] = spawn_named(ev_waiter, s, "waiter");
    coro_t *cw = spawn_named(ev_cancelled, s, "cancelled");
    settle(2);
    ASSERT_EQ(s->woke, 0);
    /* Cancel one waiter: it alone returns, ECANCELED. */
    ASSERT_EQ(coro_cancel(cw), 0);
    ASSERT_EQ(coro_join(cw, NULL), 0);
    ASSERT_EQ(s->c_ret, -1);
    ASSERT_EQ(s->c_err, ECANCELED);
    ASSERT_EQ(s->woke, 0);
    /* set wakes every waiter. */
    ASSERT_EQ(coro_event_set(&s->e), 0);
    ASSERT_EQ(coro_event_is_set(&s->e), 1);
    for (int i = 0; i < EV_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    ASSERT_EQ(s->woke, EV_N);
    /* While set, a wait returns at once: no switch to the ready marker. */
    coro_t *mk = spawn_named(ev_marker, s, "marker");
    ASSERT_EQ(coro_event_wait(&s->e), 0);
    ASSERT_EQ(coro_event_set(&s->e), 0); /* setting again is harmless */
    ASSERT_EQ(coro_event_wait(&s->e), 0);
    ASSERT_EQ(s->ran, 0);
    ASSERT_EQ(coro_join(mk, NULL), 0);
    ASSERT_EQ(s->ran, 1);
    /* clear: waits block again. */
    ASSERT_EQ(coro_event_clear(&s->e), 0);
    ASSERT_EQ(coro_event_is_set(&s->e), 0);
    ASSERT_EQ(coro_event_clear(&s->e), 0);
    coro_t *t = spawn_named(ev_timed, s, "timed");
    ASSERT_EQ(coro_join(t, NULL), 0);
    ASSERT_EQ(s->t_ret, -1);
    ASSERT_EQ(s->t_err, ETIMEDOUT);
    ASSERT_ERRNO(coro_event_set(NULL), EINVAL);
    ASSERT_ERRNO(coro_event_clear(NULL), EINVAL);
    ASSERT_ERRNO(coro_event_wait(NULL), EINVAL);
    ASSERT_EQ(coro_event_is_set(NULL), 0);
    return 0;
}

TEST(sync_event_set_clear_wait_cancel)
{
    ev_t s;
    memset(&s, 0, sizeof s);
    coro_event_init(&s.e);
    ASSERT_EQ(coro_main(ev_main, &s), 0);
}

/* ======================================================================== */
/* wait group                                                               */
/* ======================================================================== */

enum { WG_WORKERS = 3, WG_WAITERS = 6 };

typedef struct wgs {
    coro_wg_t wg;
    int done, released, released_early;
    int c_ret, c_err;
} wgs_t;

static int wg_worker(void *arg)
{
    wgs_t *s = arg;
    ASSERT_EQ(coro_sleep(ts_bound(5 * CORO_MS)), 0);
    s->done++;
    ASSERT_EQ(coro_wg_done(&s->wg), 0);
    return 0;
}

static int wg_waiter(void *arg)
{
    wgs_t *s = arg;
    ASSERT_EQ(coro_wg_wait(&s->wg), 0);
    if (s->done != WG_WORKERS)
        s->released_early++;
    ASSERT_EQ(s->wg.count, 0);
    s->released++;
    return 0;
}

static int wg_cancelled(void *arg)
{
    wgs_t *s = arg;
    errno = 0;
    s->c_ret = coro_wg_wait(&s->wg);
    s->c_err = errno;
    return 0;
}

static int wg_main(void *arg)
{
    wgs_t *s = arg;
    /* At zero: at once. */
    ASSERT_EQ(coro_wg_wait(&s->wg), 0);
    /* Below zero: EINVAL, count unchanged. */
    ASSERT_ERRNO(coro_wg_done(&s->wg), EINVAL);
    ASSERT_EQ(s->wg.count, 0);
    ASSERT_EQ(coro_wg_add(&s->wg, 1), 0);
    ASSERT_ERRNO(coro_wg_add(&s->wg, -2), EINVAL);
    ASSERT_EQ(s->wg.count, 1);
    ASSERT_ERRNO(coro_wg_add(&s->wg, INT_MIN), EINVAL);
    ASSERT_EQ(s->wg.count, 1);
    ASSERT_EQ(coro_wg_done(&s->wg), 0);
    ASSERT_EQ(s->wg.count, 0);
    ASSERT_ERRNO(coro_wg_add(NULL, 1), EINVAL);
    ASSERT_ERRNO(coro_wg_wait(NULL), EINVAL);

    ASSERT_EQ(coro_wg_add(&s->wg, WG_WORKERS), 0);
    coro_t *w[WG_WAITERS], *k[WG_WORKERS];
    for (int i = 0; i < WG_WAITERS; i++)
        w[i] = spawn_named(wg_waiter, s, "waiter");
    coro_t *cw = spawn_named(wg_cancelled, s, "cancelled");
    for (int i = 0; i < WG_WORKERS; i++)
        k[i] = spawn_named(wg_worker, s, "worker");
    settle(1);
    ASSERT_EQ(coro_cancel(cw), 0);
    ASSERT_EQ(coro_join(cw, NULL), 0);
    ASSERT_EQ(s->c_ret, -1);
    ASSERT_EQ(s->c_err, ECANCELED);
    ASSERT_EQ(s->released, 0);
    for (int i = 0; i < WG_WORKERS; i++)
        ASSERT_EQ(coro_join(k[i], NULL), 0);
    for (int i = 0; i < WG_WAITERS; i++)
        ASSERT_EQ(coro_join(w[i], NULL), 0);
    ASSERT_EQ(s->released, WG_WAITERS);
    ASSERT_EQ(s->released_early, 0);
    ASSERT_EQ(s->wg.count, 0);
    ASSERT_ERRNO(coro_wg_done(&s->wg), EINVAL);
    ASSERT_EQ(s->wg.count, 0);
    return 0;
}

TEST(sync_wg_add_done_wait)
{
    wgs_t s;
    memset(&s, 0, sizeof s);
    coro_wg_init(&s.wg);
    s.c_ret = UNSET;
    ASSERT_EQ(coro_main(wg_main, &s), 0);
}

static int wg_overflow_main(void *arg)
{
    (void)arg;
    coro_wg_t wg = CORO_WG_INIT;
    wg.count = LONG_MAX - 1; /* as if added up to here */
    ASSERT_ERRNO(coro_wg_add(&wg, 2), EINVAL);
    ASSERT_EQ(wg.count, LONG_MAX - 1);
    ASSERT_EQ(coro_wg_add(&wg, 1), 0);
    ASSERT_EQ(wg.count, LONG_MAX);
    ASSERT_ERRNO(coro_wg_add(&wg, 1), EINVAL);
    ASSERT_EQ(wg.count, LONG_MAX);
    return 0;
}

TEST(sync_wg_overflow_einval)
{
    ASSERT_EQ(coro_main(wg_overflow_main, NULL), 0);
}

/* ======================================================================== */
/* read-write lock                                                          */
/* ======================================================================== */

/* ---- readers share, a writer excludes everyone ------------------------------ */

enum { RW_READERS = 5, RW_WRITERS = 2 };

typedef struct rwx {
    coro_rwlock_t l;
    long iters;
    int readers_in, writers_in, max_readers, max_writers;
    long counter;
} rwx_t;

static int rwx_reader(void *arg)
{
    rwx_t *s = arg;
    for (long i = 0; i < s->iters; i++) {
        ASSERT_EQ(coro_rwlock_rdlock(&s->l), 0);
        ASSERT_EQ(s->writers_in, 0);
        ASSERT_EQ(s->l.writer, 0);
        s->readers_in++;
        if (s->readers_in > s->max_readers)
            s->max_readers = s->readers_in;
        long v = s->counter;
        settle(2);
        ASSERT_EQ(s->counter, v); /* no writer got in meanwhile */
        s->readers_in--;
        ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
        if (i & 1)
            coro_yield();
    }
    return 0;
}

static int rwx_writer(void *arg)
{
    rwx_t *s = arg;
    for (long i = 0; i < s->iters; i++) {
        ASSERT_EQ(coro_rwlock_wrlock(&s->l), 0);
        ASSERT_EQ(s->l.writer, coro_id(coro_self()));
        ASSERT_EQ(s->l.readers, 0);
        ASSERT_EQ(s->readers_in, 0);
        s->writers_in++;
        if (s->writers_in > s->max_writers)
            s->max_writers = s->writers_in;
        long v = s->counter;
        coro_yield();
        s->counter = v + 1;
        s->writers_in--;
        ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
        coro_yield();
    }
    return 0;
}

static int rwx_main(void *arg)
{
    rwx_t *s = arg;
    coro_t *c[RW_READERS + RW_WRITERS];
    /* Readers only first: they all get in together. */
    long iters = s->iters;
    s->iters = 1;
    for (int i = 0; i < RW_READERS; i++)
        c[i] = spawn_named(rwx_reader, s, "reader");
    coro_yield();
    ASSERT_EQ(s->l.readers, RW_READERS);
    for (int i = 0; i < RW_READERS; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    ASSERT_EQ(s->max_readers, RW_READERS);
    ASSERT_EQ(s->l.readers, 0);

    /* Then a mix. */
    s->iters = iters;
    s->max_readers = 0;
    for (int i = 0; i < RW_READERS + RW_WRITERS; i++)
        c[i] = spawn_named(i < RW_READERS ? rwx_reader : rwx_writer, s,
                           i < RW_READERS ? "reader" : "writer");
    for (int i = 0; i < RW_READERS + RW_WRITERS; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    return 0;
}

TEST(sync_rwlock_readers_share_writer_excludes)
{
    rwx_t s;
    memset(&s, 0, sizeof s);
    coro_rwlock_init(&s.l);
    s.iters = ts_count(100, 30);
    ASSERT_EQ(coro_main(rwx_main, &s), 0);
    ASSERT_EQ(s.counter, RW_WRITERS * s.iters);
    ASSERT_EQ(s.max_writers, 1);
    ASSERT_GE(s.max_readers, 2);
    ASSERT_EQ(s.l.readers, 0);
    ASSERT_EQ(s.l.writer, 0);
}

/* ---- writer-preferring ------------------------------------------------------- */

typedef struct wp {
    coro_rwlock_t l;
    coro_event_t go;
    char order[8];
    int n;
    coro_t *w;
} wp_t;

static int wp_holder(void *arg)
{
    wp_t *s = arg;
    ASSERT_EQ(coro_rwlock_rdlock(&s->l), 0);
    ASSERT_EQ(coro_event_wait(&s->go), 0);
    ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
    return 0;
}

static int wp_writer(void *arg)
{
    wp_t *s = arg;
    ASSERT_EQ(coro_rwlock_wrlock(&s->l), 0);
    ASSERT_EQ(s->l.writer, coro_id(coro_self()));
    ASSERT_EQ(s->l.readers, 0);
    s->order[s->n++] = 'W';
    settle(2); /* the queued reader stays out meanwhile */
    ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
    return 0;
}

static int wp_reader(void *arg)
{
    wp_t *s = arg;
    ASSERT_EQ(coro_rwlock_rdlock(&s->l), 0);
    ASSERT_EQ(s->l.writer, 0);
    s->order[s->n++] = 'R';
    ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
    return 0;
}

static int wp_main(void *arg)
{
    wp_t *s = arg;
    coro_t *h1 = spawn_named(wp_holder, s, "holder");
    coro_t *h2 = spawn_named(wp_holder, s, "holder");
    settle(1);
    ASSERT_EQ(s->l.readers, 2);
    s->w = spawn_named(wp_writer, s, "writer");
    settle(1);
    ASSERT_EQ(s->l.writer, 0); /* queued */
    ASSERT_EQ(s->l.readers, 2);
    /* A writer waits: a new reader may not join the two holders. */
    ASSERT_ERRNO(coro_rwlock_tryrdlock(&s->l), EBUSY);
    ASSERT_ERRNO(coro_rwlock_trywrlock(&s->l), EBUSY);
    ASSERT_EQ(s->l.readers, 2);
    coro_t *r = spawn_named(wp_reader, s, "reader");
    settle(2);
    ASSERT_EQ(s->l.readers, 2);
    ASSERT_EQ(s->n, 0);
    ASSERT_EQ(coro_event_set(&s->go), 0);
    ASSERT_EQ(coro_join(h1, NULL), 0);
    ASSERT_EQ(coro_join(h2, NULL), 0);
    ASSERT_EQ(coro_join(s->w, NULL), 0);
    ASSERT_EQ(coro_join(r, NULL), 0);
    ASSERT_EQ(s->l.readers, 0);
    ASSERT_EQ(s->l.writer, 0);
    return 0;
}

TEST(sync_rwlock_writer_preferring)
{
    wp_t s;
    memset(&s, 0, sizeof s);
    coro_rwlock_init(&s.l);
    coro_event_init(&s.go);
    ASSERT_EQ(coro_main(wp_main, &s), 0);
    ASSERT_EQ(s.n, 2);
    ASSERT_EQ(s.order[0], 'W');
    ASSERT_EQ(s.order[1], 'R');
}

/* ---- FIFO between readers and writers: neither starves --------------------- */

enum { RF_N = 6 };

typedef struct rf {
    coro_rwlock_t l;
    const char *kinds; /* 'r' or 'w' per waiter, in queue order */
    int idx[RF_N];
    int order[RF_N], n;
    long readers_at_entry[RF_N];
} rf_t;

static rf_t *rf;

static int rf_waiter(void *arg)
{
    int i = *(const int *)arg;
    int write = rf->kinds[i] == 'w';
    ASSERT_EQ(write ? coro_rwlock_wrlock(&rf->l) : coro_rwlock_rdlock(&rf->l), 0);
    rf->readers_at_entry[i] = rf->l.readers;
    if (write)
        ASSERT_EQ(rf->l.writer, coro_id(coro_self()));
    else
        ASSERT_EQ(rf->l.writer, 0);
    rf->order[rf->n++] = i;
    settle(2);
    ASSERT_EQ(coro_rwlock_unlock(&rf->l), 0);
    return 0;
}

static int rf_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_rwlock_wrlock(&rf->l), 0);
    coro_t *c[RF_N];
    for (int i = 0; i < RF_N; i++) {
        rf->idx[i] = i;
        c[i] = spawn_named(rf_waiter, &rf->idx[i], "waiter");
    }
    settle(1); /* all queue, in order */
    ASSERT_EQ(rf->n, 0);
    ASSERT_EQ(coro_rwlock_unlock(&rf->l), 0);
    /* Granted to the head only: one reader, up to the queued writer. */
    ASSERT_EQ(rf->l.readers, 1);
    ASSERT_EQ(rf->l.writer, 0);
    for (int i = 0; i < RF_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    return 0;
}

TEST(sync_rwlock_fifo_no_starvation)
{
    rf_t s;
    memset(&s, 0, sizeof s);
    coro_rwlock_init(&s.l);
    s.kinds = "rwrrww"; /* writers cannot starve the readers queued before them */
    rf = &s;
    ASSERT_EQ(coro_main(rf_main, NULL), 0);
    ASSERT_EQ(s.n, RF_N);
    ASSERT_EQ(s.order[0], 0);
    ASSERT_EQ(s.readers_at_entry[0], 1);
    ASSERT_EQ(s.order[1], 1);
    ASSERT_EQ(s.readers_at_entry[1], 0);
    /* 2 and 3 were granted together. */
    ASSERT_EQ(s.order[2], 2);
    ASSERT_EQ(s.order[3], 3);
    ASSERT_EQ(s.readers_at_entry[2], 2);
    ASSERT_EQ(s.readers_at_entry[3], 2);
    ASSERT_EQ(s.order[4], 4);
    ASSERT_EQ(s.order[5], 5);
}

/* ---- errors ---------------------------------------------------------------------- */

static int rwe_other(void *arg)
{
    coro_rwlock_t *l = arg;
    uint64_t w = l->writer;
    ASSERT_NE(w, 0);
    ASSERT_ERRNO(coro_rwlock_unlock(l), EPERM); /* someone else's write lock */
    ASSERT_EQ(l->writer, w);
    ASSERT_ERRNO(coro_rwlock_tryrdlock(l), EBUSY);
    ASSERT_ERRNO(coro_rwlock_trywrlock(l), EBUSY);
    return 0;
}

static int rwe_main(void *arg)
{
    (void)arg;
    coro_rwlock_t l = CORO_RWLOCK_INIT;
    ASSERT_ERRNO(coro_rwlock_unlock(&l), EPERM); /* not held */
    ASSERT_EQ(coro_rwlock_wrlock(&l), 0);
    ASSERT_ERRNO(coro_rwlock_wrlock(&l), EDEADLK);
    ASSERT_ERRNO(coro_rwlock_rdlock(&l), EDEADLK);
    ASSERT_ERRNO(coro_rwlock_trywrlock(&l), EBUSY);
    ASSERT_ERRNO(coro_rwlock_tryrdlock(&l), EBUSY);
    ASSERT_EQ(l.writer, coro_id(coro_self()));
    ASSERT_EQ(l.readers, 0);
    coro_t *o = spawn_named(rwe_other, &l, "other");
    ASSERT_EQ(coro_join(o, NULL), 0);
    ASSERT_EQ(coro_rwlock_unlock(&l), 0);
    ASSERT_EQ(l.writer, 0);
    ASSERT_ERRNO(coro_rwlock_unlock(&l), EPERM);

    ASSERT_EQ(coro_rwlock_tryrdlock(&l), 0);
    ASSERT_EQ(coro_rwlock_rdlock(&l), 0); /* nobody waits: a reader may nest */
    ASSERT_EQ(l.readers, 2);
    ASSERT_ERRNO(coro_rwlock_trywrlock(&l), EBUSY);
    ASSERT_EQ(coro_rwlock_unlock(&l), 0);
    ASSERT_EQ(coro_rwlock_unlock(&l), 0);
    ASSERT_EQ(l.readers, 0);
    ASSERT_ERRNO(coro_rwlock_unlock(&l), EPERM);
    ASSERT_EQ(l.readers, 0);

    ASSERT_ERRNO(coro_rwlock_rdlock(NULL), EINVAL);
    ASSERT_ERRNO(coro_rwlock_wrlock(NULL), EINVAL);
    ASSERT_ERRNO(coro_rwlock_tryrdlock(NULL), EINVAL);
    ASSERT_ERRNO(coro_rwlock_trywrlock(NULL), EINVAL);
    ASSERT_ERRNO(coro_rwlock_unlock(NULL), EINVAL);
    return 0;
}

TEST(sync_rwlock_errors)
{
    ASSERT_EQ(coro_main(rwe_main, NULL), 0);
}

/* ---- cancel a queued writer ---------------------------------------------------- */

typedef struct rc {
    coro_rwlock_t l;
    int w_ret, w_err;
    int readers_in;
    long readers_at_entry[2];
    int idx[2];
} rc_t;

static rc_t *rc;

static int rc_writer(void *arg)
{
    (void)arg;
    errno = 0;
    rc->w_ret = coro_rwlock_wrlock(&rc->l);
    rc->w_err = errno;
    ASSERT(rc->l.writer != coro_id(coro_self()));
    return 0;
}

static int rc_reader(void *arg)
{
    int i = *(const int *)arg;
    ASSERT_EQ(coro_rwlock_rdlock(&rc->l), 0);
    rc->readers_at_entry[i] = rc->l.readers;
    rc->readers_in++;
    settle(2);
    ASSERT_EQ(coro_rwlock_unlock(&rc->l), 0);
    return 0;
}

static int rc_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_rwlock_rdlock(&rc->l), 0);
    coro_t *w = spawn_named(rc_writer, NULL, "writer");
    coro_t *r[2];
    for (int i = 0; i < 2; i++) {
        rc->idx[i] = i;
        r[i] = spawn_named(rc_reader, &rc->idx[i], "reader");
    }
    settle(1); /* the writer queues, and the readers behind it */
    ASSERT_EQ(rc->l.readers, 1);
    ASSERT_EQ(rc->readers_in, 0);
    ASSERT_ERRNO(coro_rwlock_tryrdlock(&rc->l), EBUSY);
    ASSERT_EQ(coro_cancel(w), 0);
    ASSERT_EQ(coro_join(w, NULL), 0);
    ASSERT_EQ(rc->w_ret, -1);
    ASSERT_EQ(rc->w_err, ECANCELED);
    ASSERT_EQ(rc->l.writer, 0);
    /* Once main lets go (if not before), both readers are in together. */
    ASSERT_EQ(coro_rwlock_unlock(&rc->l), 0);
    ASSERT_EQ(rc->l.readers, 2);
    ASSERT_EQ(rc->l.writer, 0);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(coro_join(r[i], NULL), 0);
    ASSERT_EQ(rc->readers_in, 2);
    /* In together (with main too, if they got in before it let go). */
    ASSERT_GE(rc->readers_at_entry[0], 2);
    ASSERT_GE(rc->readers_at_entry[1], 2);
    ASSERT_EQ(rc->l.readers, 0);
    return 0;
}

TEST(sync_rwlock_cancel_queued_writer)
{
    rc_t s;
    memset(&s, 0, sizeof s);
    coro_rwlock_init(&s.l);
    s.w_ret = UNSET;
    rc = &s;
    ASSERT_EQ(coro_main(rc_main, NULL), 0);
}

/* The only writer that was waiting has gone, so nothing may keep the
 * readers queued behind it out while the lock is held for reading: a
 * holder that waits for such a reader must not deadlock (that is only the
 * documented case of a reader nesting while a writer waits). */
typedef struct rg {
    coro_rwlock_t l;
    coro_event_t in;
    int deadline; /* the writer times out instead of being cancelled */
    int w_ret, w_err;
    int holder_ret, holder_err;
} rg_t;

static int rg_writer(void *arg)
{
    rg_t *s = arg;
    int64_t saved = s->deadline ? coro_timeout(ts_bound(2 * CORO_MS)) : CORO_NEVER;
    errno = 0;
    s->w_ret = coro_rwlock_wrlock(&s->l);
    s->w_err = errno;
    coro_set_deadline(saved);
    return 0;
}

static int rg_reader(void *arg)
{
    rg_t *s = arg;
    ASSERT_EQ(coro_rwlock_rdlock(&s->l), 0);
    ASSERT_EQ(coro_event_set(&s->in), 0);
    ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
    return 0;
}

static int rg_main(void *arg)
{
    rg_t *s = arg;
    ASSERT_EQ(coro_rwlock_rdlock(&s->l), 0);
    coro_t *w = spawn_named(rg_writer, s, "writer");
    coro_t *r = spawn_named(rg_reader, s, "reader");
    settle(1); /* writer queued, reader queued behind it */
    ASSERT_EQ(s->l.readers, 1);
    if (!s->deadline)
        ASSERT_EQ(coro_cancel(w), 0);
    ASSERT_EQ(coro_join(w, NULL), 0);
    ASSERT_EQ(s->w_ret, -1);
    ASSERT_EQ(s->w_err, s->deadline ? ETIMEDOUT : ECANCELED);
    /* Wait, still holding the read lock, for the reader to get in. */
    int64_t saved = coro_timeout(ts_bound(200 * CORO_MS));
    errno = 0;
    s->holder_ret = coro_event_wait(&s->in);
    s->holder_err = errno;
    coro_set_deadline(saved);
    ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
    ASSERT_EQ(coro_join(r, NULL), 0);
    ASSERT_EQ(s->l.readers, 0);
    return 0;
}

static void rg_run(int deadline)
{
    rg_t s;
    memset(&s, 0, sizeof s);
    coro_rwlock_init(&s.l);
    coro_event_init(&s.in);
    s.deadline = deadline;
    ASSERT_EQ(coro_main(rg_main, &s), 0);
    ASSERT_EQ(s.holder_ret, 0);
}

TEST(sync_rwlock_gone_writer_lets_readers_in)
{
    rg_run(0);
    rg_run(1);
}

/* ---- a grant, then the grantee is cancelled -------------------------------- */

typedef struct rh {
    coro_rwlock_t l;
    int write; /* the grantee wants the write lock */
    int deadline;
    int64_t g_deadline;
    int g_ret, g_err, g_held, g_next_err;
    long readers_after_g;
    uint64_t writer_after_g;
    int x_ret;
} rh_t;

static int rh_grantee(void *arg)
{
    rh_t *s = arg;
    int64_t saved = CORO_NEVER;
    if (s->deadline) {
        saved = coro_timeout(ts_bound(20 * CORO_MS));
        s->g_deadline = coro_deadline();
    }
    errno = 0;
    s->g_ret = s->write ? coro_rwlock_wrlock(&s->l) : coro_rwlock_rdlock(&s->l);
    s->g_err = errno;
    s->g_held = s->write ? s->l.writer == coro_id(coro_self()) : (s->l.readers == 1 && !s->l.writer);
    errno = 0;
    ASSERT_EQ(coro_sleep(0), -1);
    s->g_next_err = errno;
    coro_set_deadline(saved);
    if (s->g_ret == 0) {
        ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
        s->readers_after_g = s->l.readers;
        s->writer_after_g = s->l.writer;
    }
    return 0;
}

static int rh_next(void *arg)
{
    rh_t *s = arg;
    /* The opposite kind, so that it cannot share with the grantee. */
    s->x_ret = s->write ? coro_rwlock_rdlock(&s->l) : coro_rwlock_wrlock(&s->l);
    ASSERT_EQ(s->x_ret, 0);
    ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
    return 0;
}

static int rh_main(void *arg)
{
    rh_t *s = arg;
    /* main holds the kind the grantee cannot share. */
    ASSERT_EQ(s->write ? coro_rwlock_rdlock(&s->l) : coro_rwlock_wrlock(&s->l), 0);
    coro_t *g = spawn_named(rh_grantee, s, "grantee");
    coro_t *x = spawn_named(rh_next, s, "next");
    settle(1);
    if (s->deadline)
        spin_until(s->g_deadline);
    ASSERT_EQ(coro_rwlock_unlock(&s->l), 0);
    /* Granted there and then. */
    if (s->write) {
        ASSERT_EQ(s->l.writer, coro_id(g));
        ASSERT_EQ(s->l.readers, 0);
    } else {
        ASSERT_EQ(s->l.writer, 0);
        ASSERT_EQ(s->l.readers, 1);
    }
    if (!s->deadline)
        ASSERT_EQ(coro_cancel(g), 0);
    ASSERT_ERRNO(coro_rwlock_trywrlock(&s->l), EBUSY);
    ASSERT_EQ(coro_join(g, NULL), 0);
    ASSERT_EQ(coro_join(x, NULL), 0);
    ASSERT_EQ(s->l.readers, 0);
    ASSERT_EQ(s->l.writer, 0);
    return 0;
}

static void rh_run(int write, int deadline)
{
    rh_t s;
    memset(&s, 0, sizeof s);
    coro_rwlock_init(&s.l);
    s.write = write;
    s.deadline = deadline;
    s.g_ret = s.x_ret = UNSET;
    ASSERT_EQ(coro_main(rh_main, &s), 0);
    ASSERT_EQ(s.g_ret, 0);
    ASSERT_EQ(s.g_held, 1);
    ASSERT_EQ(s.g_next_err, deadline ? ETIMEDOUT : ECANCELED);
    /* Its unlock granted the next one in line. */
    if (write) {
        ASSERT_EQ(s.readers_after_g, 1);
        ASSERT_EQ(s.writer_after_g, 0);
    } else {
        ASSERT_EQ(s.readers_after_g, 0);
        ASSERT_NE(s.writer_after_g, 0);
    }
    ASSERT_EQ(s.x_ret, 0);
}

TEST(sync_rwlock_grant_then_cancel_keeps_lock)
{
    rh_run(1, 0);
    rh_run(0, 0);
    rh_run(1, 1);
    rh_run(0, 1);
}

/* ======================================================================== */
/* once                                                                     */
/* ======================================================================== */

enum { ON_N = 10 };

typedef struct on {
    coro_once_t o;
    int runs, fn_done, fail_first;
    int ret[ON_N], err[ON_N], saw_done[ON_N];
    int idx[ON_N];
    int c_ret, c_err, c_saw_done;
} on_t;

static on_t *on;

static int on_fn(void *arg)
{
    on_t *s = arg;
    s->runs++;
    s->fn_done = 0;
    settle(3); /* the others arrive meanwhile */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    if (s->fail_first && s->runs == 1)
        return 3;
    s->fn_done = 1;
    return 0;
}

static int on_caller(void *arg)
{
    int i = *(const int *)arg;
    errno = 0;
    on->ret[i] = coro_once(&on->o, on_fn, on);
    on->err[i] = errno;
    on->saw_done[i] = on->fn_done;
    return 0;
}

static int on_main(void *arg)
{
    (void)arg;
    coro_t *c[ON_N];
    for (int i = 0; i < ON_N; i++) {
        on->idx[i] = i;
        on->ret[i] = UNSET;
        c[i] = spawn_named(on_caller, &on->idx[i], "caller");
    }
    for (int i = 0; i < ON_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    int runs = on->runs;
    /* Done: later calls return at once, without running fn. */
    ASSERT_EQ(coro_once(&on->o, on_fn, on), 0);
    ASSERT_EQ(on->runs, runs);
    ASSERT_ERRNO(coro_once(NULL, on_fn, on), EINVAL);
    ASSERT_ERRNO(coro_once(&on->o, NULL, on), EINVAL);
    return 0;
}

TEST(sync_once_runs_exactly_once)
{
    on_t s;
    memset(&s, 0, sizeof s);
    on = &s;
    ASSERT_EQ(coro_main(on_main, NULL), 0);
    ASSERT_EQ(s.runs, 1);
    for (int i = 0; i < ON_N; i++) {
        ASSERT_EQ(s.ret[i], 0);
        ASSERT_EQ(s.saw_done[i], 1); /* nobody returned before fn had */
    }
}

TEST(sync_once_failure_retried)
{
    on_t s;
    memset(&s, 0, sizeof s);
    s.fail_first = 1;
    on = &s;
    ASSERT_EQ(coro_main(on_main, NULL), 0);
    ASSERT_EQ(s.runs, 2);
    int threes = 0;
    for (int i = 0; i < ON_N; i++) {
        if (s.ret[i] == 3) {
            threes++;
            ASSERT_EQ(i, 0); /* the first caller ran it first */
        } else {
            ASSERT_EQ(s.ret[i], 0);
            ASSERT_EQ(s.saw_done[i], 1);
        }
    }
    ASSERT_EQ(threes, 1);
}

/* Sequential: a failure leaves it undone. */
static int seq_fn(void *arg)
{
    int *st = arg;
    st[1]++;
    return st[0];
}

static int once_seq_main(void *arg)
{
    (void)arg;
    coro_once_t o = CORO_ONCE_INIT;
    int st[2] = { 3, 0 }; /* the status fn returns; its runs */
    ASSERT_EQ(coro_once(&o, seq_fn, st), 3);
    ASSERT_EQ(coro_once(&o, seq_fn, st), 3);
    ASSERT_EQ(st[1], 2);
    st[0] = 0;
    ASSERT_EQ(coro_once(&o, seq_fn, st), 0);
    ASSERT_EQ(st[1], 3);
    st[0] = 3;
    ASSERT_EQ(coro_once(&o, seq_fn, st), 0);
    ASSERT_EQ(st[1], 3);
    return 0;
}

TEST(sync_once_failure_sequential)
{
    ASSERT_EQ(coro_main(once_seq_main, NULL), 0);
}

static int on_cancelled(void *arg)
{
    (void)arg;
    errno = 0;
    on->c_ret = coro_once(&on->o, on_fn, on);
    on->c_err = errno;
    on->c_saw_done = on->fn_done;
    return 0;
}

static int once_cancel_main(void *arg)
{
    (void)arg;
    on->idx[0] = 0;
    coro_t *runner = spawn_named(on_caller, &on->idx[0], "runner");
    coro_yield(); /* runner is inside fn */
    ASSERT_EQ(on->runs, 1);
    coro_t *w = spawn_named(on_cancelled, NULL, "waiter");
    coro_yield(); /* w waits */
    ASSERT_EQ(coro_cancel(w), 0);
    ASSERT_EQ(coro_join(w, NULL), 0); /* at once, fn still running */
    ASSERT_EQ(on->c_ret, -1);
    ASSERT_EQ(on->c_err, ECANCELED);
    ASSERT_EQ(on->c_saw_done, 0);
    ASSERT_EQ(coro_join(runner, NULL), 0);
    ASSERT_EQ(on->ret[0], 0);
    ASSERT_EQ(on->runs, 1);
    return 0;
}

TEST(sync_once_cancel_waiter)
{
    on_t s;
    memset(&s, 0, sizeof s);
    s.c_ret = UNSET;
    on = &s;
    ASSERT_EQ(coro_main(once_cancel_main, NULL), 0);
}
