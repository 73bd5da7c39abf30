/* io/fd.c: the descriptor calls (see io/io.h): each one tries the system
 * call first and parks on the descriptor table (sched/io_wait.h) only when
 * it says EAGAIN, then retries. EINTR is retried at once.
 *
 * SIGPIPE: socket writes go through send/sendmsg with MSG_NOSIGNAL; for
 * pipes and other descriptors there is no such flag, so the first I/O
 * call of a thread blocks SIGPIPE in that thread (a write to a broken pipe
 * then fails with EPIPE and the signal stays pending, harmlessly); when
 * coro_main returns it gives the thread its old mask back and takes a
 * pending SIGPIPE the caller neither blocks nor handles (sched/sigmask.c).
 * This changes no process-wide disposition. Where MSG_NOSIGNAL is missing
 * (older macOS; COMPAT=fallback) sockets get SO_NOSIGPIPE where it
 * exists, and the thread's blocked SIGPIPE covers socket writes too
 * (coro/compat.h).
 *
 * In a child forked while a scheduler ran, the per-thread state here
 * belongs to the dead scheduler: an atfork child handler forgets it, so a
 * fresh coro_main starts over (see sched/fork.c). */
#include "io/io_int.h"
#include "io/simnet.h"
#include "coro/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- per-thread state ------------------------------------------------------- */

static __thread int thread_ready;
/* Coroutines backing off from EMFILE in accept, woken by coro_close. */
static __thread coro_list_t released_waiters;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void thread_fini(void *arg)
{
    (void)arg;
    thread_ready = 0;
}

/* In a forked child: the waiters belong to the dead scheduler. */
static void forget_in_child(void)
{
    thread_ready = 0;
}

static void install_atfork(void)
{
    /* On failure the child keeps thread_ready; coro_close checks the
     * scheduler too (see there). */
    (void)pthread_atfork(NULL, NULL, forget_in_child);
}

static int thread_init(void)
{
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_once(&atfork_once, install_atfork);
    if (coro__at_exit(thread_fini, NULL) != 0 || coro__block_signals(&pipe_only) != 0)
        return -1;
    coro_list_init(&released_waiters);
    thread_ready = 1;
    return 0;
}

/* ---- entry ------------------------------------------------------------------ */

/* Is fd a TCP socket (a stream of the internet families)? Unix stream
 * sockets are not counted: their reads stop at a message that carries
 * descriptors (SCM_RIGHTS), so a short read there does not mean drained. */
static int tcp_socket(int fd)
{
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        return 0;
    struct sockaddr_storage ss;
    len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    return ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
}

/* First sight of fd: make it non-blocking, tell sockets apart. */
static int learn(int fd)
{
    if (!thread_ready && thread_init() != 0)
        return -1;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    struct stat st;
    int flags = SCHED_FD_NONBLOCK | SCHED_FD_KNOWN;
    if (fstat(fd, &st) != 0)
        return -1;
    if (S_ISSOCK(st.st_mode)) {
        flags |= SCHED_FD_SOCKET;
        if (tcp_socket(fd))
            flags |= SCHED_FD_STREAM;
#ifdef SO_NOSIGPIPE
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    }
    /* Pipes are not counted either: one in packet mode (pipe2 O_DIRECT,
     * which F_GETFL does not show) reads one packet a call. */
    if (coro__fd_set_flags(fd, flags) != 0)
        return -1;
    return flags;
}

int coro__io_enter(int fd)
{
    if (coro__checkpoint() != 0)
        return -1;
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (__builtin_expect(coro__fd_foreign(fd), 0)) {
        errno = EPERM; /* another running scheduler waits on fd */
        return -1;
    }
    int flags = coro__fd_flags(fd);
    if (__builtin_expect(flags & SCHED_FD_KNOWN, 1))
        return flags;
    return learn(fd);
}

