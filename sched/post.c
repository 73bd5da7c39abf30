/* sched/post.c: what io/ needs beyond descriptors (see sched/io_wait.h):
 * messages from other threads, waits that another thread ends, exit hooks,
 * and signal waits.
 *
 * Posts are pushed on a lock-free stack (a compare-and-swap); only the
 * push that finds it empty wakes the poller, so a burst of completions
 * costs one wake-up. The scheduler takes the whole stack with one
 * exchange, reverses it (posts run in the order they were made) and runs
 * them. */
#include "sched/sched_int.h"
#include "coro/fault.h"

#include <errno.h>
#include <stdlib.h>

struct coro__exit_hook {
    struct coro__exit_hook *next;
    void (*fn)(void *arg);
    void *arg;
};

struct sched *coro__self(void)
{
    return coro__tls;
}

static void push(coro__sched_t *s, coro__post_t *m)
{
    /* A lock-free stack: many push, the owner takes all at once. */
    coro__post_t *old = __atomic_load_n(&s->posts, __ATOMIC_RELAXED);
    do
        m->next = old;
    while (!__atomic_compare_exchange_n(&s->posts, &old, m, 1, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED));
    int was_empty = old == NULL;
    /* notify_armed was set on the scheduler's thread before any thread
     * could post (coro__park_external arms it; a run arms every
     * scheduler's before any starts), and the mutex orders it. Only the
     * push that finds the stack empty wakes the poller; in a run, only
     * while the scheduler sleeps in it: a running one looks for posts
     * between passes and before it sleeps. The fences pair with the
     * sleeper's (poll_events in sched/sched.c): either it sees this post
     * and does not sleep, or this sees it sleeping. */
    if (!was_empty)
        return;
    if (s->run) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (!__atomic_load_n(&s->sleeping, __ATOMIC_SEQ_CST))
            return;
    }
    coro__poller_notify(s->poller);
}

int coro__post(struct sched *s, coro__post_t *m)
{
    push(s, m);
    return 0;
}

void coro__post_push(coro__sched_t *s, coro__post_t *m)
{
    push(s, m);
}

void coro__posts_run(coro__sched_t *s)
{
    /* Busy before the posts are taken: a quiet scheduler's queue being
     * empty is what tells the run nothing is on its way to it. */
    if (s->quiet)
        coro__run_busy(s);
    coro__post_t *m = __atomic_exchange_n(&s->posts, NULL, __ATOMIC_ACQUIRE);
    if (m)
        s->post_credit = CORO__POST_SPIN_CREDIT; /* messages come: spins may pay */
    coro__post_t *fifo = NULL;
    while (m) {
        coro__post_t *next = m->next;
        m->next = fifo;
        fifo = m;
        m = next;
    }
    while (fifo) {
        coro__post_t *next = fifo->next;
        fifo->fn(fifo); /* may free fifo */
        fifo = next;
    }
}

/* The wake-up channel is made on first use, on the scheduler's thread. */
static int arm_notify(coro__sched_t *s)
{
    if (s->notify_armed)
        return 0;
    /* Under the live lock: a fork meanwhile must see the new eventfd. */
    coro__live_lock();
    int r = coro__poller_notify_arm(s->poller, SCHED_TOKEN_NOTIFY);
    coro__live_unlock();
    if (r != 0)
        return -1;
    s->notify_armed = 1;
    return 0;
}

/* Arm the channel before a thread that will post is started. */
int coro__post_prepare(void)
{
    coro__sched_t *s = coro__tls;
    if (!s) {
        errno = EPERM;
        return -1;
    }
    return arm_notify(s);
}

int coro__pool_threads_requested(void)
{
    coro__sched_t *s = coro__tls;
    return s ? s->pool_threads : 0;
}

int coro__at_exit(void (*fn)(void *arg), void *arg)
{
    coro__sched_t *s = coro__tls;
    if (!s) {
        errno = EPERM;
        return -1;
    }
    struct coro__exit_hook *h = coro__malloc(sizeof *h);
    if (!h)
        return -1;
    h->fn = fn;
    h->arg = arg;
    h->next = s->exit_hooks;
    s->exit_hooks = h;
    return 0;
}

void coro__run_exit_hooks(coro__sched_t *s)
{
    while (s->exit_hooks) {
        struct coro__exit_hook *h = s->exit_hooks;
        s->exit_hooks = h->next;
        h->fn(h->arg);
        free(h);
    }
}

/* ---- signals --------------------------------------------------------------- */

int coro__signal_park(const sigset_t *set)
{
    return coro__signal_park_until(set, CORO_NEVER, "signal", -1);
}

int coro__signal_park_until(const sigset_t *set, int64_t wake_at, const char *what, int64_t num)
{
    coro__sched_t *s = coro__tls;
    /* A simulation refuses a real signal's wait: its timing is the
     * kernel's, not the seed's. */
    if (!s || !s->current || s->sim) {
        errno = EPERM;
        return -1;
    }
    if (coro__checkpoint() != 0)
        return -1;
    /* Watch the set (the poller adds it to those watched before). */
    coro__live_lock(); /* as in arm_notify: the signalfd */
    int armed = coro__poller_signal_arm(s->poller, set, SCHED_TOKEN_SIGNAL);
    coro__live_unlock();
    if (armed != 0)
        return -1;
    coro__waiter_t w;
    coro_list_push_back(&s->signal_waiters, &w.node);
    return coro__park(&w, CORO__PARK_POLL, wake_at, what, NULL, num);
}

void coro__signal_wake_all(void)
{
    coro__sched_t *s = coro__tls;
    if (s)
        coro__signals_ready(s);
}

void coro__signals_ready(coro__sched_t *s)
{
    coro__wake_all(&s->signal_waiters, 0);
}
