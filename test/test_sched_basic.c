/* test/test_sched_basic.c: the scheduler's basics: spawn and join carry the
 * status, yields interleave in FIFO order, identity (self, id, copied
 * names), coro_main's own contract (status, waiting for leftovers, EINVAL,
 * EBUSY, one scheduler per thread in parallel) and coro_stats. */
#include "test/test_sched.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* ---- spawn / join ------------------------------------------------------- */

static int ret_arg_plus_one(void *arg)
{
    int *p = arg;
    (*p)++;
    return *p;
}

static int spawn_join_main(void *arg)
{
    (void)arg;
    int a = 41, b = -8, c = 0;
    coro_t *ca = coro_spawn(ret_arg_plus_one, &a);
    coro_t *cb = coro_spawn(ret_arg_plus_one, &b);
    coro_t *cc = coro_spawn(ret_arg_plus_one, &c);
    ASSERT_NOT_NULL(ca);
    ASSERT_NOT_NULL(cb);
    ASSERT_NOT_NULL(cc);
    /* Ready, but not run before the spawner reaches a checkpoint. */
    ASSERT_EQ(a, 41);
    int st = 12345;
    ASSERT_EQ(coro_join(cb, &st), 0);
    ASSERT_EQ(st, -7);
    ASSERT_EQ(b, -7);
    ASSERT_EQ(coro_join(ca, &st), 0);
    ASSERT_EQ(st, 42);
    /* status may be NULL. */
    ASSERT_EQ(coro_join(cc, NULL), 0);
    ASSERT_EQ(c, 1);
    return 0;
}

TEST(sched_spawn_join_returns_status)
{
    ASSERT_EQ(coro_main(spawn_join_main, NULL), 0);
}

/* ---- the floating-point environment -------------------------------------- */

#include <fenv.h>

typedef struct fpenv_run {
    int owner_start, owner_bad, plain_bad, owner_rounds, plain_rounds;
} fpenv_run_t;

/* Spawned with CORO_OWN_FPENV: rounds upward, and keeps doing so across
 * every yield while the others run under the thread's mode. */
static int fpenv_owner(void *arg)
{
    fpenv_run_t *r = arg;
    r->owner_start = fegetround();
    fesetround(FE_UPWARD);
    for (int i = 0; i < 50; i++) {
        coro_yield();
        if (fegetround() != FE_UPWARD)
            r->owner_bad++;
        r->owner_rounds++;
    }
    return 0;
}

/* Without the option: sees the thread's mode, never the owner's. */
static int fpenv_plain(void *arg)
{
    fpenv_run_t *r = arg;
    for (int i = 0; i < 50; i++) {
        coro_yield();
        if (fegetround() != FE_TONEAREST)
            r->plain_bad++;
        r->plain_rounds++;
    }
    /* The thread's mode, changed for all (asm backend). */
    fesetround(FE_TOWARDZERO);
    return 0;
}

static int fpenv_main(void *arg)
{
    fpenv_run_t *r = arg;
    coro_opts_t bad = { .flags = 2 };
    errno = 0;
    ASSERT_NULL(coro_spawn_opts(fpenv_owner, r, &bad));
    ASSERT_EQ(errno, EINVAL);

    ASSERT_EQ(fesetround(FE_DOWNWARD), 0);
    coro_opts_t own = { .flags = CORO_OWN_FPENV, .name = "fp-owner" };
    coro_t *a = coro_spawn_opts(fpenv_owner, r, &own);
    ASSERT_NOT_NULL(a);
    ASSERT_EQ(fesetround(FE_TONEAREST), 0);
    coro_t *b = coro_spawn(fpenv_plain, r);
    ASSERT_NOT_NULL(b);
    for (int i = 0; i < 60; i++) {
        coro_yield();
        if (i < 50)
            ASSERT_EQ(fegetround(), FE_TONEAREST);
    }
    ASSERT_EQ(coro_join(a, NULL), 0);
    ASSERT_EQ(coro_join(b, NULL), 0);
#if defined(CORO_CONTEXT_UCONTEXT)
    ASSERT_EQ(fegetround(), FE_TONEAREST); /* swapcontext kept ours */
#else
    ASSERT_EQ(fegetround(), FE_TOWARDZERO); /* the plain coroutine's, for all */
#endif
    ASSERT_EQ(fesetround(FE_TONEAREST), 0);
    return 0;
}

