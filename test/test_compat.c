/* test/test_compat.c: the two paths of coro/compat.h.
 *
 *   - Every descriptor the library makes (listeners, dialled and accepted
 *     sockets, Unix and UDP sockets, the poller's wake-up and signal
 *     descriptors) is close-on-exec and non-blocking, in the native build
 *     and in `make COMPAT=fallback`, where they are made by plain
 *     socket/accept/pipe and fcntl.
 *   - The fallback build really takes the fallback paths: a child process
 *     runs a workload under a seccomp filter that refuses what macOS lacks
 *     (accept4, pipe2 with flags, socket with SOCK_NONBLOCK/SOCK_CLOEXEC,
 *     MSG_NOSIGNAL, sigtimedwait with a timeout, eventfd). The fallback
 *     build must not notice; the native build must fail, which shows the
 *     filter is not a tautology. */
#include "test/test_io.h"
#include "coro/compat.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SCAN 1024
/* libkqueue's descriptors stand in for a kernel's kqueue: they are not the
 * library's, so a build over it checks only what the library returns. */
#if defined(CORO_POLLER_KQUEUE) && !defined(CORO_KQUEUE_SHIM)
#define SCAN_ALL_FDS 0
#else
#define SCAN_ALL_FDS 1
#endif

/* ---- descriptor flags -------------------------------------------------------------- */

/* Which descriptors below MAX_SCAN are open. */
static void open_fds(char open[MAX_SCAN])
{
    for (int fd = 0; fd < MAX_SCAN; fd++)
        open[fd] = fcntl(fd, F_GETFD) >= 0;
}

static int is_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    ASSERT_GE(fl, 0);
    return (fl & FD_CLOEXEC) != 0;
}

static int is_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ASSERT_GE(fl, 0);
    return (fl & O_NONBLOCK) != 0;
}

/* What /proc says fd is ("socket:[...]", "pipe:[...]",
 * "anon_inode:[eventfd]", ...). */
static void fd_kind(int fd, char *buf, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t r = readlink(path, buf, n - 1);
    buf[r > 0 ? r : 0] = '\0';
}

typedef struct flags_run {
    char before[MAX_SCAN];
    int checked, pipes, eventfds;
} flags_run_t;

static int dial_body(void *arg)
{
    const char *port = arg;
    int fd = coro_tcp_dial("127.0.0.1", port);
    ASSERT_GE(fd, 0);
    ASSERT(is_cloexec(fd));
    ASSERT(is_nonblock(fd));
    ASSERT_EQ(coro_write(fd, "d", 1), 1);
    ASSERT_EQ(coro_close(fd), 0);
    return 0;
}

static int unix_dial_body(void *arg)
{
    int fd = coro_unix_dial(arg);
    ASSERT_GE(fd, 0);
    ASSERT(is_cloexec(fd));
    ASSERT(is_nonblock(fd));
    ASSERT_EQ(coro_write(fd, "u", 1), 1);
    ASSERT_EQ(coro_close(fd), 0);
    return 0;
}

static int nap_job(void *arg)
{
    (void)arg;
    usleep(1000);
    return 5;
}

/* Accept one connection on l from body(arg); check it as above. */
static void accept_one(int l, coro_fn body, void *arg)
{
    coro_t *c = coro_spawn(body, arg);
    ASSERT_NOT_NULL(c);
    int a = coro_accept(l, NULL, NULL);
    ASSERT_GE(a, 0);
    ASSERT(is_cloexec(a));
    ASSERT(is_nonblock(a));
    char ch;
    ASSERT_EQ(coro_read(a, &ch, 1), 1);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(coro_close(a), 0);
}

/* Every descriptor open now that was not before coro_main: close-on-exec,
 * and non-blocking unless it is an epoll instance (a poller's own, whose
 * flag changes nothing). */
static void check_new_fds(flags_run_t *r)
{
    for (int fd = 0; fd < MAX_SCAN; fd++) {
        if (r->before[fd] || fcntl(fd, F_GETFD) < 0)
            continue;
        char kind[128];
        fd_kind(fd, kind, sizeof kind);
        printf("fd %d: %s%s%s\n", fd, kind, is_cloexec(fd) ? " cloexec" : "",
               is_nonblock(fd) ? " nonblock" : "");
        ASSERT(is_cloexec(fd));
        if (!strstr(kind, "eventpoll"))
            ASSERT(is_nonblock(fd));
        r->checked++;
        r->pipes += strncmp(kind, "pipe:", 5) == 0;
        r->eventfds += strstr(kind, "[eventfd]") != NULL;
    }
}

