/* test/test_run.c: runs of several schedulers (coro_main_opts with
 * threads >= 2): each scheduler runs the main function once with its
 * index, coro_spawn_on, joins, cancels and detaches across schedulers,
 * the run's status, end and deadlock, and the other threads' signal
 * mask. */
#include "test/test_sched.h"
#include "sched/io_wait.h"
#include "sched/sched_int.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

static int run_threads(coro_fn fn, void *arg, int n)
{
    coro_main_opts_t o = { .threads = n };
    return coro_main_opts(fn, arg, &o);
}

/* Returns 100 + the index of the scheduler it runs on. */
static int index_plus_100(void *arg)
{
    (void)arg;
    return 100 + coro_thread_index();
}

/* ---- each scheduler runs fn once with its index ------------------------- */

typedef struct seen {
    unsigned mask;
    int runs;
    pthread_t thread[8];
} seen_t;

static int record_index(void *arg)
{
    seen_t *s = arg;
    int i = coro_thread_index();
    ASSERT_GE(i, 0);
    ASSERT_LT(i, coro_thread_count());
    __atomic_fetch_or(&s->mask, 1u << i, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->runs, 1, __ATOMIC_RELAXED);
    s->thread[i] = pthread_self();
    /* Spawning on one's own index is a plain spawn. */
    coro_t *c = coro_spawn_on(i, index_plus_100, NULL);
    ASSERT_NOT_NULL(c);
    int st = -1;
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, i + 100);
    return 0;
}

TEST(run_each_scheduler_runs_fn_once_with_its_index)
{
    for (int n = 2; n <= 4; n++) {
        seen_t s = { 0 };
        ASSERT_EQ(run_threads(record_index, &s, n), 0);
        ASSERT_EQ(s.runs, n);
        ASSERT_EQ(s.mask, (1u << n) - 1);
        ASSERT(pthread_equal(s.thread[0], pthread_self()));
        for (int i = 1; i < n; i++)
            for (int j = 0; j < i; j++)
                ASSERT(!pthread_equal(s.thread[i], s.thread[j]));
    }
    /* Outside any scheduler. */
    ASSERT_EQ(coro_thread_index(), -1);
    ASSERT_EQ(coro_thread_count(), 0);
}

/* ---- the run's status ------------------------------------------------------ */

static int status_by_index(void *arg)
{
    const int *st = arg;
    return st[coro_thread_index()];
}

static int lone_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_thread_index(), 0);
    ASSERT_EQ(coro_thread_count(), 1);
    coro_t *c = coro_spawn_on(0, index_plus_100, NULL);
    ASSERT_NOT_NULL(c);
    int st = 0;
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 100);
    ASSERT_NULL(coro_spawn_on(1, index_plus_100, NULL));
    ASSERT_EQ(errno, EINVAL);
    return 0;
}

TEST(run_status_is_the_first_nonzero_by_index)
{
    int none[3] = { 0, 0, 0 }, one[3] = { 0, 0, 7 }, two[3] = { 0, 5, 7 };
    ASSERT_EQ(run_threads(status_by_index, none, 3), 0);
    ASSERT_EQ(run_threads(status_by_index, one, 3), 7);
    ASSERT_EQ(run_threads(status_by_index, two, 3), 5);
    /* A lone coro_main is index 0 of 1. */
    ASSERT_EQ(coro_main(lone_main, NULL), 0);
}

/* ---- spawn_on and join ------------------------------------------------------ */

static int times_three_plus_one(void *arg)
{
    ASSERT_EQ(coro_thread_index(), 1);
    int v = (int)(intptr_t)arg;
    if (v % 3 == 0)
        coro_yield();
    return v * 3 + 1;
}

static int spawn_on_many(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0; /* scheduler 1 stays up for the run, spawned on */
    enum { N = 2000, BATCH = 100 };
    for (int base = 0; base < N; base += BATCH) {
        coro_t *h[BATCH];
        for (int i = 0; i < BATCH; i++)
            ASSERT_NOT_NULL(h[i] = coro_spawn_on(1, times_three_plus_one,
                                                 (void *)(intptr_t)(base + i)));
        /* Joined in reverse: some have ended, some not yet. */
        for (int i = BATCH - 1; i >= 0; i--) {
            int st = -1;
            ASSERT_EQ(coro_join(h[i], &st), 0);
            ASSERT_EQ(st, (base + i) * 3 + 1);
        }
    }
    return 0;
}

