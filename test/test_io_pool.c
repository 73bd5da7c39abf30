/* test/test_io_pool.c: the blocking pool. coro_run_blocking delivers fn's
 * result from another thread; more jobs than threads all run, never more
 * at once than the pool's size (by default the online CPUs); a caller
 * cancelled (or past its deadline) returns at once while its job still
 * sleeps in the pool, a queued job is
 * dropped unrun, a running one's late result is discarded without a leak,
 * and coro_main returns cleanly (after the abandoned job ends); jobs
 * racing cancellation in a loop keep every count straight (and TSan
 * clean). A blocking job is no deadlock. coro_getaddrinfo: "localhost",
 * numeric hosts and ports, errors, cancellation. */
#include "test/test_io.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------- */

static int load(const int *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void store(int *p, int v)
{
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

static int add(int *p, int v)
{
    return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST);
}

/* ---- a result from another thread ------------------------------------------- */

typedef struct simple {
    pthread_t caller;
    int other_thread;
    int in;
} simple_t;

static int times_two(void *arg)
{
    simple_t *s = arg;
    s->other_thread = !pthread_equal(pthread_self(), s->caller);
    return s->in * 2;
}

static int result_main(void *arg)
{
    (void)arg;
    simple_t s = { pthread_self(), 0, 21 };
    int st = -1;
    ASSERT_EQ(coro_run_blocking(times_two, &s, &st), 0);
    ASSERT_EQ(st, 42);
    ASSERT_EQ(s.other_thread, 1);
    /* status may be NULL. */
    s.in = 5;
    s.other_thread = 0;
    ASSERT_EQ(coro_run_blocking(times_two, &s, NULL), 0);
    ASSERT_EQ(s.other_thread, 1);
    ASSERT_ERRNO(coro_run_blocking(NULL, &s, &st), EINVAL);
    /* A negative status is a status, not an error. */
    s.in = -8;
    ASSERT_EQ(coro_run_blocking(times_two, &s, &st), 0);
    ASSERT_EQ(st, -16);
    return 0;
}

TEST(io_pool_result_delivered_from_another_thread)
{
    ASSERT_EQ(coro_main(result_main, NULL), 0);
    simple_t s = { pthread_self(), 0, 1 };
    int st = -1;
    ASSERT_ERRNO(coro_run_blocking(times_two, &s, &st), EPERM);
    ASSERT_EQ(st, -1);
}

/* ---- more jobs than threads ------------------------------------------------------ */

typedef struct load {
    int running, max_running, ran;
    int64_t nap;
} load_t;

typedef struct job_arg {
    load_t *l;
    int i;
    int result;
    int err;
    int done;
} job_arg_t;

static int counted_job(void *arg)
{
    job_arg_t *a = arg;
    int now = add(&a->l->running, 1);
    int m = load(&a->l->max_running);
    while (now > m && !__atomic_compare_exchange_n(&a->l->max_running, &m, now, 0,
                                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    tio_nap_ns(a->l->nap);
    add(&a->l->running, -1);
    add(&a->l->ran, 1);
    return a->i * 3 + 1;
}

static int job_caller(void *arg)
{
    job_arg_t *a = arg;
    errno = 0;
    int st = -1;
    int r = coro_run_blocking(counted_job, a, &st);
    a->err = errno;
    a->result = r == 0 ? st : -1;
    a->done = 1;
    return 0;
}

#define LOAD_JOBS 40

static int many_main(void *arg)
{
    int threads = *(int *)arg;
    load_t l = { 0, 0, 0, 15 * CORO_MS };
    job_arg_t a[LOAD_JOBS];
    coro_t *c[LOAD_JOBS];
    int64_t t0 = coro_now();
    for (int i = 0; i < LOAD_JOBS; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].l = &l;
        a[i].i = i;
        c[i] = coro_spawn(job_caller, &a[i]);
        ASSERT_NOT_NULL(c[i]);
    }
    /* Meanwhile the loop goes on. */
    int ticks = 0;
    while (load(&l.ran) < LOAD_JOBS / 2) {
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
        ticks++;
    }
    /* (Valgrind runs one thread at a time: its ticks are few.) */
    ASSERT_GT(ticks, test_under_valgrind() ? 0 : 2);
    for (int i = 0; i < LOAD_JOBS; i++) {
        ASSERT_EQ(coro_join(c[i], NULL), 0);
        ASSERT_EQ(a[i].result, i * 3 + 1);
    }
    int64_t took = coro_now() - t0;
    printf("%d jobs on %d threads: at most %d at once, %lld ms\n", LOAD_JOBS, threads,
           load(&l.max_running), (long long)ts_ms(took));
    ASSERT_EQ(load(&l.ran), LOAD_JOBS);
    ASSERT_LE(load(&l.max_running), threads);
    ASSERT_GE(load(&l.max_running), threads < 2 ? threads : 2);
    /* They cannot all have run at once. */
    ASSERT_GE(took, (LOAD_JOBS + threads - 1) / threads * l.nap);
    return 0;
}

TEST(io_pool_more_jobs_than_threads)
{
    int threads = 4;
    ASSERT_EQ(setenv("CORO_POOL_THREADS", "4", 1), 0);
    ASSERT_EQ(coro_main(many_main, &threads), 0);
    ASSERT_EQ(unsetenv("CORO_POOL_THREADS"), 0);
    /* The default: the online CPUs. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    threads = cpus < 1 ? 1 : cpus > 1024 ? 1024 : (int)cpus;
    ASSERT_EQ(coro_main(many_main, &threads), 0);
}

/* ---- a caller that stops waiting ------------------------------------------------- */

/* A job may outlive its caller: what it touches lives as long as
 * coro_main (which joins the pool), so these live in static storage. */
typedef struct waiter {
    int started, finished; /* set by the job (another thread) */
    int64_t nap;
    int64_t timeout;
    int ret, err, status;
    int done;
    int64_t took;
} waiter_t;

static int napping_job(void *arg)
{
    waiter_t *w = arg;
    store(&w->started, 1);
    tio_nap_ns(w->nap);
    store(&w->finished, 1);
    return 99;
}

static int waiting_caller(void *arg)
{
    waiter_t *w = arg;
    int64_t t0 = coro_now(); /* before the deadline: it counts from there */
    int64_t saved = w->timeout ? coro_timeout(w->timeout) : CORO_NEVER;
    w->status = -7;
    errno = 0;
    w->ret = coro_run_blocking(napping_job, w, &w->status);
    w->err = errno;
    w->took = coro_now() - t0;
    w->done = 1;
    coro_set_deadline(saved);
    return 0;
}

static waiter_t ab_running, ab_deadline;

static int abandon_main(void *arg)
{
    (void)arg;
    /* A running job: the caller is cancelled while it sleeps. */
    waiter_t *w = &ab_running;
    w->nap = CORO_SEC; /* still asleep below, even after a stall */
    coro_t *c = coro_spawn(waiting_caller, w);
    ASSERT_NOT_NULL(c);
    while (!load(&w->started))
        ASSERT_EQ(coro_sleep(CORO_MS / 2), 0);
    ASSERT_EQ(coro_cancel(c), 0);
    coro_yield(); /* one pass */
    ASSERT_EQ(w->done, 1);
    ASSERT_EQ(w->ret, -1);
    ASSERT_EQ(w->err, ECANCELED);
    ASSERT_EQ(w->status, -7); /* untouched */
    ASSERT_EQ(load(&w->finished), 0); /* the job still sleeps */
    ASSERT_EQ(coro_join(c, NULL), 0);

    /* Its deadline passes: the same, ETIMEDOUT. */
    waiter_t *d = &ab_deadline;
    d->nap = CORO_SEC;
    d->timeout = 20 * CORO_MS;
    c = coro_spawn(waiting_caller, d);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(d->ret, -1);
    ASSERT_EQ(d->err, ETIMEDOUT);
    ASSERT_EQ(d->status, -7);
    ASSERT_GE(d->took, 20 * CORO_MS);
    ASSERT_LT(d->took, CORO_SEC / 2); /* it did not wait for the job */
    ASSERT_EQ(load(&d->finished), 0); /* running, or dropped unstarted */
    /* main returns now: coro_main waits for the two abandoned jobs. */
    return 0;
}

TEST(io_pool_cancelled_caller_returns_at_once_job_finishes_later)
{
    int64_t t0 = test_now_ns();
    ASSERT_EQ(coro_main(abandon_main, NULL), 0);
    int64_t end = test_now_ns();
    /* The pool was joined: the running job had ended, its result
     * dropped; the other one ended too, unless it was dropped before it
     * started (a slow thread start, as under Valgrind). */
    ASSERT_EQ(load(&ab_running.finished), 1);
    ASSERT_EQ(load(&ab_deadline.finished), load(&ab_deadline.started));
    ASSERT_EQ(ab_running.status, -7);
    /* (finished == 1 above is what proves coro_main waited for the job;
     * a time measured from when this coroutine noticed the job start
     * would be racy: the job may have slept for a while by then.) */
    ASSERT_GE(end - t0, ab_running.nap);
    ASSERT_LT(end - t0, ab_running.nap + ts_bound(2 * CORO_SEC));
}

/* A queued job whose caller leaves is never run; an already-cancelled
 * caller queues nothing. */
static waiter_t q_busy, q_queued, q_pre, q_late;

static int queued_main(void *arg)
{
    (void)arg;
    q_busy.nap = 100 * CORO_MS;
    coro_t *b = coro_spawn(waiting_caller, &q_busy);
    ASSERT_NOT_NULL(b);
    while (!load(&q_busy.started))
        ASSERT_EQ(coro_sleep(CORO_MS / 2), 0);
    /* The only thread is busy: this one waits in the queue. */
    coro_t *q = coro_spawn(waiting_caller, &q_queued);
    ASSERT_NOT_NULL(q);
    coro_yield();
    ASSERT_EQ(q_queued.done, 0);
    ASSERT_EQ(coro_cancel(q), 0);
    coro_yield();
    ASSERT_EQ(q_queued.done, 1);
    ASSERT_EQ(q_queued.ret, -1);
    ASSERT_EQ(q_queued.err, ECANCELED);
    ASSERT_EQ(coro_join(q, NULL), 0);

    coro_t *p = coro_spawn(waiting_caller, &q_pre);
    ASSERT_NOT_NULL(p);
    ASSERT_EQ(coro_cancel(p), 0);
    ASSERT_EQ(coro_join(p, NULL), 0);
    ASSERT_EQ(q_pre.ret, -1);
    ASSERT_EQ(q_pre.err, ECANCELED);

    /* One queued behind the busy job and kept: it runs after it. */
    coro_t *l = coro_spawn(waiting_caller, &q_late);
    ASSERT_NOT_NULL(l);
    ASSERT_EQ(coro_join(b, NULL), 0);
    ASSERT_EQ(q_busy.ret, 0);
    ASSERT_EQ(q_busy.status, 99);
    ASSERT_EQ(coro_join(l, NULL), 0);
    ASSERT_EQ(q_late.ret, 0);
    ASSERT_EQ(q_late.status, 99);
    ASSERT_GE(q_late.took, 50 * CORO_MS); /* it waited its turn */
    /* Give a wrongly kept job every chance to run. */
    ASSERT_EQ(coro_sleep(20 * CORO_MS), 0);
    ASSERT_EQ(load(&q_queued.started), 0);
    ASSERT_EQ(load(&q_pre.started), 0);
    return 0;
}

TEST(io_pool_queued_job_of_a_cancelled_caller_never_runs)
{
    ASSERT_EQ(setenv("CORO_POOL_THREADS", "1", 1), 0);
    ASSERT_EQ(coro_main(queued_main, NULL), 0);
    ASSERT_EQ(unsetenv("CORO_POOL_THREADS"), 0);
    ASSERT_EQ(load(&q_queued.started), 0);
    ASSERT_EQ(load(&q_pre.started), 0);
}

/* ---- jobs racing cancellation ------------------------------------------------------ */

#define RACE_MAX 400

typedef struct rjob {
    int started, finished;
    int spin;         /* how long the job runs, in loop turns */
    int value;        /* written by the job, read by its caller after a success */
    int ret, err, status;
} rjob_t;

static rjob_t rjobs[RACE_MAX];

static int race_job(void *arg)
{
    rjob_t *j = arg;
    store(&j->started, 1);
    volatile int sink = 0;
    for (int i = 0; i < j->spin; i++)
        sink += i;
    (void)sink;
    j->value = (int)(j - rjobs) + 1000; /* plain write: published by the post */
    store(&j->finished, 1);
    return (int)(j - rjobs);
}

static int race_caller(void *arg)
{
    rjob_t *j = arg;
    j->status = -1;
    errno = 0;
    j->ret = coro_run_blocking(race_job, j, &j->status);
    j->err = errno;
    if (j->ret == 0)
        ASSERT_EQ(j->value, (int)(j - rjobs) + 1000);
    return 0;
}

static int race_main(void *arg)
{
    int *counts = arg; /* [0] completed, [1] cancelled */
    int n = (int)ts_count(RACE_MAX, 60);
    uint64_t rng = 12345;
    for (int i = 0; i < n; i++) {
        rjob_t *j = &rjobs[i];
        j->spin = (int)(ts_rand(&rng) % 20000);
        coro_t *c = coro_spawn(race_caller, j);
        ASSERT_NOT_NULL(c);
        int yields = (int)(ts_rand(&rng) % 4);
        for (int k = 0; k < yields; k++)
            coro_yield();
        if (ts_rand(&rng) % 3 == 0)
            ASSERT_EQ(coro_sleep((int64_t)(ts_rand(&rng) % 200) * CORO_US), 0);
        ASSERT_EQ(coro_cancel(c), 0);
        ASSERT_EQ(coro_join(c, NULL), 0);
        if (j->ret == 0) {
            ASSERT_EQ(j->status, i);
            ASSERT_EQ(load(&j->finished), 1);
            counts[0]++;
        } else {
            ASSERT_EQ(j->ret, -1);
            ASSERT_EQ(j->err, ECANCELED);
            ASSERT_EQ(j->status, -1);
            counts[1]++;
        }
    }
    return 0;
}

TEST(io_pool_jobs_racing_cancellation)
{
    int counts[2] = { 0, 0 };
    ASSERT_EQ(setenv("CORO_POOL_THREADS", "3", 1), 0);
    ASSERT_EQ(coro_main(race_main, counts), 0);
    ASSERT_EQ(unsetenv("CORO_POOL_THREADS"), 0);
    int n = (int)ts_count(RACE_MAX, 60);
    ASSERT_EQ(counts[0] + counts[1], n);
    /* The pool was joined: every job that started has finished. */
    int started = 0;
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(load(&rjobs[i].started), load(&rjobs[i].finished));
        started += load(&rjobs[i].started);
    }
    ASSERT_GE(started, counts[0]);
    printf("%d completed, %d cancelled (%d of them after starting)\n", counts[0], counts[1],
           started - counts[0]);
}

/* ---- coro_run_blocking_owned ---------------------------------------------------- */

/* A heap argument the job owns once its caller leaves: released exactly
 * once, on the scheduler's thread, only when nothing touches it any more. */
typedef struct owned {
    int64_t nap;
    int started, finished; /* set by the job (another thread) */
    int finished_at_release;
} owned_t;

static int owned_releases;
static int owned_release_on_other_thread;
static pthread_t owned_sched_thread;

static void owned_release(void *arg)
{
    owned_t *o = arg;
    owned_releases++;
    if (!pthread_equal(pthread_self(), owned_sched_thread))
        owned_release_on_other_thread = 1;
    /* A job that ran has returned by now (the job's last store is its
     * finished flag): nothing touches o after this free. */
    owned_release_on_other_thread |= load(&o->started) && !load(&o->finished);
    free(o);
}

static int owned_job(void *arg)
{
    owned_t *o = arg;
    store(&o->started, 1);
    tio_nap_ns(o->nap);
    store(&o->finished, 1);
    return 7;
}

static owned_t *owned_new(int64_t nap)
{
    owned_t *o = calloc(1, sizeof *o);
    ASSERT_NOT_NULL(o);
    o->nap = nap;
    return o;
}

typedef struct owned_call {
    owned_t *o;
    int64_t timeout;
    int ret, err, status, done;
} owned_call_t;

static int owned_caller(void *arg)
{
    owned_call_t *c = arg;
    if (c->timeout)
        coro_timeout(c->timeout);
    c->status = -1;
    errno = 0;
    c->ret = coro_run_blocking_owned(owned_job, c->o, owned_release, &c->status);
    c->err = errno;
    c->done = 1;
    return 0;
}

static int owned_main(void *arg)
{
    (void)arg;
    owned_sched_thread = pthread_self();
    /* Success: the result comes back, arg is the caller's, no release. */
    owned_t *o = owned_new(0);
    int status = 0;
    ASSERT_EQ(coro_run_blocking_owned(owned_job, o, owned_release, &status), 0);
    ASSERT_EQ(status, 7);
    ASSERT_EQ(owned_releases, 0);
    ASSERT_EQ(load(&o->finished), 1);
    free(o);

    /* A running job whose caller is cancelled: the caller leaves at once,
     * the release waits for the job to return. */
    owned_call_t run = { owned_new(100 * CORO_MS), 0, 0, 0, 0, 0 };
    owned_t *running = run.o;
    coro_t *c = coro_spawn(owned_caller, &run);
    ASSERT_NOT_NULL(c);
    while (!load(&running->started))
        ASSERT_EQ(coro_sleep(CORO_MS / 2), 0);
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(run.ret, -1);
    ASSERT_EQ(run.err, ECANCELED);
    ASSERT_EQ(run.status, -1);
    ASSERT_EQ(owned_releases, 0); /* the job still sleeps */

    /* (The pool's only thread is busy with it.) A queued job whose caller
     * is cancelled never runs, and is released at once. */
    owned_call_t queued = { owned_new(0), 0, 0, 0, 0, 0 };
    c = coro_spawn(owned_caller, &queued);
    ASSERT_NOT_NULL(c);
    coro_yield();
    ASSERT_EQ(queued.done, 0);
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(queued.ret, -1);
    ASSERT_EQ(queued.err, ECANCELED);
    ASSERT_EQ(owned_releases, 1);

    /* The running one is released once it has returned. */
    int64_t give_up = coro_now() + ts_bound(2 * CORO_SEC);
    while (owned_releases < 2 && coro_now() < give_up)
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(owned_releases, 2);

    /* Failures before anything is queued release too: a deadline already
     * passed, fn NULL. A NULL release is allowed. */
    owned_call_t late = { owned_new(0), -1, 0, 0, 0, 0 };
    c = coro_spawn(owned_caller, &late);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(late.ret, -1);
    ASSERT_EQ(late.err, ETIMEDOUT);
    ASSERT_EQ(owned_releases, 3);
    errno = 0;
    ASSERT_EQ(coro_run_blocking_owned(NULL, owned_new(0), owned_release, NULL), -1);
    ASSERT_EQ(errno, EINVAL);
    ASSERT_EQ(owned_releases, 4);
    ASSERT_EQ(coro_run_blocking_owned(owned_job, &(owned_t){ 0 }, NULL, &status), 0);
    ASSERT_EQ(status, 7);
    ASSERT_EQ(owned_release_on_other_thread, 0);
    return 0;
}

TEST(io_pool_owned_arg_released_once_when_free)
{
    ASSERT_EQ(setenv("CORO_POOL_THREADS", "1", 1), 0);
    ASSERT_EQ(coro_main(owned_main, NULL), 0);
    ASSERT_EQ(unsetenv("CORO_POOL_THREADS"), 0);
    ASSERT_EQ(owned_releases, 4);
    ASSERT_EQ(owned_release_on_other_thread, 0);
}

/* ---- a blocking job is no deadlock ----------------------------------------------- */

static waiter_t nd_job;

static int nodl_main(void *arg)
{
    (void)arg;
    nd_job.nap = 30 * CORO_MS;
    /* main itself waits on the pool: nothing else is armed anywhere. */
    ASSERT_EQ(waiting_caller(&nd_job), 0);
    ASSERT_EQ(nd_job.ret, 0);
    ASSERT_EQ(nd_job.status, 99);
    ASSERT_GE(nd_job.took, 30 * CORO_MS);
    return 0;
}

TEST(io_pool_blocking_job_is_not_a_deadlock)
{
    ASSERT_EQ(tio_main_without_deadlock(nodl_main, NULL), 0);
}

/* ---- coro_dump names it ------------------------------------------------------------- */

static waiter_t dump_job;

static int dump_main(void *arg)
{
    (void)arg;
    dump_job.nap = 50 * CORO_MS;
    coro_t *c = coro_spawn_opts(waiting_caller, &dump_job, &(coro_opts_t){ .name = "pooled" });
    ASSERT_NOT_NULL(c);
    coro_yield();
    char *out = ts_dump_text();
    printf("%s", out);
    ASSERT_CONTAINS(out, "\"pooled\" [parked, blocking job");
    free(out);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(dump_job.ret, 0);
    return 0;
}

TEST(io_pool_dump_names_blocking_job)
{
    ASSERT_EQ(coro_main(dump_main, NULL), 0);
}

/* ---- coro_getaddrinfo ---------------------------------------------------------------- */

static int has_addr(const struct addrinfo *res, const char *ip, int port)
{
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family != AF_INET)
            continue;
        const struct sockaddr_in *sin = (const struct sockaddr_in *)a->ai_addr;
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
        if (strcmp(buf, ip) == 0 && ntohs(sin->sin_port) == port)
            return 1;
    }
    return 0;
}

