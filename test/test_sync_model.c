/* test/test_sync_model.c: a randomised model test of the mutex and the
 * semaphore under cancellation and deadlines. With a fixed seed, 50 slots
 * each run a coroutine doing random steps: lock/trylock/unlock on three
 * mutexes, acquire/try/release on a semaphore of three permits, yields,
 * short sleeps, and cancellations of random other slots; a deadline of
 * 0-2 ms is put around some blocking calls. A cancelled coroutine (its
 * blocking calls now fail: cancellation is sticky) releases what it holds
 * and ends, and a fresh coroutine takes its slot.
 *
 * A small model follows along, and after every step the invariants are
 * checked against the real objects:
 *   - a mutex is never owned by two: the model's owner (set when a lock
 *     returns 0, cleared at unlock) is m.owner; while the model says free,
 *     m.owner is NULL or a coroutine still inside its lock of that mutex
 *     (handed over, not yet run), whose lock must then return 0, even if
 *     it is cancelled or its deadline passes before it runs;
 *   - permits are conserved: held + value + handed-over-in-flight == 3,
 *     and a release with nobody waiting raises the count;
 *   - every blocking call returns 0, ECANCELED (only once cancelled, and
 *     always when it starts cancelled) or ETIMEDOUT (only under a
 *     deadline);
 *   - FIFO: every caller that queues takes a ticket; the callers that get
 *     the mutex (or a permit) after queueing do so in ticket order.
 * Deadlocks are avoided by a lock order (mutex 0 < 1 < 2 < permit); at the
 * end every coroutine has finished and every count is back.
 *
 * The same model runs again in deterministic simulations under 200 seeds
 * (8 under Valgrind): each seed another interleaving of the slots and
 * other random steps, with deadlines exact in virtual time; the last
 * "seed N" line before a failure names it, and CORO_SIM_SEED=N runs that
 * one seed alone. */
#include "test/test_sched.h"

enum { NSLOT = 50, NMUTEX = 3, PERMITS = 3 };

enum { ST_IDLE, ST_LOCKING, ST_ACQUIRING };

typedef struct slot {
    coro_t *coro;   /* the slot's live coroutine; NULL once it has ended */
    int gen;
    uint64_t rng;
    int cancelled;  /* coro_cancel was called on this generation */
    int state;      /* ST_LOCKING / ST_ACQUIRING while inside the call */
    int state_obj;  /* which mutex */
    int promised;   /* seen as m.owner while still inside its lock */
    unsigned held;  /* mutexes held (model) */
    int permit;     /* holds a permit (model) */
} slot_t;

typedef struct stats {
    long steps, checks;
    long calls, ok, canceled, timedout;
    long queued_locks, queued_acquires;   /* got it after queueing */
    long mutex_handoffs, sem_handoffs;    /* seen in flight */
    long handoff_then_cancel;             /* granted, cancelled before it ran */
    long cancels, respawns, trylock_busy, try_again;
} stats_t;

typedef struct model {
    coro_mutex_t m[NMUTEX];
    coro_sem_t sem;
    coro_wg_t wg;
    slot_t slot[NSLOT];
    int owner[NMUTEX];   /* slot holding each mutex per the model, or -1 */
    long held_permits;   /* permits the slots hold */
    long inflight;       /* permits handed to waiters that have not run yet */
    long acquiring;      /* slots inside coro_sem_acquire */
    uint64_t ticket[NMUTEX], last_ticket[NMUTEX];
    uint64_t sem_ticket, last_sem_ticket;
    long total;
    uint64_t seed;       /* mixed into every slot's generator */
    /* Permits are granted in FIFO order; the model sees a grant only when
     * its coroutine runs, which is FIFO order too on the real scheduler
     * but the seed's order in a simulation (two grants in flight may run
     * either way round). So the semaphore's order is checked on the real
     * clock only; the mutex's always (one grant in flight at a time). */
    int sem_fifo_by_run;
    stats_t st;
} model_t;

static model_t *M;

static uint64_t rnd(slot_t *s, uint64_t n)
{
    return ts_rand(&s->rng) % n;
}

static void seed_slot(slot_t *s, int k)
{
    s->rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(k + 1) * 0xBF58476D1CE4E5B9ULL) ^
             ((uint64_t)(s->gen + 1) * 0x94D049BB133111EBULL) ^ M->seed * 0xD6E8FEB86659FD93ULL;
    if (!s->rng)
        s->rng = 1;
}

/* The slot of the coroutine with id `id` (mutex owners are ids). */
static int slot_of(uint64_t id)
{
    for (int k = 0; k < NSLOT; k++)
        if (M->slot[k].coro && coro_id(M->slot[k].coro) == id)
            return k;
    return -1;
}

