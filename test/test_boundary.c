/* test/test_boundary.c: the thread boundary, identity and signal handlers.
 *
 * Every object coroutines wait on belongs to one scheduler; a call on it
 * from another thread (a plain one, or another scheduler's) fails with
 * EPERM and changes nothing, and the owning scheduler carries on as if it
 * had never happened. Each test below first builds a "world" on the main
 * scheduler (coroutines parked on a sem, a channel, a pipe, ...), lets the
 * other thread poke at it, then checks that every waiter is still parked
 * and still wakes normally. Coroutine ids never repeat (across coro_main
 * runs and threads), ownership is by id (a coroutine on a recycled stack
 * at the same address is not the owner), and coro_yield from a signal
 * handler dies with a message instead of jumping to address 0. */
#include "test/test_sched.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the world the other thread pokes at --------------------------------- */

typedef struct world {
    coro_sem_t sem;
    coro_mutex_t mutex;
    coro_cond_t cond;
    coro_event_t event;
    coro_wg_t wg;
    coro_rwlock_t rw;
    coro_once_t once;
    coro_chan_t *chan;     /* unbuffered, a receiver parked on it */
    coro_chan_t *bchan;    /* buffered, capacity 4, one item in */
    coro_group_t *group;
    coro_gen_t *gen;
    coro_stream_t *stream;
    int pipe[2];           /* a reader parked on pipe[0] */
    coro_t *sleeper;       /* a joinable coroutine */
    /* Results of the waiters, checked at the end. */
    int sem_ret, chan_ret, chan_val, event_ret, wg_ret, read_ret;
    char read_buf[8];
    atomic_int release_sleeper;
    /* What the other thread saw. */
    atomic_int poked;
} world_t;

static int once_fn(void *arg)
{
    (void)arg;
    return 0;
}

static int sem_waiter(void *arg)
{
    world_t *w = arg;
    w->sem_ret = coro_sem_acquire(&w->sem);
    return 0;
}

static int chan_waiter(void *arg)
{
    world_t *w = arg;
    w->chan_ret = coro_chan_recv(w->chan, &w->chan_val);
    return 0;
}

static int event_waiter(void *arg)
{
    world_t *w = arg;
    w->event_ret = coro_event_wait(&w->event);
    return 0;
}

static int wg_waiter(void *arg)
{
    world_t *w = arg;
    w->wg_ret = coro_wg_wait(&w->wg);
    return 0;
}

static int pipe_reader(void *arg)
{
    world_t *w = arg;
    w->read_ret = (int)coro_read(w->pipe[0], w->read_buf, sizeof w->read_buf);
    return 0;
}

static int sleeper(void *arg)
{
    world_t *w = arg;
    int64_t give_up = coro_now() + 20 * CORO_SEC;
    while (!atomic_load(&w->release_sleeper) && coro_now() < give_up)
        coro_sleep(100 * CORO_US);
    return 0;
}

static int gen_fn(coro_gen_t *g, void *arg)
{
    (void)arg;
    for (int i = 0;; i++)
        if (coro_gen_yield(g, &i) != 0)
            return 0;
}

/* Build the world: every object used once by this scheduler (so it is
 * bound here), and a coroutine parked on each one that has waiters. */
static coro_t *world_waiters[5];

