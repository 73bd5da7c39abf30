/* sched/poller_kqueue.c: the poller on kqueue (see sched/poller.h), for
 * BSD and macOS, and for Linux with `make POLLER=kqueue` over libkqueue or,
 * without it, over sched/kqueue_shim.c (a test stand-in).
 *
 * A descriptor is registered as two knotes, EVFILT_READ and EVFILT_WRITE,
 * both EV_ADD | EV_CLEAR (edge-triggered: reported when the state changes,
 * not while it holds), with the token in udata, which is pointer-sized:
 * kqueue builds need a 64-bit target. EV_ADD on an existing knote updates
 * its udata, so re-arming replaces the token, also for an event already
 * pending; kevent returns one event per filter, so a token can be reported
 * twice in one wait (READ, then WRITE), which callers take in their stride.
 * Both changes go in one kevent call with EV_RECEIPT, so that each comes
 * back with its own result and no pending event is taken on the way (a
 * call with room for events but no receipt would also collect events).
 *
 * Translating to SCHED_POLL_*: hang-ups and errors must wake both
 * directions, as EPOLLHUP and EPOLLERR do. EV_EOF on the read filter is
 * the peer's half-close (epoll's EPOLLRDHUP): READ only, unless fflags
 * holds a socket error (then both). EV_EOF on the write filter means the
 * reader is gone, or the connection is (EPOLLERR or EPOLLHUP there):
 * both. EV_ERROR on a knote: both.
 *
 * Registration differs from epoll in three places, smoothed over here:
 *   - kqueue accepts regular files and directories (always readable
 *     vnodes) where epoll answers EPERM, which tells the caller to do
 *     plain blocking I/O: arm checks fstat and refuses them the same way;
 *   - the kernel can refuse one filter while it takes the other: FreeBSD
 *     answers EPIPE for EVFILT_WRITE on a pipe whose reader is gone
 *     (NetBSD: EBADF), some descriptors take one filter only. epoll would
 *     register the descriptor and report EPOLLERR at once, so here the
 *     knote that attached stays, and the token is reported for both
 *     directions at the next wait: the retried call meets the error;
 *   - EVFILT_SIGNAL records deliveries made after it is added, not a
 *     signal already pending (signalfd reports one at once). The caller
 *     checks for a pending signal, then arms and parks: a signal arriving
 *     between the two would go unreported. signal_arm therefore looks at
 *     sigpending() once its new knotes are in, and reports the token at
 *     the next wait if one of the new signals is pending already.
 *
 * Cross-thread wake-ups use one EVFILT_USER knote, added once: on FreeBSD
 * an EV_ADD | EV_CLEAR of an existing user knote resets a pending trigger.
 * notify triggers it with NOTE_TRIGGER (a plain kevent call: thread-safe
 * and async-signal-safe). Any change to a knote, the trigger included,
 * overwrites its udata on FreeBSD and macOS, so the wake-up and signal
 * events are told apart by filter, and their tokens are kept here.
 *
 * Timeouts go to kevent as a timespec: sub-millisecond waits are exact.
 * They are clamped to 24 hours (FreeBSD clamps silently, other kernels
 * refuse long timeouts); a longer wait just ends early with no events,
 * and the scheduler waits again. EINTR is reported as 0 events. */
#include "sched/poller.h"
#include "coro/fault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifdef CORO_KQUEUE_SHIM
#include "sched/kqueue_shim.h"
#define close_kqueue coro__kqueue_shim_close
#else
#include <sys/event.h>
#define close_kqueue close
#endif

_Static_assert(sizeof(void *) >= sizeof(uint64_t),
               "the kqueue poller needs 64-bit pointers: tokens travel in udata");

#ifndef NSIG
#define NSIG 128 /* sigismember() refuses what is out of range */
#endif

#define MAX_EVENTS 256
/* The EVFILT_USER knote of the cross-thread wake-up (any value would do). */
#define NOTIFY_IDENT 1
#define MAX_WAIT_NS ((int64_t)24 * 3600 * 1000000000)

/* A token to report at the next wait without the kernel (see above). */
typedef struct synth {
    int fd;
    uint64_t token;
} synth_t;

/* macOS (and the Linux stand-in) flag urgent data with EV_OOBAND; where
 * kqueue does not, the drained shortcut stays off. */
#ifdef EV_OOBAND
const int coro__poller_sees_urgent = 1;
#else
const int coro__poller_sees_urgent = 0;
#endif

struct coro__poller {
    int kq;
    int notify_armed;
    uint64_t notify_token, signal_token;
    sigset_t signals; /* those with a knote */
    int signal_synth; /* report signal_token at the next wait */
    synth_t *synth;
    size_t nsynth, synth_cap;
    struct kevent events[MAX_EVENTS];
};

#define UDATA(token) ((void *)(uintptr_t)(token))
#define TOKEN(kev) ((uint64_t)(uintptr_t)(kev)->udata)

