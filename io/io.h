/* io/io.h: descriptors, sockets, buffered streams, blocking work and
 * signals for coroutines. Included by <coro.h>.
 *
 * Conventions (as everywhere in coro): a call that fails returns -1 (or
 * NULL) and sets errno. Every call here that can block is a checkpoint: it
 * fails with ECANCELED once the caller is cancelled (unless shielded) and
 * ETIMEDOUT once the caller's deadline (coro_timeout / coro_set_deadline)
 * has passed, before it does anything and while it waits; EPERM outside a
 * coroutine. The calls that never block (coro_close, coro_sock_port,
 * coro_stream_new, coro_stream_buffered, coro_stream_free) are not
 * checkpoints and work outside a coroutine too.
 *
 * Fast path first: each call tries the system call and parks the coroutine
 * only on EAGAIN, until the poller (epoll or kqueue, edge-triggered, each
 * descriptor registered once) says the descriptor is ready. EINTR is
 * retried inside. Descriptors are made non-blocking (O_NONBLOCK) the first
 * time a call here sees them, and stay so.
 *
 * Close descriptors used here with coro_close: it wakes coroutines waiting
 * on the descriptor (EBADF) and removes it from the poller before closing
 * it. A descriptor closed behind the library's back is forgotten when a
 * call here creates a new descriptor with its number (accept, dial,
 * listen); a reused number never receives the old descriptor's events.
 * A descriptor closed some other way (by another library, fclose) and
 * whose number your own socket(), pipe() or open() may then reuse must be
 * announced with coro_fd_forget before it is closed (libdill's fdclean):
 * otherwise the library still believes the number registered, and a wait
 * on the new descriptor is never woken.
 *
 * SIGPIPE never kills the process: socket writes pass MSG_NOSIGNAL, and the
 * first I/O call of a thread blocks SIGPIPE in that thread while its
 * scheduler runs (a broken pipe then fails with EPIPE; the pending signal
 * is discarded).
 *
 * THE THREAD BOUNDARY. A descriptor number belongs to the scheduler whose
 * coroutine first waited on it (the library registered it with that
 * scheduler's poller), until that thread closes or forgets it (coro_close,
 * coro_fd_forget) or its coro_main returns; the record is process-wide.
 * Meanwhile every call here on that number from another thread (another
 * scheduler's, or a plain thread's coro_close / coro_fd_forget) fails
 * with EPERM and does nothing: coro_close leaves the descriptor open, so
 * the owner's waiters are not left parked on a closed number. To move a
 * connection to another scheduler, coro_fd_forget it on the owning
 * thread first. Within a run of several schedulers (coro_main_opts'
 * threads), coro_close and coro_fd_forget from a coroutine of another
 * scheduler of the run do work: the owner is asked (a message) to wake
 * its waiters with EBADF and let go of fd, and the caller waits for that
 * before closing. A stream belongs to the scheduler of its first call, as
 * the objects of sync/sync.h do (EPERM elsewhere; coro_stream_free there
 * frees nothing and says so on stderr).
 *
 * No call here is async-signal-safe: wait for signals with
 * coro_signal_wait. */
#ifndef CORO_IO_IO_H
#define CORO_IO_IO_H

#include "coro/coro.h"

#include <signal.h>
#include <stddef.h>
/* sigset_t: <signal.h> declares it only when POSIX names are asked for,
 * <sys/select.h> always (POSIX), so <coro.h> compiles as strict C11 too. */
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

CORO_PUBLIC_BEGIN

struct addrinfo;

/* ---- Descriptors -------------------------------------------------------- */

enum { CORO_READ = 1, CORO_WRITE = 2 };

/* Wait until fd is readable and/or writable (events: CORO_READ|CORO_WRITE;
 * a hang-up or error counts as both). Returns the events that are ready
 * (a non-empty subset of events). Errors: EINVAL events empty or unknown
 * bits; EBADF fd invalid, or closed with coro_close while waiting; EPERM
 * fd cannot be polled (a regular file is always ready, so never waits),
 * or belongs to another thread's scheduler; ECANCELED, ETIMEDOUT. The
 * calls below fail with EPERM in that case too. */
