/* sched/poller_epoll.c: the poller on Linux epoll (see sched/poller.h).
 *
 * Timeouts go through epoll_pwait2 (Linux 5.11+), whose timespec keeps
 * sub-millisecond sleeps accurate while descriptors are watched; plain
 * epoll_wait counts whole milliseconds, so a 100 us sleep would take 1 ms.
 * Where epoll_pwait2 is missing (ENOSYS: older kernels, or Valgrind
 * releases that do not know it) the timeout is rounded up to whole
 * milliseconds, so a timer never fires early. */
#include "sched/poller.h"
#include "coro/fault.h"
#include "coro/sanitize.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct sched_poller {
    int epfd;
    /* 1 once epoll_pwait2 answered ENOSYS. */
    int no_pwait2;
    struct epoll_event events[MAX_EVENTS];
};

sched_poller_t *sched_poller_new(void)
{
    sched_poller_t *p = coro_malloc(sizeof *p);
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
    p->no_pwait2 = RUNNING_ON_VALGRIND ? 1 : 0;
    return p;
}

int sched_poller_arm(sched_poller_t *p, int fd, void *udata)
{
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = udata;
    return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int wait_events(sched_poller_t *p, int64_t timeout_ns)
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

int sched_poller_wait(sched_poller_t *p, int64_t timeout_ns,
                      sched_poller_ready_fn ready, void *ctx)
{
    int n = wait_events(p, timeout_ns);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        uint32_t e = p->events[i].events;
        int ev = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            ev |= SCHED_POLL_READ;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            ev |= SCHED_POLL_WRITE;
        ready(ctx, p->events[i].data.ptr, ev);
    }
    return n;
}

void sched_poller_free(sched_poller_t *p)
{
    if (!p)
        return;
    close(p->epfd);
    free(p);
}
