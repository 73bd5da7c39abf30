/* sched/sched.c: the scheduler: coro_main, its loop, and the switch path.
 *
 * The loop, in the order it runs (the scheduler's own context, on the
 * thread's stack, is entered only when the run queue is empty or a pass
 * over it has ended and the poller has waiters):
 *   1. free a detached coroutine that just ended (s->reap);
 *   2. stop when no coroutine is left;
 *   3. if nothing is ready, no timer is armed and nothing waits on the
 *      poller, nothing can ever wake anyone: report the deadlock, then
 *      cancel every coroutine (shields overridden) so they unwind;
 *   4. poll: without blocking if coroutines are ready, else until the
 *      earliest timer (or forever);
 *   5. wake every coroutine whose timer is due;
 *   6. start a pass: switch to the first ready coroutine.
 * Coroutines switch straight to each other (sched_switch); between passes
 * with no poller waiters, the due timers are checked inline without
 * entering the scheduler's context. */
#include "sched/sched_int.h"
#include "coro/fault.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__thread sched_t *sched_tls __attribute__((tls_model("initial-exec")));

int64_t sched_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t coro_now(void)
{
    return sched_clock();
}

void sched_reap(sched_t *s)
{
    coro_t *dead = s->reap;
    s->reap = NULL;
    sched_free_coro(s, dead);
}

/* How many dispatches the pass that starts now may make, with n coroutines
 * ready: all of them, unbounded when nothing needs consulting between
 * passes, or none in CORO_DEBUG=slow mode, which sends every switch
 * through the slow path (where run times are measured). */
static inline size_t pass_length(const sched_t *s, size_t n)
{
    if (s->slow_ns)
        return 0;
    return (s->heap_len || s->poll_waiters) ? n : SIZE_MAX;
}

coro_t *sched_pass_end(sched_t *s)
{
    if (!s->runq_head || s->poll_waiters)
        return NULL;
    if (s->heap_len)
        sched_timer_expire(s, sched_clock());
    s->pass_left = pass_length(s, s->runq_len - 1);
    return sched_runq_pop(s);
}

void sched_note_run_time(sched_t *s, coro_t *self)
{
    int64_t now = sched_clock();
    if (self && now - s->run_since > s->slow_ns)
        sched_debug_slow(s, self, now - s->run_since);
    s->run_since = now;
}

coro_fiber_t *sched_exit_next(sched_t *s)
{
    coro_t *self = s->current;
    coro_t *next = sched_next_to_run(s);
    if (__builtin_expect(s->slow_ns != 0, 0))
        sched_note_run_time(s, self);
    s->switches++;
    s->current = next;
    if (!next)
        return &s->fiber;
    next->state = CORO_RUNNING;
    return &next->fiber;
}

void coro_yield(void)
{
    sched_t *s = sched_tls;
    coro_t *self;
    if (!s || !(self = s->current))
        return;
    coro_t *next = s->runq_head;
    if (__builtin_expect(next && s->pass_left, 1)) { /* 0 in CORO_DEBUG=slow mode */
        /* The common case, done in place: the head leaves the queue and
         * the caller joins its tail, so the length is unchanged. */
        s->pass_left--;
        s->runq_head = next->next_ready;
        self->next_ready = NULL;
        self->state = CORO_READY;
        if (s->runq_head)
            s->runq_tail->next_ready = self;
        else
            s->runq_head = self;
        s->runq_tail = self;
        s->switches++;
        s->current = next;
        next->state = CORO_RUNNING;
        coro_fiber_switch(&self->fiber, &next->fiber);
        sched_after_switch(s);
        return;
    }
    if (!next && !s->heap_len && !s->poll_waiters)
        return; /* nobody else to run and nothing to look at */
    sched_runq_push(s, self);
    sched_switch(s);
}

/* ---- the loop ------------------------------------------------------------ */

static void poll_ready(void *ctx, uint64_t token, int events)
{
    sched_t *s = ctx;
    if (token == SCHED_TOKEN_NOTIFY)
        sched_posts_run(s);
    else if (token == SCHED_TOKEN_SIGNAL)
        sched_signals_ready(s);
    else
        sched_fd_ready(s, token, events);
}

/* Nothing can wake anyone: say so once, then cancel everyone, shields
 * overridden, so every coroutine unwinds through its error paths. */