/* ---- invariants ----------------------------------------------------------- */

static void check_invariants(void)
{
    M->st.checks++;
    for (int i = 0; i < NMUTEX; i++) {
        uint64_t o = M->m[i].owner;
        if (M->owner[i] >= 0) {
            ASSERT_EQ(o, coro_id(M->slot[M->owner[i]].coro));
            ASSERT(M->slot[M->owner[i]].held & (1u << i));
        } else if (o) {
            /* Handed over, not yet returned: it must be inside its lock of
             * this very mutex. */
            int j = slot_of(o);
            ASSERT_GE(j, 0);
            ASSERT_EQ(M->slot[j].state, ST_LOCKING);
            ASSERT_EQ(M->slot[j].state_obj, i);
            if (!M->slot[j].promised)
                M->st.mutex_handoffs++;
            M->slot[j].promised = 1;
        }
    }
    long held = 0;
    for (int k = 0; k < NSLOT; k++) {
        held += M->slot[k].permit;
        for (int i = 0; i < NMUTEX; i++)
            if (M->slot[k].held & (1u << i))
                ASSERT_EQ(M->owner[i], k); /* never two owners in the model */
    }
    ASSERT_EQ(held, M->held_permits);
    long v = coro_sem_value(&M->sem);
    ASSERT_GE(v, 0);
    ASSERT_GE(M->inflight, 0);
    ASSERT_LE(M->inflight, M->acquiring);
    ASSERT_EQ(M->held_permits + v + M->inflight, PERMITS);
}

/* A blocking call returned r with errno e: only 0, ECANCELED or ETIMEDOUT,
 * each only when it can be. Returns 1 if the slot must end (cancelled). */
static int check_result(slot_t *s, int r, int e, int was_cancelled, int had_deadline)
{
    M->st.calls++;
    if (was_cancelled) {
        /* Cancelled before the call: the checkpoint fails first. */
        ASSERT_EQ(r, -1);
        ASSERT_EQ(e, ECANCELED);
    }
    if (r == 0) {
        M->st.ok++;
        return 0;
    }
    ASSERT_EQ(r, -1);
    if (e == ECANCELED) {
        ASSERT(s->cancelled);
        M->st.canceled++;
        return 1;
    }
    ASSERT_EQ(e, ETIMEDOUT);
    ASSERT(had_deadline);
    M->st.timedout++;
    return 0;
}

/* ---- steps ------------------------------------------------------------------ */

static int64_t maybe_deadline(slot_t *s, int *had)
{
    *had = rnd(s, 100) < 40;
    if (!*had)
        return coro_deadline();
    return coro_timeout((int64_t)rnd(s, 2 * CORO_MS + 1));
}

static int do_lock(int k, int i)
{
    slot_t *s = &M->slot[k];
    coro_mutex_t *m = &M->m[i];
    uint64_t ticket = m->owner ? ++M->ticket[i] : 0; /* it will queue */
    int was_cancelled = s->cancelled, had;
    int64_t saved = maybe_deadline(s, &had);
    s->state = ST_LOCKING;
    s->state_obj = i;
    s->promised = 0;
    errno = 0;
    int r = coro_mutex_lock(m);
    int e = errno;
    coro_set_deadline(saved);
    s->state = ST_IDLE;
    int end = check_result(s, r, e, was_cancelled, had);
    if (r == 0) {
        ASSERT_EQ(M->owner[i], -1);
        ASSERT_EQ(m->owner, coro_id(coro_self()));
        M->owner[i] = k;
        s->held |= 1u << i;
        if (ticket) {
            ASSERT_GT(ticket, M->last_ticket[i]); /* FIFO */
            M->last_ticket[i] = ticket;
            M->st.queued_locks++;
        }
        if (s->promised && s->cancelled)
            M->st.handoff_then_cancel++;
    } else {
        ASSERT_EQ(s->promised, 0); /* a hand-off is never taken back */
        ASSERT(m->owner != coro_id(coro_self()));
    }
    return end;
}

static void do_unlock(int k, int i)
{
    slot_t *s = &M->slot[k];
    ASSERT_EQ(M->owner[i], k);
    ASSERT_EQ(M->m[i].owner, coro_id(coro_self()));
    M->owner[i] = -1;
    s->held &= ~(1u << i);
    ASSERT_EQ(coro_mutex_unlock(&M->m[i]), 0);
    ASSERT(M->m[i].owner != coro_id(coro_self()));
    ASSERT_ERRNO(coro_mutex_unlock(&M->m[i]), EPERM);
}

