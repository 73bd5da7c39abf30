/* sync/waitq.h: the wait queue every primitive in sync/ is built on: a
 * FIFO of coro__waiter_t on the waiters' own stacks, over the one
 * park/wake mechanism of sched/wait.h. Private to sync/. */
#ifndef CORO_SYNC_WAITQ_H
#define CORO_SYNC_WAITQ_H

#include "coro/list.h"
#include "sched/wait.h"

#include <errno.h>

/* The calling coroutine, for an operation on obj that needs one: NULL with
 * EINVAL when obj is NULL, NULL with EPERM outside a coroutine. */
static inline coro_t *sync_caller(const void *obj)
{
    if (!obj) {
        errno = EINVAL;
        return NULL;
    }
    coro_t *self = coro__current();
    if (!self)
        errno = EPERM;
    return self;
}

/* Queue the calling coroutine's waiter w at the back of q and park until a
 * waker hands it what it waits for (0), or its deadline or a cancellation
 * ends the wait (-1 with errno; w is then already out of q). `data` rides
 * with the waiter for the waker to read. */
static inline int waitq_park(coro_list_t *q, coro__waiter_t *w, void *data,
                             const char *what, const void *obj)
{
    coro_list_lazy_init(q);
    coro_list_init(&w->node);
    w->data = data;
    coro_list_push_back(q, &w->node);
    return coro__park_inline(w, what, obj);
}

/* The first waiter that can still be woken, or NULL. Waiters already woken
 * for another reason (a select whose other case fired) are dropped. */
static inline coro__waiter_t *waitq_first(coro_list_t *q)
{
    coro_list_t *n;
    while (!coro_list_lazy_empty(q)) {
        n = q->next;
        coro__waiter_t *w = coro_container_of(n, coro__waiter_t, node);
        if (coro__can_wake(w))
            return w;
        coro_list_remove(n);
    }
    return NULL;
}

static inline int waitq_empty(coro_list_t *q)
{
    return waitq_first(q) == NULL;
}

/* Wake every waiter with `result`; returns how many. */
static inline int waitq_wake_all(coro_list_t *q, int result)
{
    int n = 0;
    coro__waiter_t *w;
    while ((w = waitq_first(q)) != NULL) {
        coro__wake_live(w, result);
        n++;
    }
    return n;
}

#endif /* CORO_SYNC_WAITQ_H */