coro__poller_t *coro__poller_new(void)
{
    coro__poller_t *p = coro__malloc(sizeof *p);
    if (!p)
        return NULL;
    p->kq = kqueue();
    if (p->kq < 0) {
        int e = errno;
        free(p);
        errno = e;
        return NULL;
    }
    (void)fcntl(p->kq, F_SETFD, FD_CLOEXEC); /* not inherited by fork anyway */
    p->notify_armed = 0;
    p->notify_token = p->signal_token = 0;
    sigemptyset(&p->signals);
    p->signal_synth = 0;
    p->synth = NULL;
    p->nsynth = p->synth_cap = 0;
    return p;
}

/* Apply n (<= 2) changes to fd's knotes, each on its own: err[i] is 0 or
 * that change's errno. -1 with errno if the call itself failed. */
static int apply(coro__poller_t *p, struct kevent *ch, int n, int *err)
{
#ifdef EV_RECEIPT
    struct kevent out[2];
    const struct timespec zero = { 0, 0 };
    for (int i = 0; i < n; i++) {
        ch[i].flags |= EV_RECEIPT;
        err[i] = 0; /* a missing receipt: taken as done */
    }
    int r = kevent(p->kq, ch, n, out, n, &zero);
    if (r < 0)
        return -1;
    for (int j = 0; j < r; j++)
        for (int i = 0; i < n; i++)
            if ((out[j].flags & EV_ERROR) && out[j].filter == ch[i].filter)
                err[i] = (int)out[j].data;
#else
    for (int i = 0; i < n; i++)
        err[i] = kevent(p->kq, &ch[i], 1, NULL, 0, NULL) == 0 ? 0 : errno;
#endif
    return 0;
}

static void synth_drop(coro__poller_t *p, int fd)
{
    for (size_t i = 0; i < p->nsynth;)
        if (p->synth[i].fd == fd)
            p->synth[i] = p->synth[--p->nsynth];
        else
            i++;
}

static int synth_add(coro__poller_t *p, int fd, uint64_t token)
{
    synth_drop(p, fd);
    if (p->nsynth == p->synth_cap) {
        size_t cap = p->synth_cap ? p->synth_cap * 2 : 4;
        synth_t *grown = coro__realloc(p->synth, cap * sizeof *grown);
        if (!grown)
            return -1;
        p->synth = grown;
        p->synth_cap = cap;
    }
    p->synth[p->nsynth++] = (synth_t){ fd, token };
    return 0;
}

/* An errno of EV_ADD saying the descriptor cannot be watched at all. */
static int unpollable(int e)
{
    return e == EINVAL || e == ENODEV || e == EOPNOTSUPP || e == EPERM;
}

int coro__poller_arm(coro__poller_t *p, int fd, uint64_t token)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
        errno = EPERM; /* as epoll: the caller does plain blocking I/O */
        return -1;
    }
    struct kevent ch[2];
    int err[2];
    EV_SET(&ch[0], (uintptr_t)fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UDATA(token));
    EV_SET(&ch[1], (uintptr_t)fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UDATA(token));
    if (apply(p, ch, 2, err) != 0)
        return -1;
    if (!err[0] && !err[1]) {
        /* Re-armed: a report still owed goes out under the new token. */
        for (size_t i = 0; i < p->nsynth; i++)
            if (p->synth[i].fd == fd)
                p->synth[i].token = token;
        return 0;
    }
    if (err[0] && err[1]) {
        errno = unpollable(err[0]) ? EPERM : err[0];
        return -1;
    }
    /* One direction refused: keep the other, report both at the next
     * wait (see the top of the file). */
    if (synth_add(p, fd, token) != 0) {
        int e = errno;
        ch[0].flags = ch[1].flags = EV_DELETE;
        (void)apply(p, ch, 2, err);
        errno = e;
        return -1;
    }
    return 0;
}

