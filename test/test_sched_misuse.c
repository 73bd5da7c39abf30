/* test/test_sched_misuse.c: calls made in the wrong place or with the wrong
 * arguments get the documented error, never a crash: blocking calls
 * outside a coroutine (EPERM; yield is a no-op), self-join (EDEADLK),
 * double join and competing joiners, joining detached, group-owned or
 * main coroutines (EINVAL) or another running scheduler's (EPERM), NULL
 * functions and handles, stack sizes out of range. */
#include "test/test_sched.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static int ran_flag;

static int set_ran(void *arg)
{
    (void)arg;
    ran_flag = 1;
    return 0;
}

/* Everything a thread without a scheduler may call. */
static void check_outside(void)
{
    ASSERT_NULL(coro_self());
    ASSERT_ERRNO(coro_sleep(CORO_MS), EPERM);
    ASSERT_ERRNO(coro_sleep(0), EPERM);
    ASSERT_ERRNO(coro_sleep(-1), EPERM);
    ASSERT_ERRNO(coro_sleep_until(0), EPERM);
    ASSERT_ERRNO(coro_sleep_until(CORO_NEVER), EPERM);
    ASSERT_ERRNO(coro_join(NULL, NULL), EPERM);
    int64_t t0 = test_now_ns();
    coro_yield(); /* a no-op */
    coro_yield();
    ASSERT_LT(test_now_ns() - t0, ts_bound(100 * CORO_MS));
    ASSERT_NULL_ERRNO(coro_spawn(set_ran, NULL), EPERM);
    ASSERT_NULL_ERRNO(coro_spawn_opts(set_ran, NULL, &(coro_opts_t){ .name = "x" }), EPERM);
    ASSERT_EQ(ran_flag, 0);
    ASSERT_ERRNO(coro_shield(1), EPERM);
    ASSERT_ERRNO(coro_shield(0), EPERM);
    ASSERT_EQ(coro_cancelled(), 0);
    ASSERT_ERRNO(coro_cancel(NULL), EINVAL);
    ASSERT_RET_ERRNO(coro_timeout(CORO_MS), CORO_NEVER, EPERM);
    ASSERT_RET_ERRNO(coro_set_deadline(5), CORO_NEVER, EPERM);
    ASSERT_RET_ERRNO(coro_deadline(), CORO_NEVER, EPERM);
    coro_detach(NULL);

    /* Groups outside a coroutine. */
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    ASSERT_NULL_ERRNO(coro_group_spawn(g, set_ran, NULL), EPERM);
    ASSERT_ERRNO(coro_group_wait(g), EPERM);
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), EPERM);
    coro_group_cancel(g);
    coro_group_free(g); /* empty: freed */
    ASSERT_EQ(ran_flag, 0);

    /* A dump outside a scheduler says so in one line. */
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    coro_dump(p[1]);
    close(p[1]);
    char *out = ts_read_all(p[0]);
    close(p[0]);
    ASSERT_CONTAINS(out, "no scheduler");
    ASSERT_EQ(ts_count_lines_with(out, ""), 1);
    free(out);
}

static int noop_main(void *arg)
{
    (void)arg;
    return 0;
}

static void *outside_thread(void *arg)
{
    (void)arg;
    check_outside();
    return NULL;
}

static atomic_int other_state; /* 0 starting, 1 scheduler running, 2 done checking */

static int busy_main(void *arg)
{
    (void)arg;
    atomic_store(&other_state, 1);
    int64_t give_up = coro_now() + 20 * CORO_SEC;
    while (atomic_load(&other_state) != 2 && coro_now() < give_up)
        ASSERT_EQ(coro_sleep(100 * CORO_US), 0);
    return 0;
}

static void *sched_thread(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_main(busy_main, NULL), 0);
    return NULL;
}

