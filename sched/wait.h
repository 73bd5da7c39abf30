/* sched/wait.h: the one way to wait. Every blocking call in sched/, sync/
 * and io/ goes through one park and one wake; cancellation, deadlines,
 * time limits and the poller's accounting are decided there once, never
 * in each primitive.
 *
 * A primitive that must block:
 *     coro__waiter_t w;
 *     coro_list_push_back(&obj->waiters, &w.node);   // or coro_list_init
 *     if (coro__park(&w, 0, CORO_NEVER, "mutex", obj, -1) != 0)
 *         return -1;                                 // errno says why
 * and whoever completes the wait:
 *     if (coro__can_wake(w))
 *         coro__wake(w, 0);              // unlinks w, readies its coroutine
 *
 * The waiter lives on the waiting coroutine's stack. A wake for a timeout
 * or a cancellation unlinks it from the object's list right away, so a
 * waker never hands a lock or an item to a coroutine that has already been
 * woken for another reason. Once woken, a coroutine's outcome is fixed: a
 * later cancel does not turn a completed hand-off into ECANCELED (the
 * cancellation shows at its next checkpoint instead). */
#ifndef CORO_SCHED_WAIT_H
#define CORO_SCHED_WAIT_H

#include "coro/coro.h"
#include "coro/list.h"

#include <pthread.h>

typedef struct coro__waiter {
    /* In the wait list of the object waited on (or unlinked). */
    coro_list_t node;
    /* The parked coroutine; set by coro__park. */
    coro_t *coro;
    /* The waiter its coroutine parked on: itself (set by coro__park), or,
     * for a coroutine waiting on several lists at once (select, a
     * descriptor's two directions), the one waiter it passed to
     * coro__park. Set coro and primary yourself on such extra waiters
     * before linking them. */
    struct coro__waiter *primary;
    /* On the primary, written by the wake that ends the wait: which
     * waiter's wake it was (the primary itself for a timeout or a
     * cancellation), and the result: 0, or an errno value (ETIMEDOUT,
     * ECANCELED, or the waker's own, e.g. EPIPE). */
    struct coro__waiter *fired;
    int result;
    /* Free for the primitive: a value handed over with the wake. */
    void *data;
    /* For a channel waiter: NULL, or the claim word of a cross-thread
     * wait it belongs to (a select with a shared channel among its cases:
     * see coro__xwait_t); a waker that can wake it must also win the
     * claim. */
    int *claim;
} coro__waiter_t;

/* A message posted to a scheduler from any thread; fn runs on the
 * scheduler's thread, in its own context (not a coroutine: it may wake
 * waiters, never park). */
typedef struct coro__post {
    struct coro__post *next;
    void (*fn)(struct coro__post *m);
} coro__post_t;

/* How a park waits (coro__park's flags, or'd; 0 for an ordinary wait). */
enum {
    /* Only the poller can end it (another thread's post, a signal): the
     * scheduler keeps polling while it lasts and does not call the
     * program deadlocked. */
    CORO__PARK_POLL = 1,
    CORO__PARK_FD_BIT = 2,
    /* A descriptor wait: a POLL wait also counted in coro_stats' io_waits. */
    CORO__PARK_FD = CORO__PARK_POLL | CORO__PARK_FD_BIT,
    /* Neither a cancellation nor the deadline ends it (the coroutine runs
     * shielded and without a deadline meanwhile; both are restored when
     * it ends); only a deadlock's unwind does (-1, ECANCELED). For the
     * waits that must finish whatever happens: relocking a condition
     * variable's mutex, a group draining its children. */
    CORO__PARK_UNINTERRUPTIBLE = 4,
    /* Another thread may end it with a post (a shared channel used from
     * outside the run): never counted as deadlocked, and the scheduler
     * watches its post queue, not its descriptors, for it. */
    CORO__PARK_EXTERNAL = 8,
};

/* Fail with ECANCELED (cancelled and not shielded) or ETIMEDOUT (the
 * deadline has passed), or EPERM outside a coroutine: what every blocking
 * call checks before it completes, even without blocking. Returns 0 or -1.
 *     int coro__checkpoint(void);
 * (inline, in sched/sched_int.h: nothing pending costs one byte's load)
 *
 * Whether the checkpoint of c (the running coroutine) may fail: 0 when
 * nothing is pending, so a fast path that would complete without parking
 * may skip coro__checkpoint; otherwise it takes the path that calls it.
 *     int coro__checkpoint_pending(const coro_t *c);
 * (inline, in sched/sched_int.h) */

