/* sched/kqueue_shim.c: the kqueue emulation of sched/kqueue_shim.h, a test
 * stand-in on Linux (built only with POLLER=kqueue and no libkqueue).
 *
 * A queue is an epoll descriptor plus user space state:
 *
 *   - a descriptor's READ and WRITE events are two edge-triggered
 *     registrations in two inner epoll sets, one per direction, nested
 *     (level-triggered) in the queue's epoll: wake-ups are keyed
 *     (EPOLLIN, EPOLLOUT), so data arriving edges the READ registration
 *     only, as it activates only the read knote in the kernel; one shared
 *     registration would report every ready bit at each edge. The data
 *     is (generation, descriptor), looked up in the queue's table, so an
 *     event of a registration forgotten since (or of an old file that a
 *     duplicate kept registered) finds no match and is dropped, never a
 *     dangling pointer;
 *   - each USER event owns an eventfd, each SIGNAL event a signalfd, both
 *     private, registered edge-triggered with a pointer to the event;
 *   - an epoll edge activates the matching events: they go on the queue's
 *     active list once, however many edges come (kqueue aggregates too),
 *     and kevent hands them out from there, up to nevents per call; the
 *     rest stay listed for the next call, which then does not block.
 *     Delivery resets an event's state (EV_CLEAR).
 *
 * Queues are found by number on a global list that only grows (a closed
 * queue's node is reused by a later kqueue()), so NOTE_TRIGGER from any
 * thread needs no lock: it walks the list and the queue's USER events with
 * atomic loads, sets the event's trigger flag and writes to its eventfd.
 * The owner thread drains the eventfd on the edge and delivers the event
 * if the flag is still set (the filter runs again at retrieval, as in the
 * kernel, so a trigger reset by EV_CLEAR is not reported). */
#include "sched/kqueue_shim.h"
#include "coro/sanitize.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EPOLL_BATCH 128
#define SHIM_NSIG NSIG

/* Tags in the low bits of the outer epoll's data (allocations are
 * 16-byte aligned; a direction's inner set is tagged with its index). */
#define TAG_DIR 1u
#define TAG_USER 2u
#define TAG_SIGNAL 3u
#define TAG_MASK 3u

#define ACTIONS (EV_ADD | EV_DELETE | EV_CLEAR | EV_RECEIPT)

typedef struct knote {
    struct knote *prev, *next; /* the active list, while queued */
    int queued;
    int eof;
    int oob; /* urgent data seen (EPOLLPRI): EV_OOBAND, as macOS reports it */
    short filter;
    unsigned short flags; /* EV_CLEAR */
    uintptr_t ident;
    int64_t data;
    _Atomic(void *) udata; /* a modify from another thread replaces it */
} knote_t;

/* A descriptor's READ ([0]) and WRITE ([1]) events, each registered in
 * that direction's inner epoll set under its own generation. */
typedef struct fdwatch {
    int has[2];
    uint32_t gen[2];
    knote_t kn[2];
} fdwatch_t;

/* A USER event; never freed before its queue, so a trigger from another
 * thread always finds valid memory. ident and efd are fixed once listed. */
typedef struct usernote {
    struct usernote *next;
    uintptr_t ident;
    int efd;
    atomic_int live;
    atomic_int triggered;
    knote_t kn;
} usernote_t;

typedef struct signote {
    int sfd;
    knote_t kn;
} signote_t;

typedef struct shimkq {
    struct shimkq *next; /* fixed once listed */
    atomic_int id;       /* the queue's number (its epoll descriptor); -1: free */
    int ep;              /* the same, for the owner */
    int dir[2];          /* the inner epoll sets, READ and WRITE */
    int no_pwait2;
    uint32_t gen;
    fdwatch_t **fds;
    size_t nfds;
    _Atomic(usernote_t *) users;
    signote_t *sigs[SHIM_NSIG];
    knote_t active; /* sentinel of the active list */
    struct epoll_event ev[EPOLL_BATCH], inner[EPOLL_BATCH];
} shimkq_t;

static _Atomic(shimkq_t *) all_queues;
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;

static shimkq_t *find_queue(int kq)
{
    if (kq < 0)
        return NULL;
    for (shimkq_t *k = atomic_load_explicit(&all_queues, memory_order_acquire); k; k = k->next)
        if (atomic_load_explicit(&k->id, memory_order_acquire) == kq)
            return k;
    return NULL;
}