static int flags_main(void *arg)
{
    flags_run_t *r = arg;
    /* TCP: the listener, a dialled and an accepted socket. */
    int l = coro_tcp_listen("127.0.0.1", "0", 0);
    ASSERT_GE(l, 0);
    ASSERT(is_cloexec(l));
    ASSERT(is_nonblock(l));
    char port[16];
    snprintf(port, sizeof port, "%d", coro_sock_port(l));
    accept_one(l, dial_body, port);
    /* Unix stream sockets. */
    char path[64];
    snprintf(path, sizeof path, "/tmp/coro-compat-%ld.sock", (long)getpid());
    int ul = coro_unix_listen(path);
    ASSERT_GE(ul, 0);
    ASSERT(is_cloexec(ul));
    ASSERT(is_nonblock(ul));
    accept_one(ul, unix_dial_body, path);
    /* UDP. */
    int u = coro_udp_bind("127.0.0.1", "0");
    ASSERT_GE(u, 0);
    ASSERT(is_cloexec(u));
    ASSERT(is_nonblock(u));
    /* The poller's wake-up (a job's end is posted back) and its signal
     * descriptor (signalfd, or the shim's). */
    int status = 0;
    ASSERT_EQ(coro_run_blocking(nap_job, NULL, &status), 0);
    ASSERT_EQ(status, 5);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &usr1, NULL), 0);
    ASSERT_EQ(raise(SIGUSR1), 0);
    ASSERT_EQ(coro_signal_wait(&usr1), SIGUSR1);
    /* Everything is still open here: look at all of it (but for
     * libkqueue's own descriptors, which stand in for a kernel's kqueue
     * and are not the library's). */
    if (SCAN_ALL_FDS)
        check_new_fds(r);
    ASSERT_EQ(coro_close(u), 0);
    ASSERT_EQ(coro_close(ul), 0);
    ASSERT_EQ(coro_close(l), 0);
    unlink(path);
    return 0;
}

TEST(compat_descriptors_are_cloexec_and_nonblocking)
{
    flags_run_t r;
    memset(&r, 0, sizeof r);
    open_fds(r.before);
    ASSERT_EQ(coro_main(flags_main, &r), 0);
    /* 3 listeners, the poller's descriptors: the scan saw them. */
    if (SCAN_ALL_FDS)
        ASSERT_GE(r.checked, 5);
#if !defined(CORO_POLLER_KQUEUE)
    /* The epoll backend's wake-up tells which path made it: an eventfd,
     * or the fallback's pipe (both ends). */
    ASSERT_EQ(r.eventfds, CORO_HAVE_EVENTFD ? 1 : 0);
    ASSERT_EQ(r.pipes, CORO_HAVE_EVENTFD ? 0 : 2);
#endif
}

/* ---- the fork lock ------------------------------------------------------------------ */

static void *make_socket(void *arg)
{
    atomic_int *done = arg;
    int fd = coro__socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    ASSERT(is_cloexec(fd));
    ASSERT(is_nonblock(fd));
    close(fd);
    atomic_store(done, 1);
    return NULL;
}

/* A fork by the library (coro__fork_lock held) never copies a descriptor
 * made by the fallback before it is close-on-exec: the fallback waits for
 * the lock. The atomic flags need no lock and never wait. */
TEST(compat_fallback_socket_waits_for_the_fork_lock)
{
    atomic_int done = 0;
    pthread_t t;
    coro__fork_lock();
    ASSERT_EQ(pthread_create(&t, NULL, make_socket, &done), 0);
#if CORO_HAVE_SOCK_FLAGS
    ASSERT_EQ(pthread_join(t, NULL), 0); /* finished under the lock */
    int done_under_lock = atomic_load(&done);
    ASSERT_EQ(done_under_lock, 1);
    coro__fork_unlock();
#else
    /* Still waiting a while later (a loaded machine can only make this
     * pass for a bad reason, never fail for a good one). */
    struct timespec nap = { 0, 20 * 1000 * 1000 };
    nanosleep(&nap, NULL);
    int done_under_lock = atomic_load(&done);
    ASSERT_EQ(done_under_lock, 0);
    coro__fork_unlock();
    ASSERT_EQ(pthread_join(t, NULL), 0);
    int done_after = atomic_load(&done);
    ASSERT_EQ(done_after, 1);
#endif
}