TEST(sched_own_fpenv_option)
{
    fpenv_run_t r = { 0, 0, 0, 0, 0 };
    ASSERT_EQ(coro_main(fpenv_main, &r), 0);
    ASSERT_EQ(r.owner_start, FE_DOWNWARD); /* the spawner's at spawn time */
    ASSERT_EQ(r.owner_rounds, 50);
    ASSERT_EQ(r.plain_rounds, 50);
    ASSERT_EQ(r.owner_bad, 0);
    ASSERT_EQ(r.plain_bad, 0);
    ASSERT_EQ(fegetround(), FE_TONEAREST);
}

/* ---- FIFO interleaving -------------------------------------------------- */

#define FIFO_WORKERS 4
#define FIFO_ROUNDS 3

typedef struct fifo_state {
    char log[64];
    int n;
} fifo_state_t;

typedef struct fifo_arg {
    fifo_state_t *st;
    char tag;
} fifo_arg_t;

static int fifo_worker(void *arg)
{
    fifo_arg_t *a = arg;
    for (int r = 0; r < FIFO_ROUNDS; r++) {
        a->st->log[a->st->n++] = a->tag;
        coro_yield();
    }
    return 0;
}

static int fifo_main(void *arg)
{
    fifo_state_t *st = arg;
    fifo_arg_t args[FIFO_WORKERS];
    coro_t *w[FIFO_WORKERS];
    for (int i = 0; i < FIFO_WORKERS; i++) {
        args[i] = (fifo_arg_t){ st, (char)('a' + i) };
        w[i] = coro_spawn(fifo_worker, &args[i]);
        ASSERT_NOT_NULL(w[i]);
    }
    for (int r = 0; r < FIFO_ROUNDS; r++) {
        st->log[st->n++] = 'M';
        coro_yield();
    }
    for (int i = 0; i < FIFO_WORKERS; i++)
        ASSERT_EQ(coro_join(w[i], NULL), 0);
    return 0;
}

TEST(sched_yield_interleaves_fifo)
{
    fifo_state_t st = { .n = 0 };
    ASSERT_EQ(coro_main(fifo_main, &st), 0);
    st.log[st.n] = '\0';
    ASSERT_STR_EQ(st.log, "MabcdMabcdMabcd");
}

/* Many coroutines, many rounds: every round visits everyone in spawn
 * order. */
#define RR_N 100
#define RR_ROUNDS 20

typedef struct rr_state {
    int log[RR_N * RR_ROUNDS];
    int n;
    int idx[RR_N];
} rr_state_t;

static rr_state_t *rr_st;

static int rr_worker(void *arg)
{
    int i = *(int *)arg;
    for (int r = 0; r < RR_ROUNDS; r++) {
        rr_st->log[rr_st->n++] = i;
        coro_yield();
    }
    return 0;
}

static int rr_main(void *arg)
{
    (void)arg;
    coro_t *w[RR_N];
    for (int i = 0; i < RR_N; i++) {
        rr_st->idx[i] = i;
        w[i] = coro_spawn(rr_worker, &rr_st->idx[i]);
        ASSERT_NOT_NULL(w[i]);
    }
    for (int i = 0; i < RR_N; i++)
        ASSERT_EQ(coro_join(w[i], NULL), 0);
    return 0;
}

TEST(sched_yield_round_robin_many)
{
    static rr_state_t st;
    rr_st = &st;
    ASSERT_EQ(coro_main(rr_main, NULL), 0);
    ASSERT_EQ(st.n, RR_N * RR_ROUNDS);
    for (int k = 0; k < RR_N * RR_ROUNDS; k++)
        ASSERT_EQ(st.log[k], k % RR_N);
}

/* ---- identity ----------------------------------------------------------- */

typedef struct ident {
    coro_t *seen_self;
    uint64_t seen_id;
    char seen_name[64];
} ident_t;

static int ident_child(void *arg)
{
    ident_t *id = arg;
    id->seen_self = coro_self();
    id->seen_id = coro_id(coro_self());
    snprintf(id->seen_name, sizeof id->seen_name, "%s", coro_name(coro_self()));
    return 0;
}