/* ---- the active list ------------------------------------------------------ */

static void enqueue(shimkq_t *k, knote_t *kn)
{
    if (kn->queued)
        return;
    kn->prev = k->active.prev;
    kn->next = &k->active;
    k->active.prev->next = kn;
    k->active.prev = kn;
    kn->queued = 1;
}

static void dequeue(knote_t *kn)
{
    if (!kn->queued)
        return;
    kn->prev->next = kn->next;
    kn->next->prev = kn->prev;
    kn->queued = 0;
}

static void knote_init(knote_t *kn, uintptr_t ident, short filter, void *udata)
{
    memset(kn, 0, sizeof *kn);
    kn->ident = ident;
    kn->filter = filter;
    kn->flags = EV_CLEAR;
    atomic_store_explicit(&kn->udata, udata, memory_order_relaxed);
}

/* ---- queues ----------------------------------------------------------------- */

/* The queue's epoll set and its two inner sets, nested level-triggered
 * (an inner set is readable while it holds ready registrations). */
static int make_sets(int *ep, int dir[2])
{
    dir[0] = dir[1] = -1;
    *ep = epoll_create1(EPOLL_CLOEXEC);
    if (*ep < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.u64 = (uint64_t)i << 2 | TAG_DIR;
        dir[i] = epoll_create1(EPOLL_CLOEXEC);
        if (dir[i] < 0 || epoll_ctl(*ep, EPOLL_CTL_ADD, dir[i], &ev) != 0) {
            int e = errno;
            for (int j = 0; j <= i; j++)
                if (dir[j] >= 0)
                    close(dir[j]);
            close(*ep);
            errno = e;
            return -1;
        }
    }
    return 0;
}

int coro__kqueue_shim(void)
{
    int ep, dir[2];
    if (make_sets(&ep, dir) != 0)
        return -1;
    pthread_mutex_lock(&all_lock);
    shimkq_t *k = atomic_load_explicit(&all_queues, memory_order_relaxed);
    while (k && atomic_load_explicit(&k->id, memory_order_relaxed) != -1)
        k = k->next;
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k) {
            pthread_mutex_unlock(&all_lock);
            close(dir[0]);
            close(dir[1]);
            close(ep);
            errno = ENOMEM;
            return -1;
        }
        atomic_init(&k->id, -1);
        k->next = atomic_load_explicit(&all_queues, memory_order_relaxed);
        atomic_store_explicit(&all_queues, k, memory_order_release);
    }
    k->ep = ep;
    k->dir[0] = dir[0];
    k->dir[1] = dir[1];
    /* Valgrind 3.19 does not know epoll_pwait2 and would warn on each try. */
    k->no_pwait2 = RUNNING_ON_VALGRIND ? 1 : 0;
    k->gen = 0;
    k->fds = NULL;
    k->nfds = 0;
    atomic_store_explicit(&k->users, NULL, memory_order_relaxed);
    memset(k->sigs, 0, sizeof k->sigs);
    k->active.prev = k->active.next = &k->active;
    atomic_store_explicit(&k->id, ep, memory_order_release);
    pthread_mutex_unlock(&all_lock);
    return ep;
}

int coro__kqueue_shim_close(int kq)
{
    pthread_mutex_lock(&all_lock);
    shimkq_t *k = find_queue(kq);
    if (!k) {
        pthread_mutex_unlock(&all_lock);
        errno = EBADF;
        return -1;
    }
    atomic_store_explicit(&k->id, -1, memory_order_release);
    for (size_t i = 0; i < k->nfds; i++)
        free(k->fds[i]);
    free(k->fds);
    usernote_t *u = atomic_load_explicit(&k->users, memory_order_relaxed);
    while (u) {
        usernote_t *next = u->next;
        close(u->efd);
        free(u);
        u = next;
    }
    for (int sig = 0; sig < SHIM_NSIG; sig++)
        if (k->sigs[sig]) {
            close(k->sigs[sig]->sfd);
            free(k->sigs[sig]);
        }
    close(k->dir[0]);
    close(k->dir[1]);
    pthread_mutex_unlock(&all_lock);
    return close(kq);
}

void coro__kqueue_shim_before_fork(void)
{
    pthread_mutex_lock(&all_lock);
}

/* A queue the child inherited: its number stops naming it (-2: not free
 * either, never reused), its descriptors are closed; its memory stays
 * on the list, abandoned. */
