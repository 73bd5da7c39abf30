/* io/socket.c: accepting and connecting (see io/io.h). */
#include "io/io_int.h"
#include "io/simnet.h"
#include "coro/compat.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

/* How long accept backs off when the process is out of descriptors or
 * buffers, unless a descriptor is released first. */
#define ACCEPT_BACKOFF_NS (100 * CORO_MS)

static int out_of_resources(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

int coro_accept(int lfd, struct sockaddr *sa, socklen_t *len)
{
    struct coro__simsock *sim = coro__simnet_sock(lfd);
    if (__builtin_expect(sim != NULL, 0))
        return coro__simnet_accept(sim, sa, len);
    int lflags = coro__io_enter(lfd);
    if (lflags < 0)
        return -1;
    for (;;) {
        int fd = coro__accept(lfd, sa, len); /* accept4, or accept + fcntl */
        if (fd >= 0) {
            /* Of the listener's type: SOCK_STREAM or SOCK_SEQPACKET. */
            coro__io_new_socket(fd, lflags & SCHED_FD_STREAM);
            /* Request/response traffic must not wait for Nagle's delayed
             * ACK (Go does the same); a Unix socket just says no. */
            int one = 1;
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        int e = errno;
        /* A connection that died in the backlog, or an interruption:
         * nothing to report. */
        if (e == EINTR || e == ECONNABORTED)
            continue;
        if (out_of_resources(e)) {
            /* Report it, but only after a pause: the pending connection
             * stays in the backlog (edge-triggered: no new event would
             * come for it), so a caller retrying at once would spin. */
            if (coro__io_wait_release(ACCEPT_BACKOFF_NS) != 0)
                return -1;
            errno = e;
            return -1;
        }
        if (!coro__io_again(e))
            return -1;
        if (coro__fd_wait(lfd, SCHED_POLL_READ, "accept fd") < 0)
            return -1;
    }
}

/* A non-blocking connect is under way: wait for it and fetch its result. */
static int connect_finish(int fd)
{
    if (coro__fd_wait(fd, SCHED_POLL_WRITE, "connect fd") < 0)
        return -1;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -1;
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

int coro_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    if (__builtin_expect(coro__simnet_sock(fd) != NULL, 0)) {
        /* Simulated sockets are made connected (coro_tcp_dial) or bound. */
        if (coro__checkpoint() != 0)
            return -1;
        errno = EISCONN;
        return -1;
    }
    if (coro__io_enter(fd) < 0)
        return -1;
    int64_t backoff = CORO_MS;
    for (;;) {
        if (connect(fd, sa, len) == 0)
            return 0;
        int e = errno;
        if (e == EINPROGRESS || e == EINTR) {
            /* EINTR: the connection goes on asynchronously (POSIX), as
             * after EINPROGRESS. */
            return connect_finish(fd);
        }
        if (e == EAGAIN) {
            /* Unix sockets: the listener's backlog is full. Nothing to
             * poll for; retry with a growing pause. */
            if (coro_sleep(backoff) != 0)
                return -1;
            if (backoff < 64 * CORO_MS)
                backoff *= 2;
            continue;
        }
        return -1;
    }
}