int coro_wait_fd(int fd, int events);

/* As read(2)/write(2). coro_write writes all n bytes: it returns n, or, if
 * it fails after writing some, the count written so far (errno says why it
 * stopped), or -1 if it wrote nothing. Same for coro_writev (all bytes of
 * all buffers) and coro_send (all n, with flags). The read family returns
 * what one successful system call returned (0 at end of file). */
ssize_t coro_read(int fd, void *buf, size_t n);
ssize_t coro_write(int fd, const void *buf, size_t n);
ssize_t coro_readv(int fd, const struct iovec *iov, int cnt);
ssize_t coro_writev(int fd, const struct iovec *iov, int cnt);
ssize_t coro_recv(int fd, void *buf, size_t n, int flags);
ssize_t coro_send(int fd, const void *buf, size_t n, int flags);
/* One datagram each, as the POSIX calls. */
ssize_t coro_recvfrom(int fd, void *buf, size_t n, int flags,
                      struct sockaddr *from, socklen_t *fromlen);
ssize_t coro_sendto(int fd, const void *buf, size_t n, int flags,
                    const struct sockaddr *to, socklen_t tolen);

/* Accept a connection: the new descriptor is non-blocking and close-on-exec,
 * and a TCP connection gets TCP_NODELAY (as coro_tcp_dial's do, and Go's).
 * When the process is out of descriptors (EMFILE, ENFILE) or buffers
 * (ENOBUFS, ENOMEM) it fails with that errno, but only after waiting until
 * a descriptor is released with coro_close or 100 ms pass, so an accept
 * loop that retries at once does not spin. ECONNABORTED is retried. */
int coro_accept(int lfd, struct sockaddr *sa, socklen_t *len);
/* Connect a socket; waits for a non-blocking connect to finish and
 * reports its error (ECONNREFUSED, ETIMEDOUT, ...). After ECANCELED or
 * ETIMEDOUT from the caller's deadline the socket's state is unspecified:
 * close it. */
int coro_connect(int fd, const struct sockaddr *sa, socklen_t len);
/* Wake every coroutine waiting on fd with EBADF, remove fd from the
 * poller, then close it. Not a checkpoint: a cancelled coroutine can
 * always close. Returns close(2)'s result (EINTR is not retried: on Linux
 * the descriptor is closed then). Works on any thread for a descriptor
 * no running scheduler owns, and from any scheduler of the owner's run.
 * Errors: EBADF; EPERM fd belongs to another thread's scheduler outside
 * the caller's run (see above): nothing is done and fd stays open;
 * ENOMEM (the message to the owner). */
int coro_close(int fd);
/* coro_close without the close: wake every coroutine waiting on fd with
 * EBADF, remove fd from the poller and forget what the library knew of it
 * (registered, non-blocking, drained), leaving fd open and its O_NONBLOCK
 * flag as it is. Call it before fd is closed by other means, or before
 * handing it to code that will close it. The next call here that uses fd
 * starts afresh. Not a checkpoint; outside a coroutine there is nothing to
 * forget (0). Errors: EBADF fd < 0; EPERM fd belongs to another thread's
 * scheduler (nothing is done). */
int coro_fd_forget(int fd);

/* ---- Sockets ------------------------------------------------------------ */

/* coro_tcp_listen flags. */
enum {
    CORO_REUSEPORT = 1,   /* SO_REUSEPORT: several listeners share the port */
    CORO_IPV6ONLY  = 2,   /* an IPv6 listener takes no IPv4 connections */
};
/* A listening TCP socket (non-blocking, close-on-exec, SO_REUSEADDR,
 * backlog SOMAXCONN). host NULL or "" listens on every address (IPv6 with
 * IPv4 mapped where the system has IPv6, else IPv4); "127.0.0.1", "::1" or
 * a name listen there (a name with several addresses: the first that
 * binds; Linux makes a specific IPv6 address such as "::1" IPv6-only).
 * port "0" picks a free port: read it back with coro_sock_port. Numbers are
 * converted in place; names are looked up on the blocking pool. Errors:
 * EINVAL bad flags, or port NULL, empty, above 65535 or an unknown service;
 * ENOENT name not found; EAGAIN lookup failed for now; ENOPROTOOPT
 * CORO_REUSEPORT where the system has no SO_REUSEPORT; EAFNOSUPPORT no
 * address of a usable family; those of socket(2), setsockopt(2), bind(2),
 * listen(2), coro_getaddrinfo. */
