/* sched/poller_epoll.c: the poller on Linux epoll (see sched/poller.h).
 *
 * Timeouts go through epoll_pwait2 (Linux 5.11+), whose timespec keeps
 * sub-millisecond sleeps accurate while descriptors are watched, without
 * the extra descriptor and the two system calls per armed sleep a timerfd
 * would cost; plain epoll_wait counts whole milliseconds, so a 100 us
 * sleep would take 1 ms. Where epoll_pwait2 is missing (ENOSYS: older
 * kernels, or Valgrind releases that do not know it) the timeout is
 * rounded up to whole milliseconds, so a timer never fires early.
 *
 * Cross-thread wake-ups come through an eventfd, signals through one
 * signalfd whose mask grows with each set watched; both are registered
 * edge-triggered like any descriptor and are created on first use.
 * Without CORO_HAVE_EVENTFD (only COMPAT=fallback: every Linux that has
 * epoll has eventfd) the wake-up is a non-blocking self-pipe: notify writes
 * a byte (a full pipe already holds a wake-up), the wait drains it. The
 * signalfd has no such second path: this backend is Linux's only; other
 * systems run sched/poller_kqueue.c. */
#include "sched/poller.h"
#include "coro/compat.h"
#include "coro/fault.h"
#include "coro/sanitize.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#if CORO_HAVE_EVENTFD
#include <sys/eventfd.h>
#endif
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

/* Tokens of the poller's own descriptors, told apart in wait: their data
 * field holds these markers, the token to report is kept beside them. */
#define MARK_NOTIFY UINT64_MAX
#define MARK_SIGNAL (UINT64_MAX - 1)

const int coro__poller_sees_urgent = 1; /* EPOLLPRI */

struct coro__poller {
    int epfd;
    /* 1 once epoll_pwait2 answered ENOSYS. */
    int no_pwait2;
    /* eventfd (or a pipe's read end) for notify, signalfd for signals: -1
     * until armed. notify_wfd is where notify writes: the eventfd itself,
     * or the pipe's write end. */
    int notify_fd, notify_wfd, signal_fd;
    uint64_t notify_token, signal_token;
    sigset_t signals;
    struct epoll_event events[MAX_EVENTS];
};

coro__poller_t *coro__poller_new(void)
{
    coro__poller_t *p = coro__malloc(sizeof *p);
    if (!p)
        return NULL;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
        int e = errno;
        free(p);
        errno = e;
        return NULL;
    }
    /* Valgrind 3.19 does not know epoll_pwait2 and would warn on each try. */
    p->no_pwait2 = RUNNING_ON_VALGRIND || !CORO_HAVE_EPOLL_PWAIT2 ? 1 : 0;
    p->notify_fd = p->notify_wfd = p->signal_fd = -1;
    sigemptyset(&p->signals);
    return p;
}

static int add(coro__poller_t *p, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev;
    ev.events = events | EPOLLET;
    ev.data.u64 = data;
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    if (errno != EEXIST)
        return -1;
    return epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &ev);
}

int coro__poller_arm(coro__poller_t *p, int fd, uint64_t token)
{
    /* The markers are never descriptor tokens (those carry fd < 2^31). */
    return add(p, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI, token);
}

int coro__poller_disarm(coro__poller_t *p, int fd)
{
    struct epoll_event ev = { 0 }; /* non-NULL for kernels before 2.6.9 */
    return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &ev);
}

int coro__poller_notify_arm(coro__poller_t *p, uint64_t token)
{
    if (p->notify_fd < 0) {
#if CORO_HAVE_EVENTFD
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0)
            return -1;
        int wfd = fd;
#else
        int fds[2];
        if (coro__pipe(fds, 1) != 0)
            return -1;
        int fd = fds[0], wfd = fds[1];
#endif
        /* EPOLLIN only: an eventfd is always writable, and EPOLLOUT would
         * report a spurious edge at every write. */
        if (add(p, fd, EPOLLIN, MARK_NOTIFY) != 0) {
            int e = errno;
            close(fd);
            if (wfd != fd)
                close(wfd);
            errno = e;
            return -1;
        }
        p->notify_fd = fd;
        p->notify_wfd = wfd;
    }
    p->notify_token = token;
    return 0;
}