static void world_build(world_t *w)
{
    memset(w, 0, sizeof *w);
    w->sem_ret = w->chan_ret = w->event_ret = w->wg_ret = w->read_ret = 99;
    coro_sem_init(&w->sem, 0);
    coro_mutex_init(&w->mutex);
    coro_cond_init(&w->cond);
    coro_event_init(&w->event);
    coro_wg_init(&w->wg);
    coro_rwlock_init(&w->rw);
    w->once = (coro_once_t)CORO_ONCE_INIT;
    ASSERT_NOT_NULL(w->chan = coro_chan_new(sizeof(int), 0));
    ASSERT_NOT_NULL(w->bchan = coro_chan_new(sizeof(int), 4));
    int one = 1;
    ASSERT_EQ(coro_chan_try_send(w->bchan, &one), 0);
    ASSERT_NOT_NULL(w->group = coro_group_new(CORO_GROUP_COLLECT));
    ASSERT_NOT_NULL(w->gen = coro_gen_new(gen_fn, NULL, sizeof(int)));
    ASSERT_EQ(pipe(w->pipe), 0);
    ASSERT_NOT_NULL(w->stream = coro_stream_new(w->pipe[1], 0));
    ASSERT_EQ(coro_stream_flush(w->stream), 0);       /* binds it */
    ASSERT_EQ(coro_mutex_lock(&w->mutex), 0);
    ASSERT_EQ(coro_cond_signal(&w->cond), 0);         /* binds it */
    ASSERT_EQ(coro_rwlock_wrlock(&w->rw), 0);
    ASSERT_EQ(coro_once(&w->once, once_fn, NULL), 0);
    ASSERT_EQ(coro_wg_add(&w->wg, 1), 0);
    int v;
    ASSERT_EQ(coro_gen_next(w->gen, &v), 0);
    ASSERT_EQ(v, 0);
    ASSERT_NOT_NULL(coro_group_spawn(w->group, sleeper, w));
    ASSERT_NOT_NULL(w->sleeper = coro_spawn(sleeper, w));
    coro_fn fns[5] = { sem_waiter, chan_waiter, event_waiter, wg_waiter, pipe_reader };
    for (int i = 0; i < 5; i++)
        ASSERT_NOT_NULL(world_waiters[i] = coro_spawn(fns[i], w));
    /* Let them all park: each blocks at its first call. */
    for (int i = 0; i < 10; i++)
        coro_yield();
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.io_waits, 1);
    ASSERT_EQ(w->sem_ret + w->chan_ret + w->event_ret + w->wg_ret + w->read_ret, 5 * 99);
}

/* After the other thread: every waiter is still parked, every object as it
 * was; then the owning scheduler wakes them all normally and tears down. */
static void world_check_and_finish(world_t *w)
{
    for (int i = 0; i < 10; i++)
        coro_yield();
    ASSERT_EQ(w->sem_ret + w->chan_ret + w->event_ret + w->wg_ret + w->read_ret, 5 * 99);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.io_waits, 1);
    ASSERT(fcntl(w->pipe[0], F_GETFD) >= 0); /* still open */
    ASSERT_EQ(coro_sem_value(&w->sem), 0);
    ASSERT_EQ(coro_chan_len(w->bchan), 1);
    ASSERT_EQ(coro_event_is_set(&w->event), 0);
    ASSERT_EQ(w->mutex.owner, coro_id(coro_self()));
    ASSERT_EQ(w->rw.writer, coro_id(coro_self()));

    /* Now wake everyone from the right thread. */
    ASSERT_EQ(coro_sem_release(&w->sem), 0);
    int v = 7;
    ASSERT_EQ(coro_chan_send(w->chan, &v), 0);
    ASSERT_EQ(coro_event_set(&w->event), 0);
    ASSERT_EQ(coro_wg_done(&w->wg), 0);
    ASSERT_EQ(write(w->pipe[1], "hi", 2), 2);
    atomic_store(&w->release_sleeper, 1);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(coro_join(world_waiters[i], NULL), 0);
    ASSERT_EQ(w->sem_ret, 0);
    ASSERT_EQ(w->chan_ret, 0);
    ASSERT_EQ(w->chan_val, 7);
    ASSERT_EQ(w->event_ret, 0);
    ASSERT_EQ(w->wg_ret, 0);
    ASSERT_EQ(w->read_ret, 2);
    ASSERT_EQ(memcmp(w->read_buf, "hi", 2), 0);
    ASSERT_EQ(coro_join(w->sleeper, NULL), 0);
    ASSERT_EQ(coro_group_wait(w->group), 0);
    coro_group_free(w->group);
    int g;
    ASSERT_EQ(coro_gen_next(w->gen, &g), 0);
    ASSERT_EQ(g, 1);
    coro_gen_free(w->gen);
    ASSERT_EQ(coro_mutex_unlock(&w->mutex), 0);
    ASSERT_EQ(coro_rwlock_unlock(&w->rw), 0);
    coro_chan_free(w->chan);
    coro_chan_free(w->bchan);
    coro_stream_free(w->stream);
    ASSERT_EQ(coro_close(w->pipe[0]), 0);
    ASSERT_EQ(coro_close(w->pipe[1]), 0);
}