int coro_tcp_listen(const char *host, const char *port, int flags);
/* Connect to host:port over TCP (TCP_NODELAY set). The name is looked up
 * on the blocking pool, then every address is tried in order until one
 * connects; the error is the last address's. host NULL or "" dials the
 * loopback addresses (::1, then 127.0.0.1). Errors: as coro_tcp_listen,
 * and those of coro_connect. */
int coro_tcp_dial(const char *host, const char *port);
/* Unix stream sockets. listen first removes an existing socket file at
 * path (only a socket: any other file makes bind fail with EADDRINUSE), as
 * asyncio does; do not point two servers at one path. Errors: EINVAL path
 * NULL or empty; ENAMETOOLONG path too long for sun_path; those of
 * socket(2), bind(2), listen(2), coro_connect. No abstract names. */
int coro_unix_listen(const char *path);
int coro_unix_dial(const char *path);
/* A UDP socket bound to host:port (host NULL: every address). No
 * SO_REUSEADDR (on Linux it would let two sockets share the port
 * silently). Errors: as coro_tcp_listen. */
int coro_udp_bind(const char *host, const char *port);
/* The local port a socket is bound to (after port "0"). Errors: EBADF,
 * ENOTSOCK (getsockname); EINVAL not an IPv4 or IPv6 socket. */
int coro_sock_port(int fd);

/* ---- The simulated network ------------------------------------------------ */

/* Inside a deterministic simulation (coro_main_opts with a sim, see
 * sched/sched.h) the socket calls above work on an in-memory network,
 * on virtual time, drawn from the seed (io/simnet.c has the model):
 *  - Descriptors: real numbers (each held by a /dev/null placeholder), so
 *    they never collide with real ones; coro_close frees them, and what is
 *    left is freed when coro_main returns. Outside a simulation nothing
 *    changes (one thread-local load per call).
 *  - Names: coro_tcp_listen(host, port) / coro_udp_bind bind the name
 *    "host:port" (no lookup: any host string; NULL or "" binds the port on
 *    every host; port "0" picks one from 49152 up, coro_sock_port reads
 *    it; a numeric port only, else EINVAL; EADDRINUSE for a name bound
 *    twice). coro_unix_listen / coro_unix_dial use the path as the name
 *    and make no file. A dialing socket's own host is "client".
 *  - coro_tcp_dial: ECONNREFUSED one latency later when nobody listens;
 *    otherwise the connection reaches the listener's backlog one latency
 *    later, and the dial returns then. coro_accept parks until a
 *    connection has arrived. coro_connect on a simulated socket: EISCONN.
 *  - Reads (coro_read, readv, recv, recvfrom on a connection) park until
 *    data written by the peer has arrived (each write's bytes arrive one
 *    latency after it, in order), and return what has (up to the buffer);
 *    0 once the peer has closed and everything is read; ECONNRESET after
 *    a reset. recv honours MSG_PEEK and MSG_DONTWAIT (EAGAIN). Writes
 *    (coro_write, writev, send, sendto on a connection) park while 256 KiB
 *    are queued unread for the peer and go on as it reads; EPIPE once the
 *    peer has closed (never SIGPIPE). coro_wait_fd waits for the same.
 *  - UDP: coro_sendto a numeric address ("127.0.0.1", port) reaches the
 *    socket bound to that name (or to its port on every host) one latency
 *    later; a datagram nobody is bound for is dropped silently;
 *    coro_recvfrom reports the sender as a numeric address.
 *  - Faults, drawn with probability fault_rate per call (never when 0),
 *    only of kinds the call may report anyway: a short read; ECONNRESET
 *    from a read or a write (both ends are reset; a write that had sent
 *    some bytes returns that short count with errno ECONNRESET); a write
 *    split in two deliveries (the reader sees short reads); ECONNREFUSED
 *    from a dial; EMFILE from an accept, after its usual 100 ms back-off
 *    (the connection stays queued); a datagram lost or delayed (reordered).
 *  - Every blocking call is a checkpoint and honours the deadline exactly
 *    in virtual time. Not simulated: coro_connect on a socket of your own
 *    (any socket(2) descriptor is a real one: waiting on it is EPERM). */

