/* sched/sched_int.h: the scheduler's private state, shared by the files
 * of sched/ only.
 *
 * THE INVARIANT. Every coroutine of a scheduler is in exactly one state:
 *   ACTIVE   running or ready, which s->current tells apart (so a switch
 *            writes no state):
 *              running  it is s->current (at most one; none while the
 *                       scheduler's own context polls);
 *              ready    it is on the run queue (linked through next_ready);
 *   PARKED   it waits on exactly one waiter (c->wait), which may be linked
 *            into one object's wait list, and it is in the timer heap iff
 *            its wait has a time limit;
 *   DONE     its body returned; it waits to be joined, collected by its
 *            group, or (detached, a child of a CORO_GROUP_REAP group, or
 *            the main coroutine) reaped at its end (the stack a moment
 *            later: s->reap).
 * Each is on s->all until freed. Transitions: spawn -> ready; dispatch
 * ready -> running; yield running -> ready; park running -> PARKED; wake
 * PARKED -> ready; return running -> DONE; join/reap DONE -> freed. */
#ifndef CORO_SCHED_INT_H
#define CORO_SCHED_INT_H

#include "coro/fiber.h"
#include "coro/list.h"
#include "sched/poller.h"
#include "sched/sched.h"
#include "sched/wait.h"
#include "sched/io_wait.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

/* A coroutine is ACTIVE from its spawn until it parks or ends: running
 * (it is its scheduler's current) or ready (in the run queue). Which of
 * the two is told by s->current, so a switch writes no state. */
enum coro_state { CORO_ACTIVE, CORO_PARKED, CORO_DONE };

/* Stale-handle detection: magic is LIVE from spawn until freed. */
#define CORO_MAGIC_LIVE 0xC0A0F1BEu
#define CORO_MAGIC_DEAD 0xDEADC0A0u

typedef struct sched coro__sched_t;
typedef struct coro__fd coro__fd_t;

/* A timer-heap entry: its key (when it fires, arm order) beside the
 * coroutine it wakes. */
typedef struct coro__timer {
    int64_t when;
    uint64_t seq;
    coro_t *coro;
} coro__timer_t;

struct coro {
    /* The ground floor's object (context, stack, id, name): first, so a
     * fiber pointer is a coroutine pointer. The whole struct lives at the
     * top of the coroutine's own stack. */
    coro__fiber_t fiber;
    uint32_t magic;
    uint8_t state;
    /* Sticky cancellation; shield holds it back; killed (deadlock unwind)
     * overrides the shield. */
    uint8_t cancelled, shielded, killed;
    /* Something a checkpoint must look at: cancelled, killed or a
     * deadline set (kept by coro__attn_update). */
    uint8_t attn;
    /* Freed at its end instead of being joined. */
    uint8_t detached;
    /* The first coroutine of coro_main: never joinable. */
    uint8_t is_main;
    /* Ended, and kept by its (non-REAP) group: counted in s->group_held. */
    uint8_t group_held;
    /* Its end has more to do than wake a joiner: set with detached,
     * is_main, group, remote_joiner or the fiber's own_fpenv, and never
     * cleared (the end's slow path looks at each). One byte for the
     * common end to test. */
    uint8_t end_more;
    /* Body and result. */
    coro_fn fn;
    void *arg;
    int status;
    coro__sched_t *sched;
    /* Run-queue link while ready. */
    coro_t *next_ready;
    /* While PARKED: the waiter, and what it waits on (for coro_dump). */
    coro__waiter_t *wait;
    const char *wait_what;
    const void *wait_obj;
    int64_t wait_num;
    int64_t wait_since;
    /* The coroutine's deadline scope (CORO_NEVER if none), and while parked
     * the wait's own time limit (a sleep's end). */
    int64_t deadline;
    int64_t wake_at;
    /* While armed: when the timer fires (for coro_dump) and its 1-based
     * slot in the timer heap (0 = not armed). */
    int64_t timer_when;
    size_t timer_index;
    /* The waiter of the coroutine in coro_join, NULL if none (there is at
     * most one: a second join is refused). Its node is self-linked, so a
     * wake's unlink of it is a no-op; the joiner clears this if its wait
     * fails. */
    coro__waiter_t *joiner;
    /* Task group membership: in g->children while running, g->done after
     * (a REAP group's child is in no list once it has ended). */
    coro_group_t *group;
    coro_list_t group_node;
    /* On s->all. */
    coro_list_t all_node;
    /* A join from another scheduler of the run (sched/remote.c), waiting
     * for this coroutine's end or, once told of it, for the word to free
     * or keep it; NULL if none. Counts as "being joined". */
    struct coro__remote_call *remote_joiner;
};

