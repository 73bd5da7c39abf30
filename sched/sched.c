/* sched/sched.c: the scheduler: coro_main, its loop, and the switch path.
 *
 * The loop, in the order it runs (the scheduler's own context, on the
 * thread's stack, is entered only when the run queue is empty or a pass
 * over it has ended and the poller has waiters):
 *   1. free a coroutine that ended and is to be freed at once (s->reap;
 *      see there);
 *   2. stop when no coroutine is left;
 *   3. if nothing is ready, no timer is armed and nothing waits on the
 *      poller, nothing can ever wake anyone: report the deadlock, then
 *      cancel every coroutine (shields overridden) so they unwind; the
 *      loop still ends only when every coroutine has ended, so no waiter
 *      of a freed stack is ever left in an object's wait list;
 *   4. poll: without blocking if coroutines are ready, else until the
 *      earliest timer (or forever), after releasing the stacks freed
 *      since the last release (coro__stack_trim);
 *   5. wake every coroutine whose timer is due;
 *   6. start a pass: switch to the first ready coroutine.
 * Coroutines switch straight to each other (coro__switch); between passes
 * with no poller waiters, the due timers are checked inline without
 * entering the scheduler's context. */
#include "sched/sched_int.h"
#include "coro/fault.h"
#include "coro/spin.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__thread coro__sched_t *coro__tls __attribute__((tls_model("initial-exec")));
/* coro__here outside coro_main: it runs nothing (current stays NULL) and
 * is never an object's home. */
static coro__sched_t nowhere;
__thread coro__sched_t *coro__here __attribute__((tls_model("initial-exec"))) = &nowhere;

void coro__here_leave(void)
{
    coro__tls = NULL;
    coro__here = &nowhere;
}