/* ---- what the other thread does --------------------------------------------- */

enum {
    POKE_SEM = 1,      /* coro_sem_release and the rest of the sem */
    POKE_CHAN = 2,     /* coro_chan_try_send and the rest of the channels */
    POKE_CLOSE = 4,    /* coro_close / coro_fd_forget of the pipe being read */
    POKE_ALL = 0xff,   /* and every other object and handle */
};

/* Every call must fail with EPERM and change nothing. in_coro: the caller
 * is a coroutine of another scheduler (blocking calls are then tried too;
 * on a plain thread they are EPERM anyway). */
static void poke(world_t *w, int what, int in_coro)
{
    int v = 5;
    if (what & POKE_SEM) {
        ASSERT_ERRNO(coro_sem_release(&w->sem), EPERM);
        ASSERT_ERRNO(coro_sem_try_acquire(&w->sem), EPERM);
        ASSERT_ERRNO(coro_sem_acquire(&w->sem), EPERM);
        ASSERT_ERRNO(coro_sem_value(&w->sem), EPERM);
    }
    if (what & POKE_CHAN) {
        ASSERT_ERRNO(coro_chan_try_send(w->chan, &v), EPERM);
        ASSERT_ERRNO(coro_chan_try_send(w->bchan, &v), EPERM);
        ASSERT_ERRNO(coro_chan_try_recv(w->bchan, &v), EPERM);
        ASSERT_ERRNO(coro_chan_close(w->chan), EPERM);
        errno = 0;
        ASSERT_EQ(coro_chan_len(w->bchan), 0);
        ASSERT_EQ(errno, EPERM);
        ASSERT_EQ(coro_chan_cap(w->bchan), 4); /* never changes: fine anywhere */
        coro_case_t cs[1] = { { w->bchan, CORO_RECV, &v, 0 } };
        ASSERT_ERRNO(coro_try_select(cs, 1), EPERM);
        if (in_coro) {
            ASSERT_ERRNO(coro_chan_send(w->chan, &v), EPERM);
            ASSERT_ERRNO(coro_chan_recv(w->bchan, &v), EPERM);
            ASSERT_ERRNO(coro_select(cs, 1), EPERM);
        }
    }
    if (what & POKE_CLOSE) {
        ASSERT_ERRNO(coro_close(w->pipe[0]), EPERM);
        ASSERT_ERRNO(coro_fd_forget(w->pipe[0]), EPERM);
        ASSERT(fcntl(w->pipe[0], F_GETFD) >= 0); /* left open */
        if (in_coro) {
            char c;
            ASSERT_ERRNO(coro_wait_fd(w->pipe[0], CORO_READ), EPERM);
            ASSERT_ERRNO(coro_read(w->pipe[0], &c, 1), EPERM);
        }
    }
    if (what == POKE_ALL) {
        ASSERT_ERRNO(coro_mutex_unlock(&w->mutex), EPERM);
        ASSERT_ERRNO(coro_cond_signal(&w->cond), EPERM);
        ASSERT_ERRNO(coro_cond_broadcast(&w->cond), EPERM);
        ASSERT_ERRNO(coro_event_set(&w->event), EPERM);
        ASSERT_ERRNO(coro_event_clear(&w->event), EPERM);
        ASSERT_ERRNO(coro_event_is_set(&w->event), EPERM);
        ASSERT_ERRNO(coro_wg_add(&w->wg, 1), EPERM);
        ASSERT_ERRNO(coro_wg_done(&w->wg), EPERM);
        ASSERT_ERRNO(coro_stream_write(w->stream, "x", 1), EPERM);
        if (in_coro) {
            ASSERT_ERRNO(coro_mutex_lock(&w->mutex), EPERM);
            ASSERT_ERRNO(coro_mutex_trylock(&w->mutex), EPERM);
            ASSERT_ERRNO(coro_cond_wait(&w->cond, &w->mutex), EPERM);
            ASSERT_ERRNO(coro_event_wait(&w->event), EPERM);
            ASSERT_ERRNO(coro_wg_wait(&w->wg), EPERM);
            ASSERT_ERRNO(coro_rwlock_rdlock(&w->rw), EPERM);
            ASSERT_ERRNO(coro_rwlock_unlock(&w->rw), EPERM);
            ASSERT_ERRNO(coro_once(&w->once, once_fn, NULL), EPERM);
            ASSERT_NULL_ERRNO(coro_group_spawn(w->group, sleeper, w), EPERM);
            ASSERT_ERRNO(coro_group_wait(w->group), EPERM);
            ASSERT_NULL_ERRNO(coro_group_next(w->group, NULL), EPERM);
            ASSERT_ERRNO(coro_gen_next(w->gen, &v), EPERM);
            ASSERT_ERRNO(coro_gen_status(w->gen), EPERM);
            ASSERT_ERRNO(coro_join(w->sleeper, NULL), EPERM);
            ASSERT_ERRNO(coro_cancel(w->sleeper), EPERM);
            char buf[4];
            ASSERT_ERRNO(coro_stream_read(w->stream, buf, sizeof buf), EPERM);
        }
        /* The void calls do nothing (and say so on stderr). */
        coro_group_cancel(w->group);
        coro_detach(w->sleeper);
    }
    atomic_store(&w->poked, 1);
}