static void *fork_and_reap(void *arg)
{
    atomic_int *done = arg;
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    ASSERT_GT(pid, 0);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    atomic_store(done, 1);
    return NULL;
}

/* Any fork(), the application's too, waits for a fallback in progress (an
 * atfork handler takes the fork lock): with the lock held it cannot start.
 * Without fallbacks there is no handler, and fork never waits. */
TEST(compat_fallback_fork_waits_for_the_fork_lock)
{
    atomic_int done = 0;
    pthread_t t;
    coro__fork_lock();
    ASSERT_EQ(pthread_create(&t, NULL, fork_and_reap, &done), 0);
#if CORO_HAVE_SOCK_FLAGS && CORO_HAVE_PIPE2
    ASSERT_EQ(pthread_join(t, NULL), 0); /* forked under the lock */
    int done_under_lock = atomic_load(&done);
    ASSERT_EQ(done_under_lock, 1);
    coro__fork_unlock();
#else
    struct timespec nap = { 0, 20 * 1000 * 1000 };
    nanosleep(&nap, NULL);
    int done_under_lock = atomic_load(&done);
    ASSERT_EQ(done_under_lock, 0);
    coro__fork_unlock();
    ASSERT_EQ(pthread_join(t, NULL), 0);
    int done_after = atomic_load(&done);
    ASSERT_EQ(done_after, 1);
#endif
}

/* ---- the fallback build makes none of the calls macOS lacks ------------------------ */

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#if defined(__x86_64__)
#define FILTER_ARCH AUDIT_ARCH_X86_64
#else
#define FILTER_ARCH AUDIT_ARCH_AARCH64
#endif

/* A seccomp program, built rule by rule. Every rule starts by loading the
 * system call number, so rules follow each other freely. */
typedef struct prog {
    struct sock_filter ins[128];
    unsigned short n;
} prog_t;

static void emit(prog_t *p, struct sock_filter f)
{
    ASSERT_LT(p->n, 128);
    p->ins[p->n++] = f;
}

static struct sock_filter stmt(unsigned short code, unsigned k)
{
    struct sock_filter f = BPF_STMT(code, k);
    return f;
}

static struct sock_filter jump(unsigned short code, unsigned k, unsigned char jt, unsigned char jf)
{
    struct sock_filter f = BPF_JUMP(code, k, jt, jf);
    return f;
}

#define LOAD(off) stmt(BPF_LD | BPF_W | BPF_ABS, (unsigned)(off))
#define NR_OFF offsetof(struct seccomp_data, nr)
/* The low and high halves of argument i (little-endian targets only). */
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))
#define ARG_HI(i) (ARG_LO(i) + 4)
#define RET_ERRNO(e) stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)(e) & SECCOMP_RET_DATA))

/* nr fails with err whatever its arguments. */
static void deny(prog_t *p, int nr, int err)
{
    emit(p, LOAD(NR_OFF));
    emit(p, jump(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1));
    emit(p, RET_ERRNO(err));
}

/* nr fails with err when the low half of argument i has a bit of mask. */
static void deny_bits(prog_t *p, int nr, int i, unsigned mask, int err)
{
    emit(p, LOAD(NR_OFF));
    emit(p, jump(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 3));
    emit(p, LOAD(ARG_LO(i)));
    emit(p, jump(BPF_JMP | BPF_JSET | BPF_K, mask, 0, 1));
    emit(p, RET_ERRNO(err));
}

/* nr fails with err when argument i (a pointer) is not NULL. */
static void deny_nonnull(prog_t *p, int nr, int i, int err)
{
    emit(p, LOAD(NR_OFF));
    emit(p, jump(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 5));
    emit(p, LOAD(ARG_LO(i)));
    emit(p, jump(BPF_JMP | BPF_JSET | BPF_K, 0xffffffffu, 2, 0));
    emit(p, LOAD(ARG_HI(i)));
    emit(p, jump(BPF_JMP | BPF_JSET | BPF_K, 0xffffffffu, 0, 1));
    emit(p, RET_ERRNO(err));
}