static void forget_in_child(shimkq_t *k)
{
    if (atomic_load_explicit(&k->id, memory_order_relaxed) < 0)
        return;
    atomic_store_explicit(&k->id, -2, memory_order_relaxed);
    for (usernote_t *u = atomic_load_explicit(&k->users, memory_order_relaxed); u; u = u->next)
        close(u->efd);
    for (int sig = 0; sig < SHIM_NSIG; sig++)
        if (k->sigs[sig])
            close(k->sigs[sig]->sfd);
    close(k->dir[0]);
    close(k->dir[1]);
    close(k->ep);
}

void coro__kqueue_shim_after_fork(int in_child)
{
    if (in_child)
        for (shimkq_t *k = atomic_load_explicit(&all_queues, memory_order_relaxed); k; k = k->next)
            forget_in_child(k);
    pthread_mutex_unlock(&all_lock);
}

/* ---- EVFILT_READ, EVFILT_WRITE ---------------------------------------------- */

static uint64_t fd_data(uint32_t gen, int fd)
{
    return (uint64_t)gen << 32 | (uint32_t)fd;
}

static fdwatch_t *watch_of(shimkq_t *k, int fd)
{
    return (size_t)fd < k->nfds ? k->fds[fd] : NULL;
}

/* Forget fd's event i, and fd once it has none. */
static void drop(shimkq_t *k, int fd, int i)
{
    fdwatch_t *w = watch_of(k, fd);
    if (!w || !w->has[i])
        return;
    struct epoll_event ev = { 0 };
    /* ENOENT/EBADF: closed (and maybe reused) behind our back. */
    (void)epoll_ctl(k->dir[i], EPOLL_CTL_DEL, fd, &ev);
    dequeue(&w->kn[i]);
    w->has[i] = 0;
    if (!w->has[1 - i]) {
        free(w);
        k->fds[fd] = NULL;
    }
}

/* Register fd's event i in its direction's set; epoll looks at the
 * current state then, as the kernel runs the filter on EV_ADD. */
static int fd_register(shimkq_t *k, fdwatch_t *w, int fd, int i)
{
    struct epoll_event ev;
    ev.events = EPOLLET | (i == 0 ? EPOLLIN | EPOLLRDHUP | EPOLLPRI : EPOLLOUT);
    if (w->has[i]) {
        ev.data.u64 = fd_data(w->gen[i], fd);
        if (epoll_ctl(k->dir[i], EPOLL_CTL_MOD, fd, &ev) == 0)
            return 0;
        if (errno != ENOENT)
            return -1;
        /* The number now names another file. */
    }
    /* A new generation: events of an older registration of the number
     * (an old file kept open by a duplicate) are dropped. */
    uint32_t gen = ++k->gen;
    ev.data.u64 = fd_data(gen, fd);
    if (epoll_ctl(k->dir[i], EPOLL_CTL_ADD, fd, &ev) != 0 &&
        (errno != EEXIST || epoll_ctl(k->dir[i], EPOLL_CTL_MOD, fd, &ev) != 0))
        return -1;
    w->gen[i] = gen;
    return 0;
}

static int change_fd(shimkq_t *k, const struct kevent *kev)
{
    if (kev->ident > INT_MAX)
        return EBADF;
    int fd = (int)kev->ident;
    int i = kev->filter == EVFILT_READ ? 0 : 1;
    if (kev->fflags)
        return EINVAL; /* no NOTE_LOWAT etc. in this stand-in: the backend sets no fflags */
    if (fcntl(fd, F_GETFD) < 0) {
        /* Closed: a real kqueue dropped its events at close(2). */
        drop(k, fd, 0);
        drop(k, fd, 1);
        return EBADF;
    }
    fdwatch_t *w = watch_of(k, fd);
    if (kev->flags & EV_DELETE) {
        if (!w || !w->has[i])
            return ENOENT;
        drop(k, fd, i);
        return 0;
    }
    if (!(kev->flags & EV_ADD)) {
        if (!w || !w->has[i])
            return ENOENT;
        atomic_store_explicit(&w->kn[i].udata, kev->udata, memory_order_relaxed);
        return fd_register(k, w, fd, i) == 0 ? 0 : errno;
    }
    if (!(kev->flags & EV_CLEAR))
        return EINVAL; /* only edge-triggered events are implemented */
    if (!w) {
        if ((size_t)fd >= k->nfds) {
            size_t n = k->nfds ? k->nfds : 64;
            while (n <= (size_t)fd)
                n *= 2;
            fdwatch_t **grown = realloc(k->fds, n * sizeof *grown);
            if (!grown)
                return ENOMEM;
            memset(grown + k->nfds, 0, (n - k->nfds) * sizeof *grown);
            k->fds = grown;
            k->nfds = n;
        }
        w = calloc(1, sizeof *w);
        if (!w)
            return ENOMEM;
        k->fds[fd] = w;
    }
    if (fd_register(k, w, fd, i) != 0) {
        int e = errno;
        if (!w->has[0] && !w->has[1]) {
            free(w);
            k->fds[fd] = NULL;
        }
        return e;
    }
    if (!w->has[i]) {
        knote_init(&w->kn[i], kev->ident, kev->filter, kev->udata);
        w->has[i] = 1;
    } else {
        atomic_store_explicit(&w->kn[i].udata, kev->udata, memory_order_relaxed);
    }
    return 0;
}