typedef struct other {
    world_t *w;
    int what;
} other_t;

static void *plain_thread(void *arg)
{
    other_t *o = arg;
    poke(o->w, o->what, 0);
    return NULL;
}

static int other_sched_main(void *arg)
{
    other_t *o = arg;
    poke(o->w, o->what, 1);
    return 0;
}

static void *sched_thread(void *arg)
{
    ASSERT_EQ(coro_main(other_sched_main, arg), 0);
    return NULL;
}

/* Start the other thread and wait for it without blocking this scheduler. */
static void run_other(world_t *w, int what, void *(*body)(void *))
{
    other_t o = { w, what };
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, body, &o), 0);
    int64_t give_up = coro_now() + 20 * CORO_SEC;
    while (!atomic_load(&w->poked) && coro_now() < give_up)
        ASSERT_EQ(coro_sleep(200 * CORO_US), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(atomic_load(&w->poked), 1);
}

typedef struct scenario {
    int what;
    void *(*body)(void *);
} scenario_t;

static int scenario_main(void *arg)
{
    scenario_t *sc = arg;
    world_t *w = malloc(sizeof *w);
    ASSERT_NOT_NULL(w);
    world_build(w);
    run_other(w, sc->what, sc->body);
    world_check_and_finish(w);
    free(w);
    return 0;
}

static void run_scenario(int what, void *(*body)(void *))
{
    scenario_t sc = { what, body };
    ASSERT_EQ(coro_main(scenario_main, &sc), 0);
}

/* Before: the release returned 0 and woke the waiter from the wrong thread
 * (a hang, or "coroutines cannot be unwound" and coro_main -1). */
TEST(boundary_sem_release_from_plain_thread_eperm)
{
    run_scenario(POKE_SEM, plain_thread);
}

/* Before: try_send returned 0, copying into the parked receiver and
 * queueing it on this scheduler's run queue from the other thread. */
TEST(boundary_chan_try_send_from_plain_thread_eperm)
{
    run_scenario(POKE_CHAN, plain_thread);
}

/* Before: the close succeeded and the parked reader was never woken. */
TEST(boundary_close_from_plain_thread_eperm_fd_stays_open)
{
    run_scenario(POKE_CLOSE, plain_thread);
}

TEST(boundary_plain_thread_gets_eperm_everywhere)
{
    run_scenario(POKE_ALL, plain_thread);
}

/* Before: the second scheduler's release, try_send and close corrupted
 * the first's run queue or left its reader parked forever. */
TEST(boundary_second_scheduler_gets_eperm_everywhere)
{
    run_scenario(POKE_ALL, sched_thread);
}

/* ---- identity ------------------------------------------------------------------ */

typedef struct recycled {
    coro_mutex_t m;
    int unlock_ret, unlock_err;
} recycled_t;

static int lock_and_end(void *arg)
{
    recycled_t *r = arg;
    ASSERT_EQ(coro_mutex_lock(&r->m), 0);
    return 0; /* ends holding it */
}