typedef struct gai {
    const char *host;
    int ret, err;
    struct addrinfo *res;
    int done;
} gai_t;

static int gai_caller(void *arg)
{
    gai_t *g = arg;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    errno = 0;
    g->res = NULL;
    g->ret = coro_getaddrinfo(g->host, "8080", &hints, &g->res);
    g->err = errno;
    g->done = 1;
    return 0;
}

static int gai_main(void *arg)
{
    (void)arg;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;

    /* By name (on the pool). */
    ASSERT_EQ(coro_getaddrinfo("localhost", "80", &hints, &res), 0);
    ASSERT_NOT_NULL(res);
    ASSERT(has_addr(res, "127.0.0.1", 80));
    freeaddrinfo(res);
    res = NULL;
    /* A service name, and no hints. */
    ASSERT_EQ(coro_getaddrinfo("127.0.0.1", "0", NULL, &res), 0);
    ASSERT(has_addr(res, "127.0.0.1", 0));
    freeaddrinfo(res);
    res = NULL;
    /* Numeric. */
    ASSERT_EQ(coro_getaddrinfo("127.0.0.1", "443", &hints, &res), 0);
    ASSERT(has_addr(res, "127.0.0.1", 443));
    freeaddrinfo(res);
    res = NULL;
    hints.ai_family = AF_UNSPEC;
    ASSERT_EQ(coro_getaddrinfo("::1", "443", &hints, &res), 0);
    ASSERT_EQ(res->ai_family, AF_INET6);
    freeaddrinfo(res);
    res = NULL;
    /* NULL host: the passive or loopback address. */
    hints.ai_family = AF_INET;
    hints.ai_flags = AI_PASSIVE;
    ASSERT_EQ(coro_getaddrinfo(NULL, "7", &hints, &res), 0);
    ASSERT(has_addr(res, "0.0.0.0", 7));
    freeaddrinfo(res);
    res = NULL;
    hints.ai_flags = 0;

    /* Errors. */
    ASSERT_ERRNO(coro_getaddrinfo(NULL, NULL, &hints, &res), EINVAL);
    ASSERT_ERRNO(coro_getaddrinfo("localhost", "80", &hints, NULL), EINVAL);
    ASSERT_NULL(res);

    /* Cancelled while the lookup is on the pool: ECANCELED, its late
     * result freed by the library (Valgrind checks). */
    for (int i = 0; i < 8; i++) {
        gai_t g;
        memset(&g, 0, sizeof g);
        g.host = "localhost";
        coro_t *c = coro_spawn(gai_caller, &g);
        ASSERT_NOT_NULL(c);
        coro_yield(); /* the lookup is queued or running */
        ASSERT_EQ(g.done, 0);
        ASSERT_EQ(coro_cancel(c), 0);
        ASSERT_EQ(coro_join(c, NULL), 0);
        ASSERT_EQ(g.ret, -1);
        ASSERT_EQ(g.err, ECANCELED);
        ASSERT_NULL(g.res);
    }
    /* Already cancelled, numeric or not: a checkpoint first. */
    for (int k = 0; k < 2; k++) {
        gai_t g;
        memset(&g, 0, sizeof g);
        g.host = k ? "localhost" : "127.0.0.1";
        coro_t *c = coro_spawn(gai_caller, &g);
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(coro_cancel(c), 0);
        ASSERT_EQ(coro_join(c, NULL), 0);
        ASSERT_EQ(g.ret, -1);
        ASSERT_EQ(g.err, ECANCELED);
        ASSERT_NULL(g.res);
    }
    /* Past the deadline. */
    int64_t saved = coro_set_deadline(coro_now() - 1);
    ASSERT_ERRNO(coro_getaddrinfo("localhost", "80", &hints, &res), ETIMEDOUT);
    coro_set_deadline(saved);
    ASSERT_NULL(res);
    /* Let the abandoned lookups finish while the scheduler runs, too. */
    ASSERT_EQ(coro_sleep(20 * CORO_MS), 0);
    return 0;
}

TEST(io_pool_getaddrinfo_names_numbers_errors_cancel)
{
    ASSERT_EQ(coro_main(gai_main, NULL), 0);
}

/* ---- one pool per scheduler ------------------------------------------------------------ */

static void *pool_thread(void *arg)
{
    int *threads = arg;
    *threads = coro_main(many_main, threads) == 0 ? 0 : -1;
    return NULL;
}

TEST(io_pool_each_scheduler_thread_has_its_own)
{
    /* Three schedulers at once, each running more jobs than its pool has
     * threads: each pool respects its own size (and TSan sees no race
     * between them). */
    ASSERT_EQ(setenv("CORO_POOL_THREADS", "4", 1), 0);
    pthread_t th[3];
    int arg[3] = { 4, 4, 4 };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, pool_thread, &arg[i]), 0);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
        ASSERT_EQ(arg[i], 0);
    }
    ASSERT_EQ(unsetenv("CORO_POOL_THREADS"), 0);
}