TEST(sched_misuse_outside_a_coroutine)
{
    /* Before any scheduler ran... */
    check_outside();
    /* ...after one ran and ended... */
    ASSERT_EQ(coro_main(noop_main, NULL), 0);
    check_outside();
    /* ...on a thread that never ran one, while another thread runs its
     * scheduler. */
    pthread_t a, b;
    atomic_store(&other_state, 0);
    ASSERT_EQ(pthread_create(&a, NULL, sched_thread, NULL), 0);
    while (atomic_load(&other_state) != 1) {
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    ASSERT_EQ(pthread_create(&b, NULL, outside_thread, NULL), 0);
    ASSERT_EQ(pthread_join(b, NULL), 0);
    check_outside();
    atomic_store(&other_state, 2);
    ASSERT_EQ(pthread_join(a, NULL), 0);
}

/* ---- joins ---------------------------------------------------------------- */

static int ret_yield(void *arg)
{
    int n = arg ? *(int *)arg : 0;
    coro_yield();
    coro_yield();
    return n;
}

static int self_joiner(void *arg)
{
    (void)arg;
    ASSERT_ERRNO(coro_join(coro_self(), NULL), EDEADLK);
    return 1;
}

typedef struct two {
    coro_t *target;
    int ret, status, err;
} two_t;

static int first_joiner(void *arg)
{
    two_t *t = arg;
    t->status = -1;
    errno = 0;
    t->ret = coro_join(t->target, &t->status);
    t->err = errno;
    return 0;
}

static int joins_main(void *arg)
{
    (void)arg;
    int st;

    /* Self (while nobody else joins it: main yields rather than joins, so
     * the "already being joined" EINVAL cannot mask the EDEADLK). */
    coro_t *s = coro_spawn(self_joiner, NULL);
    ASSERT_NOT_NULL(s);
    coro_yield();
    st = 0;
    ASSERT_EQ(coro_join(s, &st), 0);
    ASSERT_EQ(st, 1);

    /* Twice: the handle died with the first join. Nothing is spawned in
     * between, so its memory is still the pool's. */
    int v = 33;
    coro_t *c = coro_spawn(ret_yield, &v);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 33);
    st = -1;
    ASSERT_ERRNO(coro_join(c, &st), EINVAL);
    ASSERT_EQ(st, -1);
    ASSERT_ERRNO(coro_cancel(c), EINVAL);
    coro_detach(c); /* ignored */

    /* Two joiners of one target: the second gets EINVAL at once, the first
     * gets the status. */
    int w = 44;
    two_t t = { .target = coro_spawn(ret_yield, &w) };
    ASSERT_NOT_NULL(t.target);
    coro_t *j1 = coro_spawn(first_joiner, &t);
    ASSERT_NOT_NULL(j1);
    coro_yield(); /* j1 parks in its join */
    st = -1;
    ASSERT_ERRNO(coro_join(t.target, &st), EINVAL);
    ASSERT_EQ(st, -1);
    coro_detach(t.target); /* being joined: ignored */
    ASSERT_EQ(coro_join(j1, NULL), 0);
    ASSERT_EQ(t.ret, 0);
    ASSERT_EQ(t.status, 44);

    /* NULL. */
    ASSERT_ERRNO(coro_join(NULL, NULL), EINVAL);
    ASSERT_ERRNO(coro_cancel(NULL), EINVAL);
    coro_detach(NULL);
    return 0;
}

TEST(sched_misuse_joins)
{
    ASSERT_EQ(coro_main(joins_main, NULL), 0);
}

/* Joining a detached coroutine: EINVAL; it still runs to its end and
 * coro_main waits for it. Joining the main coroutine: EINVAL. */
static int detached_done;

static int detached_body(void *arg)
{
    coro_t *main_c = arg;
    ASSERT_ERRNO(coro_join(main_c, NULL), EINVAL);
    ASSERT_EQ(coro_sleep(5 * CORO_MS), 0);
    detached_done = 1;
    return 0;
}

static int quick_ret(void *arg)
{
    (void)arg;
    return 2;
}