static int ids_child_noop(void *arg)
{
    (void)arg;
    return 0;
}

static int try_unlock(void *arg)
{
    recycled_t *r = arg;
    errno = 0;
    r->unlock_ret = coro_mutex_unlock(&r->m);
    r->unlock_err = errno;
    return 0;
}

static int recycled_main(void *arg)
{
    recycled_t *r = arg;
    coro_t *holder = coro_spawn(lock_and_end, r);
    ASSERT_NOT_NULL(holder);
    uint64_t holder_id = coro_id(holder);
    uintptr_t holder_addr = (uintptr_t)holder;
    ASSERT_EQ(coro_join(holder, NULL), 0);
    ASSERT_ERRNO(coro_mutex_trylock(&r->m), EBUSY); /* still held by the ended holder */
    /* Spawn until a coroutine lands where the holder was (the stack comes
     * back from the pool; its header moves one line per reuse, 8 places). */
    int found = 0;
    for (int i = 0; i < 64 && !found; i++) {
        coro_t *c = coro_spawn(try_unlock, r);
        ASSERT_NOT_NULL(c);
        found = (uintptr_t)c == holder_addr;
        if (found)
            ASSERT_NE(coro_id(c), holder_id);
        ASSERT_EQ(coro_join(c, NULL), 0);
        if (!found) /* elsewhere: not the owner under any scheme */
            ASSERT_EQ(r->unlock_ret, -1);
    }
    ASSERT_EQ(found, 1);
    return 0;
}

/* Before: the owner was an address, and a coroutine on the holder's
 * recycled stack at the same address unlocked the mutex (0). */
TEST(boundary_recycled_address_is_not_the_owner)
{
    recycled_t r;
    memset(&r, 0, sizeof r);
    coro_mutex_init(&r.m);
    ASSERT_EQ(coro_main(recycled_main, &r), 0);
    ASSERT_EQ(r.unlock_ret, -1);
    ASSERT_EQ(r.unlock_err, EPERM);
}

#define IDS_THREADS 3
#define IDS_RUNS 3
#define IDS_PER_RUN 40
#define IDS_TOTAL ((1 + IDS_THREADS) * IDS_RUNS * (IDS_PER_RUN + 1))

static uint64_t ids_seen[IDS_TOTAL];
static atomic_int ids_n;

static void ids_note(uint64_t id)
{
    int i = atomic_fetch_add(&ids_n, 1);
    ASSERT_LT(i, IDS_TOTAL);
    ids_seen[i] = id;
}

static int ids_child(void *arg)
{
    (void)arg;
    ids_note(coro_id(coro_self()));
    coro_yield();
    return 0;
}

static int ids_main(void *arg)
{
    (void)arg;
    ids_note(coro_id(coro_self()));
    for (int i = 0; i < IDS_PER_RUN; i++) {
        coro_t *c = coro_spawn(ids_child, NULL);
        ASSERT_NOT_NULL(c);
        if (i % 2)
            ASSERT_EQ(coro_join(c, NULL), 0);
        else
            coro_detach(c);
    }
    return 0;
}

