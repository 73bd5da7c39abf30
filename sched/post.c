/* sched/post.c: what io/ needs beyond descriptors (see sched/io_wait.h):
 * messages from other threads, waits that another thread ends, exit hooks,
 * and signal waits.
 *
 * Posts are pushed on a mutex-protected stack; only the push that finds it
 * empty wakes the poller, so a burst of completions costs one wake-up. The
 * scheduler takes the whole stack when the wake-up is reported, reverses it
 * (posts run in the order they were made) and runs them. */
#include "sched/sched_int.h"
#include "coro/fault.h"

#include <errno.h>
#include <stdlib.h>

struct sched_exit_hook {
    struct sched_exit_hook *next;
    void (*fn)(void *arg);
    void *arg;
};

struct sched *sched_self(void)
{
    return sched_tls;
}

int sched_post(struct sched *s, sched_post_t *m)
{
    pthread_mutex_lock(&s->post_lock);
    int was_empty = s->posts == NULL;
    m->next = s->posts;
    s->posts = m;
    pthread_mutex_unlock(&s->post_lock);
    /* notify_armed was set on the scheduler's thread before any thread
     * could post (sched_park_external arms it), and the mutex orders it. */
    if (was_empty)
        sched_poller_notify(s->poller);
    return 0;
}

void sched_posts_run(sched_t *s)
{
    pthread_mutex_lock(&s->post_lock);
    sched_post_t *m = s->posts;
    s->posts = NULL;
    pthread_mutex_unlock(&s->post_lock);
    sched_post_t *fifo = NULL;
    while (m) {
        sched_post_t *next = m->next;
        m->next = fifo;
        fifo = m;
        m = next;
    }
    while (fifo) {
        sched_post_t *next = fifo->next;
        fifo->fn(fifo); /* may free fifo */
        fifo = next;
    }
}

/* The wake-up channel is made on first use, on the scheduler's thread. */
static int arm_notify(sched_t *s)
{
    if (s->notify_armed)
        return 0;
    if (sched_poller_notify_arm(s->poller, SCHED_TOKEN_NOTIFY) != 0)
        return -1;
    s->notify_armed = 1;
    return 0;
}

int sched_park_external(sched_waiter_t *w, const char *what, const void *obj, int64_t num)
{
    sched_t *s = sched_tls;
    if (!s || !s->current) {
        coro_list_remove(&w->node);
        errno = EPERM;
        return -1;
    }
    if (arm_notify(s) != 0) {
        coro_list_remove(&w->node);
        return -1;
    }
    s->poll_waiters++;
    sched_pass_clamp(s);
    int r = sched_park(w, CORO_NEVER, what, obj, num);
    s->poll_waiters--;
    return r;
}

/* Arm the channel before a thread that will post is started. */
int sched_post_prepare(void)
{
    sched_t *s = sched_tls;
    if (!s) {
        errno = EPERM;
        return -1;
    }
    return arm_notify(s);
}

int sched_at_exit(void (*fn)(void *arg), void *arg)
{
    sched_t *s = sched_tls;
    if (!s) {
        errno = EPERM;
        return -1;
    }
    struct sched_exit_hook *h = coro_malloc(sizeof *h);
    if (!h)
        return -1;
    h->fn = fn;
    h->arg = arg;
    h->next = s->exit_hooks;
    s->exit_hooks = h;
    return 0;
}

void sched_run_exit_hooks(sched_t *s)
{
    while (s->exit_hooks) {
        struct sched_exit_hook *h = s->exit_hooks;
        s->exit_hooks = h->next;
        h->fn(h->arg);
        free(h);
    }
}

/* ---- signals --------------------------------------------------------------- */

int sched_signal_park(const sigset_t *set)
{
    sched_t *s = sched_tls;
    if (!s || !s->current) {
        errno = EPERM;
        return -1;
    }
    if (sched_checkpoint() != 0)
        return -1;
    /* Watch the set (the poller adds it to those watched before). */
    if (sched_poller_signal_arm(s->poller, set, SCHED_TOKEN_SIGNAL) != 0)
        return -1;
    sched_waiter_t w;
    coro_list_push_back(&s->signal_waiters, &w.node);
    s->poll_waiters++;
    sched_pass_clamp(s);
    int r = sched_park(&w, CORO_NEVER, "signal", NULL, -1);
    s->poll_waiters--;
    return r;
}

void sched_signals_ready(sched_t *s)
{
    while (!coro_list_empty(&s->signal_waiters)) {
        sched_waiter_t *w = coro_container_of(s->signal_waiters.next, sched_waiter_t, node);
        sched_wake(w, 0);
    }
}