static int detach_main(void *arg)
{
    (void)arg;
    coro_t *d = coro_spawn(detached_body, coro_self());
    ASSERT_NOT_NULL(d);
    coro_detach(d);
    coro_detach(d); /* twice: harmless */
    ASSERT_ERRNO(coro_join(d, NULL), EINVAL);
    coro_yield();
    ASSERT_ERRNO(coro_join(d, NULL), EINVAL);
    /* Detaching one that has already ended frees it (Valgrind checks). */
    coro_t *q = coro_spawn(quick_ret, NULL);
    ASSERT_NOT_NULL(q);
    coro_yield();
    coro_detach(q);
    ASSERT_EQ(detached_done, 0);
    return 0;
}

TEST(sched_misuse_join_detached_or_main)
{
    ASSERT_EQ(coro_main(detach_main, NULL), 0);
    ASSERT_EQ(detached_done, 1);
}

/* ---- spawn arguments ------------------------------------------------------ */

static int spawn_args_main(void *arg)
{
    (void)arg;
    ASSERT_NULL_ERRNO(coro_spawn(NULL, NULL), EINVAL);
    ASSERT_NULL_ERRNO(coro_spawn_opts(NULL, NULL, &(coro_opts_t){ .name = "n" }), EINVAL);
    static const size_t bad[] = { 1, 4096, CORO_STACK_MIN - 1, CORO_STACK_MAX + 1, SIZE_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_NULL_ERRNO(coro_spawn_opts(quick_ret, NULL,
                                          &(coro_opts_t){ .stack_size = bad[i], .name = "bad" }),
                          EINVAL);
    static const size_t good[] = { 0, CORO_STACK_MIN, CORO_STACK_MIN + 1, 3 * CORO_STACK_MIN };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        coro_t *c = coro_spawn_opts(quick_ret, NULL, &(coro_opts_t){ .stack_size = good[i] });
        ASSERT_NOT_NULL(c);
        int st = 0;
        ASSERT_EQ(coro_join(c, &st), 0);
        ASSERT_EQ(st, 2);
    }
    /* NULL opts mean the defaults. */
    coro_t *c = coro_spawn_opts(quick_ret, NULL, NULL);
    ASSERT_NOT_NULL(c);
    ASSERT_STR_EQ(coro_name(c), "");
    ASSERT_EQ(coro_join(c, NULL), 0);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.live, 1);
    ASSERT_EQ(st.spawned, 1 + 4 + 1); /* failures are not counted */
    return 0;
}

TEST(sched_misuse_spawn_bad_arguments)
{
    ASSERT_EQ(coro_main(spawn_args_main, NULL), 0);
}

/* ---- a handle from another thread's scheduler ---------------------------- */

static atomic_int foreign_step;
static coro_t *_Atomic foreign_handle;

static int foreign_sleeper(void *arg)
{
    (void)arg;
    int64_t give_up = coro_now() + 20 * CORO_SEC;
    while (atomic_load(&foreign_step) < 2 && coro_now() < give_up)
        ASSERT_EQ(coro_sleep(100 * CORO_US), 0);
    return 0;
}

static int foreign_owner_main(void *arg)
{
    (void)arg;
    coro_t *c = coro_spawn(foreign_sleeper, NULL);
    ASSERT_NOT_NULL(c);
    atomic_store(&foreign_handle, c);
    atomic_store(&foreign_step, 1);
    ASSERT_EQ(coro_join(c, NULL), 0);
    return 0;
}

static void *foreign_owner(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_main(foreign_owner_main, NULL), 0);
    return NULL;
}

static int foreign_user_main(void *arg)
{
    (void)arg;
    while (atomic_load(&foreign_step) < 1)
        ASSERT_EQ(coro_sleep(100 * CORO_US), 0);
    coro_t *c = atomic_load(&foreign_handle);
    /* The thread boundary: a live coroutine of another running scheduler. */
    ASSERT_ERRNO(coro_join(c, NULL), EPERM);
    ASSERT_ERRNO(coro_cancel(c), EPERM);
    coro_detach(c); /* ignored */
    atomic_store(&foreign_step, 2);
    return 0;
}

TEST(sched_misuse_foreign_scheduler_handle)
{
    pthread_t th;
    atomic_store(&foreign_step, 0);
    ASSERT_EQ(pthread_create(&th, NULL, foreign_owner, NULL), 0);
    ASSERT_EQ(coro_main(foreign_user_main, NULL), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
}