static int ident_main(void *arg)
{
    (void)arg;
    coro_t *self = coro_self();
    ASSERT_NOT_NULL(self);
    /* Ids are process-wide and never reused: not 1, 2, 3 per scheduler,
     * but distinct, and increasing within a thread. */
    uint64_t id0 = coro_id(self);
    ASSERT_GT(id0, 0);
    ASSERT_STR_EQ(coro_name(self), "main");

    /* The name is copied: the buffer is scribbled over and freed before
     * the child ever runs. */
    char *heap_name = malloc(32);
    ASSERT_NOT_NULL(heap_name);
    strcpy(heap_name, "worker-7");
    ident_t a = { 0 }, b = { 0 };
    coro_t *ca = coro_spawn_opts(ident_child, &a, &(coro_opts_t){ .name = heap_name });
    ASSERT_NOT_NULL(ca);
    memset(heap_name, 'X', 31);
    heap_name[31] = '\0';
    free(heap_name);

    char stack_name[16] = "short";
    coro_t *cb = coro_spawn_opts(ident_child, &b, &(coro_opts_t){ .name = stack_name });
    ASSERT_NOT_NULL(cb);
    strcpy(stack_name, "CHANGED");

    ASSERT_GT(coro_id(ca), id0);
    ASSERT_GT(coro_id(cb), coro_id(ca));
    ASSERT_STR_EQ(coro_name(ca), "worker-7");
    ASSERT_STR_EQ(coro_name(cb), "short");

    /* Unnamed: "". */
    ident_t c = { 0 };
    coro_t *cc = coro_spawn(ident_child, &c);
    ASSERT_NOT_NULL(cc);
    ASSERT_GT(coro_id(cc), coro_id(cb));
    uint64_t ida = coro_id(ca), idb = coro_id(cb), idc = coro_id(cc);
    ASSERT_STR_EQ(coro_name(cc), "");

    ASSERT_EQ(coro_join(ca, NULL), 0);
    ASSERT_EQ(coro_join(cb, NULL), 0);
    ASSERT_EQ(coro_join(cc, NULL), 0);
    ASSERT_PTR_EQ(a.seen_self, ca);
    ASSERT_PTR_EQ(b.seen_self, cb);
    ASSERT_PTR_EQ(c.seen_self, cc);
    ASSERT_EQ(a.seen_id, ida);
    ASSERT_EQ(b.seen_id, idb);
    ASSERT_EQ(c.seen_id, idc);
    ASSERT_STR_EQ(a.seen_name, "worker-7");
    ASSERT_STR_EQ(b.seen_name, "short");
    ASSERT_STR_EQ(c.seen_name, "");

    /* Back in main. */
    ASSERT_PTR_EQ(coro_self(), self);
    ASSERT_EQ(coro_id(NULL), 0);
    ASSERT_STR_EQ(coro_name(NULL), "");
    return 0;
}

TEST(sched_self_id_name)
{
    ASSERT_NULL(coro_self());
    ASSERT_EQ(coro_main(ident_main, NULL), 0);
    ASSERT_NULL(coro_self());
    /* Ids are per scheduler: a second run starts again at 1. */
    ASSERT_EQ(coro_main(ident_main, NULL), 0);
}

/* ---- coro_main ---------------------------------------------------------- */

typedef struct leftovers {
    int detached_done, unjoined_done;
    int64_t start;
} leftovers_t;

static int late_detached(void *arg)
{
    leftovers_t *l = arg;
    ASSERT_EQ(coro_sleep(20 * CORO_MS), 0);
    l->detached_done = 1;
    return 0;
}

static int late_unjoined(void *arg)
{
    leftovers_t *l = arg;
    ASSERT_EQ(coro_sleep(10 * CORO_MS), 0);
    for (int i = 0; i < 5; i++)
        coro_yield();
    l->unjoined_done = 1;
    return 3;
}

static int leftovers_main(void *arg)
{
    leftovers_t *l = arg;
    coro_t *d = coro_spawn_opts(late_detached, l, &(coro_opts_t){ .name = "detached" });
    ASSERT_NOT_NULL(d);
    coro_detach(d);
    /* Never joined nor detached: coro_main still waits for it and frees
     * it (Valgrind would see a leak otherwise). */
    ASSERT_NOT_NULL(coro_spawn(late_unjoined, l));
    return 7;
}

TEST(sched_main_returns_status_and_waits_for_leftovers)
{
    leftovers_t l = { 0, 0, test_now_ns() };
    ASSERT_EQ(coro_main(leftovers_main, &l), 7);
    ASSERT_EQ(l.detached_done, 1);
    ASSERT_EQ(l.unjoined_done, 1);
    ASSERT_GE(test_now_ns() - l.start, 20 * CORO_MS);
}

static int status_main(void *arg)
{
    return *(int *)arg;
}

TEST(sched_main_status_values)
{
    int vals[] = { 0, 1, -1, 255, 256, -12345, 2147483647 };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        errno = 0;
        ASSERT_EQ(coro_main(status_main, &vals[i]), vals[i]);
    }
}

