/* sched/poller.h: the poller interface. One backend file implements it:
 * sched/poller_epoll.c on Linux, sched/poller_kqueue.c on BSD and macOS
 * (and on Linux with `make POLLER=kqueue`, over libkqueue). The scheduler
 * uses it to sleep until the next timer or until something it watches is
 * ready; the descriptor table (sched/fd.c) registers each descriptor once,
 * edge-triggered, for both directions, and never re-arms it per wait.
 *
 * Every registration reports a 64-bit token chosen by the caller (for
 * descriptors: the descriptor and its generation, so a stale event of a
 * closed descriptor whose number was reused can be told apart and dropped).
 *
 * Backend flags are translated inside the backend: callers only ever see
 * SCHED_POLL_READ, SCHED_POLL_WRITE and SCHED_POLL_HUP (hang-ups and
 * errors wake both directions, so the retried system call reports them). */
#ifndef CORO_SCHED_POLLER_H
#define CORO_SCHED_POLLER_H

#include <signal.h>
#include <stdint.h>

typedef struct coro__poller coro__poller_t;

/* 1 if the backend reports urgent (TCP out-of-band) data as SCHED_POLL_HUP,
 * 0 if it cannot. */
extern const int coro__poller_sees_urgent;

/* SCHED_POLL_HUP comes with READ when the peer has hung up (or closed its
 * writing side), an error is pending, or urgent (out-of-band) data has
 * arrived (where the backend sees it). */
enum { SCHED_POLL_READ = 1, SCHED_POLL_WRITE = 2, SCHED_POLL_HUP = 4 };

/* Called for each ready registration with the token given to arm. */
typedef void (*coro__poller_ready_fn)(void *ctx, uint64_t token, int events);

/* A new poller; NULL with errno on failure. */
coro__poller_t *coro__poller_new(void);

/* Register fd once, edge-triggered, readable and writable, reporting
 * token. If fd is registered already (a descriptor closed behind our back
 * while a duplicate kept its registration alive) the token is replaced.
 * 0 or -1 with errno (EPERM: fd cannot be polled, such as a regular file). */
int coro__poller_arm(coro__poller_t *p, int fd, uint64_t token);

/* Remove fd's registration (before closing it). 0 or -1 with errno. */
int coro__poller_disarm(coro__poller_t *p, int fd);

/* Cross-thread wake-up: once armed, coro__poller_notify (callable from any
 * thread, async-signal-safe) makes the current or next wait report token
 * (several notifies may be reported as one). eventfd on Linux, EVFILT_USER
 * on kqueue. 0 or -1 with errno. */
int coro__poller_notify_arm(coro__poller_t *p, uint64_t token);
void coro__poller_notify(coro__poller_t *p);

/* Report token whenever one of the signals in set arrives (added to any
 * signals watched before). The caller blocks them in every thread first,
 * and takes the pending signal itself (sigtimedwait): the poller only says
 * one may be pending. signalfd on Linux, EVFILT_SIGNAL on kqueue. */
int coro__poller_signal_arm(coro__poller_t *p, const sigset_t *set, uint64_t token);

/* Wait up to timeout_ns (< 0: no limit; 0: just look) and report ready
 * registrations through ready(). Sub-millisecond timeouts are honoured.
 * Returns the number of events, or -1 with errno (EINTR is reported as 0
 * events). */
int coro__poller_wait(coro__poller_t *p, int64_t timeout_ns,
                      coro__poller_ready_fn ready, void *ctx);

void coro__poller_free(coro__poller_t *p);

/* fork(2). coro__poller_before_fork runs in the scheduler's
 * pthread_atfork prepare handler, coro__poller_after_fork(in_child) in
 * its parent and child handlers (a backend with locks of its own takes
 * them across the fork). In the child, coro__poller_drop_inherited(p)
 * closes the descriptors of p that the child inherited, without a single
 * change to their registrations: an epoll descriptor duplicated by fork
 * refers to the parent's epoll instance (epoll(7)), so EPOLL_CTL_DEL, ADD
 * or MOD there would change the parent's interest list, and a wait there
 * would take the parent's edge-triggered events; the eventfd is the
 * parent's object (eventfd(2)); the signalfd would read the child's
 * signals but never make the parent's epoll instance report them
 * (signalfd(2)). Closing a duplicate leaves the parent's registrations as
 * they are: they go only once every descriptor of the open file
 * description is closed, and the parent keeps its own. A kqueue is not
 * inherited at all (FreeBSD's fork(2) and kqueue(2)): its number may
 * already name a descriptor of the child, so nothing is closed there.
 * p is abandoned afterwards, never used nor freed. Async-signal-safe. */
void coro__poller_before_fork(void);
void coro__poller_after_fork(int in_child);
void coro__poller_drop_inherited(coro__poller_t *p);

#endif /* CORO_SCHED_POLLER_H */
