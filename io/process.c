/* io/process.c: child processes (see io/io.h): the handle, its stdio
 * pipes, waiting for the child's end, signals, and reaping what was
 * abandoned. Making the child is io/process_exec.c's job.
 *
 * Waiting. On Linux each child gets a pidfd (pidfd_open, Linux 5.3),
 * which turns readable when the child ends: the wait tries
 * waitpid(pid, WNOHANG) and parks on the pidfd in the poller like any
 * descriptor (coro__fd_wait), so a wait is an ordinary checkpoint and
 * counts as "something can still wake us" for the deadlock detector. The
 * kqueue backend on Linux (over sched/kqueue_shim.c) watches the pidfd
 * with EVFILT_READ the same way; EVFILT_PROC is not used, because the
 * poller interface has no process filter and the stand-in could not test
 * one.
 *
 * Without a pidfd (pidfd_open answers ENOSYS: Linux before 5.3, or a
 * seccomp filter; any other error for that one child; Valgrind 3.19,
 * which does not know the call; BSD and macOS; or CORO_PROCESS_WAIT=
 * sigchld in the environment, read once, which forces this path for
 * tests) a wait goes through SIGCHLD and the scheduler's signal wait
 * (signalfd, EVFILT_SIGNAL): SIGCHLD is blocked in the thread from the
 * first such wait until coro_main returns (coro__block_signals: the
 * thread's mask is given back then). A waiter takes a pending
 * SIGCHLD, then tries waitpid(pid, WNOHANG) on every child of this
 * thread that waits this way (a sweep: one SIGCHLD may stand for several
 * children, as standard signals do not queue), then parks until the next
 * signal. A sweep that collects another waiter's child wakes the signal
 * waiters, in case the signal it took was the one they needed. SIGCHLD
 * is sent to the process, and a thread that does not block it may
 * swallow it (its default action is to ignore it), so a waiter also looks
 * again after 10 ms, then 20, 40... up to 1 s: slow, but never stuck.
 *
 * Only this library's own children are reaped, each by its pid: never
 * waitpid(-1). A child's pid cannot be reused before it is reaped, so a
 * signal sent before that cannot reach another process; after it, the
 * handle says ESRCH (and the pidfd would too).
 *
 * Abandoned children. coro_process_free of a child still running kills
 * it (SIGKILL) and hands the handle to a detached coroutine of the
 * scheduler, "process reaper", which waits for each such child, reaps it
 * and frees its handle; coro_main therefore returns only once they are
 * gone. Outside a coroutine the child is reaped at once, blocking. */
#include "io/io_int.h"
#include "io/process_int.h"
#include "coro/compat.h"
#include "coro/fault.h"
#include "coro/list.h"
#include "coro/sanitize.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/syscall.h>
#endif

extern char **environ;

#define PROCESS_MAGIC_LIVE 0x50524F43u
#define PROCESS_MAGIC_DEAD 0xDEAD0C0Du

/* How soon a wait looks again by itself: a SIGCHLD may have gone to another
 * thread, a pidfd wake-up may have come a moment early (wait_pidfd). */
#define RECHECK_FIRST (10 * CORO_MS)
#define RECHECK_MAX CORO_SEC

struct coro_process {
    uint32_t magic;
    pid_t pid;
    /* The pidfd the poller watches; -1 on the SIGCHLD path, and once
     * the child is reaped. */
    int pidfd;
    /* This process's pipe ends for the child's stdin, stdout, stderr, or
     * -1. */
    int fds[3];
    /* Waits through SIGCHLD (no pidfd). */
    uint8_t sigchld;
    /* Leads its own process group (CORO_PROCESS_PGROUP). */
    uint8_t pgroup;
    /* The child is reaped: status holds its waitpid status, unless lost
     * (somebody else reaped it: ECHILD). */
    uint8_t reaped, lost;
    int status;
    /* Coroutines inside a wait for it (the reaper counts). */
    int waiters;
    /* The scheduler it belongs to; NULL once that coro_main returned. */
    struct sched *sched;
    /* On its thread's list of handles; on the reaper's list once freed
     * while the child ran. */
    coro_list_t node, orphan_node;
};

/* ---- per-thread state -------------------------------------------------------- */

typedef struct proc_thread {
    int ready;
    /* The scheduler this state belongs to (a fork's child that starts a
     * coro_main of its own inherits a copy of its parent's: dropped). */
    struct sched *sched;
    /* Every handle of this scheduler not yet freed (swept on the SIGCHLD
     * path, detached from the scheduler when coro_main returns). */
    coro_list_t all;
    /* Killed children whose handles were freed, for the reaper. */
    coro_list_t orphans;
    coro_t *reaper;
    /* SIGCHLD blocked for the SIGCHLD path (coro_main gives the thread
     * its old mask back as it ends). */
    int chld_blocked;
} proc_thread_t;