/* Partition hosts a and b of the simulated network (b NULL: a from every
 * host): until coro_sim_heal, whatever travels between them (bytes, end
 * of file, connections being dialed, datagrams) is held, not lost, and
 * goes on one fresh latency after the heal, in order; what had already
 * arrived stays readable. A host is the part of a name before ':' (the
 * listener's host as dialed; "client" for a dialing socket). Partitions
 * add up; coro_sim_heal(a, b) removes the a-b one, coro_sim_heal(a, NULL)
 * every one that names a. 0, or -1 with errno: EPERM outside a
 * simulation, EINVAL a NULL or empty, ENOMEM. */
int coro_sim_partition(const char *a, const char *b);
int coro_sim_heal(const char *a, const char *b);

/* ---- Buffered streams ----------------------------------------------------- */

typedef struct coro_stream coro_stream_t;

/* A stream over fd with a read buffer and a write buffer of bufsize bytes
 * each (0: 4096). Does not own fd. Reading does not flush pending output.
 * Errors (all stream calls): EINVAL a NULL stream or buffer, fd < 0;
 * ENOMEM. */
coro_stream_t *coro_stream_new(int fd, size_t bufsize);
/* Up to n bytes: what is buffered, else one read of the descriptor. 0 at
 * end of file. */
ssize_t coro_stream_read(coro_stream_t *s, void *buf, size_t n);
/* Read exactly n bytes unless end of file comes first (returns the short
 * count then; 0 at once at end of file). If it fails part-way (deadline,
 * cancel, error), the bytes already taken go back into the read buffer
 * when they fit and it returns -1, so nothing is lost and a retry gets
 * them; if they do not fit it returns the short count with errno set. */
ssize_t coro_stream_read_full(coro_stream_t *s, void *buf, size_t n);
/* One line, up to and including '\n', NUL-terminated in buf (max >= 2).
 * A line longer than max - 1 bytes is returned in pieces of max - 1 bytes
 * (without '\n' until its end); the last line of the input may lack '\n'.
 * Returns the bytes stored (not counting the NUL), 0 at end of file.
 * EINVAL max < 2. Fails part-way as coro_stream_read_full does. */
ssize_t coro_stream_readline(coro_stream_t *s, char *buf, size_t max);
/* Buffer n bytes, writing the buffer out when it fills; returns n or -1
 * (as coro_write: a short count when it failed part-way, counting the
 * bytes buffered or written; what a failed flush could not send stays
 * buffered, and the next flush or write retries it). */
ssize_t coro_stream_write(coro_stream_t *s, const void *buf, size_t n);
/* Write out everything buffered. 0 or -1. */
int coro_stream_flush(coro_stream_t *s);
/* Bytes buffered for reading (readable without touching the descriptor);
 * 0 and EPERM for another running scheduler's stream. */
size_t coro_stream_buffered(const coro_stream_t *s);
/* Free the stream (unflushed output is discarded); does not close fd. On
 * another running scheduler's stream it frees nothing and says so on
 * stderr. */
void coro_stream_free(coro_stream_t *s);

/* ---- Blocking work ------------------------------------------------------ */