/* Refuse, in this process from now on, what macOS does not have, the way
 * a system without it would answer: ENOSYS for a missing call, EINVAL for
 * an unknown flag. 0, or -1 if seccomp is not available (qemu-user). */
static int refuse_linux_only_calls(void)
{
    prog_t p = { .n = 0 };
    emit(&p, LOAD(offsetof(struct seccomp_data, arch)));
    emit(&p, jump(BPF_JMP | BPF_JEQ | BPF_K, FILTER_ARCH, 1, 0));
    emit(&p, stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    deny(&p, __NR_accept4, ENOSYS);
    /* pipe2 with flags (aarch64's pipe() is pipe2(fds, 0)). */
    deny_bits(&p, __NR_pipe2, 1, 0xffffffffu, ENOSYS);
    deny_bits(&p, __NR_socket, 1, SOCK_NONBLOCK | SOCK_CLOEXEC, EINVAL);
    deny_bits(&p, __NR_socketpair, 1, SOCK_NONBLOCK | SOCK_CLOEXEC, EINVAL);
    deny_bits(&p, __NR_sendto, 3, MSG_NOSIGNAL, EINVAL);
    deny_bits(&p, __NR_sendmsg, 2, MSG_NOSIGNAL, EINVAL);
    deny_bits(&p, __NR_sendmmsg, 3, MSG_NOSIGNAL, EINVAL);
    /* sigtimedwait with a timeout; sigwait (no timeout) stays. */
    deny_nonnull(&p, __NR_rt_sigtimedwait, 2, ENOSYS);
#if !defined(CORO_POLLER_KQUEUE)
    /* (The kqueue shim's own eventfds stand in for the kernel's kqueue.) */
    deny(&p, __NR_eventfd2, ENOSYS);
#endif
    emit(&p, stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    struct sock_fprog fprog = { .len = p.n, .filter = p.ins };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0);
}

/* The filter bites: each refused form fails as a system without it would,
 * and the same calls without the flags still work. */
static void check_filter(void)
{
    int fds[2];
    ASSERT_ERRNO(accept4(-1, NULL, NULL, SOCK_CLOEXEC), ENOSYS);
    ASSERT_ERRNO(accept(-1, NULL, NULL), EBADF);
    ASSERT_ERRNO(pipe2(fds, O_CLOEXEC), ENOSYS);
    ASSERT_EQ(pipe(fds), 0);
    ASSERT_ERRNO(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), EINVAL);
    ASSERT_ERRNO(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), EINVAL);
    ASSERT_ERRNO(send(fds[1], "x", 1, MSG_NOSIGNAL), EINVAL);
    ASSERT_ERRNO(send(fds[1], "x", 1, 0), ENOTSOCK);
    close(fds[0]);
    close(fds[1]);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    struct timespec zero = { 0, 0 };
    ASSERT_ERRNO(sigtimedwait(&usr2, NULL, &zero), ENOSYS);
#if !defined(CORO_POLLER_KQUEUE)
    ASSERT_ERRNO(eventfd(0, 0), ENOSYS);
#endif
}

typedef struct macos_run {
    int step; /* the first step that failed, 0 if none */
    int err;
} macos_run_t;

static int raise_later(void *arg)
{
    (void)arg;
    if (coro_sleep(10 * CORO_MS) != 0)
        return -1;
    return raise(SIGUSR1) == 0 ? 0 : -1;
}

static int macos_dial(void *arg)
{
    int fd = coro_tcp_dial("127.0.0.1", arg);
    if (fd < 0)
        return -1;
    int r = coro_write(fd, "hi", 2) == 2 ? 0 : -1;
    coro_close(fd);
    return r;
}

#define STEP(n, ok)                \
    do {                           \
        if (!(ok)) {               \
            r->step = (n);         \
            r->err = errno;        \
            return 0;              \
        }                          \
    } while (0)

/* What an application does: listen, dial, accept, write to a peer that is
 * gone, a blocking job, two signal waits, a subprocess. */
