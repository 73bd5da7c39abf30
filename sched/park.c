/* sched/park.c: the one way to wait (see sched/wait.h): checkpoints, park
 * and wake, and what rides on them: sleep, cancellation, shields and
 * deadlines. */
#include "sched/sched_int.h"

#include <errno.h>

static inline int64_t add_sat(int64_t a, int64_t b)
{
    if (b > 0 && a > CORO_NEVER - b)
        return CORO_NEVER;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

/* The slow half of coro__checkpoint_error (sched/sched_int.h): something
 * is pending; decide what. */
int coro__checkpoint_error_slow(const coro_t *c)
{
    if (c->killed || (c->cancelled && !c->shielded))
        return ECANCELED;
    if (c->deadline != CORO_NEVER && coro__clock() >= c->deadline)
        return ETIMEDOUT;
    return 0;
}

/* The part of a park that only a pending cancellation or deadline, a time
 * limit or an uninterruptible wait needs: the checkpoint (an
 * uninterruptible wait fails only when killed) and the timer. Returns 0,
 * or the errno to fail with before parking. */
static int park_slow(coro__sched_t *s, coro_t *self, unsigned flags, int64_t wake_at)
{
    int64_t limit = wake_at;
    if (flags & CORO__PARK_UNINTERRUPTIBLE) {
        if (self->killed)
            return ECANCELED;
        /* coro__park restores both when the wait ends. */
        self->shielded = 1;
        self->deadline = CORO_NEVER;
        coro__attn_update(self);
    } else {
        int e = coro__checkpoint_error(self);
        if (e)
            return e;
        if (self->deadline < limit)
            limit = self->deadline;
    }
    /* timer.c tells a sleep's end (wake_at) from the deadline by it. */
    self->wake_at = wake_at;
    if (limit != CORO_NEVER)
        coro__timer_arm(s, self, limit);
    return 0;
}

int coro__park_fail(coro__waiter_t *w, int e)
{
    if (w)
        coro_list_remove(&w->node);
    errno = e;
    return -1;
}

int coro__park_full(coro__waiter_t *w, unsigned flags, int64_t wake_at, const char *what,
                    const void *obj, int64_t num)
{
    coro__sched_t *s = coro__tls;
    coro_t *self = s ? s->current : NULL;
    if (!self)
        return coro__park_fail(w, EPERM);
    /* An uninterruptible wait runs shielded and without a deadline (only
     * a deadlock's unwind, which overrides shields, ends it early). */
    uint8_t shielded = self->shielded;
    int64_t deadline = self->deadline;
    int e = park_slow(s, self, flags, wake_at);
    if (e)
        return coro__park_fail(w, e);
    e = coro__park_body(s, self, w, flags, what, obj, num);
    if (flags & CORO__PARK_UNINTERRUPTIBLE) {
        self->shielded = shielded;
        self->deadline = deadline;
        coro__attn_update(self);
    }
    return e ? coro__park_fail(NULL, e) : 0;
}

int coro__wake_timed(coro_t *c)
{
    coro__timer_disarm(c->sched, c);
    coro__runq_push(c->sched, c);
    return 0;
}

/* A wait that only a timer or a cancellation ends. */
static int park_until(int64_t when)
{
    coro__waiter_t w;
    coro_list_init(&w.node);
    return coro__park(&w, 0, when, "sleep", NULL, -1);
}

/* ---- sleep -------------------------------------------------------------- */

int coro_sleep_until(int64_t when)
{
    if (coro__checkpoint() != 0)
        return -1;
    if (when <= coro__clock()) {
        coro_yield(); /* a zero sleep still lets the others run */
        return 0;
    }
    return park_until(when);
}

int coro_sleep(int64_t ns)
{
    if (coro__checkpoint() != 0)
        return -1;
    if (ns <= 0) {
        coro_yield();
        return 0;
    }
    return park_until(add_sat(coro__clock(), ns));
}

/* ---- cancellation ------------------------------------------------------- */

int coro_cancel(coro_t *c)
{
    coro__sched_t *s = coro__tls;
    if (!coro__valid(s, c)) {
        int live = c && c->magic == CORO_MAGIC_LIVE;
        /* Another scheduler's coroutine in the caller's run: cancelled
         * there (sched/remote.c). */
        if (live && coro__same_run(s, c->sched))
            return coro__remote_cancel(s, c);
        /* A live coroutine of another running scheduler: EPERM. */
        errno = live && c->sched != s ? EPERM : EINVAL;
        return -1;
    }
    return coro__cancel_local(c);
}

int coro__cancel_local(coro_t *c)
{
    if (c->state == CORO_DONE)
        return 0;
    c->cancelled = 1;
    c->attn = 1;
    /* A parked coroutine waits on its own waiter, always wakeable. */
    if (c->state == CORO_PARKED && !c->shielded) {
        coro__wake(c->wait, ECANCELED);
        /* It will run its error paths soon, on a stack that has likely
         * gone cold (a server's shutdown cancels thousands): start the
         * TLB and cache miss on its saved frame now. */
        coro__fiber_prefetch(&c->fiber);
    }
    return 0;
}

int coro_shield(int on)
{
    coro_t *self = coro__current();
    if (!self) {
        errno = EPERM;
        return -1;
    }
    int old = self->shielded;
    self->shielded = on != 0;
    return old;
}

int coro_cancelled(void)
{
    coro_t *self = coro__current();
    return self ? (self->cancelled || self->killed) : 0;
}

/* ---- deadlines ---------------------------------------------------------- */

int64_t coro_timeout(int64_t ns)
{
    coro_t *self = coro__current();
    if (!self) {
        errno = EPERM;
        return CORO_NEVER;
    }
    int64_t old = self->deadline;
    int64_t when = add_sat(coro__clock(), ns);
    if (when < old) {
        self->deadline = when;
        coro__attn_update(self);
    }
    return old;
}

int64_t coro_set_deadline(int64_t when)
{
    coro_t *self = coro__current();
    if (!self) {
        errno = EPERM;
        return CORO_NEVER;
    }
    int64_t old = self->deadline;
    self->deadline = when;
    coro__attn_update(self);
    return old;
}

int64_t coro_deadline(void)
{
    coro_t *self = coro__current();
    if (!self) {
        errno = EPERM;
        return CORO_NEVER;
    }
    return self->deadline;
}