TEST(sched_main_null_fn_einval)
{
    ASSERT_ERRNO(coro_main(NULL, NULL), EINVAL);
    /* And nothing was left behind: a real run works afterwards. */
    int v = 5;
    ASSERT_EQ(coro_main(status_main, &v), 5);
}

static int never_runs_flag;

static int never_runs(void *arg)
{
    (void)arg;
    never_runs_flag = 1;
    return 0;
}

static int nested_child(void *arg)
{
    (void)arg;
    ASSERT_ERRNO(coro_main(never_runs, NULL), EBUSY);
    return 0;
}

static int nested_main(void *arg)
{
    (void)arg;
    ASSERT_ERRNO(coro_main(never_runs, NULL), EBUSY);
    coro_t *c = coro_spawn(nested_child, NULL);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_join(c, NULL), 0);
    /* The scheduler still works after the refused nesting. */
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    return 9;
}

TEST(sched_nested_main_ebusy)
{
    ASSERT_EQ(coro_main(nested_main, NULL), 9);
    ASSERT_EQ(never_runs_flag, 0);
}

/* ---- coro_main_opts ------------------------------------------------------ */

static int opts_nested(void *arg)
{
    const coro_main_opts_t *o = arg;
    /* Bad options are refused before the nesting is noticed. */
    coro_main_opts_t bad = { .pool_threads = -1 };
    ASSERT_ERRNO(coro_main_opts(never_runs, NULL, &bad), EINVAL);
    ASSERT_ERRNO(coro_main_opts(never_runs, NULL, o), EBUSY);
    ASSERT_ERRNO(coro_main_opts(never_runs, NULL, NULL), EBUSY);
    return 3;
}

