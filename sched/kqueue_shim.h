/* sched/kqueue_shim.h: a small kqueue emulation on Linux, a TEST STAND-IN
 * ONLY (not for production), so that sched/poller_kqueue.c is built and
 * tested on Linux machines without libkqueue (`make POLLER=kqueue` compiles
 * with -DCORO_KQUEUE_SHIM there, see sched/kqueue.mk).
 *
 * It implements exactly the subset of kqueue(2) the poller uses, with the
 * FreeBSD semantics (checked against FreeBSD's kqueue.2 and kern_event.c):
 *
 *   kqueue()        a new queue (epoll sets underneath); close it
 *                   with coro__kqueue_shim_close(), not close(2), since user
 *                   space state hangs off it
 *   kevent()        changelist applied first, in order; a failed change
 *                   goes into the eventlist as EV_ERROR with the errno in
 *                   data when there is room (and kevent then returns at
 *                   once, without collecting events), otherwise kevent
 *                   fails with that errno, leaving later changes undone;
 *                   EV_RECEIPT reports every change that way (data 0 on
 *                   success); nevents 0 never waits; timeout NULL waits
 *                   without limit, {0, 0} polls; EINTR before any event
 *   EVFILT_READ     a descriptor; EV_EOF once the peer hung up (EPOLLRDHUP
 *   EVFILT_WRITE    or EPOLLHUP for reading, EPOLLHUP or EPOLLERR for
 *                   writing); EV_ADD needs EV_CLEAR (edge-triggered)
 *   EVFILT_USER     NOTE_TRIGGER, from any thread, also from a signal
 *                   handler (lock-free: atomics and one write(2) to an
 *                   eventfd); EV_ADD needs EV_CLEAR; EV_CLEAR in a later
 *                   change resets a pending trigger, as on FreeBSD
 *   EVFILT_SIGNAL   a signalfd per signal; data counts the arrivals seen
 *   flags           EV_ADD, EV_DELETE, EV_CLEAR, EV_RECEIPT in; EV_EOF,
 *                   EV_ERROR out. Anything else is refused with EINVAL.
 *
 * A change without EV_ADD or EV_DELETE modifies an existing event (ENOENT
 * if there is none) and, as in the kernel, replaces its udata. Readiness
 * is re-evaluated on EV_ADD of an existing event, like the kernel's.
 *
 * Limits, all outside what the poller relies on:
 *   - one thread at a time changes and waits on a queue; other threads
 *     (and signal handlers) may only modify or trigger an existing
 *     EVFILT_USER event;
 *   - it cannot see close(2), and epoll forgets a registration only when
 *     the last duplicate of the file is closed: a descriptor closed
 *     without EV_DELETE while a duplicate lives on keeps reporting that
 *     file's events under its number, until the number is added again
 *     (then the old registration's events are dropped) or deleted
 *     (EBADF once closed, and forgotten);
 *   - regular files and other descriptors epoll cannot poll are refused
 *     with EPERM (a real kqueue watches vnodes);
 *   - data is 0 for READ and WRITE (not a byte count), fflags is 0 (no
 *     socket error); user-defined fflags are not kept;
 *   - EVFILT_SIGNAL only sees signals that stay pending (blocked), sent
 *     to the process or to the waiting thread, and reports one already
 *     pending when it is added (the kernel records only later arrivals);
 *   - after fork(2) the child's queues are gone as with a real kqueue, but
 *     only when the fork ran the poller's atfork hooks (a scheduler has
 *     been started in the process).
 *
 * The names are the BSD ones for the code using them; the symbols are
 * prefixed (coro__kqueue_shim, coro__kevent_shim) so nothing clashes with a
 * real libkqueue. */
#ifndef CORO_SCHED_KQUEUE_SHIM_H
#define CORO_SCHED_KQUEUE_SHIM_H

#include <stdint.h>
#include <time.h>

#define kqueue coro__kqueue_shim
#define kevent coro__kevent_shim

/* FreeBSD's layout less ext[] (data is int64_t there, intptr_t on macOS
 * and in libkqueue: the same on the 64-bit targets the poller supports). */
struct kevent {
    uintptr_t ident;
    short filter;
    unsigned short flags;
    unsigned int fflags;
    int64_t data;
    void *udata;
};

#define EV_SET(kevp, a, b, c, d, e, f)                                   \
    do {                                                                 \
        *(kevp) = (struct kevent){ .ident = (a), .filter = (b),          \
                                   .flags = (c), .fflags = (d),          \
                                   .data = (e), .udata = (f) };          \
    } while (0)

/* Filters and flags, with FreeBSD's values. */
#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_SIGNAL (-6)
#define EVFILT_USER (-11)

#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_CLEAR 0x0020
#define EV_RECEIPT 0x0040
#define EV_ERROR 0x4000
#define EV_EOF 0x8000
/* macOS's flag for TCP urgent data on EVFILT_READ (EV_FLAG1 there). */
#define EV_OOBAND 0x2000

#define NOTE_TRIGGER 0x01000000

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents, const struct timespec *timeout);
int coro__kqueue_shim_close(int kq);

/* fork(2), called from the poller's atfork hooks: the queues' lock is
 * held across the fork, and in the child every queue is gone, as a real
 * kqueue is: its descriptors are closed (no epoll_ctl on the parent's
 * instances) and its number is no longer a queue. */
void coro__kqueue_shim_before_fork(void);
void coro__kqueue_shim_after_fork(int in_child);

#endif /* CORO_SCHED_KQUEUE_SHIM_H */