struct sched {
    /* The scheduler's own context: the thread's stack in coro_main. */
    coro__fiber_t fiber;
    coro_t *current;
    /* Run queue: FIFO through coro.next_ready. runq_tail means something
     * only while runq_head is not NULL (a pop that empties the queue
     * leaves it stale). */
    coro_t *runq_head, *runq_tail;
    size_t runq_len;
    /* Dispatches left in this pass over the run queue; at 0 the timers
     * (and, when anything waits on it, the poller) are consulted before the
     * next pass, so a coroutine that keeps yielding cannot starve them.
     * With no timer armed and no poller waiter there is nothing to consult
     * and the pass is unbounded (INT64_MAX); arming either clamps it to the
     * coroutines ready now (coro__pass_clamp). Signed, so that a fast path
     * takes its dispatch with one decrement and learns from its sign
     * whether the pass had one left (coro__pass_take). */
    int64_t pass_left;
    /* pass_left as last set: a dispatch from the run queue is a switch,
     * so the switches counted below are short by pass_start - pass_left
     * (coro__switches adds them; coro__pass_set folds them in). The hot
     * paths then count their switch by the decrement they make anyway. */
    int64_t pass_start;
    /* The last coroutine that ended and is to be freed at once (detached,
     * a REAP group's child, the main coroutine): its own stack was in use
     * until its last switch, so it is freed by the next such end, the next
     * spawn, or the scheduler's context, whichever comes first (at most
     * one stack waits; no switch pays a check for it). */
    coro_t *reap;
    /* Timer heap: a binary min-heap of entries by (when, seq). Its
     * capacity is kept >= live coroutines, so arming a timer never
     * allocates. */
    coro__timer_t *heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    /* The poller, and how many parked waits only it can end (fd waits,
     * blocking jobs, signals); 0 means polling can wake nobody. */
    coro__poller_t *poller;
    size_t poll_waiters;
    /* Parked waits that another thread ends with a post (a shared
     * channel's): never deadlocked, but no reason to poll descriptors;
     * the loop looks at the post queue itself. */
    size_t ext_waiters;
    size_t io_waits;
    /* Live coroutines with their own floating-point environment
     * (CORO_OWN_FPENV). While there are any, every pass has length 0, so
     * every switch goes through coro__switch_slow, whose switch carries
     * the environment; the fast paths' switches do not look at it. */
    size_t fpenv_live;
    /* Every coroutine not yet freed; counters. */
    coro_list_t all;
    size_t live;
    uint64_t spawned;
    uint64_t switches;   /* see pass_start */
    int64_t max_lag;
    /* Time at the last poll: the "since" of parks (a clock read per park
     * would cost more than the park). */
    int64_t loop_now;
    /* coro__stack_size_for(0), computed once. */
    size_t default_stack;
    /* The first coroutine, its status once it ends. */
    coro_t *main;
    int main_status;
    /* Set once the deadlock detector has fired. */
    int deadlocked;
    /* Non-NULL while the scheduler runs a deterministic simulation
     * (sched/sim.c): virtual time, seeded order. */
    struct coro__sim *sim;
    /* CORO_DEBUG=slow:<ms>: 0 = off; when the running coroutine started. */
    int64_t slow_ns;
    int64_t run_since;

