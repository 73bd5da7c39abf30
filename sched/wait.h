/* sched/wait.h: the one way to wait. Every blocking call in sync/ and io/
 * goes through these few functions; cancellation and deadlines are decided
 * here once, never in each primitive.
 *
 * A primitive that must block:
 *     coro__waiter_t w;
 *     coro_list_push_back(&obj->waiters, &w.node);   // or leave unlinked
 *     if (coro__park(&w, CORO_NEVER, "mutex", obj, -1) != 0)
 *         return -1;                                 // errno says why
 * and whoever completes the wait:
 *     coro__wake(w, 0);                              // unlinks w, readies its coroutine
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

typedef struct coro__waiter {
    /* In the wait list of the object waited on (or unlinked). */
    coro_list_t node;
    /* The parked coroutine; set by coro__park. */
    coro_t *coro;
    /* The waiter its coroutine parked on: itself (set by coro__park), or,
     * for a coroutine waiting on several lists at once (select), the one
     * waiter it passed to coro__park. Set coro and primary yourself on such
     * extra waiters before linking them. */
    struct coro__waiter *primary;
    /* On the primary: which waiter's wake ended the wait (the primary
     * itself for a timeout or cancellation). */
    struct coro__waiter *fired;
    /* Why it woke (on the primary): 0, or an errno value (ETIMEDOUT,
     * ECANCELED, or the waker's own, e.g. EPIPE). */
    int result;
    /* Free for the primitive: a value handed over with the wake. */
    void *data;
} coro__waiter_t;

/* Fail with ECANCELED (cancelled and not shielded) or ETIMEDOUT (the
 * deadline has passed), or EPERM outside a coroutine: what every blocking
 * call checks before it completes, even without blocking. Returns 0 or -1.
 *     int coro__checkpoint(void);
 * (inline, in sched/sched_int.h: nothing pending costs two loads) */

/* Park the running coroutine until coro__wake(w), its deadline, a
 * cancellation, or (if wake_at != CORO_NEVER) the time wake_at. Checks the
 * checkpoint first. `what`, `obj` and `num` (>= 0 to show a number such as
 * an fd or coroutine id, else -1) describe the wait for coro_dump. w may be
 * NULL for a wait that only a timer or cancellation ends.
 * Returns 0 when woken with 0 or when wake_at came; otherwise -1 with errno
 * set to the wake result. On any return w is unlinked. */
int coro__park(coro__waiter_t *w, int64_t wake_at, const char *what,
               const void *obj, int64_t num);

/* Wake the coroutine parked on w with `result`: unlink w, record the
 * result, make the coroutine ready. Returns 1, or 0 if w's coroutine is no
 * longer parked on w (already woken for another reason); w is unlinked
 * either way. Never blocks; call it from a coroutine of the same thread.
 *     int coro__wake(coro__waiter_t *w, int result);
 * (inline, in sched/sched_int.h) */

/* coro__wake(w, result) for a w that coro__can_wake(w) has just approved
 * (nothing has run in between that could have woken its coroutine): the
 * waker of sync/ finds its waiter with that test already, and this skips
 * repeating it.
 *     void coro__wake_live(coro__waiter_t *w, int result);
 * (inline, in sched/sched_int.h) */

/* coro__park(w, CORO_NEVER, what, obj, -1) for a w that is not NULL,
 * inline: the blocking paths of sync/ (one copy per primitive, each a
 * hand-off's worth of calls and register saves shorter).
 *     int coro__park_inline(coro__waiter_t *w, const char *what,
 *                           const void *obj);
 * (in sched/sched_int.h) */

/* Would coro__wake(w, ...) wake anyone? (Is w's coroutine still parked on
 * w's primary?) A waker checks this before it hands anything over, so a
 * value is never copied to a coroutine that has already been woken.
 *     int coro__can_wake(const coro__waiter_t *w);
 * (inline, in sched/sched_int.h) */

/* coro__wake, but the woken coroutine runs next, before everyone already
 * ready (a one-off hand-off, such as a producer's last word; a loop of
 * hand-offs should use coro__handoff, which stays fair). */
int coro__wake_next(coro__waiter_t *w, int result);

/* Wake `wake` (if not NULL and still waiting) with `result`, then park
 * the caller on w as coro__park(w, CORO_NEVER, ...) does: the two halves
 * of a hand-off between two coroutines (generators: next <-> yield). When
 * no other coroutine is ready and the current pass over the run queue has
 * room, it switches straight to the woken coroutine without touching the
 * run queue; otherwise the woken one queues behind those already ready, so
 * an endless hand-off loop cannot starve them, timers or I/O. The wake
 * happens even if the caller's own checkpoint then fails (-1 with errno,
 * not parked).
 *     int coro__handoff(coro__waiter_t *wake, int result, coro__waiter_t *w,
 *                       const char *what, const void *obj, int64_t num);
 * (inline, in sched/sched_int.h: its one caller, sync/gen.c, keeps it in
 * one copy) */

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

/* The running coroutine (NULL outside one).
 *     coro_t *coro__current(void);
 * (inline, in sched/sched_int.h) */

/* Those sit on every hand-off of sync/ and io/, so they are inline;
 * their bodies read the scheduler's state, which is why this header pulls
 * in sched/sched_int.h. Only sched/ changes that state: sync/ and io/ use
 * the functions of this header and nothing else of it. */
#include "sched/sched_int.h"

#endif /* CORO_SCHED_WAIT_H */