TEST(run_spawn_on_2000_joins_return_their_statuses)
{
    ASSERT_EQ(run_threads(spawn_on_many, NULL, 2), 0);
}

static int spawn_on_errors(void *arg)
{
    (void)arg;
    int n = coro_thread_count();
    ASSERT_NULL(coro_spawn_on(-1, index_plus_100, NULL));
    ASSERT_EQ(errno, EINVAL);
    ASSERT_NULL(coro_spawn_on(n, index_plus_100, NULL));
    ASSERT_EQ(errno, EINVAL);
    ASSERT_NULL(coro_spawn_on((coro_thread_index() + 1) % n, NULL, NULL));
    ASSERT_EQ(errno, EINVAL);
    return 0;
}

TEST(run_spawn_on_errors)
{
    ASSERT_EQ(run_threads(spawn_on_errors, NULL, 2), 0);
    ASSERT_NULL(coro_spawn_on(0, index_plus_100, NULL));
    ASSERT_EQ(errno, EPERM);
}

/* ---- cancel and join a parked coroutine of another scheduler ------------ */

static int flag_set;

static int park_for_an_hour(void *arg)
{
    (void)arg;
    __atomic_store_n(&flag_set, 1, __ATOMIC_RELEASE);
    int r = coro_sleep(3600 * CORO_SEC);
    return r == -1 && errno == ECANCELED ? 42 : -1;
}

static int cancel_remote(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0;
    __atomic_store_n(&flag_set, 0, __ATOMIC_RELAXED);
    coro_t *c = coro_spawn_on(1, park_for_an_hour, NULL);
    ASSERT_NOT_NULL(c);
    while (!__atomic_load_n(&flag_set, __ATOMIC_ACQUIRE))
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    /* A join with a deadline gives up, and c stays joinable: twice. */
    for (int k = 0; k < 2; k++) {
        int64_t old = coro_timeout(2 * CORO_MS);
        ASSERT_ERRNO(coro_join(c, NULL), ETIMEDOUT);
        coro_set_deadline(old);
    }
    ASSERT_EQ(coro_cancel(c), 0);
    int st = 0;
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 42);
    return 0;
}

TEST(run_coroutine_parked_on_scheduler_1_cancelled_and_joined_from_0)
{
    ASSERT_EQ(run_threads(cancel_remote, NULL, 2), 0);
}

/* A cancellation reaches a coroutine that keeps running (yielding). */
static int spin_until_cancelled(void *arg)
{
    (void)arg;
    __atomic_store_n(&flag_set, 1, __ATOMIC_RELEASE);
    for (long i = 0;; i++) {
        coro_yield();
        if (coro_cancelled())
            return 7;
    }
}

static int cancel_spinner(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0;
    __atomic_store_n(&flag_set, 0, __ATOMIC_RELAXED);
    coro_t *c = coro_spawn_on(1, spin_until_cancelled, NULL);
    ASSERT_NOT_NULL(c);
    while (!__atomic_load_n(&flag_set, __ATOMIC_ACQUIRE))
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_cancel(c), 0);
    int st = 0;
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 7);
    return 0;
}

TEST(run_cancel_reaches_a_busy_coroutine_of_another_scheduler)
{
    ASSERT_EQ(run_threads(cancel_spinner, NULL, 2), 0);
}

/* ---- join of an ended coroutine; joining twice; detach ------------------ */

static int ends_at_once(void *arg)
{
    __atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
    return 9;
}

static int join_in_child(void *arg)
{
    int st = -1;
    ASSERT_EQ(coro_join(arg, &st), 0);
    return st;
}