    /* Cold: what only descriptor, job and signal waits touch, kept after
     * the fields of the switch path so those stay in as few cache lines
     * as before the I/O floor. */
    /* The descriptor table (sched/fd.c): chunks of entries indexed by fd. */
    coro__fd_t **fd_chunks;
    size_t fd_chunks_len;
    /* Messages from other threads (sched/post.c): a lock-free stack,
     * reversed when drained; notify_armed once the poller's wake-up
     * channel exists. */
    struct coro__post *posts;
    int notify_armed;
    /* Coroutines in coro__signal_park, and whether the poller watches
     * signals yet. */
    coro_list_t signal_waiters;
    /* coro__at_exit hooks, newest first. */
    struct coro__exit_hook *exit_hooks;
    /* coro_main_opts' pool_threads (0: io/'s default), for io/pool.c. */
    int pool_threads;
    /* Ended children kept by their groups (coro.group_held): coro_stats. */
    size_t group_held;
    /* The thread's signal mask when coro_main began, given back exactly
     * when it ends (sched/sigmask.c), and the signals coro has blocked
     * since on the caller's behalf (coro__block_signals). */
    sigset_t caller_mask;
    sigset_t blocked_for_caller;
    /* On the process-wide list of running schedulers (sched/fork.c): a
     * forked child closes their pollers, and the thread boundary asks
     * whether an object's scheduler still runs (sched/home.c). serial is
     * a number no other scheduler of the process ever has (an address
     * can be reused by a later scheduler; this cannot). */
    coro_list_t live_node;
    uint64_t serial;
    /* A run of several schedulers (sched/run.c), NULL for a lone
     * coro_main: this one's index in it; whether it is quiet (nothing
     * ready, no timer, no poller waiter: only another scheduler can give
     * it work), kept under the run's lock; the last deadlock verdict of
     * the run it has applied; and whether it sleeps in its poller now
     * (posts from other threads wake it through the kernel only then). */
    struct coro__run *run;
    int run_index;
    int quiet;
    uint64_t verdicts_seen;
    int sleeping;
    /* Fruitless spins left before this scheduler stops spinning, for
     * posts when idle (sched/sched.c) and for a cross-thread peer
     * (sched/xwait.c): spent by a spin that finds nothing, refilled by
     * one that does and by every batch of posts. So spinning stops where
     * nothing comes from other threads (a server's shard), and where
     * messages come seldom it burns at most one spin per message, less
     * than the kernel wake-up (12-30 us on a VM) it may save. */
    unsigned post_credit;
#define CORO__POST_SPIN_CREDIT 4
    uint64_t post_spins; /* spins begun, for posts or a peer (for tests) */
    /* Cross-scheduler joins held by this scheduler's coroutines until
     * they end (sched/remote.c). */
    coro_list_t remote_held;
};

extern __thread coro__sched_t *coro__tls __attribute__((tls_model("initial-exec")));
/* The thread leaves its scheduler: coro__tls NULL, coro__here nowhere. */
void coro__here_leave(void);

/* ---- deterministic simulation (sched/sim.c) ----------------------------- */

typedef struct coro__sim {
    uint64_t seed;   /* as given, from CORO_SIM_SEED, or chosen */
    uint64_t rng;    /* the one source of every random choice */
    uint64_t trace;  /* a hash of every choice and time step so far */
    int64_t now;     /* the virtual clock */
    uint64_t steps;  /* dispatches drawn */
    struct sigaction old_abort; /* SIGABRT's action before the simulation */
    /* The simulated network's configuration (io/simnet.c draws from it). */
    double fault_rate;
    int64_t latency_min, latency_max;
} coro__sim_t;

/* Start a simulation on s as cfg says (seed: CORO_SIM_SEED overrides;
 * 0 chooses one and prints it). 0, or -1 with EINVAL (a bad cfg or
 * CORO_SIM_SEED) or ENOMEM. */
int coro__sim_start(coro__sched_t *s, const coro_sim_t *cfg);
/* End it: on failure (status non-zero or a deadlock) print how to replay
 * it, then free it. */
void coro__sim_end(coro__sched_t *s, int status, int deadlocked);
/* Free it without a word (a start that failed later); NULL: nothing. */
void coro__sim_free(coro__sched_t *s);
/* Take the next coroutine to run from the run queue, drawn by the seed
 * (NULL if the queue is empty). */
coro_t *coro__sim_pick(coro__sched_t *s);
/* Everyone is blocked: move the clock to the earliest timer. */
void coro__sim_advance(coro__sched_t *s);

int64_t coro__clock(void);

/* The inline halves of sched/wait.h (see there). */
static inline coro_t *coro__current_in(const coro__sched_t *s)
{
    return s ? s->current : NULL;
}

extern __thread coro__sched_t *coro__here __attribute__((tls_model("initial-exec")));
static inline coro_t *coro__current_here(const coro__sched_t *here)
{
    return here->current;
}

static inline coro_t *coro__current(void)
{
    return coro__current_in(coro__tls);
}

static inline uint64_t coro__id_of(const coro_t *c)
{
    return c->fiber.id;
}

