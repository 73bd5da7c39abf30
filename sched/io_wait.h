/* sched/io_wait.h: what io/ needs from the scheduler: waiting on
 * descriptors, on other threads and on signals. Like sched/wait.h, private
 * to the library; io/ never touches the poller or the run queue itself.
 *
 * Descriptors live in a table indexed by fd (sched/fd.c). An entry
 * remembers whether the library made the descriptor non-blocking, whether
 * it is registered with the poller (done once, edge-triggered, at its first
 * wait), the coroutines waiting to read and to write, and a generation
 * number that changes whenever the entry is forgotten, so an event of an
 * old registration never reaches a new descriptor with the same number. */
#ifndef CORO_SCHED_IO_WAIT_H
#define CORO_SCHED_IO_WAIT_H

#include "sched/poller.h"
#include "sched/wait.h"

#include <signal.h>
#include <stdint.h>

struct sched;

/* ---- Descriptors -------------------------------------------------------- */

/* Flags an entry keeps for io/. */
enum {
    SCHED_FD_NONBLOCK = 1, /* O_NONBLOCK is set */
    SCHED_FD_SOCKET = 2,   /* it is a socket (use send/recv, MSG_NOSIGNAL) */
    SCHED_FD_KNOWN = 4,    /* the flags have been worked out */
    SCHED_FD_STREAM = 8,   /* a byte stream where a short read means the
                            * buffer was drained: TCP only. Not Unix
                            * sockets (reads stop at SCM_RIGHTS messages)
                            * nor pipes (packet mode, O_DIRECT, reads one
                            * packet a call and F_GETFL does not show it). */
    SCHED_FD_DRAINED = 16, /* io/'s mark (coro__fd_mark_drained), cleared
                            * by the poller's next read event for fd */
    SCHED_FD_HUP = 32,     /* the poller has reported SCHED_POLL_HUP for fd
                            * (sticky until the entry is forgotten); the
                            * table keeps it, io/ only reads it */
};

/* Set SCHED_FD_DRAINED on fd's entry: it stays until the poller reports
 * the next read event for fd or the entry is forgotten. What it means is
 * io/'s business (io/fd.c: the receive buffer is empty, so the next read
 * waits for that event instead of making a system call that says EAGAIN). */
void coro__fd_mark_drained(int fd);

/* The io/ flags of fd (0 for a descriptor never seen), and setting them.
 * coro__fd_set_flags fails with EBADF for fd < 0 and ENOMEM. Both must be
 * called on a thread that runs a scheduler (EPERM otherwise). */
int coro__fd_flags(int fd);
int coro__fd_set_flags(int fd, int flags);

/* Park the running coroutine until fd is ready for `events`
 * (SCHED_POLL_READ|SCHED_POLL_WRITE), registering it with the poller the
 * first time. Edge-triggered: call it only after the system call said
 * EAGAIN (or a zero-timeout poll said not ready). `what` names the wait in
 * coro_dump. Returns the events that fired, or -1 with errno: EBADF (fd
 * closed with coro__fd_close meanwhile), ECANCELED, ETIMEDOUT, EPERM (no
 * coroutine, or a descriptor the poller cannot watch), ENOMEM. */
int coro__fd_wait(int fd, int events, const char *what);

/* fd is about to be closed: wake its waiters with EBADF, remove it from
 * the poller and forget the entry. Returns 0, or -1/EPERM (nothing done)
 * when another running scheduler owns fd (see below). */
int coro__fd_close(int fd);

/* THE THREAD BOUNDARY FOR DESCRIPTORS (sched/fd_owner.c). A descriptor
 * number belongs to the scheduler that registered it with its poller (its
 * first wait) until that scheduler forgets it (coro__fd_close, or a new
 * descriptor with the number) or ends; the record is process-wide.
 * coro__fd_wait claims the number and fails with EPERM when another
 * running scheduler holds it. coro__fd_foreign(fd): does another thread's
 * scheduler (or, for a plain thread, any scheduler) own fd now? One load,
 * for io/'s entry checks. coro__fd_unclaim_stale(fd): fd was just made by
 * the kernel, so whoever held the number had lost its descriptor (closed
 * behind the library's back): forget the claim. */
int coro__fd_claim(int fd, struct sched *s);
void coro__fd_unclaim(int fd, struct sched *s);
void coro__fd_unclaim_stale(int fd);
int coro__fd_foreign(int fd);

/* fd was just created (accept, socket): forget whatever the entry held for
 * this number (a descriptor closed without coro__fd_close: its waiters
 * wake with EBADF) and start over with `flags`. */
void coro__fd_new(int fd, int flags);

/* Waiters on fd, for tests: readers + writers parked now. */
int coro__fd_waiters(int fd);

/* ---- Other threads ------------------------------------------------------ */

/* coro__post_t, a message posted to a scheduler from any thread, is
 * defined in sched/wait.h (a cross-thread wait embeds one). */

/* The scheduler of the calling thread, as a handle other threads may post
 * to (NULL outside coro_main). */
struct sched;
struct sched *coro__self(void);

/* Queue m for s's thread and wake its poller if it sleeps. Thread-safe.
 * The scheduler must still be running: its users join their threads from
 * a coro__at_exit hook. Returns 0, or -1 with errno if the wake-up
 * channel could not be created. */
int coro__post(struct sched *s, coro__post_t *m);

/* Make sure posts can wake this thread's scheduler: call it on the
 * scheduler's thread before starting a thread that will post, or before
 * parking for a post (coro__park with CORO__PARK_POLL: while such a wait
 * lasts the scheduler polls and does not report a deadlock). 0 or -1. */
int coro__post_prepare(void);

/* The blocking pool's size asked of coro_main_opts (pool_threads), or 0
 * when none was (then io/ picks its default). 0 outside a scheduler. */
int coro__pool_threads_requested(void);
/* The largest pool_threads coro_main_opts accepts (and CORO_POOL_THREADS). */
#define CORO__POOL_MAX_THREADS 1024

/* Run fn(arg) when coro_main is about to return, after every coroutine has
 * ended and before the scheduler is freed (in reverse order of
 * registration). 0 or -1 (ENOMEM, EPERM outside coro_main). */
int coro__at_exit(void (*fn)(void *arg), void *arg);

/* ---- Signals ---------------------------------------------------------------- */

/* Block the signals of set in the calling thread on the caller's behalf
 * (coro_signal_wait's sets, SIGPIPE for I/O): coro_main gives the thread
 * its old mask back when it ends, and takes those of them still pending
 * that the caller neither blocks nor handles. 0, or -1 with errno (EPERM
 * outside coro_main). */
int coro__block_signals(const sigset_t *set);

/* Take one pending signal of set (blocked in the calling thread): its
 * number, 0 if none is pending, -1 with errno. Never waits. */
int coro__signal_take(const sigset_t *set);

/* Park until one of the signals in set may have arrived (the caller has
 * blocked them and takes the pending one itself). 0, or -1 with errno
 * (ECANCELED, ETIMEDOUT, EPERM, or the poller's error). */
int coro__signal_park(const sigset_t *set);

/* coro__signal_park that also ends, with 0, at the time wake_at
 * (CORO_NEVER: no limit), and names the wait `what` (with `num` if >= 0)
 * in coro_dump. */
int coro__signal_park_until(const sigset_t *set, int64_t wake_at, const char *what, int64_t num);

/* Wake every coroutine of this thread's scheduler parked in
 * coro__signal_park, as an arriving signal would (each looks again for
 * what it waits for). For a caller that took a signal another waiter
 * may have needed. */
void coro__signal_wake_all(void);

#endif /* CORO_SCHED_IO_WAIT_H */
