/* test/test_io_pool_threads.c: the blocking pool's threads. Its size comes
 * from coro_main_opts' pool_threads (which wins over CORO_POOL_THREADS),
 * else CORO_POOL_THREADS, else the number of online CPUs: never more jobs
 * run at once, nor more worker threads exist, than that. The scheduler's
 * thread never waits for a thread to be created (pthread_create made slow
 * through test/thread_hook.c: a pass that submits many jobs stays short),
 * and when no thread can be created the jobs fail with EAGAIN (their owned
 * arguments released once) and a later call starts afresh. */
#include "test/test_io.h"

#include <pthread.h>
#include <unistd.h>

/* ---- counting jobs that run at once, and on how many threads ------------- */

#define SIZE_JOBS_MAX 64

typedef struct size_run {
    int jobs;          /* how many to submit at once */
    int64_t nap;       /* each job sleeps this long */
    int running, max_running, ran; /* atomics (the jobs' threads) */
    pthread_t tids[SIZE_JOBS_MAX]; /* the thread each job ran on */
    int failed;
} size_run_t;

typedef struct size_job {
    size_run_t *r;
    int i;
} size_job_t;

static int sized_job(void *arg)
{
    size_job_t *j = arg;
    size_run_t *r = j->r;
    int now = __atomic_add_fetch(&r->running, 1, __ATOMIC_SEQ_CST);
    int m = __atomic_load_n(&r->max_running, __ATOMIC_SEQ_CST);
    while (now > m && !__atomic_compare_exchange_n(&r->max_running, &m, now, 0,
                                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    r->tids[j->i] = pthread_self(); /* published by the job's post */
    tio_nap_ns(r->nap);
    __atomic_sub_fetch(&r->running, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&r->ran, 1, __ATOMIC_SEQ_CST);
    return j->i;
}

static int sized_caller(void *arg)
{
    size_job_t *j = arg;
    int st = -1;
    if (coro_run_blocking(sized_job, j, &st) != 0 || st != j->i)
        j->r->failed++;
    return 0;
}

static int size_main(void *arg)
{
    size_run_t *r = arg;
    size_job_t jobs[SIZE_JOBS_MAX];
    coro_t *c[SIZE_JOBS_MAX];
    ASSERT_LE(r->jobs, SIZE_JOBS_MAX);
    for (int i = 0; i < r->jobs; i++) {
        jobs[i] = (size_job_t){ r, i };
        c[i] = coro_spawn(sized_caller, &jobs[i]);
        ASSERT_NOT_NULL(c[i]);
    }
    for (int i = 0; i < r->jobs; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    return 0;
}

/* Distinct threads the jobs ran on. */
static int distinct_threads(const size_run_t *r)
{
    int n = 0;
    for (int i = 0; i < r->jobs; i++) {
        int seen = 0;
        for (int k = 0; k < i && !seen; k++)
            seen = pthread_equal(r->tids[i], r->tids[k]);
        n += !seen;
    }
    return n;
}

/* Run jobs of `nap` each under opts (NULL: coro_main); check that at most
 * `size` ran at once and on at most `size` threads, and at least
 * min(size, 2) at once (so a size of 1 would fail where more were asked).
 * Returns the most that ran at once. */
static int run_sized(const coro_main_opts_t *opts, int size, int jobs)
{
    size_run_t r;
    memset(&r, 0, sizeof r);
    r.jobs = jobs;
    r.nap = 20 * CORO_MS;
    ASSERT_EQ(coro_main_opts(size_main, &r, opts), 0);
    int threads = distinct_threads(&r);
    printf("pool of %d: %d jobs, at most %d at once, on %d threads\n", size, jobs,
           r.max_running, threads);
    ASSERT_EQ(r.failed, 0);
    ASSERT_EQ(r.ran, jobs);
    ASSERT_LE(r.max_running, size);
    ASSERT_LE(threads, size);
    /* Jobs queue while the first threads start, and each sleeps 20 ms:
     * at least two overlap whenever two may. */
    const int overlap = size < 2 ? size : 2;
    ASSERT_GE(r.max_running, overlap);
    return r.max_running;
}

static long online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n;
}

TEST(io_pool_size_from_coro_main_opts_wins_over_environment)
{
    /* CORO_POOL_THREADS says 1; the options say 3, and win. */
    ASSERT_EQ(setenv("CORO_POOL_THREADS", "1", 1), 0);
    coro_main_opts_t o = { .pool_threads = 3 };
    run_sized(&o, 3, 12);
    /* A pool of one: one job at a time, on one thread. */
    ASSERT_EQ(unsetenv("CORO_POOL_THREADS"), 0);
    o.pool_threads = 1;
    run_sized(&o, 1, 4);
    /* pool_threads 0 is the default: here CORO_POOL_THREADS. */
    ASSERT_EQ(setenv("CORO_POOL_THREADS", "2", 1), 0);
    o.pool_threads = 0;
    run_sized(&o, 2, 8);
    ASSERT_EQ(unsetenv("CORO_POOL_THREADS"), 0);
}

TEST(io_pool_default_size_is_the_online_cpus)
{
    ASSERT_EQ(unsetenv("CORO_POOL_THREADS"), 0);
    long cpus = online_cpus();
    /* More jobs than CPUs (and than the old default of 16 on a small
     * machine): never more at once than there are CPUs. */
    int jobs = (int)(cpus * 2 + 2 < SIZE_JOBS_MAX ? cpus * 2 + 2 : SIZE_JOBS_MAX);
    if (jobs < 18)
        jobs = 18;
    int size = (int)(cpus < 1024 ? cpus : 1024);
    run_sized(NULL, size, jobs);
    coro_main_opts_t o = { .pool_threads = 0 };
    run_sized(&o, size, jobs);
    /* A value CORO_POOL_THREADS cannot hold is ignored. */
    ASSERT_EQ(setenv("CORO_POOL_THREADS", "0", 1), 0);
    run_sized(NULL, size, jobs);
    ASSERT_EQ(unsetenv("CORO_POOL_THREADS"), 0);
}

/* ---- the scheduler's thread never waits for a thread to be created ------ */

typedef struct lag_run {
    size_run_t r;
    int64_t pass_ns;
    int creations;
} lag_run_t;

#define LAG_JOBS 16
/* Each creation's delay: longer where everything is slower. */
#define LAG_DELAY ts_bound(100 * CORO_MS)

static int lag_main(void *arg)
{
    lag_run_t *l = arg;
    size_run_t *r = &l->r;
    /* The pool starts with one job: its helper thread is the one thread
     * the scheduler's thread itself creates, once. */
    size_job_t first = { r, 0 };
    int st = -1;
    ASSERT_EQ(coro_run_blocking(sized_job, &first, &st), 0);
    ASSERT_EQ(st, 0);
    /* From now on every pthread_create takes LAG_DELAY. */
    int calls0 = test_thread_create_calls();
    test_thread_create_delay(LAG_DELAY);
    size_job_t jobs[LAG_JOBS];
    coro_t *c[LAG_JOBS];
    for (int i = 0; i < LAG_JOBS; i++) {
        jobs[i] = (size_job_t){ r, i };
        c[i] = coro_spawn(sized_caller, &jobs[i]);
        ASSERT_NOT_NULL(c[i]);
    }
    /* To the back of the queue: every caller submits its job first. */
    int64_t t0 = coro_now();
    coro_yield();
    l->pass_ns = coro_now() - t0;
    for (int i = 0; i < LAG_JOBS; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    l->creations = test_thread_create_calls() - calls0;
    test_thread_create_reset();
    return 0;
}

TEST(io_pool_submissions_never_wait_for_a_thread_to_be_created)
{
    lag_run_t l;
    memset(&l, 0, sizeof l);
    l.r.jobs = LAG_JOBS;
    l.r.nap = 20 * CORO_MS;
    coro_main_opts_t o = { .pool_threads = 8 };
    ASSERT_EQ(coro_main_opts(lag_main, &l, &o), 0);
    printf("%d jobs submitted in %lld ms while %d threads were created, %lld ms each\n",
           LAG_JOBS, (long long)ts_ms(l.pass_ns), l.creations, (long long)ts_ms(LAG_DELAY));
    /* The pass that submitted every job waited for no thread creation
     * (had it made even one, it would have lasted LAG_DELAY)... */
    ASSERT_LT(l.pass_ns, LAG_DELAY / 2);
    /* ...though the pool grew (to up to 8 workers) by slow creations. */
    ASSERT_GE(l.creations, 1);
    ASSERT_LE(l.creations, 7);
    ASSERT_EQ(l.r.failed, 0);
    ASSERT_EQ(l.r.ran, LAG_JOBS + 1);
    ASSERT_LE(l.r.max_running, 8);
}

/* ---- no thread can be created -------------------------------------------- */

static int released;

static void count_release(void *arg)
{
    (void)arg;
    released++;
}

static int plus_one(void *arg)
{
    return *(int *)arg + 1;
}

static int nothread_main(void *arg)
{
    (void)arg;
    int v = 41, st = -1;
    /* Not even the pool's helper thread can start. */
    test_thread_create_fail(0, EAGAIN);
    ASSERT_ERRNO(coro_run_blocking(plus_one, &v, &st), EAGAIN);
    ASSERT_ERRNO(coro_run_blocking_owned(plus_one, &v, count_release, &st), EAGAIN);
    ASSERT_EQ(released, 1);
    ASSERT_EQ(st, -1);
    /* The helper starts, the worker cannot: the queued job fails, its arg
     * is released once. */
    test_thread_create_fail(1, EAGAIN);
    ASSERT_ERRNO(coro_run_blocking_owned(plus_one, &v, count_release, &st), EAGAIN);
    ASSERT_EQ(released, 2);
    ASSERT_ERRNO(coro_run_blocking(plus_one, &v, &st), EAGAIN);
    ASSERT_EQ(st, -1);
    /* Threads can be created again: the next job starts a worker. */
    test_thread_create_reset();
    ASSERT_EQ(coro_run_blocking_owned(plus_one, &v, count_release, &st), 0);
    ASSERT_EQ(st, 42);
    ASSERT_EQ(released, 2);
    /* A worker exists now: a failed creation no longer fails jobs, they
     * run on it. */
    test_thread_create_fail(0, EAGAIN);
    coro_t *c[4];
    size_run_t r;
    memset(&r, 0, sizeof r);
    r.jobs = 4;
    r.nap = 2 * CORO_MS;
    size_job_t jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (size_job_t){ &r, i };
        c[i] = coro_spawn(sized_caller, &jobs[i]);
        ASSERT_NOT_NULL(c[i]);
    }
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    test_thread_create_reset();
    ASSERT_EQ(r.failed, 0);
    ASSERT_EQ(r.ran, 4);
    ASSERT_EQ(r.max_running, 1);
    return 0;
}

TEST(io_pool_no_thread_can_start_eagain_then_recovers)
{
    coro_main_opts_t o = { .pool_threads = 4 };
    ASSERT_EQ(coro_main_opts(nothread_main, NULL, &o), 0);
    ASSERT_EQ(released, 2);
}