static size_t on_deadlock(sched_t *s)
{
    size_t woken = 0;
    if (!s->deadlocked) {
        char head[160];
        snprintf(head, sizeof head,
                 "coro: deadlock: all %zu coroutines are blocked and nothing can wake them",
                 s->live);
        sched_dump_to(s, STDERR_FILENO, head);
        s->deadlocked = 1;
    }
    for (coro_list_t *n = s->all.next; n != &s->all; n = n->next) {
        coro_t *c = coro_container_of(n, coro_t, all_node);
        if (c->state == CORO_DONE)
            continue;
        c->killed = 1;
        c->cancelled = 1;
        if (c->state == CORO_PARKED)
            woken += (size_t)sched_wake(c->wait, ECANCELED);
    }
    return woken;
}

static void run_loop(sched_t *s)
{
    for (;;) {
        sched_after_switch(s);
        if (s->live == 0)
            break;
        int64_t timeout;
        if (s->runq_head) {
            timeout = 0;
        } else if (s->heap_len) {
            int64_t now = sched_clock();
            int64_t next = sched_timer_next(s);
            timeout = next > now ? next - now : 0;
        } else if (s->poll_waiters) {
            timeout = -1;
        } else {
            if (on_deadlock(s) == 0) {
                fprintf(stderr, "coro: %zu coroutines cannot be unwound\n", s->live);
                break;
            }
            continue;
        }
        if (s->poll_waiters || timeout > 0) {
            if (sched_poller_wait(s->poller, timeout, poll_ready, s) < 0) {
                /* Only a broken epoll fd gets here: report it, don't spin. */
                perror("coro: poller");
                abort();
            }
        }
        s->loop_now = sched_clock();
        if (s->heap_len)
            sched_timer_expire(s, s->loop_now);
        coro_t *next = sched_runq_pop(s);
        if (!next)
            continue;
        s->pass_left = pass_length(s, s->runq_len);
        s->current = next;
        next->state = CORO_RUNNING;
        s->switches++;
        if (s->slow_ns)
            s->run_since = sched_clock();
        coro_fiber_switch(&s->fiber, &next->fiber);
    }
}

/* ---- coro_main ----------------------------------------------------------- */

static void sched_destroy(sched_t *s)
{
    /* Everything has ended: let io/ stop its threads (their last posts are
     * run here too), then free what was never joined. */
    sched_run_exit_hooks(s);
    sched_posts_run(s);
    while (!coro_list_empty(&s->all)) {
        coro_t *c = coro_container_of(s->all.next, coro_t, all_node);
        sched_free_coro(s, c);
    }
    free(s->heap);
    sched_fd_free_all(s);
    sched_poller_free(s->poller);
    pthread_mutex_destroy(&s->post_lock);
    coro_fiber_fini_thread(&s->fiber);
    coro_overflow_thread_fini();
    coro_stack_pool_release();
    sched_tls = NULL;
    free(s);
}

int coro_main(coro_fn fn, void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    if (sched_tls) {
        errno = EBUSY;
        return -1;
    }
    sched_t *s = coro_calloc(1, sizeof *s);
    if (!s)
        return -1;
    coro_list_init(&s->all);
    coro_list_init(&s->signal_waiters);
    pthread_mutex_init(&s->post_lock, NULL);
    s->default_stack = coro_stack_size_for(0);
    s->loop_now = sched_clock();
    if (!(s->poller = sched_poller_new()) || coro_overflow_thread_init() != 0) {
        int e = errno;
        sched_poller_free(s->poller);
        pthread_mutex_destroy(&s->post_lock);
        free(s);
        errno = e;
        return -1;
    }
    sched_debug_init(s);
    coro_fiber_init_thread(&s->fiber);
    sched_tls = s;

    coro_opts_t opts = { .stack_size = 0, .name = "main" };
    coro_t *m = sched_spawn(s, fn, arg, &opts);
    if (!m) {
        int e = errno;
        sched_destroy(s);
        errno = e;
        return -1;
    }
    m->is_main = 1;
    s->main = m;

    run_loop(s);

    int deadlocked = s->deadlocked;
    int status = s->main_status;
    sched_destroy(s);
    if (deadlocked) {
        errno = EDEADLK;
        return -1;
    }
    return status;
}
