/* coro/compat.c: descriptors made close-on-exec and non-blocking, with the
 * atomic flags where the system has them (coro/compat.h) and with a
 * second call where it does not.
 *
 * The fallback's window. socket(), accept() and pipe() make a descriptor
 * without FD_CLOEXEC; fcntl sets it a moment later. A fork(2) by another
 * thread inside that moment copies the descriptor into the child without
 * the flag, so it survives the child's exec: the child then holds a
 * connection or a listening port open (the peer sees no EOF when this
 * process closes it, a restart finds the port busy) until it exits. The
 * atomic flags exist to close exactly this window; macOS has none of them.
 *
 * Here it is closed as Go closes it: every fallback counts itself as
 * running while it makes and flags a descriptor, and fork waits until none
 * is. A pthread_atfork prepare handler (coro__fork_lock) takes the lock and
 * waits; the parent's and the child's handlers release it; so every
 * fork(3), the application's too, from any thread, happens between two
 * fallbacks, never inside one. It is registered by a constructor, before
 * sched/fork.c registers its own handlers at the first coro_main: prepare
 * handlers run in reverse order, so a fork takes sched/fork.c's live lock
 * first and this one second, the order in which sched/post.c, which makes
 * the wake-up pipe under the live lock, takes them (registered the other
 * way round, a fork and a first wake-up deadlocked). Children made without
 * the atfork handlers are not covered: posix_spawn and vfork (glibc's
 * posix_spawn clones without them), _Fork, a raw clone; library code that
 * makes children that way holds coro__fork_lock around it. A fork from a
 * signal handler that interrupted a fallback would wait for itself (fork
 * is not async-signal-safe anyway). */
#include "coro/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

/* The fork lock: a count of fallbacks in progress under a mutex. A
 * fallback counts itself in and out (never waiting but for the mutex); a
 * fork takes the mutex, waits for the count to reach 0, and keeps the
 * mutex across the fork, so no fallback can start until it is released
 * in the parent and in the child. A plain mutex rather than a rwlock: a
 * rwlock's write lock taken by the parent's thread cannot be released in
 * the child, whose thread has another id (glibc takes that unlock for a
 * reader's), while a normal mutex can. Never used where every call has
 * its atomic flag. */
static pthread_mutex_t fork_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fork_idle = PTHREAD_COND_INITIALIZER;
static unsigned fallbacks_running;

void coro__fork_lock(void)
{
    pthread_mutex_lock(&fork_mutex);
    while (fallbacks_running)
        pthread_cond_wait(&fork_idle, &fork_mutex);
}

void coro__fork_unlock(void)
{
    pthread_mutex_unlock(&fork_mutex);
}

int coro__fd_cloexec_nonblock(int fd, int nonblock)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || (!(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0))
        return -1;
    if (!nonblock)
        return 0;
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return -1;
    return 0;
}

#if !CORO_HAVE_SOCK_FLAGS || !CORO_HAVE_PIPE2
/* The child's only thread releases the mutex its parent's thread took
 * (a normal mutex has no owner check); the condition variable may have
 * been in use by threads the child does not have: a fresh one. */
static void atfork_child(void)
{
    pthread_cond_init(&fork_idle, NULL);
    pthread_mutex_unlock(&fork_mutex);
}

__attribute__((constructor)) static void atfork_install(void)
{
    /* Without it (ENOMEM) only the library's own forks wait. */
    (void)pthread_atfork(coro__fork_lock, coro__fork_unlock, atfork_child);
}

/* Around making and flagging a descriptor: a fork waits for the end. */
static void fallback_begin(void)
{
    pthread_mutex_lock(&fork_mutex);
    fallbacks_running++;
    pthread_mutex_unlock(&fork_mutex);
}

static void fallback_end(void)
{
    int e = errno;
    pthread_mutex_lock(&fork_mutex);
    if (--fallbacks_running == 0)
        pthread_cond_broadcast(&fork_idle);
    pthread_mutex_unlock(&fork_mutex);
    errno = e;
}
#endif

#if !CORO_HAVE_SOCK_FLAGS
/* Flag a descriptor just made by a fallback; close it on failure. */
static int flag_new(int fd)
{
    if (fd < 0 || coro__fd_cloexec_nonblock(fd, 1) == 0)
        return fd;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}
#endif

int coro__socket(int domain, int type, int protocol)
{
#if CORO_HAVE_SOCK_FLAGS
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
#else
    fallback_begin();
    int fd = flag_new(socket(domain, type, protocol));
    fallback_end();
    return fd;
#endif
}

int coro__accept(int lfd, struct sockaddr *sa, socklen_t *len)
{
#if CORO_HAVE_SOCK_FLAGS
    return accept4(lfd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    /* On Linux an accepted socket never inherits the listener's
     * O_NONBLOCK; on BSD and macOS it does. Set it either way. */
    fallback_begin();
    int fd = flag_new(accept(lfd, sa, len));
    fallback_end();
    return fd;
#endif
}

int coro__pipe(int fds[2], int nonblock)
{
#if CORO_HAVE_PIPE2
    return pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
#else
    fallback_begin();
    int r = pipe(fds);
    if (r == 0 && (coro__fd_cloexec_nonblock(fds[0], nonblock) != 0 ||
                   coro__fd_cloexec_nonblock(fds[1], nonblock) != 0)) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        r = -1;
    }
    fallback_end();
    return r;
#endif
}