static int join_ended_and_twice(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0;
    int done = 0;
    coro_t *c = coro_spawn_on(1, ends_at_once, &done);
    ASSERT_NOT_NULL(c);
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    int st = 0;
    ASSERT_EQ(coro_join(c, &st), 0); /* ended before the join came */
    ASSERT_EQ(st, 9);

    /* Two joiners of one coroutine: the second is refused. */
    __atomic_store_n(&flag_set, 0, __ATOMIC_RELAXED);
    c = coro_spawn_on(1, park_for_an_hour, NULL);
    ASSERT_NOT_NULL(c);
    while (!__atomic_load_n(&flag_set, __ATOMIC_ACQUIRE))
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    coro_t *j = coro_spawn(join_in_child, c);
    ASSERT_NOT_NULL(j);
    /* j runs until it parks in its join, whose request is then on its
     * way to scheduler 1 ahead of ours. */
    coro_yield();
    ASSERT_ERRNO(coro_join(c, NULL), EINVAL);
    coro_detach(c); /* ignored: being joined */
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(j, &st), 0);
    ASSERT_EQ(st, 42);

    /* Detached from here: freed there when it ends. */
    done = 0;
    c = coro_spawn_on(1, ends_at_once, &done);
    ASSERT_NOT_NULL(c);
    coro_detach(c);
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    return 0;
}

TEST(run_join_of_an_ended_coroutine_a_second_joiner_and_detach)
{
    ASSERT_EQ(run_threads(join_ended_and_twice, NULL, 2), 0);
}

/* ---- the run lasts until no coroutine is left anywhere ------------------ */

static int slow_end(void *arg)
{
    (void)arg;
    __atomic_store_n(&flag_set, 1, __ATOMIC_RELEASE);
    ASSERT_EQ(coro_sleep(10 * CORO_MS), 0);
    __atomic_store_n(&flag_set, 2, __ATOMIC_RELEASE);
    return 0;
}

static int late_spawn(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0; /* ends at once; scheduler 1 stays up */
    ASSERT_EQ(coro_sleep(5 * CORO_MS), 0);
    coro_t *c = coro_spawn_on(1, index_plus_100, NULL);
    ASSERT_NOT_NULL(c);
    int st = 0;
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 101);
    /* Work left on scheduler 1 when scheduler 0's main ends: the run
     * waits for it. */
    ASSERT_NOT_NULL(c = coro_spawn_on(1, slow_end, NULL));
    coro_detach(c);
    return 0;
}

TEST(run_scheduler_stays_up_until_the_run_ends)
{
    __atomic_store_n(&flag_set, 0, __ATOMIC_RELAXED);
    ASSERT_EQ(run_threads(late_spawn, NULL, 2), 0);
    ASSERT_EQ(__atomic_load_n(&flag_set, __ATOMIC_ACQUIRE), 2);
}

/* ---- a deadlock across schedulers ---------------------------------------- */

static int wait_forever_on_event(void *arg)
{
    coro_event_t *ev = arg;
    return coro_event_wait(ev) == -1 && errno == ECANCELED ? 0 : 1;
}

static int cross_deadlock(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0;
    /* Scheduler 1: a coroutine waits for an event nobody will set; here
     * its joiner waits for it. Nothing can wake either. */
    static coro_event_t ev;
    coro_t *c = coro_spawn_on(1, wait_forever_on_event, &ev);
    ASSERT_NOT_NULL(c);
    /* The unwind cancels both; which end comes first is the threads'
     * business: the joiner's cancellation, or the child's end (it
     * returns 0 when its wait is cancelled). */
    int st = -1;
    int r = coro_join(c, &st);
    if (r == 0)
        ASSERT_EQ(st, 0);
    else
        ASSERT_EQ(errno, ECANCELED);
    return 0;
}

TEST(run_deadlock_across_schedulers_is_edeadlk_with_every_scheduler_dumped)
{
    ts_capture_t cap;
    ts_capture_begin(&cap);
    int r = run_threads(cross_deadlock, NULL, 2);
    int e = errno;
    char *out = ts_capture_end(&cap);
    ASSERT_EQ(r, -1);
    ASSERT_EQ(e, EDEADLK);
    ASSERT(strstr(out, "deadlock") != NULL);
    ASSERT(strstr(out, "scheduler 0 of 2") != NULL);
    ASSERT(strstr(out, "scheduler 1 of 2") != NULL);
    ASSERT(strstr(out, "join coroutine") != NULL);
    ASSERT(strstr(out, "event") != NULL);
    free(out);
}

/* ---- the other threads' signal mask -------------------------------------- */

static int check_mask(void *arg)
{
    (void)arg;
    sigset_t m;
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, &m), 0);
    if (coro_thread_index() == 0) {
        ASSERT(!sigismember(&m, SIGUSR1)); /* the caller's, as before */
    } else {
        ASSERT(sigismember(&m, SIGUSR1));
        ASSERT(sigismember(&m, SIGINT));
        ASSERT(sigismember(&m, SIGTERM));
        ASSERT(!sigismember(&m, SIGSEGV));
        ASSERT(!sigismember(&m, SIGBUS));
    }
    return 0;
}