TEST(sched_main_opts_einval_and_null_opts)
{
    int v = 6;
    never_runs_flag = 0;
    /* NULL opts is coro_main; zeroed opts too; threads 1 is one scheduler. */
    ASSERT_EQ(coro_main_opts(status_main, &v, NULL), 6);
    coro_main_opts_t o = { .sim = NULL, .threads = 0, .pool_threads = 0 };
    ASSERT_EQ(coro_main_opts(status_main, &v, &o), 6);
    o.threads = 1;
    o.pool_threads = 1024;
    ASSERT_EQ(coro_main_opts(status_main, &v, &o), 6);
    ASSERT_ERRNO(coro_main_opts(NULL, NULL, NULL), EINVAL);
    ASSERT_ERRNO(coro_main_opts(NULL, NULL, &o), EINVAL);

    /* Negative values, and a pool beyond 1024 threads: EINVAL. */
    coro_main_opts_t bad[] = {
        { .threads = -1 },
        { .pool_threads = -1 },
        { .pool_threads = 1025 },
        { .threads = -2, .pool_threads = 4 },
        /* Bad input wins over what is not built yet. */
        { .sim = &(coro_sim_t){ .seed = 1 }, .pool_threads = -3 },
        { .threads = 4, .pool_threads = -1 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_ERRNO(coro_main_opts(never_runs, NULL, &bad[i]), EINVAL);

    /* A simulation is one thread; a run has at most 1024. */
    coro_sim_t sim = { .seed = 42, .fault_rate = 0.0, .latency_min = 0, .latency_max = 0 };
    coro_main_opts_t never[] = {
        { .sim = &sim, .threads = 2 },
        { .threads = 1025 },
    };
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        ASSERT_ERRNO(coro_main_opts(never_runs, NULL, &never[i]), EINVAL);
    ASSERT_EQ(never_runs_flag, 0);

    /* Inside a scheduler: EBUSY for good options, EINVAL for bad ones. */
    coro_main_opts_t good = { .pool_threads = 2 };
    ASSERT_EQ(coro_main_opts(opts_nested, &good, &good), 3);
    ASSERT_EQ(never_runs_flag, 0);
    /* Nothing was left behind. */
    ASSERT_EQ(coro_main(status_main, &v), 6);
}

/* ---- a scheduler per thread -------------------------------------------- */

#define THR_N 4
#define THR_WORKERS 50
#define THR_ROUNDS 100

static atomic_int thr_inside;

typedef struct thr_state {
    int index;
    long sum;
    uint64_t first_child_id;
    uint64_t spawned;
    int overlapped;
    int status;
} thr_state_t;

static int thr_worker(void *arg)
{
    thr_state_t *t = arg;
    for (int r = 0; r < THR_ROUNDS; r++) {
        t->sum += t->index + 1;
        if (r % 10 == 0)
            ASSERT_EQ(coro_sleep(10 * CORO_US), 0);
        else
            coro_yield();
    }
    return 0;
}

static int thr_main(void *arg)
{
    thr_state_t *t = arg;
    /* Every thread is inside its own coro_main at once: wait (blocking this
     * thread, which is fine: its scheduler has nothing else to do) until
     * all have arrived. */
    atomic_fetch_add(&thr_inside, 1);
    int64_t give_up = test_now_ns() + 10 * CORO_SEC;
    while (atomic_load(&thr_inside) < THR_N && test_now_ns() < give_up) {
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    t->overlapped = atomic_load(&thr_inside) >= THR_N;

    coro_t *w[THR_WORKERS];
    for (int i = 0; i < THR_WORKERS; i++) {
        w[i] = coro_spawn(thr_worker, t);
        ASSERT_NOT_NULL(w[i]);
    }
    t->first_child_id = coro_id(w[0]);
    for (int i = 0; i < THR_WORKERS; i++)
        ASSERT_EQ(coro_join(w[i], NULL), 0);
    coro_stats_t st;
    coro_stats(&st);
    t->spawned = st.spawned;
    return 100 + t->index;
}

static void *thr_body(void *arg)
{
    thr_state_t *t = arg;
    t->status = coro_main(thr_main, t);
    return NULL;
}

TEST(sched_threads_run_independent_schedulers)
{
    pthread_t th[THR_N];
    thr_state_t st[THR_N];
    atomic_store(&thr_inside, 0);
    for (int i = 0; i < THR_N; i++) {
        st[i] = (thr_state_t){ .index = i };
        ASSERT_EQ(pthread_create(&th[i], NULL, thr_body, &st[i]), 0);
    }
    for (int i = 0; i < THR_N; i++)
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < THR_N; i++) {
        ASSERT_EQ(st[i].status, 100 + i);
        ASSERT_EQ(st[i].overlapped, 1);
        ASSERT_EQ(st[i].sum, (long)(i + 1) * THR_WORKERS * THR_ROUNDS);
        /* Counters are per scheduler; ids are process-wide. */
        ASSERT_GT(st[i].first_child_id, 0);
        for (int j = 0; j < i; j++)
            ASSERT_NE(st[i].first_child_id, st[j].first_child_id);
        ASSERT_EQ(st[i].spawned, 1 + THR_WORKERS);
    }
    /* This thread never ran a scheduler. */
    ASSERT_NULL(coro_self());
}

/* ---- stats -------------------------------------------------------------- */

static int stats_sleeper(void *arg)
{
    (void)arg;
    return coro_sleep(20 * CORO_MS);
}

static int stats_quick(void *arg)
{
    (void)arg;
    return 0;
}

static int stats_main(void *arg)
{
    (void)arg;
    coro_stats_t s0, s1, s2, s3;
    coro_stats(&s0);
    ASSERT_EQ(s0.spawned, 1);
    ASSERT_EQ(s0.live, 1);
    ASSERT_EQ(s0.timers, 0);
    ASSERT_EQ(s0.io_waits, 0);

    coro_t *sl[3];
    for (int i = 0; i < 3; i++) {
        sl[i] = coro_spawn(stats_sleeper, NULL);
        ASSERT_NOT_NULL(sl[i]);
    }
    coro_t *q = coro_spawn(stats_quick, NULL);
    ASSERT_NOT_NULL(q);
    coro_stats(&s1);
    ASSERT_EQ(s1.spawned, 5);
    ASSERT_EQ(s1.live, 5);
    ASSERT_EQ(s1.timers, 0);

    coro_yield(); /* everyone runs once: three sleep, one ends */
    coro_stats(&s2);
    ASSERT_EQ(s2.spawned, 5);
    ASSERT_EQ(s2.live, 4); /* the quick one ended (not yet joined) */
    ASSERT_EQ(s2.timers, 3);
    ASSERT_GE(s2.switches, s1.switches + 5);

    /* A deadline arms a timer too. */
    int64_t old = coro_timeout(CORO_SEC);
    for (int i = 0; i < 3; i++) {
        int st = -1;
        ASSERT_EQ(coro_join(sl[i], &st), 0);
        ASSERT_EQ(st, 0);
    }
    coro_set_deadline(old);
    ASSERT_EQ(coro_join(q, NULL), 0);
    coro_stats(&s3);
    ASSERT_EQ(s3.spawned, 5);
    ASSERT_EQ(s3.live, 1);
    ASSERT_EQ(s3.timers, 0);
    ASSERT_GT(s3.switches, s2.switches);
    ASSERT_GE(s3.max_loop_lag_ns, 0);
    return 0;
}

/* The switch count is exact: a yield to the one other ready coroutine
 * and its yield back are two switches, with passes unbounded (nothing
 * armed), bounded by an armed timer (a pass ends every two dispatches and
 * the next starts in the pass end), and with a parked join woken by an
 * end; a yield with nobody else ready is none. */
static int stats_partner(void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n; i++)
        coro_yield();
    return 0;
}

static int stats_long_sleeper(void *arg)
{
    (void)arg;
    return coro_sleep(3600 * CORO_SEC) == -1 && errno == ECANCELED ? 0 : 1;
}

static int stats_exact_main(void *arg)
{
    (void)arg;
    coro_stats_t a, b;
    coro_stats(&a);
    coro_yield(); /* nobody else: no switch */
    coro_stats(&b);
    ASSERT_EQ(b.switches, a.switches);

    for (int armed = 0; armed < 2; armed++) {
        coro_t *sleeper = NULL;
        if (armed) {
            sleeper = coro_spawn(stats_long_sleeper, NULL);
            ASSERT_NOT_NULL(sleeper);
            coro_yield(); /* it runs and parks in its sleep */
            /* A timer to look at, nobody else ready: the yield goes
             * through the pass end and comes back without a switch. */
            coro_stats(&a);
            coro_yield();
            coro_stats(&b);
            ASSERT_EQ(b.switches, a.switches);
        }
        int n = 100;
        coro_t *c = coro_spawn(stats_partner, &n);
        ASSERT_NOT_NULL(c);
        coro_stats(&a);
        for (int i = 0; i < n; i++)
            coro_yield();
        coro_stats(&b);
        ASSERT_EQ(b.switches - a.switches, (uint64_t)(2 * n));
        /* It has ended (its last yield came back here, then it returned
         * when this side yielded the last time)? Not yet: one more round
         * lets it return, and the join then does not park. */
        coro_stats(&a);
        ASSERT_EQ(coro_join(c, NULL), 0);
        coro_stats(&b);
        ASSERT_EQ(b.switches - a.switches, 2); /* to c, which ends, and back */
        if (sleeper) {
            int st = -1;
            ASSERT_EQ(coro_cancel(sleeper), 0);
            ASSERT_EQ(coro_join(sleeper, &st), 0);
            ASSERT_EQ(st, 0);
        }
    }
    return 0;
}

TEST(sched_stats_switches_exact)
{
    ASSERT_EQ(coro_main(stats_exact_main, NULL), 0);
}

TEST(sched_stats_counts)
{
    coro_stats_t out;
    memset(&out, 0xff, sizeof out);
    coro_stats(&out); /* outside a scheduler: zeroed */
    ASSERT_EQ(out.switches, 0);
    ASSERT_EQ(out.spawned, 0);
    ASSERT_EQ(out.live, 0);
    ASSERT_EQ(out.timers, 0);
    ASSERT_EQ(out.max_loop_lag_ns, 0);
    coro_stats(NULL); /* harmless */
    ASSERT_EQ(coro_main(stats_main, NULL), 0);
}

/* A stats snapshot while the main coroutine waits in a join with a deadline
 * shows both timers (the sleeper's and the joiner's deadline). */
static int stats_timer_probe(void *arg)
{
    coro_stats_t *out = arg;
    coro_stats(out);
    return 0;
}

static int stats_deadline_main(void *arg)
{
    coro_stats_t *probe = arg;
    coro_t *sl = coro_spawn(stats_sleeper, NULL);
    coro_t *p = coro_spawn(stats_timer_probe, probe);
    ASSERT_NOT_NULL(sl);
    ASSERT_NOT_NULL(p);
    int64_t old = coro_timeout(10 * CORO_SEC);
    ASSERT_EQ(coro_join(sl, NULL), 0);
    coro_set_deadline(old);
    ASSERT_EQ(coro_join(p, NULL), 0);
    return 0;
}

TEST(sched_stats_timers_include_deadlines)
{
    coro_stats_t probe;
    memset(&probe, 0, sizeof probe);
    ASSERT_EQ(coro_main(stats_deadline_main, &probe), 0);
    /* The probe ran after main parked in the join (deadline armed) and the
     * sleeper parked in its sleep. */
    ASSERT_EQ(probe.timers, 2);
    ASSERT_EQ(probe.live, 3);
}