/* Run fn(arg) on a thread of this scheduler's blocking pool and wait for
 * it; *status (if not NULL) receives fn's return value. The pool starts on
 * first use and grows, a thread whenever a job finds none idle, to its size
 * (coro_main_opts' pool_threads; by default CORO_POOL_THREADS from the
 * environment, 1..1024, else the number of online CPUs), and is joined
 * when coro_main returns (waiting for jobs still running). Threads are
 * started by a helper thread of the pool, never by the scheduler's: a
 * submission never waits for one. fn runs on another thread: it must not
 * call coro functions. If the caller is cancelled or its deadline passes it
 * stops waiting at once (ECANCELED / ETIMEDOUT): a job not yet started is
 * dropped (fn never runs), a running one finishes and its result is
 * discarded, so arg must stay valid until fn returns, and since the caller
 * cannot tell a dropped job from a running one, fn must not be the only
 * owner of something arg holds: use coro_run_blocking_owned to hand arg
 * over with a release function instead. An fn that forks should exec or
 * _exit in the child; if it returns there, the child leaves at once with
 * _exit(its status), having no scheduler to hand the result to.
 * Errors: EINVAL fn NULL; EAGAIN no thread could be started (the pool has
 * none, and creating one failed; a later call tries again); the error of
 * pthread_create(3) starting the pool's starter thread; EMFILE/ENFILE no
 * descriptor for the scheduler's wake-up; ENOMEM; EPERM outside a
 * coroutine. */
int coro_run_blocking(coro_fn fn, void *arg, int *status);
/* coro_run_blocking for an arg the job owns when its caller stops waiting.
 * On success (0) arg is the caller's again and release is not called. On
 * any failure (-1, whatever the errno) release(arg), if not NULL, runs
 * exactly once, when nothing can touch arg any more: at once if fn never
 * started (or the call failed before queuing it), else after fn returns.
 * It runs on the scheduler's thread (at the latest while coro_main returns)
 * and must not block or call coro functions. Errors: those of
 * coro_run_blocking. */
int coro_run_blocking_owned(coro_fn fn, void *arg, void (*release)(void *arg), int *status);
/* getaddrinfo(3) on the blocking pool. Returns 0 or -1 with errno
 * (ENOENT name not found, EAGAIN temporary failure, EINVAL bad arguments,
 * ENOMEM, ECANCELED, ETIMEDOUT; EAI_SYSTEM becomes the underlying errno,
 * EIO if none; EPERM outside a coroutine, and those of
 * coro_run_blocking); free *res with freeaddrinfo. A cancelled
 * lookup's late result is freed by the library. */
int coro_getaddrinfo(const char *host, const char *port,
                     const struct addrinfo *hints, struct addrinfo **res);

/* ---- Signals ---------------------------------------------------------------- */

/* Wait for one of the signals in set and return its number. The signals of
 * set are blocked in the calling thread from the first call on, until
 * coro_main returns (so one that arrives between two waits is kept for the
 * next, not lost and not fatal); block them in other threads yourself
 * (before starting them) so the process delivers them here. A signal that
 * arrives before the first call still has its default action (usually
 * fatal): a server that wants none lost blocks them in main() before
 * coro_main. The blocking pool's threads block every signal. Where
 * sigtimedwait is missing (macOS), let one thread only wait for a given
 * signal: a second one can stall its scheduler's thread until the signal
 * comes again (sched/sigmask.c).
 *
 * When coro_main returns, the thread's signal mask is exactly what it was
 * when coro_main began. A signal of these sets (or a SIGPIPE, which the
 * first I/O call blocks) that is still pending then, because it arrived
 * after the last wait, is never made fatal by coro: if the caller's own
 * mask blocks it, it stays pending; if the caller installed a handler, it
 * is delivered to that handler as the mask is restored (before coro_main
 * returns); if its disposition is the default or "ignore", the program had
 * asked coro to take that signal, so coro takes it (sigtimedwait, zero
 * timeout) and it is gone. One that arrives after that, even in the
 * instant before the mask is restored, meets the caller's disposition.
 * Masks are per thread: each coro_main restores its own thread's.
 * Errors: EINVAL set NULL, empty, or with SIGKILL/SIGSTOP or a synchronous
 * signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL); ECANCELED, ETIMEDOUT; EPERM
 * outside a coroutine (also in a forked child, see coro_main); EMFILE,
 * ENFILE, ENOMEM setting up the signal descriptor on first use. */