static __thread proc_thread_t thread_state;

static void destroy(coro_process_t *p);
static void reap_blocking(coro_process_t *p);

/* coro_main is returning: every coroutine has ended, the reaper too. */
static void thread_fini(void *arg)
{
    proc_thread_t *t = arg;
    coro_list_t *n;
    /* Left by a reaper that could not spawn or was unwound: they were
     * killed, so this is brief. */
    while ((n = coro_list_first(&t->orphans)) != NULL) {
        coro_process_t *p = coro_container_of(n, coro_process_t, orphan_node);
        reap_blocking(p);
        destroy(p);
    }
    /* The rest outlive the scheduler: free works on them later, wait no
     * longer does (EPERM). */
    while ((n = coro_list_first(&t->all)) != NULL) {
        coro_process_t *p = coro_container_of(n, coro_process_t, node);
        coro_list_remove(n);
        p->sched = NULL;
    }
    memset(t, 0, sizeof *t);
}

static proc_thread_t *thread_get(void)
{
    proc_thread_t *t = &thread_state;
    struct sched *s = coro__self();
    if (t->ready && t->sched == s)
        return t;
    memset(t, 0, sizeof *t);
    if (coro__at_exit(thread_fini, t) != 0)
        return NULL;
    t->sched = s;
    coro_list_init(&t->all);
    coro_list_init(&t->orphans);
    t->reaper = NULL;
    t->chld_blocked = 0;
    t->ready = 1;
    return t;
}

/* ---- which way to wait ------------------------------------------------------- */

enum { MODE_UNKNOWN, MODE_PIDFD, MODE_SIGCHLD };
static atomic_int wait_mode;

static int mode(void)
{
    int m = atomic_load_explicit(&wait_mode, memory_order_relaxed);
    if (m != MODE_UNKNOWN)
        return m;
    m = MODE_PIDFD;
#ifndef __linux__
    m = MODE_SIGCHLD;
#endif
    const char *env = getenv("CORO_PROCESS_WAIT");
    if (env && strcmp(env, "sigchld") == 0)
        m = MODE_SIGCHLD;
    /* Valgrind 3.19 answers ENOSYS to pidfd_open, with a warning. */
    if (RUNNING_ON_VALGRIND)
        m = MODE_SIGCHLD;
    atomic_store_explicit(&wait_mode, m, memory_order_relaxed);
    return m;
}

/* A pidfd for pid, or -1 (the SIGCHLD path then). */
static int open_pidfd(pid_t pid)
{
#if defined(__linux__) && defined(SYS_pidfd_open)
    if (mode() != MODE_PIDFD)
        return -1;
    long fd = syscall(SYS_pidfd_open, pid, 0); /* close-on-exec */
    if (fd >= 0)
        return (int)fd;
    if (errno == ENOSYS)
        atomic_store_explicit(&wait_mode, MODE_SIGCHLD, memory_order_relaxed);
    return -1;
#else
    (void)pid;
    return -1;
#endif
}

/* ---- reaping ------------------------------------------------------------------- */

static void mark_reaped(coro_process_t *p, int status, int lost)
{
    p->reaped = 1;
    p->lost = (uint8_t)lost;
    p->status = status;
    if (p->pidfd >= 0) {
        int fd = p->pidfd;
        p->pidfd = -1;
        coro_close(fd); /* other waiters on it wake (EBADF) and see reaped */
    }
}

/* Reap p if its child has ended: 1 if p is reaped (now or before). */
static int try_reap(coro_process_t *p)
{
    if (p->reaped)
        return 1;
    int status = 0;
    pid_t r;
    do
        r = waitpid(p->pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return 0;
    mark_reaped(p, status, r != p->pid); /* ECHILD: reaped behind our back */
    return 1;
}

static void reap_blocking(coro_process_t *p)
{
    if (p->reaped)
        return;
    int status = 0;
    pid_t r;
    do
        r = waitpid(p->pid, &status, 0);
    while (r < 0 && errno == EINTR);
    mark_reaped(p, status, r != p->pid);
}

/* ---- the SIGCHLD path ------------------------------------------------------------ */

static void chld_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
}

static int block_sigchld(proc_thread_t *t)
{
    if (t->chld_blocked)
        return 0;
    sigset_t chld;
    chld_set(&chld);
    if (coro__block_signals(&chld) != 0)
        return -1;
    t->chld_blocked = 1;
    return 0;
}