/* Run queue. */
static inline void coro__runq_push(coro__sched_t *s, coro_t *c)
{
    c->state = CORO_ACTIVE;
    c->next_ready = NULL;
    if (s->runq_head)
        s->runq_tail->next_ready = c;
    else
        s->runq_head = c;
    s->runq_tail = c;
    s->runq_len++;
}

/* Ahead of everyone: runs next. */
static inline void coro__runq_push_front(coro__sched_t *s, coro_t *c)
{
    c->state = CORO_ACTIVE;
    if (!s->runq_head)
        s->runq_tail = c;
    c->next_ready = s->runq_head;
    s->runq_head = c;
    s->runq_len++;
}

static inline coro_t *coro__runq_pop(coro__sched_t *s)
{
    coro_t *c = s->runq_head;
    if (c) {
        s->runq_head = c->next_ready; /* the tail is stale when this is NULL */
        s->runq_len--;
    }
    return c;
}

/* Something the end of a pass must look at exists now (an armed timer, a
 * poller waiter): end the current pass after the coroutines ready now. */
/* Start a pass (or shorten this one) with `left` dispatches. */
static inline void coro__pass_set(coro__sched_t *s, size_t left)
{
    s->switches += (uint64_t)(s->pass_start - s->pass_left);
    s->pass_left = s->pass_start = left > (size_t)INT64_MAX ? INT64_MAX : (int64_t)left;
}

/* Is this pass unbounded, i.e. was there nothing for a pass end to look
 * at (no timer, no poller or external waiter, not in a run, not in slow
 * or simulated mode) when it began, and has nothing been armed since
 * (arming clamps the pass to the ready coroutines)? A bounded pass is at
 * most the run queue's length, never near 2^31; an unbounded one starts
 * at INT64_MAX and would need 2^62 dispatches to get there. */
static inline int coro__pass_unbounded(const coro__sched_t *s)
{
    return s->pass_left > INT32_MAX;
}

/* Take one dispatch of the pass: 1, or 0 when the pass is over (and
 * nothing taken). One decrement and a sign test on the common path. */
static inline int coro__pass_take(coro__sched_t *s)
{
    if (__builtin_expect(--s->pass_left >= 0, 1))
        return 1;
    s->pass_left = 0;
    return 0;
}

/* Context switches so far: every dispatch of this pass is one. */
static inline uint64_t coro__switches(const coro__sched_t *s)
{
    return s->switches + (uint64_t)(s->pass_start - s->pass_left);
}

static inline void coro__pass_clamp(coro__sched_t *s)
{
    if ((uint64_t)s->pass_left > s->runq_len)
        coro__pass_set(s, s->runq_len);
}

/* ---- the switch path (inline: every yield, park and hand-off runs it) ---- */

/* A pass over the run queue has ended (or the queue is empty): check the
 * timers, start the next pass, and return the next coroutine to run
 * inline, or NULL to enter the scheduler's context (to wait for events,
 * or to poll descriptors between passes). */
coro_t *coro__pass_end(coro__sched_t *s);
/* CORO_DEBUG=slow: account the run that is ending (called from
 * coro__pass_end, where slow mode sends every switch). */
__attribute__((cold)) void coro__note_run_time(coro__sched_t *s, coro_t *self);
/* Free s->reap (not NULL), a coroutine that ended and that nothing runs
 * on any more. */
__attribute__((cold)) void coro__reap(coro__sched_t *s);

static inline coro_t *coro__next_to_run(coro__sched_t *s)
{
    if (__builtin_expect(s->runq_head != NULL, 1) && coro__pass_take(s))
        return coro__runq_pop(s);
    return coro__pass_end(s);
}

/* Make next the running coroutine (NULL: the scheduler's context) and
 * return the fiber to switch to. A switch to a coroutine has been counted
 * by the pass (or by whoever took next from the run queue outside it); a
 * switch to the scheduler's context is counted here. */
static inline coro__fiber_t *coro__make_current(coro__sched_t *s, coro_t *next)
{
    s->current = next;
    if (!next) {
        s->switches++;
        return &s->fiber;
    }
    return &next->fiber;
}

/* THE switch: from the running coroutine self to next (NULL: the
 * scheduler's context). Returns when self runs again. Only on a pass
 * (s->pass_left was > 0): no coroutine of s owns a floating-point
 * environment then (s->fpenv_live), so the switch does not look; past
 * the pass, coro__switch_slow switches with the look. */