int coro_signal_wait(const sigset_t *set);

/* ---- Subprocesses ----------------------------------------------------------- */

/* A child process started by coro_process_spawn (asyncio's
 * create_subprocess_exec, tokio::process, Go's os/exec). The handle
 * belongs to the scheduler (thread) that spawned it. */
typedef struct coro_process coro_process_t;

/* What the child gets as its stdin, stdout or stderr (opts.stdio[i]). */
enum {
    CORO_STDIO_INHERIT = 0, /* whatever this process has there (a descriptor
                             * 0, 1 or 2 marked close-on-exec stays closed) */
    CORO_STDIO_NULL = 1,    /* /dev/null */
    CORO_STDIO_PIPE = 2,    /* a pipe; this process's end is coro_process_fd(p, i) */
    CORO_STDIO_FD = 3,      /* a copy of this process's descriptor opts.fd[i]
                             * (which stays open here: close it yourself) */
};

/* Options of coro_process_spawn; a zeroed struct (or NULL) means: this
 * process's environment and working directory, and all three stdio
 * descriptors inherited. */
typedef struct coro_process_opts {
    /* The child's environment, "NAME=value" strings ending with NULL;
     * NULL: this process's (environ, read at the spawn). */
    const char *const *env;
    /* The child's working directory; NULL: this process's. A relative
     * program path (one with a '/') and relative PATH entries are taken
     * from there, as with Python's cwd= and posix_spawn's addchdir. */
    const char *dir;
    /* stdin, stdout, stderr: CORO_STDIO_*. */
    int stdio[3];
    /* With CORO_STDIO_FD: the descriptor to give as stdio i. */
    int fd[3];
    /* CORO_PROCESS_* flags. */
    int flags;
} coro_process_opts_t;

/* coro_process_opts_t.flags */
enum {
    /* The child leads a new process group (setpgid(0, 0)), so that
     * coro_process_kill_group reaches it and everything it starts, and
     * the terminal's Ctrl-C (sent to the foreground group) does not. */
    CORO_PROCESS_PGROUP = 1,
};

/* Start argv[0] with the arguments argv (NULL-terminated). argv[0] is
 * looked up in this process's PATH as execvp does when it holds no '/'
 * (PATH unset: /bin:/usr/bin; an entry that fails with EACCES is
 * remembered and the search goes on; no /bin/sh fallback for files
 * without a #! line: ENOEXEC). The child gets exactly descriptors 0, 1
 * and 2 as opts says, every other descriptor closed (not only the
 * close-on-exec ones), an empty signal mask and every signal's
 * disposition at its default (SIG_IGN included), whatever this thread
 * blocks or this process ignores. The parent's pipe ends are
 * non-blocking and close-on-exec: use them with coro_read, coro_write,
 * coro_stream_*; coro_process_free closes them. (The child's ends are
 * blocking; but a descriptor given with CORO_STDIO_INHERIT or
 * CORO_STDIO_FD that this process uses with coro I/O is non-blocking,
 * and that flag belongs to the open file, which the child shares.)
 *
 * The child is made with clone(CLONE_VM | CLONE_VFORK) on a stack of its
 * own (Linux; fork elsewhere): this thread waits the moment the child
 * takes to exec, and a failure before the new program runs (not found,
 * not executable, a bad directory) is this call's error, never a child
 * that exits with 127. A checkpoint (it starts nothing when the caller
 * is cancelled or past its deadline). Errors: EINVAL argv NULL or
 * empty, a stdio value out of range, fd[i] < 0 with CORO_STDIO_FD, or
 * unknown flags;
 * EBADF fd[i] not open; ENOENT, ENOTDIR, EACCES, ENOEXEC, E2BIG,
 * ETXTBSY, ELOOP, ENAMETOOLONG: from exec or from changing to dir;
 * EAGAIN, ENOMEM: no process could be made; EMFILE, ENFILE; ECANCELED,
 * ETIMEDOUT; EPERM outside a coroutine. */