static void do_trylock(int k, int i)
{
    slot_t *s = &M->slot[k];
    coro_mutex_t *m = &M->m[i];
    int busy = m->owner != 0;
    errno = 0;
    int r = coro_mutex_trylock(m);
    if (busy) {
        ASSERT_EQ(r, -1);
        ASSERT_EQ(errno, EBUSY);
        M->st.trylock_busy++;
        return;
    }
    ASSERT_EQ(r, 0); /* also when cancelled: not a checkpoint */
    ASSERT_EQ(M->owner[i], -1);
    M->owner[i] = k;
    s->held |= 1u << i;
}

static int do_acquire(int k)
{
    slot_t *s = &M->slot[k];
    long before = coro_sem_value(&M->sem);
    uint64_t ticket = before == 0 ? ++M->sem_ticket : 0;
    int was_cancelled = s->cancelled, had;
    int64_t saved = maybe_deadline(s, &had);
    s->state = ST_ACQUIRING;
    M->acquiring++;
    errno = 0;
    int r = coro_sem_acquire(&M->sem);
    int e = errno;
    M->acquiring--;
    coro_set_deadline(saved);
    s->state = ST_IDLE;
    int end = check_result(s, r, e, was_cancelled, had);
    if (r == 0) {
        if (before > 0) {
            ASSERT_EQ(coro_sem_value(&M->sem), before - 1); /* did not block */
        } else {
            /* Parked, and a release handed it a permit. */
            M->inflight--;
            ASSERT_GE(M->inflight, 0);
            if (s->cancelled)
                M->st.handoff_then_cancel++; /* the permit stayed with it */
        }
        if (ticket) {
            if (M->sem_fifo_by_run) {
                ASSERT_GT(ticket, M->last_sem_ticket); /* FIFO */
                M->last_sem_ticket = ticket;
            }
            M->st.queued_acquires++;
        }
        s->permit = 1;
        M->held_permits++;
    }
    return end;
}

static void do_try_acquire(int k)
{
    slot_t *s = &M->slot[k];
    long before = coro_sem_value(&M->sem);
    errno = 0;
    int r = coro_sem_try_acquire(&M->sem);
    if (before == 0) {
        ASSERT_EQ(r, -1);
        ASSERT_EQ(errno, EAGAIN);
        M->st.try_again++;
        return;
    }
    ASSERT_EQ(r, 0);
    ASSERT_EQ(coro_sem_value(&M->sem), before - 1);
    s->permit = 1;
    M->held_permits++;
}

static void do_release(int k)
{
    slot_t *s = &M->slot[k];
    ASSERT_EQ(s->permit, 1);
    long before = coro_sem_value(&M->sem);
    long maybe_waiting = M->acquiring - M->inflight; /* parked, not yet given one */
    ASSERT_EQ(coro_sem_release(&M->sem), 0);
    s->permit = 0;
    M->held_permits--;
    long after = coro_sem_value(&M->sem);
    if (after == before + 1)
        return; /* to the count */
    /* Handed straight to a waiter. */
    ASSERT_EQ(after, before);
    ASSERT_GT(maybe_waiting, 0);
    M->inflight++;
    M->st.sem_handoffs++;
}

static int highest_held(const slot_t *s)
{
    for (int i = NMUTEX - 1; i >= 0; i--)
        if (s->held & (1u << i))
            return i;
    return -1;
}

static int random_held(slot_t *s)
{
    int n = 0, pick[NMUTEX];
    for (int i = 0; i < NMUTEX; i++)
        if (s->held & (1u << i))
            pick[n++] = i;
    return n ? pick[rnd(s, (uint64_t)n)] : -1;
}

/* One random step of slot k. Returns 1 when a blocking call failed with
 * ECANCELED: the coroutine ends and a fresh one takes the slot. */