TEST(run_other_threads_leave_process_signals_to_the_caller)
{
    sigset_t m;
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, &m), 0);
    ASSERT(!sigismember(&m, SIGUSR1));
    ASSERT_EQ(run_threads(check_mask, NULL, 3), 0);
    sigset_t after;
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, &after), 0);
    ASSERT(!sigismember(&after, SIGUSR1));
}

/* ---- both ways at once ---------------------------------------------------- */

/* Each scheduler spawns on the other, whose coroutine spawns back on the
 * first and joins: joins and spawns cross in both directions at once. */
static int ping_back(void *arg)
{
    int v = (int)(intptr_t)arg;
    return v + 1;
}

static int bounce(void *arg)
{
    int v = (int)(intptr_t)arg;
    int home = 1 - coro_thread_index();
    coro_t *c = coro_spawn_on(home, ping_back, (void *)(intptr_t)v);
    ASSERT_NOT_NULL(c);
    int st = -1;
    ASSERT_EQ(coro_join(c, &st), 0);
    return st * 2;
}

static int cross_both_ways(void *arg)
{
    (void)arg;
    enum { N = 300 };
    long n = ts_count(N, N / 3);
    int other = 1 - coro_thread_index();
    coro_t *h[N];
    for (long i = 0; i < n; i++)
        ASSERT_NOT_NULL(h[i] = coro_spawn_on(other, bounce, (void *)(intptr_t)i));
    for (long i = 0; i < n; i++) {
        int st = -1;
        ASSERT_EQ(coro_join(h[i], &st), 0);
        ASSERT_EQ(st, (int)(i + 1) * 2);
    }
    return 0;
}

TEST(run_spawns_and_joins_cross_both_ways_at_once)
{
    ASSERT_EQ(run_threads(cross_both_ways, NULL, 2), 0);
}

/* ---- coro_dump and coro_stats cover the whole run ------------------------- */

static int named_sleeper(void *arg)
{
    (void)arg;
    return coro_sleep(3600 * CORO_SEC) == -1 && errno == ECANCELED ? 0 : 1;
}

static int dump_run(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0;
    coro_opts_t o = { .name = "sleeper-on-0" };
    coro_t *a = coro_spawn_opts(named_sleeper, NULL, &o);
    coro_t *b = coro_spawn_on(1, named_sleeper, NULL);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    coro_yield(); /* a parks */
    coro_stats_t st;
    coro_stats(&st);
    /* main and a here, b on scheduler 1 (scheduler 1's main has ended). */
    ASSERT_EQ(st.live, 3);
    ASSERT_EQ(st.timers, 2);
    char *out = ts_dump_text();
    ASSERT(strstr(out, "coro: scheduler 0 of 2:") != NULL);
    ASSERT(strstr(out, "coro: scheduler 1 of 2:") != NULL);
    ASSERT(strstr(out, "sleeper-on-0") != NULL);
    /* b is listed under scheduler 1, asleep. */
    const char *one = strstr(out, "scheduler 1 of 2:");
    char id[32];
    snprintf(id, sizeof id, "coroutine %llu ", (unsigned long long)coro_id(b));
    ASSERT(strstr(one, id) != NULL);
    ASSERT(strstr(strstr(one, id), "sleep") != NULL);
    free(out);
    ASSERT_EQ(coro_cancel(a), 0);
    ASSERT_EQ(coro_cancel(b), 0);
    ASSERT_EQ(coro_join(a, NULL), 0);
    ASSERT_EQ(coro_join(b, NULL), 0);
    return 0;
}

TEST(run_dump_and_stats_cover_every_scheduler)
{
    ASSERT_EQ(run_threads(dump_run, NULL, 2), 0);
}

/* ---- coro_close of another scheduler's descriptor ------------------------- */

static int read_until_closed(void *arg)
{
    int fd = *(int *)arg;
    char c;
    __atomic_store_n(&flag_set, 1, __ATOMIC_RELEASE);
    return coro_read(fd, &c, 1) == -1 && errno == EBADF ? 0 : 1;
}