coro_process_t *coro_process_spawn(const char *const *argv, const coro_process_opts_t *opts);

/* The child's process id. */
pid_t coro_process_pid(const coro_process_t *p);

/* This process's end of the child's stdio pipe i (0 stdin: write to it;
 * 1 stdout, 2 stderr: read from them), or -1 with EBADF when stdio i is
 * not a pipe or was closed with coro_process_close_fd (EINVAL: i not 0, 1
 * or 2). Owned by p: do not close it with coro_close. */
int coro_process_fd(const coro_process_t *p, int i);
/* Close pipe end i now (stdin: the child reads end of file), waking any
 * coroutine waiting on it (EBADF). Errors: EINVAL p NULL, i not 0, 1 or
 * 2; EBADF no pipe there, or closed already. Not a checkpoint. */
int coro_process_close_fd(coro_process_t *p, int i);

/* Wait for the child to end and store its waitpid(2) status in *status
 * (if not NULL): decode it with WIFEXITED / WEXITSTATUS, WIFSIGNALED /
 * WTERMSIG. Once collected, the status stays: later calls return it at
 * once. A checkpoint: ECANCELED and ETIMEDOUT leave the child running and
 * p waitable. Several coroutines may wait at once. The child is watched
 * through a pidfd in the poller (Linux 5.3 and later), else through
 * SIGCHLD, which this thread then keeps blocked while its scheduler runs
 * and takes (do not wait for SIGCHLD with coro_signal_wait meanwhile),
 * and through a re-check now and then in case another thread took the
 * signal (see io/process.c; CORO_PROCESS_WAIT=sigchld in the environment,
 * read once, forces that path). Only this child is ever reaped (never
 * waitpid(-1)). Errors: EINVAL p NULL; EPERM outside a coroutine, or
 * not the thread (or the coro_main run) that spawned p; ECHILD the child
 * was reaped behind the library's back (SIGCHLD set to SIG_IGN, or a
 * waitpid(-1) elsewhere): its status is lost; ECANCELED, ETIMEDOUT. */
int coro_process_wait(coro_process_t *p, int *status);

/* Send signal sig to the child. Safe at any time: once the child has
 * ended but before it is collected it returns 0 and the signal goes
 * nowhere; once coro_process_wait has collected it, ESRCH (its pid may
 * belong to another process by then, and is never signalled; with a pidfd
 * the kernel checks too). sig 0 tests that the child has not been
 * collected. Not a checkpoint; works outside a coroutine. Errors: EINVAL
 * p NULL or sig invalid; ESRCH; EPERM. */
int coro_process_kill(coro_process_t *p, int sig);

/* Send sig to the child's process group (spawned with
 * CORO_PROCESS_PGROUP): the child and whatever it started that is still
 * in the group (a shell's commands). Until the child is collected; the
 * group's id is the child's pid, which no new process can take while the
 * child is unreaped. Not a checkpoint. Errors: EINVAL p NULL, no
 * CORO_PROCESS_PGROUP, or sig invalid; ESRCH the child was collected;
 * EPERM. */
int coro_process_kill_group(coro_process_t *p, int sig);

/* Close the pipe ends and free p. A child that has ended is reaped here.
 * One still running is killed (SIGKILL: a handle dropped means the work
 * is abandoned, as asyncio's transport close and tokio's kill_on_drop do;
 * wait for it first to let it finish) and reaped in the background by a
 * detached coroutine of this scheduler ("process reaper"), so coro_main
 * returns only once it is gone and no zombie is left; outside a coroutine
 * it is reaped here, blocking for the moment its death takes. Call it on
 * the thread that spawned p (or after its coro_main returned), with no
 * coroutine waiting on p: a free under a waiter aborts with a message.
 * Not a checkpoint. NULL is ignored. */
void coro_process_free(coro_process_t *p);

CORO_PUBLIC_END

#ifdef __cplusplus
}
#endif

#endif /* CORO_IO_IO_H */