static inline void coro__switch_to(coro__sched_t *s, coro_t *self, coro_t *next)
{
    coro__fiber_switch_as(&self->fiber, coro__make_current(s, next), 0);
}

/* The current coroutine has been parked, or has ended: run the next one
 * (or the scheduler's context). Returns when the caller runs again. The
 * caller must not be in the run queue (a yield, which is, goes to
 * coro__switch_slow, sched/sched.c). */
void coro__switch_slow(coro__sched_t *s);

static inline void coro__switch(coro__sched_t *s)
{
    if (__builtin_expect(s->runq_head != NULL, 1) && coro__pass_take(s)) {
        coro__switch_to(s, s->current, coro__runq_pop(s));
        return;
    }
    /* The pass is over (or nobody is ready): out of line, so that the
     * common case calls nothing and its callers keep no values in
     * callee-saved registers (sched/sched.c). */
    coro__switch_slow(s);
}

/* The current coroutine has ended: pick what runs next (the caller's last
 * switch goes there). */
coro__fiber_t *coro__exit_next(coro__sched_t *s);

/* Timer heap (sched/timer.c). */
int coro__timer_reserve(coro__sched_t *s, size_t n);
void coro__timer_arm(coro__sched_t *s, coro_t *c, int64_t when);
void coro__timer_disarm(coro__sched_t *s, coro_t *c);
/* Wake every coroutine whose timer is due at `now`. */
void coro__timer_expire(coro__sched_t *s, int64_t now);
/* The earliest armed time, CORO_NEVER if none. */
static inline int64_t coro__timer_next(const coro__sched_t *s)
{
    return s->heap_len ? s->heap[0].when : CORO_NEVER;
}

/* ---- park and wake (inline: every blocking call of sync/ and io/) -------- */

/* The errno a checkpoint of c fails with now (ECANCELED, ETIMEDOUT), or 0.
 * c->attn is 0 when nothing is pending (no cancellation, no deadline): one
 * byte decides the common case inline; the rest, which may read the clock,
 * is in sched/park.c. */
int coro__checkpoint_error_slow(const coro_t *c);

static inline int coro__checkpoint_error(const coro_t *c)
{
    if (__builtin_expect(!c->attn, 1))
        return 0;
    return coro__checkpoint_error_slow(c);
}

/* May c's checkpoint fail (see sched/wait.h)? 0: certainly not. */
static inline int coro__checkpoint_pending(const coro_t *c)
{
    return c->attn;
}

/* Keep c->attn in step after a change to cancelled, killed or deadline. */
static inline void coro__attn_update(coro_t *c)
{
    c->attn = (uint8_t)(c->cancelled | c->killed | (c->deadline != CORO_NEVER));
}

static inline int coro__checkpoint(void)
{
    coro_t *self = coro__current();
    if (__builtin_expect(!self, 0)) {
        errno = EPERM;
        return -1;
    }
    int e = coro__checkpoint_error(self);
    if (__builtin_expect(e != 0, 0)) {
        errno = e;
        return -1;
    }
    return 0;
}

/* The thread boundary (see sched/wait.h; the slow half in sched/home.c). */
int coro__home_slow(void **home, coro__sched_t *s);

static inline int coro__home_in(void **home, coro__sched_t *s)
{
    /* A plain load: an atomic one, even relaxed, makes the compiler reload
     * the scheduler's state after it (five more instructions per mutex
     * hand-off). A binding is published by a compare-and-swap in the slow
     * path; a thread that reads the home without being ordered after it
     * is in a data race with the owner anyway. */
    if (__builtin_expect(*home == (void *)s, 1))
        return 0;
    return coro__home_slow(home, s);
}

static inline int coro__home(void **home)
{
    return coro__home_in(home, coro__tls);
}

/* A park's failure: unlink w, set errno to e, return -1 (sched/park.c). */
int coro__park_fail(coro__waiter_t *w, int e);

/* A park the fast path does not take: no coroutine is running, something
 * is pending (c->attn), a time limit or an uninterruptible wait
 * (sched/park.c; the same park, with everything inline below). */
int coro__park_full(coro__waiter_t *w, unsigned flags, int64_t wake_at, const char *what,
                    const void *obj, int64_t num);

/* The park's body once the checks have passed: record the wait, switch
 * away, and take the result. */