/* ---- EVFILT_USER ---------------------------------------------------------------- */

static usernote_t *find_user(shimkq_t *k, uintptr_t ident)
{
    for (usernote_t *u = atomic_load_explicit(&k->users, memory_order_acquire); u; u = u->next)
        if (u->ident == ident)
            return u;
    return NULL;
}

static void wake_user(usernote_t *u)
{
    uint64_t one = 1;
    atomic_store(&u->triggered, 1);
    /* EAGAIN: the counter is saturated, a wake-up is pending anyway. */
    while (write(u->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void drain(int fd)
{
    uint64_t count;
    while (read(fd, &count, sizeof count) < 0 && errno == EINTR)
        ;
}

/* A change to an existing event (FreeBSD's filt_usertouch): NOTE_TRIGGER
 * triggers it, EV_CLEAR resets it (both: reset). Safe from any thread. */
static void touch_user(usernote_t *u, const struct kevent *kev)
{
    atomic_store_explicit(&u->kn.udata, kev->udata, memory_order_relaxed);
    if (kev->flags & EV_CLEAR)
        atomic_store(&u->triggered, 0);
    else if (kev->fflags & NOTE_TRIGGER)
        wake_user(u);
}

static int change_user(shimkq_t *k, const struct kevent *kev)
{
    if (kev->fflags & ~(unsigned)NOTE_TRIGGER)
        return EINVAL; /* no user fflags in this stand-in: the backend uses none */
    usernote_t *u = find_user(k, kev->ident);
    int live = u && atomic_load(&u->live);
    if (kev->flags & EV_DELETE) {
        if (!live)
            return ENOENT;
        atomic_store(&u->live, 0);
        atomic_store(&u->triggered, 0);
        dequeue(&u->kn);
        return 0;
    }
    if (!(kev->flags & EV_ADD)) {
        if (!live)
            return ENOENT;
        touch_user(u, kev);
        return 0;
    }
    if (!(kev->flags & EV_CLEAR))
        return EINVAL; /* only EV_CLEAR user events are implemented */
    if (live) {
        touch_user(u, kev);
        return 0;
    }
    if (!u) {
        u = calloc(1, sizeof *u);
        if (!u)
            return ENOMEM;
        u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (u->efd < 0) {
            int e = errno;
            free(u);
            return e;
        }
        struct epoll_event ev;
        ev.events = EPOLLIN | EPOLLET;
        ev.data.u64 = (uint64_t)(uintptr_t)u | TAG_USER;
        if (epoll_ctl(k->ep, EPOLL_CTL_ADD, u->efd, &ev) != 0) {
            int e = errno;
            close(u->efd);
            free(u);
            return e;
        }
        u->ident = kev->ident;
        knote_init(&u->kn, kev->ident, EVFILT_USER, kev->udata);
        u->next = atomic_load_explicit(&k->users, memory_order_relaxed);
        atomic_store_explicit(&k->users, u, memory_order_release);
    } else {
        drain(u->efd);
        knote_init(&u->kn, kev->ident, EVFILT_USER, kev->udata);
    }
    atomic_store(&u->triggered, 0);
    atomic_store(&u->live, 1);
    if (kev->fflags & NOTE_TRIGGER)
        wake_user(u);
    return 0;
}

/* ---- EVFILT_SIGNAL ------------------------------------------------------------- */

static int change_signal(shimkq_t *k, const struct kevent *kev)
{
    if (kev->ident == 0 || kev->ident >= SHIM_NSIG)
        return EINVAL;
    int sig = (int)kev->ident;
    signote_t *s = k->sigs[sig];
    if (kev->flags & EV_DELETE) {
        if (!s)
            return ENOENT;
        dequeue(&s->kn);
        close(s->sfd); /* its only reference: leaves the epoll set too */
        free(s);
        k->sigs[sig] = NULL;
        return 0;
    }
    if (!(kev->flags & EV_ADD) || s) {
        if (!s)
            return ENOENT;
        atomic_store_explicit(&s->kn.udata, kev->udata, memory_order_relaxed);
        return 0;
    }
    if (kev->fflags)
        return EINVAL;
    sigset_t one;
    sigemptyset(&one);
    if (sigaddset(&one, sig) != 0)
        return EINVAL;
    s = calloc(1, sizeof *s);
    if (!s)
        return ENOMEM;
    s->sfd = signalfd(-1, &one, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sfd < 0) {
        int e = errno;
        free(s);
        return e;
    }
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = (uint64_t)(uintptr_t)s | TAG_SIGNAL;
    if (epoll_ctl(k->ep, EPOLL_CTL_ADD, s->sfd, &ev) != 0) {
        int e = errno;
        close(s->sfd);
        free(s);
        return e;
    }
    /* The signal filter sets EV_CLEAR itself. */
    knote_init(&s->kn, kev->ident, EVFILT_SIGNAL, kev->udata);
    k->sigs[sig] = s;
    return 0;
}

/* ---- kevent ------------------------------------------------------------------------ */

/* Apply one change: 0 or an errno value. */
static int apply(shimkq_t *k, const struct kevent *kev)
{
    if (kev->flags & ~ACTIONS)
        return EINVAL;
    if ((kev->flags & EV_ADD) && (kev->flags & EV_DELETE))
        return EINVAL;
    switch (kev->filter) {
    case EVFILT_READ:
    case EVFILT_WRITE:
        return change_fd(k, kev);
    case EVFILT_USER:
        return change_user(k, kev);
    case EVFILT_SIGNAL:
        return change_signal(k, kev);
    default:
        return EINVAL;
    }
}

/* Edges of direction i's inner set: activate the knotes they concern. */
static void activate_dir(shimkq_t *k, int i)
{
    /* A batch; what is left keeps the inner set readable (level). */
    int n = epoll_wait(k->dir[i], k->inner, EPOLL_BATCH, 0);
    for (int j = 0; j < n; j++) {
        uint64_t d = k->inner[j].data.u64;
        uint32_t ev = k->inner[j].events;
        int fd = (int)(uint32_t)d;
        fdwatch_t *w = watch_of(k, fd);
        if (!w || !w->has[i] || w->gen[i] != (uint32_t)(d >> 32))
            continue; /* a registration forgotten since */
        if (i == 0 ? ev & (EPOLLRDHUP | EPOLLHUP) : ev & (EPOLLHUP | EPOLLERR))
            w->kn[i].eof = 1;
        if (i == 0 && (ev & EPOLLPRI))
            w->kn[i].oob = 1;
        enqueue(k, &w->kn[i]);
    }
}

/* An event of the queue's epoll set: activate the knotes it concerns. */
static void activate(shimkq_t *k, const struct epoll_event *e)
{
    uint64_t d = e->data.u64;
    switch ((unsigned)(d & TAG_MASK)) {
    case TAG_DIR:
        activate_dir(k, (int)(d >> 2) & 1);
        return;
    case TAG_USER: {
        usernote_t *u = (usernote_t *)(uintptr_t)(d & ~(uint64_t)TAG_MASK);
        drain(u->efd); /* before looking at the flag: a later trigger edges again */
        if (atomic_load(&u->live) && atomic_load(&u->triggered))
            enqueue(k, &u->kn);
        return;
    }
    case TAG_SIGNAL: {
        signote_t *s = (signote_t *)(uintptr_t)(d & ~(uint64_t)TAG_MASK);
        s->kn.data++;
        enqueue(k, &s->kn);
        return;
    }
    default:
        return;
    }
}

/* Hand out up to max active events, resetting each (EV_CLEAR). */
static int deliver(shimkq_t *k, struct kevent *out, int max)
{
    int got = 0;
    while (got < max && k->active.next != &k->active) {
        knote_t *kn = k->active.next;
        dequeue(kn);
        if (kn->filter == EVFILT_USER) {
            usernote_t *u = (usernote_t *)(void *)((char *)kn - offsetof(usernote_t, kn));
            if (!atomic_exchange(&u->triggered, 0))
                continue; /* reset since it was activated */
        }
        out[got].ident = kn->ident;
        out[got].filter = kn->filter;
        out[got].flags = (unsigned short)(kn->flags | (kn->eof ? EV_EOF : 0) |
                                          (kn->oob ? EV_OOBAND : 0));
        out[got].fflags = 0;
        out[got].data = kn->data;
        out[got].udata = atomic_load_explicit(&kn->udata, memory_order_relaxed);
        kn->eof = 0;
        kn->oob = 0;
        kn->data = 0;
        got++;
    }
    return got;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* epoll_pwait2 for an exact timeout, whole milliseconds rounded up where
 * it is missing (as sched/poller_epoll.c does). */
static int epoll_wait_ns(shimkq_t *k, int64_t ns)
{
#ifdef SYS_epoll_pwait2
    if (!k->no_pwait2) {
        struct timespec ts, *tsp = NULL;
        if (ns >= 0) {
            ts.tv_sec = (time_t)(ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            tsp = &ts;
        }
        long n = syscall(SYS_epoll_pwait2, k->ep, k->ev, EPOLL_BATCH, tsp, NULL, (size_t)0);
        if (n >= 0 || errno != ENOSYS)
            return (int)n;
        k->no_pwait2 = 1;
    }
#endif
    int ms;
    if (ns < 0)
        ms = -1;
    else if (ns >= (int64_t)INT_MAX * 1000000)
        ms = INT_MAX;
    else
        ms = (int)((ns + 999999) / 1000000);
    return epoll_wait(k->ep, k->ev, EPOLL_BATCH, ms);
}

static int scan(shimkq_t *k, struct kevent *out, int nevents, const struct timespec *timeout)
{
    int64_t deadline = 0;
    if (timeout) {
        if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000) {
            errno = EINVAL;
            return -1;
        }
        int64_t ns = timeout->tv_sec > INT64_MAX / 4000000000 ? INT64_MAX / 4
                   : (int64_t)timeout->tv_sec * 1000000000 + timeout->tv_nsec;
        deadline = now_ns() + ns;
    }
    for (;;) {
        int64_t wait;
        if (k->active.next != &k->active)
            wait = 0;
        else if (!timeout)
            wait = -1;
        else if ((wait = deadline - now_ns()) < 0)
            wait = 0;
        int n = epoll_wait_ns(k, wait);
        if (n < 0) {
            if (errno != EINTR || k->active.next == &k->active)
                return -1;
            n = 0;
        }
        for (int i = 0; i < n; i++)
            activate(k, &k->ev[i]);
        int got = deliver(k, out, nevents);
        if (got > 0)
            return got;
        /* Nothing to report (edges of events reset or forgotten since):
         * wait on, as the kernel would, until the deadline. */
        if (timeout && now_ns() >= deadline)
            return 0;
    }
}

int coro__kevent_shim(int kq, const struct kevent *changelist, int nchanges,
                     struct kevent *eventlist, int nevents, const struct timespec *timeout)
{
    shimkq_t *k = find_queue(kq);
    if (!k) {
        errno = EBADF;
        return -1;
    }
    if (nchanges < 0 || nevents < 0) {
        errno = EINVAL;
        return -1;
    }
    if ((nchanges && !changelist) || (nevents && !eventlist)) {
        errno = EFAULT;
        return -1;
    }
    int placed = 0;
    for (int i = 0; i < nchanges; i++) {
        /* A copy: the eventlist may be the changelist. */
        struct kevent kev = changelist[i];
        int err = apply(k, &kev);
        if (!err && !(kev.flags & EV_RECEIPT))
            continue;
        if (nevents == 0) {
            /* No room: fail with the error, or stop at the receipt
             * (later changes are not processed, as the man page says). */
            if (err) {
                errno = err;
                return -1;
            }
            return placed;
        }
        kev.flags = EV_ERROR;
        kev.data = err;
        eventlist[placed++] = kev;
        nevents--;
    }
    if (placed)
        return placed; /* errors and receipts bypass the wait */
    if (nevents == 0)
        return 0;
    return scan(k, eventlist, nevents, timeout);
}
