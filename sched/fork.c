/* sched/fork.c: what fork(2) leaves of the schedulers.
 *
 * Only the thread that calls fork() goes on in the child (fork(2)), so in
 * the child every scheduler of the parent is dead: those of the other
 * threads, whose threads do not exist there, and the forking thread's own,
 * even when fork() was called from one of its coroutines. A dead
 * scheduler must never touch what the child shares with the parent: its
 * epoll instance (a duplicate descriptor of the parent's instance, so a
 * coro_close there would delete the parent's registration, and the
 * child's waits would take the parent's edge-triggered events), its
 * eventfd and signalfd (see sched/poller.h).
 *
 * A pthread_atfork child handler does it, once, when the child starts: it
 * closes the inherited descriptors of every live scheduler's poller (they
 * are all on the `live` list), and clears the forking thread's scheduler
 * pointer, so that every coro call that needs a scheduler fails with
 * EPERM, as outside coro_main, and coro_main may start a fresh one (also
 * from the dead coroutine's stack the child is running on). It also gives
 * the thread the signal mask it had before its coro_main, as that
 * coro_main's end would have (a child that execs gets the caller's mask,
 * not the signals coro blocked; the child starts with no pending signal).
 * The alternative, a pid check in every call, would put a getpid() (a
 * system call since glibc 2.25) or at least a compare on every hot path,
 * and could not reach the pollers of the other threads. io/ forgets its
 * own per-thread state (the blocking pool, which has no threads in the
 * child) the same way.
 *
 * The dead schedulers' memory is abandoned, neither used nor freed: a
 * coroutine stack (the one the child runs on) cannot be freed from under
 * itself, and the other threads' schedulers may have been caught in the
 * middle of a change. It stays reachable (from the coroutine stacks, and
 * from `abandoned` below), so leak checkers call it "still reachable".
 * A child that does not exec should leave with _exit(2), as POSIX advises
 * for fork children: exit(3) would run the parent's atexit handlers and
 * flush stdio buffers the parent has too (and a leak checker running at
 * exit may count the abandoned coroutines' names as lost, since it does
 * not scan coroutine stacks).
 *
 * Children made without the atfork handlers (_Fork(), a raw clone or
 * syscall(SYS_fork)) are not covered; vfork() and posix_spawn() children
 * only exec or _exit. */
#include "sched/sched_int.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>

/* The live schedulers of the process, and the lock that the prepare
 * handler holds across fork() so the list (and a poller making a
 * descriptor) is never caught half-changed. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static coro_list_t live = { &live, &live };
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_err;
/* The forking thread's scheduler in the last fork of this process's
 * ancestry, kept reachable for leak checkers (see above). */
static coro__sched_t *volatile abandoned;

static void before_fork(void)
{
    pthread_mutex_lock(&live_lock);
    coro__poller_before_fork();
}

static void after_fork_in_parent(void)
{
    coro__poller_after_fork(0);
    pthread_mutex_unlock(&live_lock);
}

static void after_fork_in_child(void)
{
    for (coro_list_t *n = live.next; n != &live; n = n->next) {
        coro__sched_t *s = coro_container_of(n, coro__sched_t, live_node);
        coro__poller_drop_inherited(s->poller);
    }
    coro_list_init(&live); /* the dead stay linked to each other, unused */
    coro__poller_after_fork(1);
    coro__sched_t *mine = coro__tls;
    if (mine) {
        abandoned = mine;
        coro__here_leave();
        pthread_sigmask(SIG_SETMASK, &mine->caller_mask, NULL);
    }
    pthread_mutex_unlock(&live_lock);
}

static void install(void)
{
    atfork_err = pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

void coro__live_lock(void)
{
    pthread_mutex_lock(&live_lock);
}

void coro__live_unlock(void)
{
    pthread_mutex_unlock(&live_lock);
}

static uint64_t serials;

int coro__live_start(coro__sched_t *s)
{
    pthread_once(&atfork_once, install);
    if (atfork_err) {
        errno = atfork_err;
        return -1;
    }
    s->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&live_lock);
    s->poller = coro__poller_new();
    if (s->poller)
        coro_list_push_back(&live, &s->live_node);
    pthread_mutex_unlock(&live_lock);
    return s->poller ? 0 : -1;
}

void coro__live_end(coro__sched_t *s)
{
    pthread_mutex_lock(&live_lock);
    if (s->poller)
        coro_list_remove(&s->live_node);
    coro__poller_free(s->poller);
    s->poller = NULL;
    pthread_mutex_unlock(&live_lock);
}

/* The thread boundary's questions (sched/home.c): is this scheduler, or
 * the one with this serial, still running? Only a call that meets another
 * scheduler's object asks, so a walk of the short list is fine. */
static int live_find(const void *p, uint64_t serial)
{
    int alive = 0;
    pthread_mutex_lock(&live_lock);
    for (coro_list_t *n = live.next; n != &live; n = n->next) {
        coro__sched_t *s = coro_container_of(n, coro__sched_t, live_node);
        if (p ? (const void *)s == p : s->serial == serial) {
            alive = 1;
            break;
        }
    }
    pthread_mutex_unlock(&live_lock);
    return alive;
}

int coro__sched_alive(const void *p)
{
    return p && live_find(p, 0);
}

int coro__sched_serial_alive(uint64_t serial)
{
    return serial && live_find(NULL, serial);
}