/* Discard a pending SIGCHLD (blocked in this thread): the sweep that
 * follows looks at every child, and the next one makes a new edge. */
static void take_sigchld(void)
{
    sigset_t chld;
    chld_set(&chld);
    while (coro__signal_take(&chld) == SIGCHLD)
        ;
}

static void sweep(proc_thread_t *t, const coro_process_t *self)
{
    take_sigchld();
    int woke_other = 0;
    for (coro_list_t *n = t->all.next; n != &t->all; n = n->next) {
        coro_process_t *p = coro_container_of(n, coro_process_t, node);
        if (p->sigchld && !p->reaped && try_reap(p) && p != self && p->waiters)
            woke_other = 1;
    }
    /* Orphans are on t->all too (their handles are freed only once reaped). */
    if (woke_other)
        coro__signal_wake_all();
}

/* ---- waiting ------------------------------------------------------------------------ */

/* Wait until p's child is reaped: 0, or -1 with errno (ECHILD lost;
 * ECANCELED, ETIMEDOUT, or a poller error, p still waitable). */
/* Wait for p's pidfd to turn readable, or for `recheck` to pass: 0 (look
 * again), or -1 with the caller's own ECANCELED/ETIMEDOUT/EBADF. The
 * pidfd is watched edge-triggered: one wake-up whose poll finds the exit
 * not yet visible (as early pidfd kernels could, waking pollers before
 * setting the exit state) is lost for good, and the caller would sleep
 * to its deadline. A group-kill test did fail that way a few times under
 * heavy load, for a cause not pinned down; so the wait also looks again
 * on a timer (10 ms, doubling to 1 s), as the SIGCHLD path does. */
static int wait_pidfd(coro_process_t *p, int64_t recheck)
{
    int64_t deadline = coro_deadline();
    int64_t until = coro_now() + recheck;
    int mine = until < deadline; /* the recheck comes before the caller's deadline */
    if (mine)
        coro_set_deadline(until);
    int r = coro__fd_wait(p->pidfd, SCHED_POLL_READ, "process pidfd");
    int e = errno;
    if (mine)
        coro_set_deadline(deadline);
    if (r < 0 && !(mine && e == ETIMEDOUT)) {
        errno = e;
        return -1;
    }
    return 0;
}

static int wait_exit(proc_thread_t *t, coro_process_t *p)
{
    int64_t recheck = RECHECK_FIRST;
    while (!try_reap(p)) {
        if (!p->sigchld) {
            if (wait_pidfd(p, recheck) < 0 && !p->reaped)
                return -1;
            recheck = recheck * 2 < RECHECK_MAX ? recheck * 2 : RECHECK_MAX;
            continue;
        }
        if (block_sigchld(t) != 0)
            return -1;
        sweep(t, p);
        if (p->reaped)
            break;
        sigset_t chld;
        chld_set(&chld);
        if (coro__signal_park_until(&chld, coro_now() + recheck, "process", p->pid) < 0 &&
            !p->reaped)
            return -1;
        recheck = recheck * 2 < RECHECK_MAX ? recheck * 2 : RECHECK_MAX;
    }
    if (p->lost) {
        errno = ECHILD;
        return -1;
    }
    return 0;
}

/* ---- the reaper ----------------------------------------------------------------------- */

static int reaper_main(void *arg)
{
    proc_thread_t *t = arg;
    coro_shield(1);
    coro_set_deadline(CORO_NEVER);
    coro_list_t *n;
    while ((n = coro_list_first(&t->orphans)) != NULL) {
        coro_process_t *p = coro_container_of(n, coro_process_t, orphan_node);
        p->waiters++;
        int r = wait_exit(t, p);
        p->waiters--;
        if (r != 0)
            reap_blocking(p); /* unwound (deadlock): it was killed, this is brief */
        destroy(p);
    }
    t->reaper = NULL;
    return 0;
}

/* Hand p (its child killed) to the reaper: 0, or -1 if no reaper could
 * be started. */
static int hand_to_reaper(proc_thread_t *t, coro_process_t *p)
{
    coro_list_push_back(&t->orphans, &p->orphan_node);
    if (t->reaper)
        return 0;
    const coro_opts_t opts = { .stack_size = 0, .name = "process reaper" };
    coro_t *r = coro_spawn_opts(reaper_main, t, &opts);
    if (!r) {
        coro_list_remove(&p->orphan_node);
        return -1;
    }
    coro_detach(r);
    t->reaper = r;
    return 0;
}

/* ---- handles ------------------------------------------------------------------------- */