static int macos_main(void *arg)
{
    macos_run_t *r = arg;
    int l = coro_tcp_listen("127.0.0.1", "0", 0);
    STEP(1, l >= 0);
    char port[16];
    snprintf(port, sizeof port, "%d", coro_sock_port(l));
    coro_t *c = coro_spawn(macos_dial, port);
    STEP(2, c != NULL);
    int a = coro_accept(l, NULL, NULL);
    STEP(3, a >= 0);
    char buf[2];
    STEP(4, coro_read(a, buf, 2) == 2);
    int status = -1;
    STEP(5, coro_join(c, &status) == 0 && status == 0);
    /* The dialler has closed: the first send may still go out (and
     * draw a reset), a later one fails with EPIPE, never a SIGPIPE. */
    int broken = 0;
    for (int i = 0; i < 200 && !broken; i++) {
        if (coro_send(a, "x", 1, 0) < 0)
            broken = errno == EPIPE || errno == ECONNRESET;
        else
            coro_sleep(CORO_MS);
    }
    STEP(6, broken);
    coro_close(a);
    coro_close(l);
    STEP(7, coro_run_blocking(nap_job, NULL, &status) == 0 && status == 5);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    STEP(8, pthread_sigmask(SIG_BLOCK, &usr1, NULL) == 0 && raise(SIGUSR1) == 0);
    STEP(9, coro_signal_wait(&usr1) == SIGUSR1); /* already pending */
    c = coro_spawn(raise_later, NULL);
    STEP(10, c != NULL);
    STEP(11, coro_signal_wait(&usr1) == SIGUSR1); /* arrives while parked */
    STEP(12, coro_join(c, &status) == 0 && status == 0);
    int u = coro_udp_bind("127.0.0.1", "0");
    STEP(13, u >= 0);
    coro_close(u);
    /* A subprocess: its error pipe and the wait. */
    const char *const argv[] = { "true", NULL };
    coro_process_t *p = coro_process_spawn(argv, NULL);
    STEP(14, p != NULL);
    STEP(15, coro_process_wait(p, &status) == 0 && status == 0);
    coro_process_free(p);
    return 0;
}

static void macos_child(void *arg)
{
    (void)arg;
    /* SIGPIPE's default action: a send that raised it would kill us. */
    signal(SIGPIPE, SIG_DFL);
    if (refuse_linux_only_calls() != 0) {
        printf("seccomp unavailable: %s\n", strerror(errno));
        fflush(stdout);
        _exit(TEST_EXIT_SKIP);
    }
    check_filter();
    macos_run_t r = { 0, 0 };
    coro_main(macos_main, &r);
    printf("first failing step: %d (%s)\n", r.step, r.step ? strerror(r.err) : "none");
    fflush(stdout);
    _exit(r.step);
}

TEST(compat_fallback_build_makes_no_linux_only_calls)
{
    /* Valgrind makes sigtimedwait calls of its own (with a timeout). */
    if (test_under_valgrind())
        TEST_SKIP("the seccomp filter would refuse Valgrind's own sigtimedwait");
#if defined(CORO_POLLER_KQUEUE) && !defined(CORO_KQUEUE_SHIM)
    TEST_SKIP("libkqueue makes Linux-only calls of its own, standing in for the kernel");
#endif
    /* qemu-user refuses seccomp, or its filter would see the host's calls. */
    if (test_under_emulator())
        TEST_SKIP("a seccomp filter cannot be applied to emulated system calls");
    char out[4096];
    int status;
    ASSERT_EQ(test_run_child(macos_child, NULL, out, sizeof out, &status), 0);
    printf("%s", out);
    ASSERT(WIFEXITED(status));
    if (WEXITSTATUS(status) == TEST_EXIT_SKIP)
        TEST_SKIP("seccomp is not available here (an emulator?): %s", out);
#if defined(CORO_FORCE_FALLBACKS)
    /* Every step worked without the refused calls. */
    ASSERT_EQ(WEXITSTATUS(status), 0);
#else
    /* The native build uses them: its very first socket is refused. */
    ASSERT_EQ(WEXITSTATUS(status), 1);
    ASSERT_CONTAINS(out, "Invalid argument");
#endif
}
#endif /* Linux on x86-64 or aarch64 */
