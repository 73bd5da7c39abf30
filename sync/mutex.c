/* sync/mutex.c: the mutex and the condition variable. Unlock hands the
 * mutex straight to the first waiter (libtask's qunlock): first come,
 * first served, no thundering herd, and the waiter it picked owns it even
 * if it is cancelled before it runs. */
#include "sync/sync.h"
#include "sync/waitq.h"
#include "sched/sched.h"

#include <errno.h>

void coro_mutex_init(coro_mutex_t *m)
{
    m->owner = 0;
    coro_list_init(&m->waiters);
    m->home = NULL;
}

int coro_mutex_lock(coro_mutex_t *m);
int coro_mutex_unlock(coro_mutex_t *m);

/* A mutex's home and its wait list go together: CORO_MUTEX_INIT leaves the
 * list zeroed, and it is made a proper list when the mutex is bound to a
 * scheduler, here. The fast paths run only on a mutex bound to the
 * caller's scheduler (home == s), so they never test the list for that.
 * Every path that may bind m comes through mutex_bind; s is the caller's
 * scheduler (not NULL: each path has found the calling coroutine). */
static int mutex_bind(coro_mutex_t *m, coro__sched_t *s)
{
    if (coro__home_slow(&m->home, s) < 0)
        return -1;
    coro_list_lazy_init(&m->waiters);
    return 0;
}

/* The calling coroutine, with m bound to its scheduler; NULL with errno
 * (EINVAL, EPERM) otherwise. */
static coro_t *mutex_enter(coro_mutex_t *m)
{
    coro__sched_t *s = coro__tls;
    coro_t *self = sync_self(m, s);
    if (self && SYNC_FOREIGN(m, s) && mutex_bind(m, s) < 0)
        return NULL;
    return self;
}

__attribute__((noinline, cold)) static int lock_foreign(coro_mutex_t *m, coro__sched_t *s)
{
    return mutex_bind(m, s) < 0 ? -1 : coro_mutex_lock(m);
}

__attribute__((noinline, cold)) static int unlock_foreign(coro_mutex_t *m, coro__sched_t *s)
{
    return mutex_bind(m, s) < 0 ? -1 : coro_mutex_unlock(m);
}

/* coro_mutex_lock and coro_mutex_unlock in full, every case in the order
 * of their checks; the fast paths below take the common ones. */
__attribute__((noinline)) static int lock_general(coro_mutex_t *m)
{
    coro__sched_t *s = coro__tls;
    coro_t *self = sync_self(m, s);
    if (!self)
        return -1;
    if (SYNC_FOREIGN(m, s))
        return lock_foreign(m, s);
    uint64_t me = coro__id_of(self);
    if (m->owner == me) {
        errno = EDEADLK;
        return -1;
    }
    if (!m->owner) {
        if (coro__checkpoint() != 0)
            return -1;
        m->owner = me;
        return 0;
    }
    coro__waiter_t w;
    /* The park checks the checkpoint first. On success the unlocker has
     * already made us the owner. */
    return waitq_park(&m->waiters, &w, 0, NULL, "mutex", m);
}

int coro_mutex_trylock(coro_mutex_t *m)
{
    coro_t *self = mutex_enter(m);
    if (!self)
        return -1;
    if (m->owner) {
        errno = EBUSY;
        return -1;
    }
    m->owner = coro__id_of(self);
    return 0;
}

__attribute__((noinline)) static int unlock_general(coro_mutex_t *m)
{
    coro__sched_t *s = coro__tls;
    coro_t *self = sync_self(m, s);
    if (!self)
        return -1;
    if (SYNC_FOREIGN(m, s))
        return unlock_foreign(m, s);
    if (m->owner != coro__id_of(self)) {
        errno = EPERM;
        return -1;
    }
    return coro_mutex_unlock(m); /* every check passed */
}

/* The fast paths: a mutex of the caller's scheduler, held by nobody or by
 * another coroutine (lock), or by the caller (unlock), nothing pending for
 * a free lock. They call nothing but by tail calls (the park's rare cases,
 * the general path, a timed waiter's wake), so they keep no frame. Their
 * scheduler is coro__here (never NULL); anything else goes to the general
 * path, which checks with coro__tls. */
int coro_mutex_lock(coro_mutex_t *m)
{
    coro__sched_t *s = coro__here;
    coro_t *self;
    if (__builtin_expect(!m || SYNC_FOREIGN(m, s) || !(self = coro__current_here(s)), 0))
        return lock_general(m);
    uint64_t me = coro__id_of(self);
    uint64_t owner = m->owner;
    if (__builtin_expect(coro__checkpoint_pending(self), 0))
        return lock_general(m);
    if (!owner) {
        m->owner = me;
        return 0;
    }
    if (__builtin_expect(owner == me, 0))
        return lock_general(m); /* EDEADLK */
    coro__waiter_t w;
    /* On success the unlocker has already made us the owner. m is bound:
     * its list is made. */
    return waitq_park_checked(s, self, &m->waiters, &w, NULL, "mutex", m);
}

int coro_mutex_unlock(coro_mutex_t *m)
{
    coro__sched_t *s = coro__here;
    coro_t *self;
    if (__builtin_expect(!m || SYNC_FOREIGN(m, s) || !(self = coro__current_here(s)) ||
                             m->owner != coro__id_of(self),
                         0))
        return unlock_general(m);
    coro__waiter_t *w = waitq_first_made(&m->waiters);
    if (w) {
        m->owner = coro__id_of(w->coro);
        return coro__wake_last_in(s, w, 0);
    }
    m->owner = 0;
    return 0;
}

/* Lock m for coro_cond_wait's return: neither cancellation nor the
 * deadline may stop it (the caller must hold m again, also on error): an
 * uninterruptible wait. Only a deadlock unwind makes the park fail; then
 * let the others run until the owner, unwinding too, lets go. */
static void relock(coro_mutex_t *m, coro_t *self)
{
    while (m->owner != coro__id_of(self)) {
        if (!m->owner) {
            m->owner = coro__id_of(self);
            break;
        }
        coro__waiter_t w;
        if (waitq_park(&m->waiters, &w, CORO__PARK_UNINTERRUPTIBLE, NULL, "mutex (cond relock)",
                       m) != 0)
            coro_yield();
    }
}

void coro_cond_init(coro_cond_t *c)
{
    coro_list_init(&c->waiters);
    c->home = NULL;
}

int coro_cond_wait(coro_cond_t *c, coro_mutex_t *m)
{
    if (!c || !m) {
        errno = EINVAL;
        return -1;
    }
    coro_t *self = sync_enter(SYNC_HOME(c));
    if (!self || !mutex_enter(m))
        return -1;
    if (m->owner != coro__id_of(self)) {
        errno = EPERM;
        return -1;
    }
    if (coro__checkpoint() != 0)
        return -1; /* m is still held */
    coro__waiter_t w;
    coro_list_lazy_init(&c->waiters);
    w.data = NULL;
    coro_list_push_back(&c->waiters, &w.node);
    coro_mutex_unlock(m);
    int rc = coro__park(&w, 0, CORO_NEVER, "cond", c, -1);
    int err = errno;
    relock(m, self);
    if (rc != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

int coro_cond_signal(coro_cond_t *c)
{
    if (sync_home(SYNC_HOME(c)) != 0)
        return -1;
    coro__waiter_t *w = waitq_first(&c->waiters);
    if (w)
        coro__wake(w, 0);
    return 0;
}

int coro_cond_broadcast(coro_cond_t *c)
{
    if (sync_home(SYNC_HOME(c)) != 0)
        return -1;
    waitq_wake_all(&c->waiters, 0);
    return 0;
}