__attribute__((noreturn)) static void bad_handle(const coro_process_t *p, const char *fn,
                                                 const char *why)
{
    fprintf(stderr, "coro: %s(%p): %s\n", fn, (const void *)p, why);
    fflush(stderr);
    abort();
}

/* Abort on a freed or bogus handle (under ASan a freed one is poisoned:
 * ask first, so the message is ours). */
static void check(const coro_process_t *p, const char *fn)
{
#if CORO_ASAN
    if (__asan_address_is_poisoned(&p->magic))
        bad_handle(p, fn, "the process handle has been freed (use after coro_process_free)");
#endif
    if (p->magic != PROCESS_MAGIC_LIVE)
        bad_handle(p, fn, p->magic == PROCESS_MAGIC_DEAD
                              ? "the process handle has been freed (use after coro_process_free)"
                              : "not a process handle");
}

static void destroy(coro_process_t *p)
{
    coro_list_remove(&p->node);
    coro_list_remove(&p->orphan_node);
    for (int i = 0; i < 3; i++)
        if (p->fds[i] >= 0)
            coro_close(p->fds[i]);
    if (p->pidfd >= 0)
        coro_close(p->pidfd);
    *(volatile uint32_t *)&p->magic = PROCESS_MAGIC_DEAD;
    free(p);
}

/* ---- spawning -------------------------------------------------------------------------- */

/* Close the descriptors of a spawn that are not the caller's, keeping errno. */
static void close_quietly(int *fds, int n)
{
    int e = errno;
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    errno = e;
}

/* A pipe for stdio i: *parent gets this process's end (non-blocking), the
 * return value the child's (>= 3, blocking). Both close-on-exec. */
static int make_pipe(int i, int *parent)
{
    int pp[2];
    if (coro__pipe(pp, 0) != 0) /* close-on-exec */
        return -1;
    int mine = i == 0 ? pp[1] : pp[0];
    int theirs = coro__fd_above_stdio(i == 0 ? pp[0] : pp[1]);
    int fl = fcntl(mine, F_GETFL);
    if (theirs < 0 || fl < 0 || fcntl(mine, F_SETFL, fl | O_NONBLOCK) != 0) {
        int e = errno;
        close(mine);
        if (theirs >= 0)
            close(theirs);
        errno = e;
        return -1;
    }
    *parent = mine;
    return theirs;
}

coro_process_t *coro_process_spawn(const char *const *argv, const coro_process_opts_t *opts)
{
    static const coro_process_opts_t defaults;
    if (!opts)
        opts = &defaults;
    if (!argv || !argv[0] || (opts->flags & ~CORO_PROCESS_PGROUP)) {
        errno = EINVAL;
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        int how = opts->stdio[i];
        if (how < CORO_STDIO_INHERIT || how > CORO_STDIO_FD ||
            (how == CORO_STDIO_FD && opts->fd[i] < 0)) {
            errno = EINVAL;
            return NULL;
        }
        if (how == CORO_STDIO_FD && fcntl(opts->fd[i], F_GETFD) < 0)
            return NULL; /* EBADF */
    }
    if (coro__checkpoint() != 0)
        return NULL;
    proc_thread_t *t = thread_get();
    if (!t)
        return NULL;
    coro_process_t *p = coro__calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->magic = PROCESS_MAGIC_LIVE;
    p->pidfd = -1;
    p->fds[0] = p->fds[1] = p->fds[2] = -1;
    coro_list_init(&p->node);
    coro_list_init(&p->orphan_node);

    coro__exec_t x = {
        .argv = argv,
        .envp = opts->env ? opts->env : (const char *const *)environ,
        .dir = opts->dir,
        .stdio = { -1, -1, -1 },
        .pgroup = (opts->flags & CORO_PROCESS_PGROUP) != 0,
    };
    /* The child's descriptors made here ([3]: /dev/null), closed once
     * the child has its copies. */
    int made[4] = { -1, -1, -1, -1 };
    for (int i = 0; i < 3; i++) {
        switch (opts->stdio[i]) {
        case CORO_STDIO_NULL:
            if (made[3] < 0) {
                int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                made[3] = fd < 0 ? -1 : coro__fd_above_stdio(fd);
                if (made[3] < 0)
                    goto fail;
            }
            x.stdio[i] = made[3];
            break;
        case CORO_STDIO_PIPE:
            made[i] = make_pipe(i, &p->fds[i]);
            if (made[i] < 0)
                goto fail;
            x.stdio[i] = made[i];
            break;
        case CORO_STDIO_FD:
            if (opts->fd[i] >= 3) {
                x.stdio[i] = opts->fd[i];
            } else {
                made[i] = fcntl(opts->fd[i], F_DUPFD_CLOEXEC, 3);
                if (made[i] < 0)
                    goto fail;
                x.stdio[i] = made[i];
            }
            break;
        default: /* CORO_STDIO_INHERIT */
            break;
        }
    }
    p->pid = coro__exec(&x);
    close_quietly(made, 4);
    if (p->pid < 0)
        goto fail;

    p->sched = coro__self();
    p->pgroup = (uint8_t)x.pgroup;
    /* Their numbers may have been used before: start afresh. */
    for (int i = 0; i < 3; i++)
        if (p->fds[i] >= 0)
            coro__fd_new(p->fds[i], 0);
    p->pidfd = open_pidfd(p->pid);
    if (p->pidfd >= 0)
        coro__fd_new(p->pidfd, 0);
    else
        p->sigchld = 1;
    coro_list_push_back(&t->all, &p->node);
    return p;

fail:
    close_quietly(made, 4);
    close_quietly(p->fds, 3);
    {
        int e = errno;
        free(p);
        errno = e;
    }
    return NULL;
}

