/* sync/sem.c: the counting semaphore. A release with waiters hands its
 * permit straight to the first one instead of raising the count, so a
 * newcomer can never overtake a waiter (FIFO), and the permit stays with
 * the waiter it was given to even if that waiter is cancelled before it
 * runs. */
#include "sync/sync.h"
#include "sync/waitq.h"

#include <errno.h>
#include <limits.h>

int coro_sem_init(coro_sem_t *s, long n)
{
    if (!s || n < 0) {
        errno = EINVAL;
        return -1;
    }
    s->count = n;
    coro_list_init(&s->waiters);
    s->home = NULL;
    return 0;
}

int coro_sem_acquire(coro_sem_t *s);
int coro_sem_release(coro_sem_t *s);
SYNC_COLD_RETRY(acquire_foreign, coro_sem_t, coro_sem_acquire)
SYNC_COLD_RETRY(release_foreign, coro_sem_t, coro_sem_release)

int coro_sem_acquire(coro_sem_t *s)
{
    if (!s) {
        errno = EINVAL;
        return -1;
    }
    coro__sched_t *sc = coro__tls;
    if (SYNC_FOREIGN(s, sc))
        return acquire_foreign(s, sc);
    if (s->count > 0) {
        if (coro__checkpoint() != 0)
            return -1;
        s->count--;
        return 0;
    }
    coro__waiter_t w;
    return waitq_park(&s->waiters, &w, 0, NULL, "sem", s); /* checkpoints first */
}

int coro_sem_try_acquire(coro_sem_t *s)
{
    if (sync_home(SYNC_HOME(s)) != 0)
        return -1;
    if (s->count > 0) {
        s->count--;
        return 0;
    }
    errno = EAGAIN;
    return -1;
}

int coro_sem_release(coro_sem_t *s)
{
    if (!s) {
        errno = EINVAL;
        return -1;
    }
    coro__sched_t *sc = coro__tls;
    if (SYNC_FOREIGN(s, sc))
        return release_foreign(s, sc);
    coro__waiter_t *w = waitq_first(&s->waiters);
    if (w) {
        coro__wake(w, 0);
        return 0;
    }
    if (s->count == LONG_MAX) {
        errno = EOVERFLOW;
        return -1;
    }
    s->count++;
    return 0;
}

long coro_sem_value(const coro_sem_t *s)
{
    if (!s)
        return 0;
    return sync_may_read(&s->home) == 0 ? s->count : -1;
}