void coro__io_new_socket(int fd, int stream)
{
    int flags = SCHED_FD_NONBLOCK | SCHED_FD_SOCKET | SCHED_FD_KNOWN |
                (stream ? SCHED_FD_STREAM : 0);
    if (!thread_ready && thread_init() != 0)
        flags = 0; /* learnt again on first use */
#ifdef SO_NOSIGPIPE
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    coro__fd_new(fd, flags);
}

int coro__io_wait_release(int64_t ns)
{
    if (!thread_ready && thread_init() != 0)
        return -1;
    coro__waiter_t w;
    coro_list_push_back(&released_waiters, &w.node);
    int64_t now = coro_now();
    int64_t until = ns > CORO_NEVER - now ? CORO_NEVER : now + ns;
    return coro__park(&w, 0, until, "fd release", NULL, -1);
}

/* ---- waiting ---------------------------------------------------------------- */

int coro_wait_fd(int fd, int events)
{
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0))
        return coro__simnet_wait(sim, events);
    if (coro__checkpoint() != 0)
        return -1;
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (coro__fd_foreign(fd)) {
        errno = EPERM;
        return -1;
    }
    if (!events || (events & ~(CORO_READ | CORO_WRITE))) {
        errno = EINVAL;
        return -1;
    }
    /* Edge-triggered below: first look at the level now. */
    struct pollfd p = { .fd = fd, .events = 0, .revents = 0 };
    if (events & CORO_READ)
        p.events |= POLLIN;
    if (events & CORO_WRITE)
        p.events |= POLLOUT;
    int n;
    while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -1;
    if (n > 0) {
        if (p.revents & POLLNVAL) {
            errno = EBADF;
            return -1;
        }
        int ready = 0;
        if (p.revents & (POLLIN | POLLHUP | POLLERR))
            ready |= CORO_READ;
        if (p.revents & (POLLOUT | POLLHUP | POLLERR))
            ready |= CORO_WRITE;
        if (ready & events)
            return ready & events;
    }
    int want = (events & CORO_READ ? SCHED_POLL_READ : 0) |
               (events & CORO_WRITE ? SCHED_POLL_WRITE : 0);
    int got = coro__fd_wait(fd, want, "wait fd");
    if (got < 0)
        return -1;
    return (got & SCHED_POLL_READ ? CORO_READ : 0) | (got & SCHED_POLL_WRITE ? CORO_WRITE : 0);
}

/* ---- reading ---------------------------------------------------------------- */

/* The read family's calls, and what each passes. */
enum read_op { READ_PLAIN, READ_VEC, READ_RECV, READ_RECVFROM };
struct read_args {
    void *buf;
    size_t n;
    const struct iovec *iov;
    int cnt;
    int flags;
    struct sockaddr *from;
    socklen_t *fromlen;
};

static inline __attribute__((always_inline)) ssize_t
read_call(enum read_op op, int fd, const struct read_args *a)
{
    switch (op) {
    case READ_PLAIN: return read(fd, a->buf, a->n);
    case READ_VEC: return readv(fd, a->iov, a->cnt);
    case READ_RECV: return recv(fd, a->buf, a->n, a->flags);
    case READ_RECVFROM: return recvfrom(fd, a->buf, a->n, a->flags, a->from, a->fromlen);
    }
    errno = EINVAL;
    return -1;
}

/* A read of fd came back shorter than asked. On a TCP stream that means
 * the receive buffer is empty: the next read would say EAGAIN, so it may
 * wait for the poller's next read event first and save that system call
 * (one per message in request/response traffic; tokio does the same).
 * Not once the poller has reported a hang-up, an error or urgent data for
 * fd (a read stops at the urgent mark, and after a hang-up a short read
 * may be followed by more, or EOF), nor with a backend that cannot see
 * urgent data at all. */
static void note_short_read(int fd)
{
    if (coro__poller_sees_urgent && !(coro__fd_flags(fd) & SCHED_FD_HUP))
        coro__fd_mark_drained(fd);
}

