/* coro/compat.h: what the system offers, decided once, and the descriptor
 * helpers that hide the difference (coro/compat.c).
 *
 * Each CORO_HAVE_* is 1 where the library may use the call or flag, 0
 * where it takes the portable path instead. They are decided from the
 * platform's macros; `make COMPAT=fallback` defines CORO_FORCE_FALLBACKS,
 * which sets every one of them to 0 so that Linux builds and tests the
 * paths macOS takes (see README, "Platforms").
 *
 *   CORO_HAVE_SOCK_FLAGS   socket(type | SOCK_NONBLOCK | SOCK_CLOEXEC) and
 *                          accept4 (they came together everywhere: Linux
 *                          2.6.28, FreeBSD 10, OpenBSD 5.7, NetBSD 8,
 *                          illumos; macOS has neither). Else socket() or
 *                          accept(), then two fcntl calls.
 *   CORO_HAVE_PIPE2        pipe2(O_CLOEXEC | O_NONBLOCK) (Linux, the BSDs;
 *                          not macOS). Else pipe(), then fcntl.
 *   CORO_HAVE_MSG_NOSIGNAL send(MSG_NOSIGNAL) (Linux, FreeBSD, macOS 11+).
 *                          Else flag 0: SO_NOSIGPIPE on each socket where
 *                          it exists (macOS, the BSDs), and in any case the
 *                          SIGPIPE that the first I/O call of a thread
 *                          blocks in that thread (io/fd.c).
 *   CORO_HAVE_SIGTIMEDWAIT sigtimedwait with a zero timeout takes a pending
 *                          signal without blocking (absent on macOS and
 *                          OpenBSD). Else sigpending, then sigwait for a
 *                          signal it showed pending (io/signal.c says what
 *                          that costs).
 *   CORO_HAVE_EVENTFD      the epoll poller's wake-up is an eventfd. Else a
 *                          non-blocking self-pipe. (kqueue uses EVFILT_USER
 *                          and needs neither.)
 *   CORO_HAVE_EPOLL_PWAIT2 the epoll poller may try epoll_pwait2 (it falls
 *                          back by itself on ENOSYS).
 *   CORO_HAVE_GUARD_REGION stack guards may be MADV_GUARD_INSTALL regions
 *                          (Linux 6.13+, probed at run time). Else every
 *                          guard is mprotect(PROT_NONE), as on macOS/BSD.
 *   CORO_HAVE_MEMBARRIER   membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
 *                          (Linux 4.14+, probed at run time) makes the
 *                          shared channels' fences asymmetric (coro/fence.h).
 *                          Else both sides pay a full fence.
 *
 * Not here, because Linux has no second path for them: epoll and signalfd
 * (the kqueue backend, sched/poller_kqueue.c, is what macOS and the BSDs
 * run, with EVFILT_USER and EVFILT_SIGNAL), and SO_NOSIGPIPE (used
 * wherever it is defined; Linux has none). */
#ifndef CORO_COMPAT_H
#define CORO_COMPAT_H

#include <sys/socket.h>

#if defined(CORO_FORCE_FALLBACKS)
#define CORO_HAVE_SOCK_FLAGS 0
#define CORO_HAVE_PIPE2 0
#define CORO_HAVE_MSG_NOSIGNAL 0
#define CORO_HAVE_SIGTIMEDWAIT 0
#define CORO_HAVE_EVENTFD 0
#define CORO_HAVE_EPOLL_PWAIT2 0
#define CORO_HAVE_GUARD_REGION 0
#define CORO_HAVE_MEMBARRIER 0
#else
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) && !defined(__APPLE__)
#define CORO_HAVE_SOCK_FLAGS 1
#else
#define CORO_HAVE_SOCK_FLAGS 0
#endif
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || \
    defined(__OpenBSD__) || defined(__DragonFly__)
#define CORO_HAVE_PIPE2 1
#else
#define CORO_HAVE_PIPE2 0
#endif
#if defined(MSG_NOSIGNAL)
#define CORO_HAVE_MSG_NOSIGNAL 1
#else
#define CORO_HAVE_MSG_NOSIGNAL 0
#endif
#if defined(__APPLE__) || defined(__OpenBSD__)
#define CORO_HAVE_SIGTIMEDWAIT 0
#else
#define CORO_HAVE_SIGTIMEDWAIT 1
#endif
#if defined(__linux__)
#define CORO_HAVE_EVENTFD 1
#define CORO_HAVE_EPOLL_PWAIT2 1
#define CORO_HAVE_GUARD_REGION 1
#define CORO_HAVE_MEMBARRIER 1
#else
#define CORO_HAVE_EVENTFD 0
#define CORO_HAVE_EPOLL_PWAIT2 0
#define CORO_HAVE_GUARD_REGION 0
#define CORO_HAVE_MEMBARRIER 0
#endif
#endif /* CORO_FORCE_FALLBACKS */

/* The flag socket writes pass: MSG_NOSIGNAL, or 0 where it is not used. */
#if CORO_HAVE_MSG_NOSIGNAL
#define CORO_MSG_NOSIGNAL MSG_NOSIGNAL
#else
#define CORO_MSG_NOSIGNAL 0
#endif

/* Every descriptor the library makes is close-on-exec and non-blocking.
 * Each helper returns the new descriptor(s) like the call it wraps, or -1
 * with errno (nothing left open). Without the atomic flags the fallback
 * makes the descriptor, then sets the flags: see coro/compat.c for the
 * window that leaves. */

/* socket(domain, type, protocol), close-on-exec and non-blocking. */
int coro__socket(int domain, int type, int protocol);

/* accept(lfd, sa, len): the new socket close-on-exec and non-blocking.
 * errno as accept(2). */
int coro__accept(int lfd, struct sockaddr *sa, socklen_t *len);

/* pipe(fds), both ends close-on-exec; non-blocking too if nonblock. */
int coro__pipe(int fds[2], int nonblock);

/* Set FD_CLOEXEC, and O_NONBLOCK if nonblock, on fd. 0 or -1 with errno. */
int coro__fd_cloexec_nonblock(int fd, int nonblock);

/* fork(3) waits for the fallbacks by itself (an atfork handler takes this
 * lock). Library code that makes a child without the atfork handlers
 * (posix_spawn, vfork, clone) holds it around that call, in the parent
 * only: then no fallback above is between making a descriptor and flagging
 * it (coro/compat.c). Take it before sched/fork.c's live lock, never
 * after. */
void coro__fork_lock(void);
void coro__fork_unlock(void);

#endif /* CORO_COMPAT_H */