static int step(int k)
{
    slot_t *s = &M->slot[k];
    int r = (int)rnd(s, 100);
    if (r < 25) {
        /* Lock a mutex above every one held, and only without a permit
         * (the lock order). */
        int i = (int)rnd(s, NMUTEX);
        if (i > highest_held(s) && !s->permit)
            return do_lock(k, i);
        coro_yield();
    } else if (r < 30) {
        int i = (int)rnd(s, NMUTEX);
        if (!(s->held & (1u << i)))
            do_trylock(k, i);
    } else if (r < 50) {
        int i = random_held(s);
        if (i >= 0)
            do_unlock(k, i);
        else
            coro_yield();
    } else if (r < 62) {
        if (!s->permit)
            return do_acquire(k);
        do_release(k);
    } else if (r < 65) {
        if (!s->permit)
            do_try_acquire(k);
    } else if (r < 75) {
        if (s->permit)
            do_release(k);
        else
            coro_yield();
    } else if (r < 86) {
        coro_yield();
    } else if (r < 96) {
        int was_cancelled = s->cancelled, had;
        int64_t saved = maybe_deadline(s, &had);
        errno = 0;
        int rr = coro_sleep((int64_t)rnd(s, 200 * CORO_US));
        int e = errno;
        coro_set_deadline(saved);
        return check_result(s, rr, e, was_cancelled, had);
    } else {
        /* Cancel another slot: often one that has been handed a mutex
         * and not run yet, or one inside a lock or an acquire. */
        int j = (int)rnd(s, NSLOT);
        int n = 0, pick[NSLOT];
        for (int x = 0; x < NSLOT; x++)
            if (M->slot[x].promised && M->slot[x].state == ST_LOCKING)
                pick[n++] = x;
        if (!n || rnd(s, 3) == 0) {
            n = 0;
            for (int x = 0; x < NSLOT; x++)
                if (M->slot[x].state != ST_IDLE)
                    pick[n++] = x;
        }
        if (n && rnd(s, 4) != 0)
            j = pick[rnd(s, (uint64_t)n)];
        if (j != k && M->slot[j].coro) {
            ASSERT_EQ(coro_cancel(M->slot[j].coro), 0);
            M->slot[j].cancelled = 1;
            M->st.cancels++;
        }
    }
    return 0;
}

static int slot_body(void *arg);

static void spawn_slot(int k)
{
    slot_t *s = &M->slot[k];
    ASSERT_EQ(coro_wg_add(&M->wg, 1), 0);
    coro_t *c = coro_spawn(slot_body, (void *)(intptr_t)k);
    ASSERT_NOT_NULL(c);
    coro_detach(c);
    s->coro = c;
    s->cancelled = 0;
    s->state = ST_IDLE;
    s->promised = 0;
    seed_slot(s, k);
}

static int slot_body(void *arg)
{
    int k = (int)(intptr_t)arg;
    slot_t *s = &M->slot[k];
    ASSERT_PTR_EQ(s->coro, coro_self());
    int cancelled = 0;
    while (M->st.steps < M->total) {
        cancelled = step(k);
        M->st.steps++;
        check_invariants();
        if (cancelled)
            break;
    }
    /* Let go of everything: unlocks and releases work when cancelled. */
    int i;
    while ((i = random_held(s)) >= 0)
        do_unlock(k, i);
    if (s->permit)
        do_release(k);
    check_invariants();
    ASSERT_EQ(s->held, 0u);
    if (cancelled && M->st.steps < M->total) {
        s->gen++;
        spawn_slot(k);
        M->st.respawns++;
    } else {
        s->coro = NULL;
    }
    ASSERT_EQ(coro_wg_done(&M->wg), 0);
    return 0;
}

static int model_main(void *arg)
{
    (void)arg;
    for (int k = 0; k < NSLOT; k++)
        spawn_slot(k);
    ASSERT_EQ(coro_wg_wait(&M->wg), 0);

    /* Every coroutine has finished. */
    coro_stats_t cs;
    coro_stats(&cs);
    ASSERT_EQ(cs.live, 1);
    ASSERT_EQ(cs.timers, 0);
    for (int k = 0; k < NSLOT; k++) {
        ASSERT_NULL(M->slot[k].coro);
        ASSERT_EQ(M->slot[k].held, 0u);
        ASSERT_EQ(M->slot[k].permit, 0);
    }
    /* Every count is back. */
    for (int i = 0; i < NMUTEX; i++) {
        ASSERT_EQ(M->owner[i], -1);
        ASSERT_EQ(M->m[i].owner, 0);
        ASSERT_EQ(coro_mutex_trylock(&M->m[i]), 0);
        ASSERT_EQ(coro_mutex_unlock(&M->m[i]), 0);
    }
    ASSERT_EQ(M->held_permits, 0);
    ASSERT_EQ(M->inflight, 0);
    ASSERT_EQ(M->acquiring, 0);
    ASSERT_EQ(coro_sem_value(&M->sem), PERMITS);
    ASSERT_EQ(M->wg.count, 0);
    return 0;
}

/* One run of the model: on the real clock (sim NULL) or in a simulation
 * with the given seed; the statistics are checked by the caller. */
