/* sync/rwlock.c: the read-write lock, writer-preferring without
 * starvation. Anyone who cannot take the lock at once queues in one FIFO,
 * readers and writers alike, and a newcomer reader queues too as soon as
 * anyone waits, so a stream of readers cannot starve a writer. A release
 * grants the head of the queue: one writer, or every reader up to the next
 * queued writer. Like the mutex, a grant hands the lock over there and
 * then, so a granted waiter that is cancelled before it runs still holds
 * it. */
#include "sync/sync.h"
#include "sync/waitq.h"

#include <errno.h>

/* Waiter data: which kind of lock it waits for. */
static char want_read, want_write;

void coro_rwlock_init(coro_rwlock_t *l)
{
    l->readers = 0;
    l->writer = 0;
    coro_list_init(&l->waiters);
    l->home = NULL;
}

/* Grant the queue's head what it waits for, while it can be granted. */
static void grant(coro_rwlock_t *l)
{
    coro__waiter_t *w;
    while (!l->writer && (w = waitq_first(&l->waiters)) != NULL) {
        if (w->data == &want_write) {
            if (l->readers == 0) {
                l->writer = coro__id_of(w->coro);
                coro__wake(w, 0);
            }
            return;
        }
        l->readers++;
        coro__wake(w, 0);
    }
}

static int lock(coro_rwlock_t *l, int write, int try)
{
    coro_t *self = sync_enter(SYNC_HOME(l));
    if (!self)
        return -1;
    if (l->writer == coro__id_of(self)) {
        errno = try ? EBUSY : EDEADLK;
        return -1;
    }
    if (!try && coro__checkpoint() != 0)
        return -1;
    int free_now = !l->writer && waitq_empty(&l->waiters) && (!write || l->readers == 0);
    if (free_now) {
        if (write)
            l->writer = coro__id_of(self);
        else
            l->readers++;
        return 0;
    }
    if (try) {
        errno = EBUSY;
        return -1;
    }
    coro__waiter_t w;
    if (waitq_park(&l->waiters, &w, 0, write ? &want_write : &want_read,
                   write ? "rwlock write" : "rwlock read", l) != 0) {
        /* Cancelled or timed out (and already out of the queue): those
         * behind may now be grantable, e.g. readers queued behind a writer
         * that gave up while readers hold the lock. */
        int e = errno;
        grant(l);
        errno = e;
        return -1;
    }
    return 0;
}

int coro_rwlock_rdlock(coro_rwlock_t *l) { return lock(l, 0, 0); }
int coro_rwlock_wrlock(coro_rwlock_t *l) { return lock(l, 1, 0); }
int coro_rwlock_tryrdlock(coro_rwlock_t *l) { return lock(l, 0, 1); }
int coro_rwlock_trywrlock(coro_rwlock_t *l) { return lock(l, 1, 1); }

int coro_rwlock_unlock(coro_rwlock_t *l)
{
    coro_t *self = sync_enter(SYNC_HOME(l));
    if (!self)
        return -1;
    if (l->writer) {
        if (l->writer != coro__id_of(self)) {
            errno = EPERM;
            return -1;
        }
        l->writer = 0;
    } else if (l->readers > 0) {
        l->readers--;
    } else {
        errno = EPERM;
        return -1;
    }
    grant(l);
    return 0;
}
