/* sync/once.c: run an initialiser exactly once, however many coroutines
 * ask at the same time; the others wait until it has returned. A failed
 * initialiser (non-zero status) leaves the once undone, so the next caller
 * tries again, as pthread_once cannot. */
#include "sync/sync.h"
#include "sync/waitq.h"

#include <errno.h>

enum { ONCE_NOT_RUN = 0, ONCE_RUNNING = 1, ONCE_DONE = 2 };

int coro_once(coro_once_t *o, coro_fn fn, void *arg)
{
    if (!o || !fn) {
        errno = EINVAL;
        return -1;
    }
    if (!sync_enter(SYNC_HOME(o)) || coro__checkpoint() != 0)
        return -1;
    for (;;) {
        if (o->state == ONCE_DONE)
            return 0;
        if (o->state == ONCE_NOT_RUN) {
            o->state = ONCE_RUNNING;
            int status = fn(arg);
            o->state = status == 0 ? ONCE_DONE : ONCE_NOT_RUN;
            /* Done: the waiters return 0. Failed: they look again, and the
             * first of them runs fn. */
            coro_list_lazy_init(&o->waiters);
            waitq_wake_all(&o->waiters, 0);
            return status;
        }
        coro__waiter_t w;
        if (waitq_park(&o->waiters, &w, 0, NULL, "once", o) != 0)
            return -1;
    }
}