/* THE park. Park the running coroutine on w until coro__wake(w), its
 * deadline, a cancellation, or (if wake_at != CORO_NEVER) the time
 * wake_at, as `flags` says. Checks the checkpoint first. `what`, `obj` and
 * `num` (>= 0 to show a number such as an fd or coroutine id, else -1)
 * describe the wait for coro_dump. w's node must be linked into a list or
 * initialised (coro_list_init).
 * Returns 0 when woken with 0 or when wake_at came; otherwise -1 with errno
 * set to the wake result (EPERM outside a coroutine). On any return w is
 * unlinked.
 *     int coro__park(coro__waiter_t *w, unsigned flags, int64_t wake_at,
 *                    const char *what, const void *obj, int64_t num);
 * The same park for a fast path that has just made its checks itself:
 * self is the running coroutine of s (coro__tls), coro__checkpoint_pending
 * (self) was 0, and nothing has run since; no time limit, and flags
 * without CORO__PARK_UNINTERRUPTIBLE. Checks nothing again.
 *     int coro__park_checked(coro__sched_t *s, coro_t *self,
 *                            coro__waiter_t *w, unsigned flags,
 *                            const char *what, const void *obj, int64_t num);
 * (inline, in sched/sched_int.h: flags and wake_at are constants at each
 * call site and the branches a site does not use vanish) */

/* Is w's coroutine still parked on w's primary? A waker checks this
 * before it hands anything over, so a value is never copied to a coroutine
 * that has already been woken for another reason (stale waiters: a select
 * woken through another case, a descriptor's other direction).
 *     int coro__can_wake(const coro__waiter_t *w);
 * The same for a waiter known to name its coroutine (w->coro set: linked
 * by a park, which sets it before anyone else runs, or by
 * coro__chan_case_link), one test less:
 *     int coro__can_wake_linked(const coro__waiter_t *w);
 * (inline, in sched/sched_int.h) */

/* THE wake, for a w that coro__can_wake(w) has just approved (nothing has
 * run in between): unlink w, record result and which waiter fired on the
 * primary, disarm its timer, make its coroutine ready (at the back of the
 * run queue: a hand-off never lets anyone jump the queue). Never blocks;
 * call it from a coroutine of the same thread, or the scheduler's context.
 *     void coro__wake(coro__waiter_t *w, int result);
 * The same as a call's last act, returning 0 (`return coro__wake_last(w,
 * 0);`: the rare timer case is then a tail call, and the caller keeps no
 * stack frame for it):
 *     int coro__wake_last(coro__waiter_t *w, int result);
 * The same for a waiter known to be of s's own coroutines (it waits on an
 * object whose home is s, the caller's scheduler), one load less:
 *     int coro__wake_last_in(coro__sched_t *s, coro__waiter_t *w, int result);
 * (inline, in sched/sched_int.h) */

/* Wake every waiter of q that can still be woken, unlinking the stale
 * ones; returns how many woke. q may be lazily initialised (all zero).
 *     size_t coro__wake_all(coro_list_t *q, int result);
 * (inline, in sched/sched_int.h) */

/* Deterministic simulation (sched/sim.c): is the calling thread's
 * scheduler simulating; and a draw below n (n > 0) from the simulation's
 * seeded generator (only while simulating). */
int coro__sim_active(void);
uint32_t coro__sim_below(uint32_t n);
/* For the simulated network (io/simnet.c), only while simulating: a
 * delivery latency drawn from latency_min..latency_max (ns), and a fault
 * drawn true with probability fault_rate (never drawn when it is 0). */
int64_t coro__sim_latency(void);
int coro__sim_fault(void);

/* A WAIT THAT ANOTHER THREAD MAY END (sched/xwait.c): what a shared
 * channel (sync/chan_shared.c) parks on, for a coroutine of any scheduler
 * or a plain thread. Whoever completes the wait first wins its claim word
 * (coro__xwait_claim: a compare-and-swap, so a peer's completion and the
 * waiter's own cancellation or deadline can never both win); the winner
 * of a completion hands its item over, then coro__xwait_deliver wakes the
 * owner on its own thread (directly when that is the caller's, else with
 * a post, or the condition variable of a plain thread).
 *
 *     coro__xwait_t x;
 *     coro__xwait_init(&x);                  // the calling thread's
 *     ...link x's queue nodes under the object's lock...
 *     if (coro__xwait_park(&x, flags, "chan recv", obj) != 0)
 *         ...x was not completed: unlink under the lock, return -1...
 * and a peer, under the object's lock:
 *     if (coro__xwait_claim(&x)) { hand over; x.fired = i; x.result = 0;
 *                                  unlink; coro__xwait_deliver(&x); }
 * x lives on the waiter's stack: coro__xwait_park returns only once a
 * delivery that was started has arrived. */
typedef struct coro__xwait {
    int claimed;            /* atomic: 0 until a completion or the owner wins it */
    int fired;              /* for the winner: which case (a select), and the result */
    int result;
    int delivered;          /* set on the owner's thread once the winner's news is in */
    struct sched *sched;    /* the owner's scheduler; NULL for a plain thread */
    coro__waiter_t w;       /* a coroutine parks on it (a select's primary) */
    coro__post_t post;      /* the delivery to another scheduler */
    pthread_mutex_t mu;     /* a plain thread waits on these */
    pthread_cond_t cv;
    int plain;              /* mu and cv are set up */
    /* atomic: the owner busy-waits for the delivery (sched/xwait.c). Far
     * from the fields above, on a line a peer writes once per wait: the
     * owner spins reading it, and every other write to its line while it
     * does would move the line back and forth between the two cores. */
    int spin;
} coro__xwait_t;