int coro__poller_disarm(coro__poller_t *p, int fd)
{
    struct kevent ch[2];
    int err[2];
    synth_drop(p, fd);
    EV_SET(&ch[0], (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    EV_SET(&ch[1], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    if (apply(p, ch, 2, err) != 0)
        return -1;
    /* ENOENT for a filter that was not there (one refused at arm). */
    for (int i = 0; i < 2; i++)
        if (err[i] && err[i] != ENOENT) {
            errno = err[i];
            return -1;
        }
    if (err[0] == ENOENT && err[1] == ENOENT) {
        errno = ENOENT; /* not registered at all, as epoll says */
        return -1;
    }
    return 0;
}

int coro__poller_notify_arm(coro__poller_t *p, uint64_t token)
{
    if (!p->notify_armed) {
        struct kevent ch;
        EV_SET(&ch, NOTIFY_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
        if (kevent(p->kq, &ch, 1, NULL, 0, NULL) != 0)
            return -1;
        p->notify_armed = 1;
    }
    p->notify_token = token;
    return 0;
}

void coro__poller_notify(coro__poller_t *p)
{
    int saved = errno;
    struct kevent ch;
    /* No EV_ADD, no EV_CLEAR: the latter would reset the trigger. */
    EV_SET(&ch, NOTIFY_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
    while (kevent(p->kq, &ch, 1, NULL, 0, NULL) < 0 && errno == EINTR)
        ;
    errno = saved;
}

int coro__poller_signal_arm(coro__poller_t *p, const sigset_t *set, uint64_t token)
{
    sigset_t added;
    sigemptyset(&added);
    int any = 0;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sigismember(set, sig) != 1 || sigismember(&p->signals, sig) == 1)
            continue;
        struct kevent ch;
        EV_SET(&ch, (uintptr_t)sig, EVFILT_SIGNAL, EV_ADD | EV_CLEAR, 0, 0, NULL);
        if (kevent(p->kq, &ch, 1, NULL, 0, NULL) != 0)
            return -1; /* those added so far stay watched */
        sigaddset(&p->signals, sig);
        sigaddset(&added, sig);
        any = 1;
    }
    p->signal_token = token;
    if (any) {
        /* Arrived before its knote: the kernel will not report it. */
        sigset_t pending;
        if (sigpending(&pending) == 0)
            for (int sig = 1; sig < NSIG; sig++)
                if (sigismember(&added, sig) == 1 && sigismember(&pending, sig) == 1)
                    p->signal_synth = 1;
    }
    return 0;
}

static int events_of(const struct kevent *kev)
{
    const int both = SCHED_POLL_READ | SCHED_POLL_WRITE;
    if (kev->flags & EV_ERROR)
        return both | SCHED_POLL_HUP;
    if (kev->filter == EVFILT_WRITE)
        return kev->flags & EV_EOF ? both | SCHED_POLL_HUP : SCHED_POLL_WRITE;
    /* EVFILT_READ: a half-close reads as EOF (READ and HUP); an error
     * wakes writers too. */
#ifdef EV_OOBAND
    if (kev->flags & EV_OOBAND) /* TCP urgent data (macOS, FreeBSD) */
        return SCHED_POLL_READ | SCHED_POLL_HUP;
#endif
    if (!(kev->flags & EV_EOF))
        return SCHED_POLL_READ;
    return (kev->fflags ? both : SCHED_POLL_READ) | SCHED_POLL_HUP;
}

int coro__poller_wait(coro__poller_t *p, int64_t timeout_ns,
                      coro__poller_ready_fn ready, void *ctx)
{
    int owed = p->nsynth > 0 || p->signal_synth;
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0 || owed) {
        int64_t t = owed ? 0 : timeout_ns > MAX_WAIT_NS ? MAX_WAIT_NS : timeout_ns;
        ts.tv_sec = (time_t)(t / 1000000000);
        ts.tv_nsec = (long)(t % 1000000000);
        tsp = &ts;
    }
    int n = kevent(p->kq, NULL, 0, p->events, MAX_EVENTS, tsp);
    if (n < 0) {
        if (errno != EINTR)
            return -1;
        n = 0;
    }
    for (int i = 0; i < n; i++) {
        const struct kevent *kev = &p->events[i];
        if (kev->filter == EVFILT_USER)
            ready(ctx, p->notify_token, SCHED_POLL_READ);
        else if (kev->filter == EVFILT_SIGNAL)
            /* The signals are taken by their waiters (sigtimedwait). */
            ready(ctx, p->signal_token, SCHED_POLL_READ);
        else
            ready(ctx, TOKEN(kev), events_of(kev));
    }
    if (owed) {
        /* Detached first: ready() may arm or disarm. */
        synth_t *s = p->synth;
        size_t ns = p->nsynth;
        int sig = p->signal_synth;
        p->synth = NULL;
        p->nsynth = p->synth_cap = 0;
        p->signal_synth = 0;
        for (size_t i = 0; i < ns; i++)
            ready(ctx, s[i].token, SCHED_POLL_READ | SCHED_POLL_WRITE | SCHED_POLL_HUP);
        free(s);
        if (sig)
            ready(ctx, p->signal_token, SCHED_POLL_READ);
        n += (int)ns + sig;
    }
    return n;
}

void coro__poller_free(coro__poller_t *p)
{
    if (!p)
        return;
    close_kqueue(p->kq);
    free(p->synth);
    free(p);
}

/* ---- fork (see sched/poller.h) ------------------------------------------- */

/* BSD and macOS close a kqueue in the child (it is not inherited);
 * libkqueue does the same on Linux from an atfork handler of its own, and
 * the stand-in (sched/kqueue_shim.c) imitates the kernel here. */
void coro__poller_before_fork(void)
{
#ifdef CORO_KQUEUE_SHIM
    coro__kqueue_shim_before_fork();
#endif
}

void coro__poller_after_fork(int in_child)
{
#ifdef CORO_KQUEUE_SHIM
    coro__kqueue_shim_after_fork(in_child);
#else
    (void)in_child;
#endif
}

void coro__poller_drop_inherited(coro__poller_t *p)
{
    (void)p; /* nothing inherited: p->kq may name a descriptor of the child */
}