static inline __attribute__((always_inline)) int
coro__park_body(coro__sched_t *s, coro_t *self, coro__waiter_t *w, unsigned flags,
                const char *what, const void *obj, int64_t num)
{
    /* result and fired are written by whatever ends the wait. */
    w->coro = self;
    w->primary = w;
    self->wait = w;
    self->wait_what = what;
    self->wait_obj = obj;
    self->wait_num = num;
    self->wait_since = s->loop_now;
    self->state = CORO_PARKED;
    if (flags & CORO__PARK_POLL) {
        s->poll_waiters++;
        if (flags & CORO__PARK_FD_BIT)
            s->io_waits++;
        coro__pass_clamp(s);
    }
    if (flags & CORO__PARK_EXTERNAL) {
        s->ext_waiters++;
        coro__pass_clamp(s);
    }
    coro__switch(s);
    if (flags & CORO__PARK_POLL) {
        s->poll_waiters--;
        if (flags & CORO__PARK_FD_BIT)
            s->io_waits--;
    }
    if (flags & CORO__PARK_EXTERNAL)
        s->ext_waiters--;
    return w->result;
}

/* THE park for a caller that has made its checks (see sched/wait.h). */
static inline __attribute__((always_inline)) int
coro__park_checked(coro__sched_t *s, coro_t *self, coro__waiter_t *w, unsigned flags,
                   const char *what, const void *obj, int64_t num)
{
    int e = coro__park_body(s, self, w, flags, what, obj, num);
    if (__builtin_expect(e != 0, 0))
        return coro__park_fail(NULL, e);
    return 0;
}

/* THE park (see sched/wait.h). Inline and always_inline: flags and
 * wake_at are constants at every call site, so each site keeps only the
 * branches it uses. The common case (a running coroutine, nothing
 * pending, no time limit) calls no function but the switch: its callers
 * then keep nothing in callee-saved registers, which the switch saves
 * again anyway. */
static inline __attribute__((always_inline)) int
coro__park(coro__waiter_t *w, unsigned flags, int64_t wake_at, const char *what,
           const void *obj, int64_t num)
{
    coro__sched_t *s = coro__tls;
    coro_t *self;
    if (__builtin_expect(!s || !(self = s->current) || self->attn || wake_at != CORO_NEVER ||
                             (flags & CORO__PARK_UNINTERRUPTIBLE) != 0,
                         0))
        return coro__park_full(w, flags, wake_at, what, obj, num);
    return coro__park_checked(s, self, w, flags, what, obj, num);
}

static inline int coro__can_wake_linked(const coro__waiter_t *w)
{
    const coro_t *c = w->coro;
    return c->state == CORO_PARKED && c->wait == w->primary;
}

static inline int coro__can_wake(const coro__waiter_t *w)
{
    return w->coro && coro__can_wake_linked(w);
}

/* The end of a wake whose coroutine has a timer armed (a time limit or a
 * deadline): disarm it, then queue c (sched/park.c). */
int coro__wake_timed(coro_t *c);

/* THE wake (see sched/wait.h) as a call's last act: returns 0, so that a
 * caller's `return coro__wake_last(w, 0);` reaches the rare timer case by a
 * tail call and keeps no frame. coro__can_wake(w) holds. */
static inline int coro__wake_last_in(coro__sched_t *s, coro__waiter_t *w, int result)
{
    coro_list_remove(&w->node);
    coro_t *c = w->coro;
    coro__waiter_t *p = w->primary;
    /* c->wait keeps its stale value: with c no longer PARKED,
     * coro__can_wake is false for every waiter of c anyway. */
    p->result = result;
    p->fired = w;
    if (__builtin_expect(c->timer_index != 0, 0))
        return coro__wake_timed(c);
    coro__runq_push(s, c);
    return 0;
}

static inline int coro__wake_last(coro__waiter_t *w, int result)
{
    return coro__wake_last_in(w->coro->sched, w, result);
}

/* THE wake (see sched/wait.h): coro__can_wake(w) holds. */
static inline void coro__wake(coro__waiter_t *w, int result)
{
    (void)coro__wake_last(w, result);
}