/* The read family: one successful call's result; a short read on a byte
 * stream is noted (note_short_read). Inline with a constant op: each
 * caller keeps only its own call. */
static inline __attribute__((always_inline)) ssize_t
read_loop(int fd, size_t full, const char *what, enum read_op op, const struct read_args *a)
{
    int flags = coro__io_enter(fd);
    if (flags < 0)
        return -1;
    if ((flags & SCHED_FD_DRAINED) && coro__fd_wait(fd, SCHED_POLL_READ, what) < 0)
        return -1;
    for (;;) {
        ssize_t r = read_call(op, fd, a);
        if (r >= 0) {
            if (r > 0 && (size_t)r < full && (flags & SCHED_FD_STREAM))
                note_short_read(fd);
            return r;
        }
        if (errno == EINTR)
            continue;
        if (!coro__io_again(errno))
            return -1;
        if (coro__fd_wait(fd, SCHED_POLL_READ, what) < 0)
            return -1;
    }
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t n = 0;
    for (int i = 0; iov && i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

ssize_t coro_read(int fd, void *buf, size_t n)
{
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0)) {
        struct iovec v = { buf, n };
        return coro__simnet_readv(sim, &v, 1, 0);
    }
    struct read_args a = { .buf = buf, .n = n };
    return read_loop(fd, n, "read fd", READ_PLAIN, &a);
}

ssize_t coro_readv(int fd, const struct iovec *iov, int cnt)
{
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0))
        return coro__simnet_readv(sim, iov, cnt, 0);
    size_t n = iov_total(iov, cnt);
    struct read_args a = { .iov = iov, .cnt = cnt };
    return read_loop(fd, n, "read fd", READ_VEC, &a);
}

ssize_t coro_recv(int fd, void *buf, size_t n, int flags)
{
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0)) {
        struct iovec v = { buf, n };
        return coro__simnet_readv(sim, &v, 1, flags);
    }
    /* MSG_PEEK leaves the data there: a short peek drains nothing. */
    size_t full = (flags & MSG_PEEK) ? 0 : n;
    struct read_args a = { .buf = buf, .n = n, .flags = flags };
    return read_loop(fd, full, "recv fd", READ_RECV, &a);
}

ssize_t coro_recvfrom(int fd, void *buf, size_t n, int flags,
                      struct sockaddr *from, socklen_t *fromlen)
{
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0))
        return coro__simnet_recvfrom(sim, buf, n, flags, from, fromlen);
    /* Datagrams: one per call, a short one says nothing of the next. */
    size_t never_short = 0;
    struct read_args a = { .buf = buf, .n = n, .flags = flags, .from = from, .fromlen = fromlen };
    return read_loop(fd, never_short, "recv fd", READ_RECVFROM, &a);
}

/* ---- writing ---------------------------------------------------------------- */

/* What a write loop returns when it stops on an error after `done` bytes:
 * the short count (errno keeps the reason), or -1 if nothing was written. */
static ssize_t stopped(size_t done)
{
    return done ? (ssize_t)done : -1;
}

/* One write attempt: send (with MSG_NOSIGNAL where the system has it) on
 * sockets, write otherwise. */
static ssize_t write_once(int fd, int fdflags, const void *buf, size_t n, int flags)
{
    if (fdflags & SCHED_FD_SOCKET)
        return send(fd, buf, n, flags | CORO_MSG_NOSIGNAL);
    return write(fd, buf, n);
}

static ssize_t write_all(int fd, const void *buf, size_t n, int flags, int use_send)
{
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0)) {
        struct iovec v = { (void *)buf, n };
        return coro__simnet_writev(sim, &v, 1);
    }
    int fdflags = coro__io_enter(fd);
    if (fdflags < 0)
        return -1;
    if (use_send)
        fdflags |= SCHED_FD_SOCKET; /* coro_send: send(2) even if fstat was unsure */
    const char *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t r = write_once(fd, fdflags, p + done, n - done, flags);
        if (r >= 0) {
            done += (size_t)r;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (!coro__io_again(errno))
            return stopped(done);
        if (coro__fd_wait(fd, SCHED_POLL_WRITE, "write fd") < 0)
            return stopped(done);
    }
    return (ssize_t)n;
}