void coro__poller_notify(coro__poller_t *p)
{
    int saved = errno;
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated (the pipe is full): a wake-up
     * is pending anyway. A pipe takes the first byte of `one`. */
    while (write(p->notify_wfd, &one, CORO_HAVE_EVENTFD ? sizeof one : 1) < 0 && errno == EINTR)
        ;
    errno = saved;
}

int coro__poller_signal_arm(coro__poller_t *p, const sigset_t *set, uint64_t token)
{
    sigset_t all = p->signals;
    sigorset(&all, &all, set);
    int fd = signalfd(p->signal_fd, &all, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (p->signal_fd < 0) {
        if (add(p, fd, EPOLLIN, MARK_SIGNAL) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        p->signal_fd = fd;
    }
    p->signals = all;
    p->signal_token = token;
    return 0;
}

static int wait_events(coro__poller_t *p, int64_t timeout_ns)
{
#ifdef SYS_epoll_pwait2
    if (!p->no_pwait2) {
        struct timespec ts, *tsp = NULL;
        if (timeout_ns >= 0) {
            ts.tv_sec = (time_t)(timeout_ns / 1000000000);
            ts.tv_nsec = (long)(timeout_ns % 1000000000);
            tsp = &ts;
        }
        long n = syscall(SYS_epoll_pwait2, p->epfd, p->events, MAX_EVENTS, tsp, NULL, (size_t)0);
        if (n >= 0 || errno != ENOSYS)
            return (int)n;
        p->no_pwait2 = 1;
    }
#endif
    int ms;
    if (timeout_ns < 0)
        ms = -1;
    else if (timeout_ns >= (int64_t)INT_MAX * 1000000)
        ms = INT_MAX;
    else
        ms = (int)((timeout_ns + 999999) / 1000000); /* round up: never early */
    return epoll_wait(p->epfd, p->events, MAX_EVENTS, ms);
}

int coro__poller_wait(coro__poller_t *p, int64_t timeout_ns,
                      coro__poller_ready_fn ready, void *ctx)
{
    int n = wait_events(p, timeout_ns);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        uint64_t data = p->events[i].data.u64;
        if (data == MARK_NOTIFY) {
            /* Reset the counter (drain the pipe); the token is reported
             * once per wait. */
#if CORO_HAVE_EVENTFD
            uint64_t count;
            while (read(p->notify_fd, &count, sizeof count) < 0 && errno == EINTR)
                ;
#else
            char drain[64];
            ssize_t r;
            while ((r = read(p->notify_fd, drain, sizeof drain)) > 0 ||
                   (r < 0 && errno == EINTR))
                ;
#endif
            ready(ctx, p->notify_token, SCHED_POLL_READ);
            continue;
        }
        if (data == MARK_SIGNAL) {
            /* The signals are taken by their waiters (sigtimedwait). */
            ready(ctx, p->signal_token, SCHED_POLL_READ);
            continue;
        }
        uint32_t e = p->events[i].events;
        int ev = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI))
            ev |= SCHED_POLL_READ;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            ev |= SCHED_POLL_WRITE;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI))
            ev |= SCHED_POLL_HUP; /* EPOLLPRI: TCP urgent data */
        ready(ctx, data, ev);
    }
    return n;
}

void coro__poller_free(coro__poller_t *p)
{
    if (!p)
        return;
    coro__poller_drop_inherited(p); /* closes every descriptor, as a child does */
    free(p);
}

/* ---- fork (see sched/poller.h) ------------------------------------------- */

void coro__poller_before_fork(void)
{
}

void coro__poller_after_fork(int in_child)
{
    (void)in_child;
}

void coro__poller_drop_inherited(coro__poller_t *p)
{
    /* close() only: no epoll_ctl on the parent's instance. */
    if (p->notify_fd >= 0)
        close(p->notify_fd);
    if (p->notify_wfd >= 0 && p->notify_wfd != p->notify_fd)
        close(p->notify_wfd);
    if (p->signal_fd >= 0)
        close(p->signal_fd);
    close(p->epfd);
}