static int close_remote_fd(void *arg)
{
    int *p = arg;
    if (coro_thread_index() != 0)
        return 0;
    __atomic_store_n(&flag_set, 0, __ATOMIC_RELAXED);
    coro_t *c = coro_spawn_on(1, read_until_closed, &p[0]);
    ASSERT_NOT_NULL(c);
    while (!__atomic_load_n(&flag_set, __ATOMIC_ACQUIRE))
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    /* Until its read has registered fd with scheduler 1 (closing before
     * would race with the read's own use of fd). */
    while (!coro__fd_foreign(p[0]))
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_close(p[0]), 0);
    int st = -1;
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 0);
    return 0;
}

TEST(run_coro_close_wakes_another_schedulers_waiters)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    ASSERT_EQ(run_threads(close_remote_fd, p, 2), 0);
    ASSERT_EQ(close(p[1]), 0);
    ASSERT_ERRNO(close(p[0]), EBADF); /* closed by coro_close */
}

/* ---- an idle scheduler that gets no posts stops spinning for them -------------- */

static int ended_at_once(void *arg)
{
    (void)arg;
    return 0;
}

typedef struct sleepy {
    uint64_t spins_before, spins_after, spins_busy;
} sleepy_t;

static int sleepy_main(void *arg)
{
    sleepy_t *sl = arg;
    if (coro_thread_index() != 1)
        return 0;
    /* 100 sleeps: each goes idle with a timer armed, and no post ever
     * comes. Spinning 20 us for one before each sleep would burn 2 ms of
     * CPU and see the descriptors late every time; only the first few
     * idle turns spin. */
    sl->spins_before = coro__tls->post_spins;
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(coro_sleep(CORO_MS / 4), 0);
    sl->spins_after = coro__tls->post_spins;
    /* Posts coming again (remote spawns) give the spin its credit back. */
    for (int i = 0; i < 20; i++) {
        coro_t *c = coro_spawn_on(0, ended_at_once, NULL);
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(coro_join(c, NULL), 0);
    }
    sl->spins_busy = coro__tls->post_spins;
    return 0;
}

TEST(run_idle_scheduler_without_posts_stops_spinning)
{
    sleepy_t sl = { 0, 0, 0 };
    coro_main_opts_t o = { .threads = 2 };
    ASSERT_EQ(coro_main_opts(sleepy_main, &sl, &o), 0);
    ASSERT(sl.spins_after - sl.spins_before <= CORO__POST_SPIN_CREDIT);
    ASSERT(sl.spins_busy - sl.spins_after >= 1); /* the answers give the credit back */
}

/* ---- coro_spawn_on_opts ---------------------------------------------------------- */

static int named_body(void *arg)
{
    (void)arg;
    return strcmp(coro_name(coro_self()), "far-worker") == 0 && coro_thread_index() == 1 ? 7 : 1;
}

static int spawn_opts_main(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0;
    char name[16];
    strcpy(name, "far-worker");
    coro_opts_t o = { .stack_size = 256 * 1024, .name = name };
    coro_t *c = coro_spawn_on_opts(1, named_body, NULL, &o);
    ASSERT_NOT_NULL(c);
    memset(name, 'x', sizeof name - 1); /* the name was copied */
    int st = 0;
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 7);
    /* Refused options, judged on the other scheduler. */
    coro_opts_t bad = { .flags = 0x80 };
    errno = 0;
    ASSERT_NULL(coro_spawn_on_opts(1, named_body, NULL, &bad));
    ASSERT_EQ(errno, EINVAL);
    coro_opts_t tiny = { .stack_size = 1 };
    errno = 0;
    ASSERT_NULL(coro_spawn_on_opts(1, named_body, NULL, &tiny));
    ASSERT_EQ(errno, EINVAL);
    /* NULL options, and the caller's own index. */
    ASSERT_NOT_NULL(c = coro_spawn_on_opts(1, named_body, NULL, NULL));
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 1);
    o.name = "far-worker";
    ASSERT_NOT_NULL(c = coro_spawn_on_opts(0, named_body, NULL, &o));
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 1); /* it ran on scheduler 0 */
    return 0;
}

TEST(run_spawn_on_opts_names_and_sizes_the_coroutine_there)
{
    coro_main_opts_t o = { .threads = 2 };
    ASSERT_EQ(coro_main_opts(spawn_opts_main, NULL, &o), 0);
}