ssize_t coro_write(int fd, const void *buf, size_t n)
{
    return write_all(fd, buf, n, 0, 0);
}

ssize_t coro_send(int fd, const void *buf, size_t n, int flags)
{
    return write_all(fd, buf, n, flags, 1);
}

ssize_t coro_sendto(int fd, const void *buf, size_t n, int flags,
                    const struct sockaddr *to, socklen_t tolen)
{
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0))
        return coro__simnet_sendto(sim, buf, n, to, tolen);
    if (coro__io_enter(fd) < 0)
        return -1;
    for (;;) {
        ssize_t r = sendto(fd, buf, n, flags | CORO_MSG_NOSIGNAL, to, tolen);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (!coro__io_again(errno))
            return -1;
        if (coro__fd_wait(fd, SCHED_POLL_WRITE, "send fd") < 0)
            return -1;
    }
}

#define IOV_BATCH 64

ssize_t coro_writev(int fd, const struct iovec *iov, int cnt)
{
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0))
        return coro__simnet_writev(sim, iov, cnt);
    /* The checkpoint and fd checks first, as in every other I/O call. */
    int fdflags = coro__io_enter(fd);
    if (fdflags < 0)
        return -1;
    if (cnt < 0 || (iov == NULL && cnt > 0)) {
        errno = EINVAL;
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len > SSIZE_MAX - total) {
            errno = EINVAL;
            return -1;
        }
        total += iov[i].iov_len;
    }
    /* A private copy of (at most IOV_BATCH of) the vector, advanced as
     * partial writes consume it; the caller's vector is never modified. */
    struct iovec cur[IOV_BATCH];
    int at = 0;   /* next caller entry not yet copied */
    int ncur = 0, first = 0;
    size_t done = 0;
    while (done < total) {
        if (first == ncur) {
            ncur = 0;
            first = 0;
            while (at < cnt && ncur < IOV_BATCH) {
                if (iov[at].iov_len)
                    cur[ncur++] = iov[at];
                at++;
            }
        }
        ssize_t r;
        if (fdflags & SCHED_FD_SOCKET) {
            struct msghdr msg;
            memset(&msg, 0, sizeof msg);
            msg.msg_iov = cur + first;
            msg.msg_iovlen = (size_t)(ncur - first);
            r = sendmsg(fd, &msg, CORO_MSG_NOSIGNAL);
        } else {
            r = writev(fd, cur + first, ncur - first);
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (!coro__io_again(errno))
                return stopped(done);
            if (coro__fd_wait(fd, SCHED_POLL_WRITE, "write fd") < 0)
                return stopped(done);
            continue;
        }
        done += (size_t)r;
        size_t left = (size_t)r;
        while (left && first < ncur) {
            if (left >= cur[first].iov_len) {
                left -= cur[first].iov_len;
                first++;
            } else {
                cur[first].iov_base = (char *)cur[first].iov_base + left;
                cur[first].iov_len -= left;
                left = 0;
            }
        }
    }
    return (ssize_t)total;
}

/* ---- closing ---------------------------------------------------------------- */

int coro_fd_forget(int fd)
{
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    return coro__fd_close(fd);
}

int coro_close(int fd)
{
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0))
        return coro__simnet_close(sim);
    /* Another thread's scheduler waits on fd: closing it would leave its
     * waiters parked forever. EPERM, and fd stays open. */
    if (coro__fd_close(fd) != 0)
        return -1;
    int r = close(fd);
    /* Somebody may be backing off from EMFILE: a descriptor is free now. */
    if (thread_ready && coro__self()) {
        coro__wake_all(&released_waiters, 0);
    }
    return r;
}
