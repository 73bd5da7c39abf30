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
 * Within the library the window is closed as Go closes it: every fallback
 * holds a process-wide lock for reading while it makes and flags a
 * descriptor, and code of the library that forks (coro__fork_lock) holds
 * it for writing around fork(). A fork made by the application itself,
 * from another thread, does not take the lock and can still catch a
 * descriptor in the window; the only cure there is to fork from a thread
 * that makes no descriptors at that time, or posix_spawn with a file
 * actions list that closes what the child must not keep. */
#include "coro/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

/* Held for reading while a fallback makes and flags a descriptor, for
 * writing around a fork by the library. Never taken where every call has
 * its atomic flag. */
static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_INITIALIZER;

void coro__fork_lock(void)
{
    pthread_rwlock_wrlock(&fork_lock);
}

void coro__fork_unlock(void)
{
    pthread_rwlock_unlock(&fork_lock);
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
    pthread_rwlock_rdlock(&fork_lock);
    int fd = flag_new(socket(domain, type, protocol));
    int e = errno;
    pthread_rwlock_unlock(&fork_lock);
    errno = e;
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
    pthread_rwlock_rdlock(&fork_lock);
    int fd = flag_new(accept(lfd, sa, len));
    int e = errno;
    pthread_rwlock_unlock(&fork_lock);
    errno = e;
    return fd;
#endif
}

int coro__pipe(int fds[2], int nonblock)
{
#if CORO_HAVE_PIPE2
    return pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
#else
    pthread_rwlock_rdlock(&fork_lock);
    int r = pipe(fds);
    if (r == 0 && (coro__fd_cloexec_nonblock(fds[0], nonblock) != 0 ||
                   coro__fd_cloexec_nonblock(fds[1], nonblock) != 0)) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        r = -1;
    }
    int e = errno;
    pthread_rwlock_unlock(&fork_lock);
    errno = e;
    return r;
#endif
}