/* Set x up for the calling thread (a coroutine, or a plain thread).
 * 0, or -1 with errno (EMFILE: no descriptor for the scheduler's wake-up
 * channel), before anything is linked. */
int coro__xwait_init(coro__xwait_t *x);
/* Win x's claim (1) or find it won already (0). */
static inline int coro__xwait_claim_word(int *claim)
{
    int zero = 0;
    return __atomic_compare_exchange_n(claim, &zero, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline int coro__xwait_claim(coro__xwait_t *x)
{
    return coro__xwait_claim_word(&x->claimed);
}
/* After winning x's claim and handing over: wake x's owner. Any thread. */
void coro__xwait_deliver(coro__xwait_t *x);
/* Block until x is completed (0: x.fired and x.result say how; for a
 * select, x.w.fired may instead name a local case's waiter that a peer
 * on this thread completed) or, for a coroutine, until a cancellation or
 * deadline wins the claim first (-1 with errno; nobody will touch x
 * again once the caller has unlinked its nodes). flags: coro__park's
 * (CORO__PARK_EXTERNAL when something outside the run may be the one to
 * complete it: the scheduler then never counts the wait as deadlocked). */
int coro__xwait_park(coro__xwait_t *x, unsigned flags, const char *what, const void *obj);
/* Busy-wait until ready(arg), for a moment, if the calling thread has
 * nothing else to do (a plain thread, or a scheduler with no coroutine
 * ready and no post): 1 once ready, 0 when it gives up (or at once if the
 * thread has other work). A waiter's last try before it links itself. */
int coro__xwait_spin(int (*ready)(const void *arg), const void *arg);
/* Take back a wait that was linked but not parked on (a last look found
 * what it was waiting for): 1 if the owner won the claim (nobody will
 * touch x again once its nodes are unlinked), 0 if a peer won it first
 * (its delivery has then arrived: x.fired and x.result say what it did). */
int coro__xwait_withdraw(coro__xwait_t *x);
/* Done with x (a plain thread's mutex and condition variable). */
void coro__xwait_fini(coro__xwait_t *x);
/* The run of several schedulers the calling thread's scheduler belongs
 * to, as an opaque identity; NULL for a plain thread or a lone
 * scheduler. */
const void *coro__xwait_run(void);

/* coro_join(c, status) as a wait with coro__park's flags (an
 * uninterruptible join: a generator's free waits for its producer). */
int coro__join(coro_t *c, int *status, unsigned flags);

/* THE THREAD BOUNDARY. A scheduler's state (its coroutines, their wait
 * lists) is touched by its own thread only, without locks. An object that
 * coroutines wait on (a mutex, a channel, a stream, ...) keeps a `home`
 * pointer: NULL while no scheduler has used it, then the scheduler of the
 * first coroutine that did. Every call on the object first checks
 *     if (coro__home(&obj->home) < 0) return -1;     // errno EPERM
 * which is one compare of the caller's scheduler with the home, inline.
 * It passes (0) for the home scheduler's thread, and for a plain thread
 * (no scheduler) on an object no scheduler has used yet; it binds an
 * unbound object to the caller's scheduler; it fails with EPERM when the
 * home scheduler is still running on another thread (for a plain thread
 * too). When the home scheduler has ended, nothing of it waits on the
 * object any more: the caller's scheduler takes the object over (or a
 * plain thread unbinds it), and the check returns 1 so that a primitive
 * can drop what the dead scheduler left (a group's handed-out child).
 * The check is exact when the other thread's use happens-before this call
 * (joined, or ordered by a lock or an atomic); truly simultaneous
 * unsynchronised use from two threads remains a data race that it may
 * miss.
 *     int coro__home(void **home);
 *     int coro__home_in(void **home, coro__sched_t *s);  // s: coro__tls
 * (inline, in sched/sched_int.h) */

/* The running coroutine (NULL outside one); the one running on s, the
 * calling thread's scheduler (coro__tls, NULL outside coro_main); a
 * coroutine's id (coro_id).
 *     coro_t *coro__current(void);
 *     coro_t *coro__current_in(const coro__sched_t *s);
 *     uint64_t coro__id_of(const coro_t *c);
 * For a fast path, one test less: coro__here is coro__tls, or outside
 * coro_main a scheduler that runs nothing and that no object names as its
 * home (never NULL), and the coroutine running on it (NULL outside one):
 *     coro__sched_t *s = coro__here;
 *     if (obj->home != s || !(self = coro__current_here(s)))
 *         return general_path(obj);   // which checks with coro__tls
 *     coro_t *coro__current_here(const coro__sched_t *here);
 * (inline, in sched/sched_int.h) */

/* Those sit on every hand-off of sync/ and io/, so they are inline;
 * their bodies read the scheduler's state, which is why this header pulls
 * in sched/sched_int.h. Only sched/ changes that state: sync/ and io/ use
 * the functions of this header and nothing else of it. */
#include "sched/sched_int.h"

#endif /* CORO_SCHED_WAIT_H */
