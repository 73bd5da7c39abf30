/* test/test_fence.c: the asymmetric fences of coro/fence.h: membarrier in
 * use where the kernel has it, still working in a forked child, and the
 * store-buffering litmus test (each side stores its flag, fences, reads
 * the other's: both reading 0 is what the fences forbid) with one light
 * and one heavy side. */
#include "test/test_sched.h"
#include "coro/fence.h"
#include "coro/compat.h"

#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if CORO_HAVE_MEMBARRIER
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif

TEST(fence_membarrier_in_use_where_the_kernel_has_it)
{
    coro__fence_setup();
    coro__fence_heavy(); /* either way, returns */
    coro__fence_light();
#if CORO_HAVE_MEMBARRIER
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (RUNNING_ON_VALGRIND || cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
        TEST_SKIP("no membarrier here: both sides use full fences");
    ASSERT_EQ(coro__fence_asymmetric, 1);
#else
    ASSERT_EQ(coro__fence_asymmetric, 0);
#endif
}

TEST(fence_heavy_works_in_a_forked_child)
{
    coro__fence_setup();
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 3; i++)
            coro__fence_heavy(); /* aborts if membarrier stopped working */
        _exit(0);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
}

/* ---- store buffering ---------------------------------------------------------- */

typedef struct litmus {
    int x, y;           /* the two flags */
    int round;          /* the round both sides are in */
    int done[2];        /* the last round each side finished */
    int saw[2];         /* what each read of the other's flag */
    long both_zero;
    long rounds;
    /* For a side that has spun long enough (wait_for). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sleepers;
} litmus_t;

/* Wait until *p == v: spin a while, then sleep, a millisecond at a time,
 * until set_to says so. The two sides take turns each round; on a busy
 * 2-vCPU machine a side that only spins can hold its CPU for a whole
 * time slice while the other waits to run (100k rounds then took
 * minutes). The waits are outside the window the test looks at (the
 * stores, the fences and the loads), and set_to keeps its fast path a
 * plain store: a full fence there would move the two sides' stores apart
 * and hide the reordering the test is there to catch. */
static void wait_for(litmus_t *l, int *p, int v)
{
    for (int spins = 0; spins < 4096; spins++)
        if (__atomic_load_n(p, __ATOMIC_ACQUIRE) == v)
            return;
    pthread_mutex_lock(&l->mu);
    __atomic_add_fetch(&l->sleepers, 1, __ATOMIC_RELAXED);
    while (__atomic_load_n(p, __ATOMIC_ACQUIRE) != v) {
        /* A wake-up set_to missed (it looked at sleepers before this
         * side counted itself) costs at most this. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&l->cv, &l->mu, &until);
    }
    __atomic_sub_fetch(&l->sleepers, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&l->mu);
}

/* *p = v, waking a side asleep in wait_for. */
static void set_to(litmus_t *l, int *p, int v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
    if (__builtin_expect(__atomic_load_n(&l->sleepers, __ATOMIC_RELAXED) != 0, 0)) {
        pthread_mutex_lock(&l->mu);
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
}

static void *litmus_heavy(void *arg)
{
    litmus_t *l = arg;
    for (int r = 1; r <= l->rounds; r++) {
        wait_for(l, &l->round, r);
        __atomic_store_n(&l->y, 1, __ATOMIC_RELAXED);
        coro__fence_heavy();
        l->saw[1] = __atomic_load_n(&l->x, __ATOMIC_RELAXED);
        set_to(l, &l->done[1], r);
    }
    return NULL;
}

TEST(fence_light_and_heavy_forbid_store_buffering)
{
    /* Valgrind runs one thread at a time: nothing to reorder, and the
     * two spinning sides would only take turns by time slice. */
    if (RUNNING_ON_VALGRIND)
        TEST_SKIP("under Valgrind threads do not run at once");
    coro__fence_setup();
    /* Without the fences (compiler barriers on both sides) this shows
     * both sides reading 0 in some 0.01-2% of rounds on x86-64: the random
     * delay lets the two stores meet. */
    litmus_t l = { .rounds = ts_count(100000, 2000),
                   .mu = PTHREAD_MUTEX_INITIALIZER,
                   .cv = PTHREAD_COND_INITIALIZER };
    unsigned seed = 1;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, litmus_heavy, &l), 0);
    for (int r = 1; r <= l.rounds; r++) {
        __atomic_store_n(&l.x, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&l.y, 0, __ATOMIC_RELAXED);
        set_to(&l, &l.round, r);
        seed = seed * 1103515245u + 12345u;
        for (volatile unsigned k = (seed >> 16) % 64; k; k--)
            ;
        __atomic_store_n(&l.x, 1, __ATOMIC_RELAXED);
        coro__fence_light();
        l.saw[0] = __atomic_load_n(&l.y, __ATOMIC_RELAXED);
        wait_for(&l, &l.done[1], r);
        if (l.saw[0] == 0 && l.saw[1] == 0)
            l.both_zero++;
    }
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(l.both_zero, 0);
}