/* Wake every waiter of q that can be woken; unlink the others. */
static inline size_t coro__wake_all(coro_list_t *q, int result)
{
    size_t n = 0;
    while (!coro_list_lazy_empty(q)) {
        coro__waiter_t *w = coro_container_of(q->next, coro__waiter_t, node);
        if (coro__can_wake(w)) {
            coro__wake(w, result);
            n++;
        } else {
            coro_list_remove(&w->node);
        }
    }
    return n;
}

/* Running schedulers (sched/fork.c keeps the list, see coro__live_start):
 * coro__sched_alive(p) says whether p is a running scheduler;
 * coro__sched_serial_alive whether the one with that serial number is.
 * Coroutine ids (sched/home.c): coro__new_id hands out process-wide ids
 * that are never reused (1, 2, ... in blocks per thread; 0 is "none"). */
int coro__sched_alive(const void *p);
int coro__sched_serial_alive(uint64_t serial);
/* The calling thread's scheduler serial, 0 without one. */
static inline uint64_t coro__serial(void)
{
    coro__sched_t *s = coro__tls;
    return s ? s->serial : 0;
}
extern __thread uint64_t coro__id_next __attribute__((tls_model("initial-exec")));
extern __thread uint64_t coro__id_end __attribute__((tls_model("initial-exec")));
uint64_t coro__new_id_block(void);
static inline uint64_t coro__new_id(void)
{
    if (__builtin_expect(coro__id_next != coro__id_end, 1))
        return coro__id_next++;
    return coro__new_id_block();
}

/* Coroutine objects (sched/spawn.c). */
coro_t *coro__spawn(coro__sched_t *s, coro_fn fn, void *arg, const coro_opts_t *opts);
void coro__free_coro(coro__sched_t *s, coro_t *c);
int coro__valid(const coro__sched_t *s, const coro_t *c);

/* May c (a live coroutine) be joined or detached: not detached, not a
 * group's child, not the main coroutine, and nobody joining it here or
 * from another scheduler? */
static inline int coro__joinable(const coro_t *c)
{
    if (c->joiner)
        return 0;
    return !c->end_more || !(c->detached || c->group || c->is_main || c->remote_joiner);
}

/* Tokens the poller reports besides descriptors' (whose generation is
 * never 0). */
#define SCHED_TOKEN_NOTIFY 0
#define SCHED_TOKEN_SIGNAL 1

/* Descriptor table (sched/fd.c): a poller event for a descriptor token;
 * freeing the table. */
void coro__fd_ready(coro__sched_t *s, uint64_t token, int events);
void coro__fd_free_all(coro__sched_t *s);

/* Posts, exit hooks, signals (sched/post.c): run the posts queued by other
 * threads; wake the signal waiters; run the exit hooks. */
void coro__posts_run(coro__sched_t *s);
void coro__signals_ready(coro__sched_t *s);
void coro__run_exit_hooks(coro__sched_t *s);

/* Live schedulers and fork (sched/fork.c). coro__live_start gives s its
 * serial number, makes its poller and puts s on the list of live
 * schedulers, so that a child forked by any thread closes its poller's
 * descriptors and the thread boundary knows s runs; coro__live_end takes
 * s off and frees the poller. coro__live_lock/unlock hold the list while a
 * poller makes a descriptor (a fork meanwhile would miss it). */
int coro__live_start(coro__sched_t *s);
void coro__live_end(coro__sched_t *s);
void coro__live_lock(void);
void coro__live_unlock(void);

/* The thread's signal mask across coro_main (sched/sigmask.c): record it
 * as coro_main starts; give it back as it ends, after taking the pending
 * signals that coro blocked for the caller and that the caller's
 * disposition would not handle (see coro_signal_wait in io/io.h). */
void coro__mask_record(coro__sched_t *s);
void coro__mask_restore(coro__sched_t *s);

/* Groups (sched/group.c): a child of a group has ended. Returns 1 if it is
 * to be freed at once (a CORO_GROUP_REAP group's), 0 if its group keeps it. */
int coro__group_child_done(coro_t *c);

/* ---- runs of several schedulers (sched/run.c, sched/remote.c) ---------- */

typedef struct coro__run coro__run_t;

/* A scheduler for the calling thread, as o says (NULL: the defaults),
 * the thread's own (coro__tls) from now on; NULL with errno (EBUSY the
 * thread has one, ENOMEM, EMFILE, EINVAL a bad sim). */
coro__sched_t *coro__sched_new(const coro_main_opts_t *o);
/* Run fn(arg) as s's main coroutine until the loop ends, free s, and
 * return as coro_main does. */
