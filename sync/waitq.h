/* sync/waitq.h: the wait queue every primitive in sync/ is built on: a
 * FIFO of coro__waiter_t on the waiters' own stacks, over the one
 * park/wake mechanism of sched/wait.h. Private to sync/. */
#ifndef CORO_SYNC_WAITQ_H
#define CORO_SYNC_WAITQ_H

#include "coro/list.h"
#include "sched/wait.h"

#include <errno.h>

/* An object's home pointer, or NULL for a NULL object (which the helpers
 * below answer with EINVAL). */
#define SYNC_HOME(obj) ((obj) ? &(obj)->home : (void **)NULL)

/* The calling coroutine, for an operation on obj that needs one: NULL with
 * EINVAL when obj is NULL, NULL with EPERM outside a coroutine or when obj
 * belongs to another running scheduler (`home` is obj's home pointer, see
 * sched/wait.h; an unbound obj is bound to the caller's scheduler). */
/* The first half of the hot calls' check: the calling coroutine of
 * scheduler s, or NULL with EINVAL (obj NULL) or EPERM (outside a
 * coroutine). The other half is SYNC_FOREIGN, below. */
static inline coro_t *sync_self(const void *obj, coro__sched_t *s)
{
    if (!obj) {
        errno = EINVAL;
        return NULL;
    }
    coro_t *self = coro__current_in(s);
    if (__builtin_expect(!self, 0))
        errno = EPERM;
    return self;
}

static inline coro_t *sync_enter(void **home)
{
    coro__sched_t *s = coro__tls;
    coro_t *self = sync_self(home, s);
    if (__builtin_expect(self && coro__home_in(home, s) < 0, 0))
        return NULL;
    return self;
}

/* The hot calls' form of the check, one compare inline:
 *     if (SYNC_FOREIGN(m, s))
 *         return lock_foreign(m, s);
 * where lock_foreign, made by SYNC_COLD_RETRY, settles it out of line
 * (EPERM, or binds m) and then runs the call again, now on the fast path.
 * A tail call into a cold function: the hot path keeps its small frame. */
#define SYNC_FOREIGN(obj, s) __builtin_expect((obj)->home != (void *)(s), 0)
#define SYNC_COLD_RETRY(name, type, call)                                  \
    __attribute__((noinline, cold)) static int name(type *obj, coro__sched_t *s) \
    {                                                                      \
        return coro__home_slow(&obj->home, s) < 0 ? -1 : call(obj);         \
    }

/* For the calls that need no coroutine (releases, signals, sets): 0, or
 * -1 with EINVAL (obj NULL) or EPERM (obj belongs to another running
 * scheduler, for a plain thread too). */
static inline int sync_home(void **home)
{
    if (!home) {
        errno = EINVAL;
        return -1;
    }
    return coro__home(home) < 0 ? -1 : 0;
}

/* For the calls that only read obj (coro_sem_value, ...): 0, or -1/EPERM
 * when obj belongs to another running scheduler. Binds nothing. */
static inline int sync_may_read(void *const *home)
{
    void *h = __atomic_load_n(home, __ATOMIC_RELAXED);
    if (__builtin_expect(h == (void *)coro__tls || !h, 1) || !coro__sched_alive(h))
        return 0;
    errno = EPERM;
    return -1;
}

/* Queue the calling coroutine's waiter w at the back of q and park (with
 * coro__park's flags) until a waker hands it what it waits for (0), or its
 * deadline or a cancellation ends the wait (-1 with errno; w is then
 * already out of q). `data` rides with the waiter for the waker to read. */
static inline __attribute__((always_inline)) int
waitq_park(coro_list_t *q, coro__waiter_t *w, unsigned flags, void *data, const char *what,
           const void *obj)
{
    coro_list_lazy_init(q); /* q may still be a static initialiser's zeroes */
    w->data = data;
    coro_list_push_back(q, &w->node);
    return coro__park(w, flags, CORO_NEVER, what, obj, -1);
}

/* waitq_park for a fast path that has checked the caller itself (self
 * runs on s, nothing is pending for it: see coro__park_checked), on a q
 * known to be a proper (circular) list. */
static inline __attribute__((always_inline)) int
waitq_park_checked(coro__sched_t *s, coro_t *self, coro_list_t *q, coro__waiter_t *w,
                   void *data, const char *what, const void *obj)
{
    w->data = data;
    coro_list_push_back(q, &w->node);
    return coro__park_checked(s, self, w, 0, what, obj, -1);
}

/* The first waiter that can still be woken, or NULL. Waiters already woken
 * for another reason (a select whose other case fired) are dropped. Every
 * waiter of a wait queue names its coroutine (coro__can_wake_linked):
 * waitq_park and coro_cond_wait link it for the park that sets it, before
 * any other coroutine runs. */
static inline coro__waiter_t *waitq_first_made(coro_list_t *q)
{
    coro_list_t *n;
    while ((n = q->next) != q) {
        coro__waiter_t *w = coro_container_of(n, coro__waiter_t, node);
        if (coro__can_wake_linked(w))
            return w;
        coro_list_remove(n);
    }
    return NULL;
}

/* waitq_first for a q that may still be a static initialiser's zeroes;
 * waitq_first_made for a proper list. */
static inline coro__waiter_t *waitq_first(coro_list_t *q)
{
    return q->next ? waitq_first_made(q) : NULL;
}

static inline int waitq_empty(coro_list_t *q)
{
    return waitq_first(q) == NULL;
}

/* Wake every waiter with `result`; returns how many. */
static inline int waitq_wake_all(coro_list_t *q, int result)
{
    return (int)coro__wake_all(q, result);
}

#endif /* CORO_SYNC_WAITQ_H */