/* ---- the calls on a handle -------------------------------------------------------------- */

pid_t coro_process_pid(const coro_process_t *p)
{
    if (!p) {
        errno = EINVAL;
        return -1;
    }
    check(p, "coro_process_pid");
    return p->pid;
}

int coro_process_fd(const coro_process_t *p, int i)
{
    if (!p || i < 0 || i > 2) {
        errno = EINVAL;
        return -1;
    }
    check(p, "coro_process_fd");
    if (p->fds[i] < 0) {
        errno = EBADF;
        return -1;
    }
    return p->fds[i];
}

int coro_process_close_fd(coro_process_t *p, int i)
{
    if (!p || i < 0 || i > 2) {
        errno = EINVAL;
        return -1;
    }
    check(p, "coro_process_close_fd");
    int fd = p->fds[i];
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    p->fds[i] = -1;
    return coro_close(fd);
}

int coro_process_wait(coro_process_t *p, int *status)
{
    if (!p) {
        errno = EINVAL;
        return -1;
    }
    check(p, "coro_process_wait");
    if (coro__checkpoint() != 0)
        return -1;
    if (!p->sched || p->sched != coro__self()) {
        errno = EPERM;
        return -1;
    }
    p->waiters++;
    int r = wait_exit(&thread_state, p);
    p->waiters--;
    if (r == 0 && status)
        *status = p->status;
    return r;
}

int coro_process_kill(coro_process_t *p, int sig)
{
    if (!p) {
        errno = EINVAL;
        return -1;
    }
    check(p, "coro_process_kill");
    if (p->sched && p->sched != coro__self()) {
        errno = EPERM;
        return -1;
    }
    if (p->reaped) {
        errno = ESRCH;
        return -1;
    }
#if defined(__linux__) && defined(SYS_pidfd_send_signal)
    if (p->pidfd >= 0) {
        if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) == 0)
            return 0;
        if (errno == ESRCH)
            return 0; /* ended, not reaped yet (kernels that say so for a zombie) */
        if (errno != ENOSYS)
            return -1;
    }
#endif
    /* Not reaped: the pid is still the child's (a zombie keeps it). */
    return kill(p->pid, sig);
}

int coro_process_kill_group(coro_process_t *p, int sig)
{
    if (!p) {
        errno = EINVAL;
        return -1;
    }
    check(p, "coro_process_kill_group");
    if (!p->pgroup) {
        errno = EINVAL;
        return -1;
    }
    if (p->sched && p->sched != coro__self()) {
        errno = EPERM;
        return -1;
    }
    if (p->reaped) {
        errno = ESRCH;
        return -1;
    }
    if (kill(-p->pid, sig) == 0)
        return 0;
    /* The leader has ended (unreaped) and so has the rest of the group. */
    return errno == ESRCH ? 0 : -1;
}

void coro_process_free(coro_process_t *p)
{
    if (!p)
        return;
    check(p, "coro_process_free");
    if (p->waiters)
        bad_handle(p, "coro_process_free", "a coroutine is still waiting for the process");
    struct sched *self = coro__self();
    if (p->sched && p->sched != self)
        bad_handle(p, "coro_process_free", "called on a thread that did not spawn the process");
    for (int i = 0; i < 3; i++)
        if (p->fds[i] >= 0) {
            coro_close(p->fds[i]);
            p->fds[i] = -1;
        }
    if (!try_reap(p)) {
        int e = errno;
        (void)coro_process_kill(p, SIGKILL);
        errno = e;
        if (p->sched && coro__current() && hand_to_reaper(&thread_state, p) == 0)
            return;
        reap_blocking(p);
    }
    destroy(p);
}