int coro__sched_run(coro__sched_t *s, coro_fn fn, void *arg);
/* Free s (nothing runs on it any more). */
void coro__sched_free(coro__sched_t *s);
/* The most schedulers a run may have. */
#define CORO__MAX_THREADS 1024

/* coro_main_opts with threads >= 2: every scheduler runs fn(arg). */
int coro__run_main(coro_fn fn, void *arg, const coro_main_opts_t *o);
/* The loop of s (in a run) found nothing to do: mark it quiet and, if
 * every scheduler of the run is quiet with no post between them in
 * flight, decide: the run has ended (no coroutine left anywhere) or is
 * deadlocked (a dump of every scheduler, then each unwinds). Returns 1
 * when the run has ended (leave the loop), -1 when a deadlock verdict has
 * just been applied to s (its coroutines are ready: go on), 0 to sleep
 * until a post comes. */
int coro__run_idle(coro__sched_t *s);
/* s's thread took posts while quiet: it is busy again. */
void coro__run_busy(coro__sched_t *s);
/* Scheduler `index` of s's run, NULL if out of range. */
coro__sched_t *coro__run_sched(const coro__sched_t *s, int index);
/* Post m to another scheduler of the same run (coro__post without its
 * error return). */
void coro__run_post(coro__sched_t *to, struct coro__post *m);
void coro__post_push(coro__sched_t *s, struct coro__post *m);
/* Is there a post waiting for s (one relaxed load)? */
static inline int coro__posts_pending(coro__sched_t *s)
{
    return __atomic_load_n(&s->posts, __ATOMIC_RELAXED) != NULL;
}

/* Are a and b schedulers of the same run (and not the same one)? */
static inline int coro__same_run(const coro__sched_t *a, const coro__sched_t *b)
{
    return a && b && a != b && a->run && a->run == b->run;
}

/* Operations on another scheduler's coroutine, c->sched in the caller's
 * run (sched/remote.c): they travel as posts and run on c's scheduler. */
int coro__remote_join(coro__sched_t *s, coro_t *c, int *status, unsigned flags);
int coro__remote_cancel(coro__sched_t *s, coro_t *c);
void coro__remote_detach(coro__sched_t *s, coro_t *c);
/* c, with a remote joiner, has ended: tell the joiner. */
void coro__remote_joined_end(coro__sched_t *s, coro_t *c);
/* The local halves, also run on c's own scheduler for a remote request. */
int coro__cancel_local(coro_t *c);
void coro__detach_local(coro__sched_t *s, coro_t *c);
/* A run's other schedulers, for coro_dump and coro_stats: their dump
 * (written to fd on their thread) or their counters, asked with a
 * message; the caller waits. 0 or -1 (ENOMEM, ECANCELED). */
int coro__remote_dump(coro__sched_t *s, coro__sched_t *to, int fd);
int coro__remote_stats(coro__sched_t *s, coro__sched_t *to, coro_stats_t *out);
/* s's own counters; the number of schedulers of s's run (1 alone). */
void coro__stats_of(coro__sched_t *s, coro_stats_t *out);
int coro__thread_count_of(const coro__sched_t *s);
/* fd, registered by `to` (another scheduler of s's run), is about to be
 * closed by s's coroutine: `to` forgets it (its waiters wake with EBADF,
 * the poller lets go) while the caller waits. 0 or -1 (ENOMEM,
 * ECANCELED). coro__fd_forget_in is the local half; coro__fd_owner the
 * scheduler that has fd registered (NULL if none; maybe ended). */
int coro__remote_fd_forget(coro__sched_t *s, coro__sched_t *to, int fd);
void coro__fd_forget_in(coro__sched_t *s, int fd);
struct sched *coro__fd_owner(int fd);
/* Nothing can wake anyone: cancel every coroutine of s, shields overridden
 * (after the dump, which the caller has written). Returns how many woke. */
size_t coro__kill_all(coro__sched_t *s);

/* Dump (sched/dump.c): write the dump with a headline. */
void coro__dump_to(coro__sched_t *s, int fd, const char *headline);
/* CORO_DEBUG parsing and the slow-coroutine report. */
void coro__debug_init(coro__sched_t *s);
void coro__debug_slow(coro__sched_t *s, coro_t *c, int64_t ran_ns);

#endif /* CORO_SCHED_INT_H */