static void model_run(const coro_sim_t *sim, uint64_t seed, long total)
{
    static model_t model;
    memset(&model, 0, sizeof model);
    M = &model;
    M->seed = seed;
    M->sem_fifo_by_run = sim == NULL;
    for (int i = 0; i < NMUTEX; i++) {
        coro_mutex_init(&M->m[i]);
        M->owner[i] = -1;
    }
    ASSERT_EQ(coro_sem_init(&M->sem, PERMITS), 0);
    coro_wg_init(&M->wg);
    M->total = total;
    coro_main_opts_t o = { .sim = sim };
    ASSERT_EQ(coro_main_opts(model_main, NULL, &o), 0);
}

static void model_print(void)
{
    stats_t *st = &M->st;
    printf("steps %ld, checks %ld, blocking calls %ld: ok %ld, ECANCELED %ld, ETIMEDOUT %ld\n"
           "queued then locked %ld, queued then acquired %ld, hand-offs seen in flight: "
           "mutex %ld, sem %ld; granted then cancelled %ld\n"
           "cancels %ld, respawns %ld, trylock EBUSY %ld, try_acquire EAGAIN %ld\n",
           st->steps, st->checks, st->calls, st->ok, st->canceled, st->timedout,
           st->queued_locks, st->queued_acquires, st->mutex_handoffs, st->sem_handoffs,
           st->handoff_then_cancel, st->cancels, st->respawns, st->trylock_busy,
           st->try_again);
}

TEST(sync_model_random_mutex_sem_cancel_deadline)
{
    model_run(NULL, 0, ts_count(5000, 3000));
    model_print();
    stats_t *st = &M->st;
    /* The run really exercised what it checks. */
    ASSERT_GE(st->steps, M->total);
    ASSERT_GE(st->checks, st->steps);
    ASSERT_EQ(st->calls, st->ok + st->canceled + st->timedout);
    ASSERT_GT(st->canceled, 0);
    ASSERT_GT(st->timedout, 0);
    ASSERT_GT(st->respawns, 0);
    ASSERT_GT(st->queued_locks, 0);
    ASSERT_GT(st->queued_acquires, 0);
    ASSERT_GT(st->mutex_handoffs, 0);
    ASSERT_GT(st->sem_handoffs, 0);
    ASSERT_GT(st->trylock_busy, 0);
    ASSERT_GT(st->handoff_then_cancel, 0);
}

/* The same model in simulations, under many seeds: each seed another
 * interleaving (and other random steps), every deadline exact in virtual
 * time. A failing seed is the last "seed" line printed before the
 * failure; CORO_SIM_SEED=<n> replays it alone. Summed over the seeds, the
 * runs must have met every case the real-clock test meets. */
TEST(sync_model_under_many_simulated_seeds)
{
    int seeds = (int)ts_count(200, 8);
    uint64_t first = 1000;
    const char *env = getenv("CORO_SIM_SEED");
    if (env && *env) {
        first = strtoull(env, NULL, 10);
        seeds = 1;
    }
    stats_t sum;
    memset(&sum, 0, sizeof sum);
    uint64_t traces_seen[64];
    int distinct = 0;
    for (int i = 0; i < seeds; i++) {
        uint64_t seed = first + (uint64_t)i;
        printf("seed %llu\n", (unsigned long long)seed);
        fflush(stdout);
        coro_sim_t sim = { .seed = seed };
        model_run(&sim, seed, 1500);
        stats_t *st = &M->st;
        ASSERT_GE(st->steps, M->total);
        ASSERT_EQ(st->calls, st->ok + st->canceled + st->timedout);
        sum.canceled += st->canceled;
        sum.timedout += st->timedout;
        sum.respawns += st->respawns;
        sum.queued_locks += st->queued_locks;
        sum.queued_acquires += st->queued_acquires;
        sum.mutex_handoffs += st->mutex_handoffs;
        sum.handoff_then_cancel += st->handoff_then_cancel;
        /* Each seed's run is its own (the first 64 are compared). */
        uint64_t h = st->calls * 1000003u ^ (uint64_t)st->ok * 7919u ^ (uint64_t)st->timedout;
        int seen = 0;
        for (int j = 0; j < distinct; j++)
            seen |= traces_seen[j] == h;
        if (!seen && distinct < 64)
            traces_seen[distinct++] = h;
    }
    if (seeds > 1) {
        ASSERT_GT(sum.canceled, 0);
        ASSERT_GT(sum.timedout, 0);
        ASSERT_GT(sum.respawns, 0);
        ASSERT_GT(sum.queued_locks, 0);
        ASSERT_GT(sum.queued_acquires, 0);
        ASSERT_GT(sum.mutex_handoffs, 0);
        ASSERT_GE(distinct, (seeds < 64 ? seeds : 64) / 2);
    }
}
