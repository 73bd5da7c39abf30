/* sync/event.c: the event (asyncio.Event) and the wait group (Go's
 * WaitGroup): a flag, or a counter reaching zero, that releases every
 * waiter at once. */
#include "sync/sync.h"
#include "sync/waitq.h"

#include <errno.h>
#include <limits.h>

void coro_event_init(coro_event_t *e)
{
    e->set = 0;
    coro_list_init(&e->waiters);
    e->home = NULL;
}

int coro_event_set(coro_event_t *e)
{
    if (sync_home(SYNC_HOME(e)) != 0)
        return -1;
    e->set = 1;
    waitq_wake_all(&e->waiters, 0);
    return 0;
}

int coro_event_clear(coro_event_t *e)
{
    if (sync_home(SYNC_HOME(e)) != 0)
        return -1;
    e->set = 0;
    return 0;
}

int coro_event_wait(coro_event_t *e)
{
    if (!sync_enter(SYNC_HOME(e)))
        return -1;
    if (e->set)
        return coro__checkpoint();
    coro__waiter_t w;
    return waitq_park(&e->waiters, &w, 0, NULL, "event", e); /* checkpoints first */
}

int coro_event_is_set(const coro_event_t *e)
{
    if (!e)
        return 0;
    return sync_may_read(&e->home) == 0 ? e->set != 0 : -1;
}

void coro_wg_init(coro_wg_t *wg)
{
    wg->count = 0;
    coro_list_init(&wg->waiters);
    wg->home = NULL;
}

int coro_wg_add(coro_wg_t *wg, int n)
{
    if (sync_home(SYNC_HOME(wg)) != 0)
        return -1;
    if ((n < 0 && wg->count < -(long)n) || (n > 0 && wg->count > LONG_MAX - n)) {
        errno = EINVAL;
        return -1;
    }
    wg->count += n;
    if (wg->count == 0)
        waitq_wake_all(&wg->waiters, 0);
    return 0;
}

int coro_wg_done(coro_wg_t *wg)
{
    return coro_wg_add(wg, -1);
}

int coro_wg_wait(coro_wg_t *wg)
{
    if (!sync_enter(SYNC_HOME(wg)))
        return -1;
    if (wg->count == 0)
        return coro__checkpoint();
    coro__waiter_t w;
    return waitq_park(&wg->waiters, &w, 0, NULL, "waitgroup", wg); /* checkpoints first */
}