int64_t coro__clock(void)
{
    coro__sched_t *s = coro__tls;
    if (__builtin_expect(s && s->sim, 0))
        return s->sim->now;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t coro_now(void)
{
    return coro__clock();
}

void coro__reap(coro__sched_t *s)
{
    coro_t *dead = s->reap;
    s->reap = NULL;
    coro__free_coro(s, dead);
}

/* How many dispatches the pass that starts now may make, with n coroutines
 * ready: all of them, unbounded when nothing needs consulting between
 * passes, or none in CORO_DEBUG=slow mode, which sends every switch
 * through the slow path (where run times are measured). */
static inline size_t pass_length(const coro__sched_t *s, size_t n)
{
    if (s->slow_ns || s->sim || s->fpenv_live)
        return 0;
    /* In a run, other schedulers' posts are looked for between passes. */
    return (s->heap_len || s->poll_waiters || s->run || s->ext_waiters) ? n : SIZE_MAX;
}

coro_t *coro__pass_end(coro__sched_t *s)
{
    if (s->sim)
        return coro__sim_pick(s);
    coro_t *next = NULL;
    /* Posts from the run's other schedulers are run by the loop. */
    if (s->runq_head && !s->poll_waiters && !coro__posts_pending(s)) {
        if (s->heap_len)
            coro__timer_expire(s, coro__clock());
        coro__pass_set(s, pass_length(s, s->runq_len - 1));
        next = coro__runq_pop(s);
        s->switches++; /* a dispatch outside the pass's count */
    }
    /* CORO_DEBUG=slow sends every switch here (pass_left is 0): the run
     * of the current coroutine ends unless it is the one to run on. */
    if (__builtin_expect(s->slow_ns != 0, 0) && next != s->current)
        coro__note_run_time(s, s->current);
    return next;
}

void coro__note_run_time(coro__sched_t *s, coro_t *self)
{
    int64_t now = coro__clock();
    if (self && now - s->run_since > s->slow_ns)
        coro__debug_slow(s, self, now - s->run_since);
    s->run_since = now;
}

coro__fiber_t *coro__exit_next(coro__sched_t *s)
{
    return coro__make_current(s, coro__next_to_run(s));
}


/* coro_yield when the pass is over, or nobody else is ready but timers or
 * the poller are to be looked at. */
__attribute__((noinline)) static void yield_slow(coro__sched_t *s, coro_t *self)
{
    coro__runq_push(s, self);
    coro__switch_slow(s);
}

/* coro__switch past its fast path: the pass ends here (timers, posts, the
 * poller), then the switch; or none, when the caller itself is what runs
 * next (a yield with nobody else ready, a park whose time limit had
 * already passed: the pass end's timer check woke it). */
__attribute__((noinline)) void coro__switch_slow(coro__sched_t *s)
{
    coro_t *self = s->current;
    coro_t *next = coro__next_to_run(s);
    if (__builtin_expect(next == self, 0)) {
        s->switches--;
        return;
    }
    coro__fiber_switch_as(&self->fiber, coro__make_current(s, next), CORO__SWITCH_FPENV);
}

/* A yield's misuse from a signal handler that interrupted the coroutine
 * half-way into a park (the stack itself is checked at every switch, in
 * coro__fiber_switch). */
static inline int yield_misused(coro_t *self)
{
    return __builtin_expect(self->state != CORO_ACTIVE, 0);
}

/* noreturn: the yield's path then keeps no value across the call (without
 * it a yield pair counts 12 more instructions). */
static __attribute__((noreturn, cold)) void yield_misuse(coro_t *self)
{
    coro__fiber_misuse(&self->fiber, "coro_yield found its coroutine half-way into a park");
    __builtin_unreachable();
}

/* coro_yield with nobody else ready, in a pass that is bounded (timers or
 * the poller are to be looked at) or with posts pending. */
__attribute__((noinline)) static void yield_alone(coro__sched_t *s)
{
    coro_t *self = s->current;
    if (!self)
        return;
    if (yield_misused(self))
        yield_misuse(self);
    yield_slow(s, self);
}

void coro_yield(void)
{
    coro__sched_t *s = coro__tls;
    if (!s)
        return;
    coro_t *next = s->runq_head;
    if (__builtin_expect(!next, 0)) {
        /* Nobody else is ready, and with nothing for a pass end to look
         * at either the yield is over: nothing switches, so neither the
         * caller nor its state matter. */
        if (coro__pass_unbounded(s) && !coro__posts_pending(s))
            return;
        return yield_alone(s);
    }
    coro_t *self = s->current;
    if (!self)
        return;
    if (yield_misused(self))
        yield_misuse(self);
    if (__builtin_expect(!coro__pass_take(s), 0)) /* 0 in CORO_DEBUG=slow mode */
        return yield_slow(s, self);
    {
        /* The common case, done in place: the head leaves the queue and
         * the caller joins its tail, so the length is unchanged. The next
         * coroutine is current first: a signal handler that interrupts
         * the rest and calls coro_yield then runs on our stack while
         * another coroutine is current, which the switch's stack check
         * catches (only the few loads above stay unguarded, as they always
         * were). Both stay ACTIVE: no state to write. */
        s->current = next;
        coro_t *after = next->next_ready;
        self->next_ready = NULL;
        if (after) {
            s->runq_head = after;
            s->runq_tail->next_ready = self;
        } else {
            s->runq_head = self;
        }
        s->runq_tail = self;
        coro__fiber_switch_as(&self->fiber, &next->fiber, 0);
    }
}

/* ---- the loop ------------------------------------------------------------ */

static void poll_ready(void *ctx, uint64_t token, int events)
{
    coro__sched_t *s = ctx;
    if (token == SCHED_TOKEN_NOTIFY)
        coro__posts_run(s);
    else if (token == SCHED_TOKEN_SIGNAL)
        coro__signals_ready(s);
    else
        coro__fd_ready(s, token, events);
}

/* Nothing can wake anyone: say so once, then cancel everyone, shields
 * overridden, so every coroutine unwinds through its error paths. */
static size_t on_deadlock(coro__sched_t *s)
{
    if (!s->deadlocked) {
        char head[160];
        snprintf(head, sizeof head,
                 "coro: deadlock: all %zu coroutines are blocked and nothing can wake them",
                 s->live);
        coro__dump_to(s, STDERR_FILENO, head);
    }
    return coro__kill_all(s);
}

size_t coro__kill_all(coro__sched_t *s)
{
    size_t woken = 0;
    s->deadlocked = 1;
    for (coro_list_t *n = s->all.next; n != &s->all; n = n->next) {
        coro_t *c = coro_container_of(n, coro_t, all_node);
        if (c->state == CORO_DONE)
            continue;
        c->killed = 1;
        c->cancelled = 1;
        c->attn = 1;
        if (c->state == CORO_PARKED) {
            /* Its own waiter, always wakeable (see unwind_stuck). */
            coro__wake(c->wait, ECANCELED);
            woken++;
        }
    }
    return woken;
}

/* The cancellation woke nobody, yet coroutines live. It cannot happen:
 * with nothing ready every live coroutine is parked on its own waiter
 * (c->wait, its primary), which the cancellation always wakes; and a
 * killed coroutine can never park again (every park checks first). Giving
 * up here would free stacks whose waiters are still linked into objects
 * that outlive coro_main (a static mutex, a channel, a group), and the next
 * scheduler to use one would write into freed memory: stop loudly instead. */
__attribute__((noreturn, cold)) static void unwind_stuck(coro__sched_t *s)
{
    fprintf(stderr, "coro: internal error: %zu coroutines stay parked after the "
                    "deadlock's cancellation\n", s->live);
    abort();
}

/* Block in the poller for at most timeout ns (-1: until an event). In a
 * run, the sleeping flag tells posters to wake this thread through the
 * kernel; a post that came before the flag was seen is run instead of
 * sleeping (see coro__post). */
/* How long a scheduler of a run looks for a post before it sleeps, and
 * (CORO__POST_SPIN_CREDIT, sched_int.h) how many such looks in a row may
 * find nothing before it stops looking, until posts come again. */
#define RUN_SPIN_NS (20 * CORO_US)

/* A moment's busy wait for a post before sleeping: a message from another
 * scheduler of the run (a reply, a shared channel's hand-off) then costs
 * a few hundred ns instead of a wake-up through the kernel on both sides,
 * as Go's idle threads spin before they park. Bounded, so an idle run
 * burns at most RUN_SPIN_NS of CPU each time it goes to sleep. */
static int spin_for_posts(coro__sched_t *s)
{
    /* Only while spinning pays (the credit, sched_int.h): a scheduler
     * whose posts come seldom (a server's shard, whose work comes through
     * its own descriptors) would burn the CPU for nothing and see its
     * descriptors late. */
    if (!s->post_credit)
        return 0;
    s->post_spins++;
    int64_t until = 0;
    for (unsigned i = 0;; i++) {
        if (coro__posts_pending(s)) {
            s->post_credit = CORO__POST_SPIN_CREDIT;
            return 1;
        }
        if ((i & 63) == 0) {
            int64_t now = coro__clock();
            if (!until) {
                until = now + RUN_SPIN_NS;
            } else if (now >= until) {
                s->post_credit--;
                return 0;
            }
            /* More threads than cores (a loaded machine): the thread
             * that will post may be waiting for this CPU. */
            if (i)
                sched_yield();
        }
        coro__cpu_relax();
    }
}

static void poll_events(coro__sched_t *s, int64_t timeout, int spun)
{
    if (s->run && timeout != 0) {
        /* A post came while spinning: run it now, no system call. The
         * descriptors are polled at the next turn of the loop (which does
         * not sleep while anything is ready). */
        if (!spun && spin_for_posts(s))
            return;
        __atomic_store_n(&s->sleeping, 1, __ATOMIC_SEQ_CST);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (coro__posts_pending(s))
            timeout = 0;
    }
    if (coro__poller_wait(s->poller, timeout, poll_ready, s) < 0) {
        /* Only a broken epoll fd gets here: report it, don't spin. */
        perror("coro: poller");
        abort();
    }
    if (s->run)
        __atomic_store_n(&s->sleeping, 0, __ATOMIC_RELAXED);
}

static void run_loop(coro__sched_t *s)
{
    for (;;) {
        if (s->reap)
            coro__reap(s);
        /* A scheduler of a run stays up while the run lasts: another may
         * spawn on it (coro__run_idle says when the run has ended). */
        if (s->live == 0 && !s->run)
            break;
        if (coro__posts_pending(s))
            coro__posts_run(s);
        int64_t timeout;
        int wait_for_posts = 0, spun = 0;
        if (s->runq_head) {
            timeout = 0;
        } else if (s->heap_len && s->sim) {
            coro__sim_advance(s); /* everyone is blocked: time moves */
            timeout = 0;
        } else if (s->heap_len) {
            int64_t now = coro__clock();
            int64_t next = coro__timer_next(s);
            timeout = next > now ? next - now : 0;
        } else if (s->poll_waiters) {
            timeout = -1;
        } else if (s->ext_waiters) {
            timeout = -1; /* for the post that ends one */
            wait_for_posts = 1;
        } else if (s->run) {
            /* Only another scheduler of the run can give this one work.
             * It is usually on its way (a reply, a hand-off): look for it
             * a moment before going quiet, which takes the run's lock
             * here and again when the post is taken. */
            if (spin_for_posts(s))
                continue;
            int v = coro__run_idle(s);
            if (v > 0)
                break;
            if (v < 0)
                continue;
            timeout = -1;
            wait_for_posts = spun = 1;
        } else {
            if (on_deadlock(s) == 0)
                unwind_stuck(s);
            continue;
        }
        if (s->poll_waiters || timeout > 0 || wait_for_posts) {
            /* About to sleep: stacks freed since the last release go back
             * now, so an idle thread holds no more than its warm pool. */
            if (timeout != 0)
                coro__stack_trim();
            poll_events(s, timeout, spun);
        }
        s->loop_now = coro__clock();
        if (s->heap_len)
            coro__timer_expire(s, s->loop_now);
        coro_t *next;
        if (s->sim) {
            if (!(next = coro__sim_pick(s)))
                continue;
        } else {
            if (!(next = coro__runq_pop(s)))
                continue;
            s->switches++; /* this dispatch is outside the pass's count */
        }
        coro__pass_set(s, pass_length(s, s->runq_len));
        if (s->slow_ns)
            s->run_since = coro__clock();
        coro__fiber_switch_as(&s->fiber, coro__make_current(s, next), CORO__SWITCH_FPENV);
    }
}

/* ---- coro_main ----------------------------------------------------------- */

void coro__sched_free(coro__sched_t *s)
{
    /* Everything has ended: let io/ stop its threads (their last posts are
     * run here too), then free what was never joined. */
    coro__run_exit_hooks(s);
    coro__posts_run(s);
    if (s->reap)
        coro__reap(s);
    while (!coro_list_empty(&s->all)) {
        coro_t *c = coro_container_of(s->all.next, coro_t, all_node);
        coro__free_coro(s, c);
    }
    free(s->heap);
    coro__fd_free_all(s);
    coro__live_end(s); /* frees the poller: its signalfd is gone */
    coro__mask_restore(s);
    coro__fiber_fini_thread(&s->fiber);
    coro__overflow_thread_fini();
    coro__stack_pool_release();
    coro__here_leave();
    coro__sim_free(s); /* a start whose main coroutine never spawned */
    free(s);
}

int coro_main(coro_fn fn, void *arg)
{
    return coro_main_opts(fn, arg, NULL);
}

/* EINVAL for what can never be right. */
static int check_main_opts(const coro_main_opts_t *o)
{
    if (o->threads < 0 || o->threads > CORO__MAX_THREADS || o->pool_threads < 0 ||
        o->pool_threads > CORO__POOL_MAX_THREADS || (o->threads >= 2 && o->sim)) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* The running fiber of the calling thread's scheduler (the overflow
 * handler's hook: reads only this thread's state, async-signal-safe). */
static coro__fiber_t *running_fiber(void)
{
    coro__sched_t *s = coro__tls;
    if (!s)
        return NULL;
    return s->current ? &s->current->fiber : &s->fiber;
}

coro__sched_t *coro__sched_new(const coro_main_opts_t *o)
{
    if (coro__tls) {
        errno = EBUSY;
        return NULL;
    }
    coro__sched_t *s = coro__calloc(1, sizeof *s);
    if (!s)
        return NULL;
    coro_list_init(&s->all);
    coro_list_init(&s->signal_waiters);
    coro_list_init(&s->live_node);
    coro_list_init(&s->remote_held);
    if (o && o->sim && coro__sim_start(s, o->sim) != 0) {
        int e = errno;
            free(s);
        errno = e;
        return NULL;
    }
    s->pool_threads = o ? o->pool_threads : 0;
    coro__mask_record(s);
    s->default_stack = coro__stack_size_for(0);
    s->post_credit = CORO__POST_SPIN_CREDIT;
    if (!s->sim)
        s->loop_now = coro__clock();
    if (coro__live_start(s) != 0 || coro__overflow_thread_init() != 0) {
        int e = errno;
        coro__live_end(s);
            coro__sim_free(s);
        free(s);
        errno = e;
        return NULL;
    }
    coro__debug_init(s);
    coro__fiber_init_thread(&s->fiber);
    /* The overflow handler asks the scheduler which fiber runs, so the
     * switches need not record it (coro/fiber.h). */
    coro__fiber_set_running_hook(running_fiber);
    coro__tls = coro__here = s;
    return s;
}

int coro__sched_run(coro__sched_t *s, coro_fn fn, void *arg)
{
    coro_opts_t opts = { .stack_size = 0, .name = "main" };
    coro_t *m = coro__spawn(s, fn, arg, &opts);
    if (!m) {
        int e = errno;
        coro__sched_free(s);
        errno = e;
        return -1;
    }
    m->is_main = 1;
    m->end_more = 1;
    s->main = m;

    run_loop(s);

    int deadlocked = s->deadlocked;
    int status = s->main_status;
    if (s->sim)
        coro__sim_end(s, status, deadlocked);
    coro__sched_free(s);
    if (deadlocked) {
        errno = EDEADLK;
        return -1;
    }
    return status;
}

int coro_main_opts(coro_fn fn, void *arg, const coro_main_opts_t *o)
{
    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    if (o && check_main_opts(o) != 0)
        return -1;
    if (o && o->threads >= 2)
        return coro__run_main(fn, arg, o);
    coro__sched_t *s = coro__sched_new(o);
    if (!s)
        return -1;
    return coro__sched_run(s, fn, arg);
}