static void *ids_thread(void *arg)
{
    (void)arg;
    for (int r = 0; r < IDS_RUNS; r++)
        ASSERT_EQ(coro_main(ids_main, NULL), 0);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Before: every coro_main counted from 1, so ids repeated across runs and
 * threads. */
TEST(boundary_ids_never_repeat_across_runs_and_threads)
{
    atomic_store(&ids_n, 0);
    pthread_t th[IDS_THREADS];
    for (int t = 0; t < IDS_THREADS; t++)
        ASSERT_EQ(pthread_create(&th[t], NULL, ids_thread, NULL), 0);
    ids_thread(NULL);
    for (int t = 0; t < IDS_THREADS; t++)
        ASSERT_EQ(pthread_join(th[t], NULL), 0);
    ASSERT_EQ(atomic_load(&ids_n), IDS_TOTAL);
    qsort(ids_seen, IDS_TOTAL, sizeof ids_seen[0], cmp_u64);
    ASSERT_GT(ids_seen[0], 0);
    for (int i = 1; i < IDS_TOTAL; i++)
        if (ids_seen[i] == ids_seen[i - 1])
            test_fail(__FILE__, __LINE__, "id %llu handed out twice",
                      (unsigned long long)ids_seen[i]);
}

/* ---- signal handlers ------------------------------------------------------------ */

/* A handler on the alternate signal stack (coro installs one per
 * scheduler thread, for its overflow reports) that yields: each coroutine
 * that takes the signal parks a handler frame there, and the next signal
 * overwrites it. Before: the resumed handler ran on a clobbered frame and
 * jumped to address 0 (SIGSEGV), with no word of why. */
static void yielding_handler(int sig)
{
    (void)sig;
    coro_yield();
}

static int raise_and_yield(void *arg)
{
    (void)arg;
    raise(SIGUSR1);
    coro_yield();
    return 0;
}

static int signal_main(void *arg)
{
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = yielding_handler;
    sa.sa_flags = SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    coro_t *c = coro_spawn(raise_and_yield, NULL);
    ASSERT_NOT_NULL(c);
    raise(SIGUSR1);
    coro_join(c, NULL);
    fprintf(stderr, "survived\n");
    return 0;
}

static void signal_child(void *arg)
{
    (void)arg;
    signal(SIGABRT, SIG_DFL);
    coro_main(signal_main, NULL);
    fprintf(stderr, "coro_main returned\n");
    exit(0);
}

TEST(boundary_yield_from_signal_handler_dies_with_message)
{
    char out[8192];
    int status;
    ASSERT_EQ(test_run_child(signal_child, NULL, out, sizeof out, &status), 0);
    char how[128];
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        test_fail(__FILE__, __LINE__, "the child should die of SIGABRT; it ended with %s, "
                  "output:\n%s", test_describe_status(status, how, sizeof how), out);
    ASSERT_CONTAINS(out, "coro: a switch away on a stack that is not its own");
    ASSERT_CONTAINS(out, "called from a signal handler");
    ASSERT_CONTAINS(out, "no coro call is async-signal-safe");
    ASSERT_CONTAINS(out, "coro_signal_wait");
    ASSERT_NOT_CONTAINS(out, "survived");
}

/* ---- stale handles ---------------------------------------------------------------- */

static int stale_main(void *arg)
{
    (void)arg;
    coro_t *old = coro_spawn(try_unlock, &(recycled_t){ .m = CORO_MUTEX_INIT });
    ASSERT_NOT_NULL(old);
    ASSERT_EQ(coro_join(old, NULL), 0);
    /* Each spawn/join reuses that stack with its header one line further
     * on: the freed handle names no coroutine for 7 reuses. */
    for (int k = 1; k < 8; k++) {
        coro_t *c = coro_spawn(ids_child_noop, NULL);
        ASSERT_NOT_NULL(c);
        ASSERT((uintptr_t)c != (uintptr_t)old);
        ASSERT_ERRNO(coro_cancel(old), EINVAL);
        ASSERT_ERRNO(coro_join(old, NULL), EINVAL);
        ASSERT_EQ(coro_join(c, NULL), 0);
    }
    return 0;
}

TEST(boundary_stale_handle_detected_for_seven_reuses)
{
    if (test_under_valgrind())
        TEST_SKIP("the check reads the freed header, which Memcheck marks undefined once "
                  "a new coroutine's header is laid out near it");
    ASSERT_EQ(coro_main(stale_main, NULL), 0);
}

/* A group whose scheduler ended while it held a handed-out child: that
 * child was freed with the scheduler. Before: coro_group_free freed it a
 * second time (on an unmapped stack). */
static coro_group_t *orphan;

static int orphan_main(void *arg)
{
    (void)arg;
    orphan = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(orphan);
    ASSERT_NOT_NULL(coro_group_spawn(orphan, ids_child_noop, NULL));
    int status = -1;
    ASSERT_NOT_NULL(coro_group_next(orphan, &status));
    ASSERT_EQ(status, 0);
    return 0; /* the group is left for later */
}

TEST(boundary_group_outliving_its_scheduler_frees_cleanly)
{
    ASSERT_EQ(coro_main(orphan_main, NULL), 0);
    coro_group_free(orphan);
}
