/* io/process_exec.c: making a child process and running its program (see
 * io/process_int.h): execvp's PATH search, the clone, and what the child
 * does between the clone and the exec.
 *
 * Why not posix_spawn. glibc's does the right thing natively (its own
 * stack, errors reported), but it learns of a failed exec through memory
 * it shares with the child, and under Valgrind, which turns a
 * CLONE_VM | CLONE_VFORK clone into a fork, nothing is shared: a missing
 * program "succeeds" and the child exits 127 (seen with Valgrind 3.19 and
 * glibc 2.36). It also leaves open every descriptor not marked
 * close-on-exec. So the library does what it does itself:
 *
 *   - the parent blocks every signal (glibc's internal ones too, with the
 *     raw system call), maps a small stack for the child and calls
 *     clone(CLONE_VM | CLONE_VFORK): the child runs on that stack, never
 *     on the coroutine's, and this thread sleeps until the child has
 *     exec'd or died (no copy of the address space, as vfork);
 *   - the child resets every signal disposition to SIG_DFL (no handler of
 *     the parent's may run on the shared memory; SIG_IGN would be
 *     inherited by the program), installs its stdio, closes every other
 *     descriptor (close_range, else /proc/self/fd, else a loop), changes
 *     directory, empties its signal mask and tries the exec for each PATH
 *     candidate, as execvp does (first, if asked, it makes itself the
 *     leader of a new process group: done before the parent resumes, so
 *     a signal to the group can never miss it);
 *   - a failure is written (its errno) to a close-on-exec pipe, which a
 *     successful exec closes: the parent reads 4 bytes (the error) or end
 *     of file (the program runs). That works under Valgrind's fork too.
 *
 * The child runs with the parent's memory and thread pointer, so it makes
 * only raw system calls (syscall(2)): no allocation, no lock, no
 * sanitizer interceptor (a sanitizer's sigaction or close would update
 * the parent's bookkeeping), and its code is built without
 * instrumentation. errno is the parent thread's while it runs; the parent
 * is asleep and does not look.
 *
 * Elsewhere than Linux (BSD, macOS: untested here) the same child code
 * runs after fork(), through the libc calls, which are async-signal-safe. */
#include "io/process_int.h"
#include "coro/compat.h"
#include "coro/fault.h"
#include "coro/sanitize.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __linux__
#include <sched.h>
#include <sys/syscall.h>
#endif

extern char **environ;

/* Code that runs in the child: never instrumented. */
#define CHILD __attribute__((no_sanitize("address"), no_sanitize("thread"), no_sanitize("undefined")))

/* What the child needs, on the parent's stack (shared under CLONE_VM,
 * copied by a fork). */
typedef struct child {
    const coro__exec_t *x;
    /* execvp's candidates, in order. */
    const char *const *paths;
    size_t npaths;
    /* The error pipe's write end (>= 3, close-on-exec). */
    int errfd;
    /* Last resort of the descriptor sweep: close up to here. */
    int maxfd;
} child_t;

/* ---- system calls of the child ---------------------------------------------- */

#ifdef __linux__
/* Highest signal number (the kernel's _NSIG - 1) and its sigset size. */
#define KERNEL_MAXSIG 64
#define KERNEL_SIGSET 8

static CHILD inline long c_dup2(int from, int to)
{
    return syscall(SYS_dup3, from, to, 0); /* from >= 3 > to: never equal */
}
static CHILD inline long c_close(int fd)
{
    return syscall(SYS_close, fd);
}
static CHILD inline long c_chdir(const char *dir)
{
    return syscall(SYS_chdir, dir);
}
static CHILD inline long c_setpgid(void)
{
    return syscall(SYS_setpgid, 0, 0);
}
static CHILD inline long c_execve(const char *path, const char *const *argv,
                                  const char *const *envp)
{
    return syscall(SYS_execve, path, argv, envp);
}
static CHILD inline long c_write(int fd, const void *buf, size_t n)
{
    return syscall(SYS_write, fd, buf, n);
}

static CHILD void c_default_signals(void)
{
    /* The kernel's struct sigaction with SIG_DFL (0), no flags, no mask:
     * all zeros, whatever the architecture's field order. */
    unsigned long dfl[4] = { 0, 0, 0, 0 };
    for (int sig = 1; sig <= KERNEL_MAXSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)syscall(SYS_rt_sigaction, sig, dfl, NULL, KERNEL_SIGSET);
}

static CHILD void c_unblock_signals(void)
{
    uint64_t none = 0;
    (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, KERNEL_SIGSET);
}

static CHILD __attribute__((noreturn)) void c_exit(void)
{
    /* Under Valgrind the child is a fork whose exit would run the
     * parent's stdio flush (libc_freeres) and a leak check of its copy of
     * the heap: a kill leaves without either. Nobody reads this status. */
    if (RUNNING_ON_VALGRIND)
        (void)syscall(SYS_kill, syscall(SYS_getpid), SIGKILL);
    for (;;)
        (void)syscall(SYS_exit_group, 127);
}

/* Close every descriptor >= 3 but keep. */
static CHILD void c_close_others(int keep, int maxfd)
{
#ifdef SYS_close_range
    int ok = 1;
    if (keep > 3 && syscall(SYS_close_range, 3, keep - 1, 0) != 0)
        ok = 0;
    if (ok && syscall(SYS_close_range, keep + 1, ~0u, 0) == 0)
        return;
#endif
    /* Linux before 5.9: the directory of open descriptors, read with
     * getdents64 into a buffer on this stack. */
    long dfd = syscall(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        char buf[1024] __attribute__((aligned(8)));
        long n;
        while ((n = syscall(SYS_getdents64, (int)dfd, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                struct dirent64 *d = (struct dirent64 *)(buf + off);
                off += d->d_reclen;
                int fd = 0;
                const char *s = d->d_name;
                if (*s < '0' || *s > '9')
                    continue;
                while (*s >= '0' && *s <= '9')
                    fd = fd * 10 + (*s++ - '0');
                if (fd > 2 && fd != keep && fd != dfd)
                    (void)c_close(fd);
            }
        }
        (void)c_close((int)dfd);
        if (n == 0)
            return;
    }
    for (int fd = 3; fd <= maxfd; fd++)
        if (fd != keep)
            (void)c_close(fd);
}

#else /* fork elsewhere: the async-signal-safe libc calls */

#define c_dup2 dup2
#define c_close close
#define c_chdir chdir
#define c_write write
static CHILD inline int c_setpgid(void)
{
    return setpgid(0, 0);
}
static CHILD inline int c_execve(const char *path, const char *const *argv,
                                 const char *const *envp)
{
    return execve(path, (char *const *)argv, (char *const *)envp);
}

static CHILD void c_default_signals(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
}

static CHILD void c_unblock_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static CHILD __attribute__((noreturn)) void c_exit(void)
{
    _exit(127);
}

static CHILD void c_close_others(int keep, int maxfd)
{
    for (int fd = 3; fd <= maxfd; fd++)
        if (fd != keep)
            (void)close(fd);
}
#endif

/* ---- the child ---------------------------------------------------------------- */

static CHILD __attribute__((noreturn)) void child_fail(const child_t *c, int err)
{
    while (c_write(c->errfd, &err, sizeof err) < 0 && errno == EINTR)
        ;
    c_exit();
}

/* An exec error after which execvp tries the next PATH entry. */
static CHILD inline int not_here(int err)
{
    return err == ENOENT || err == ESTALE || err == ENOTDIR || err == ENODEV || err == ETIMEDOUT;
}

static CHILD __attribute__((noinline, noreturn)) void child_run(const child_t *c)
{
    const coro__exec_t *x = c->x;
    /* Handlers first: the mask the parent set blocks everything until the
     * dispositions are the program's. */
    c_default_signals();
    if (x->pgroup && c_setpgid() < 0)
        child_fail(c, errno);
    for (int i = 0; i < 3; i++)
        if (x->stdio[i] >= 0 && c_dup2(x->stdio[i], i) < 0)
            child_fail(c, errno);
    c_close_others(c->errfd, c->maxfd);
    if (x->dir && c_chdir(x->dir) < 0)
        child_fail(c, errno);
    c_unblock_signals();
    /* execvp's rules: EACCES is remembered and the search goes on, so do
     * "not here" errors; any other error ends it. */
    int err = ENOENT, eacces = 0;
    for (size_t i = 0; i < c->npaths; i++) {
        (void)c_execve(c->paths[i], x->argv, x->envp);
        err = errno;
        if (err == EACCES)
            eacces = 1;
        else if (!not_here(err))
            child_fail(c, err);
    }
    child_fail(c, eacces ? EACCES : err);
}

#if defined(__linux__) && !CORO_TSAN
static CHILD int child_entry(void *arg)
{
    child_run(arg);
}
#endif

/* ---- the parent --------------------------------------------------------------- */

/* execvp's candidates for file: itself if it holds a '/', else each PATH
 * entry joined with it (an empty entry: the working directory). One
 * allocation holds the array and the strings; free() it. */
static const char **candidates(const char *file, size_t *n)
{
    size_t flen = strlen(file);
    if (strchr(file, '/')) {
        const char **one = coro__malloc(2 * sizeof *one);
        if (!one)
            return NULL;
        one[0] = file;
        one[1] = NULL;
        *n = 1;
        return one;
    }
    if (flen > NAME_MAX) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin"; /* glibc's confstr(_CS_PATH) */
    size_t count = 1, plen = strlen(path);
    for (const char *s = path; *s; s++)
        count += *s == ':';
    /* Each candidate is at most the whole PATH, '/', file and NUL. */
    size_t bytes = (count + 1) * sizeof(char *) + count * (flen + 2) + plen + 1;
    const char **out = coro__malloc(bytes);
    if (!out)
        return NULL;
    char *w = (char *)(out + count + 1);
    size_t k = 0;
    for (const char *s = path;; s++) {
        const char *end = strchr(s, ':');
        size_t dlen = end ? (size_t)(end - s) : strlen(s);
        out[k++] = w;
        if (dlen) {
            memcpy(w, s, dlen);
            w += dlen;
            *w++ = '/';
        }
        memcpy(w, file, flen + 1);
        w += flen + 1;
        if (!end)
            break;
        s = end;
    }
    out[k] = NULL;
    *n = k;
    return out;
}

int coro__fd_above_stdio(int fd)
{
    if (fd >= 3)
        return fd;
    int up = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int e = errno;
    close(fd);
    errno = e;
    return up;
}

static int highest_fd(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur <= INT_MAX)
        return (int)rl.rlim_cur - 1;
    return 65535;
}

/* Block every signal of the thread while the child is made: no handler
 * may run in a child that shares our memory, and a forked child resets
 * the dispositions before it lets any signal through. */
#ifdef __linux__
typedef uint64_t mask_t;
/* glibc's internal signals too (its sigprocmask leaves those out). */
static void mask_all(mask_t *old)
{
    uint64_t all = ~(uint64_t)0;
    (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, old, KERNEL_SIGSET);
}

static void mask_restore(const mask_t *old)
{
    (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, old, NULL, KERNEL_SIGSET);
}
#else
typedef sigset_t mask_t;
static void mask_all(mask_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, old);
}

static void mask_restore(const mask_t *old)
{
    pthread_sigmask(SIG_SETMASK, old, NULL);
}
#endif

#if defined(__linux__) && !CORO_TSAN
#define CHILD_STACK (64 * 1024)

static pid_t start_child(child_t *c)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t size = CHILD_STACK + (size_t)page;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return -1;
    /* A guard below: the child's frames are small, but never silent. */
    (void)mprotect(stack, (size_t)page, PROT_NONE);
    /* Under Valgrind the clone is a fork whose child starts on this
     * stack: announced, it is not taken for a stack overflow. */
    unsigned vg = VALGRIND_STACK_REGISTER(stack + page, stack + size);
    mask_t old;
    mask_all(&old);
    pid_t pid = clone(child_entry, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, c);
    int e = errno;
    mask_restore(&old);
    VALGRIND_STACK_DEREGISTER(vg);
    munmap(stack, size);
    errno = e;
    return pid;
}
#else
/* A plain fork: elsewhere than Linux, and under ThreadSanitizer, whose
 * clone interceptor runs its fork bookkeeping in the child, which under
 * CLONE_VM is the parent's own state (its fork interceptor is sound).
 * The child runs on its copy of this stack. */
static pid_t start_child(child_t *c)
{
    mask_t old;
    mask_all(&old);
    pid_t pid = fork();
    if (pid == 0)
        child_run(c);
    int e = errno;
    mask_restore(&old);
    errno = e;
    return pid;
}
#endif

pid_t coro__exec(const coro__exec_t *x)
{
    if (!x->argv || !x->argv[0]) {
        errno = EINVAL;
        return -1;
    }
    if (!x->argv[0][0]) {
        errno = ENOENT; /* as execvp("") */
        return -1;
    }
    child_t c = { .x = x, .paths = NULL, .npaths = 0, .errfd = -1, .maxfd = highest_fd() };
    const char **paths = candidates(x->argv[0], &c.npaths);
    if (!paths)
        return -1;
    c.paths = paths;
    int ep[2];
    if (coro__pipe(ep, 0) != 0) { /* close-on-exec */
        free(paths);
        return -1;
    }
    /* The write end must survive the stdio installs (which target 0-2). */
    ep[1] = coro__fd_above_stdio(ep[1]);
    if (ep[1] < 0) {
        int e = errno;
        close(ep[0]);
        free(paths);
        errno = e;
        return -1;
    }
    c.errfd = ep[1];
    pid_t pid = start_child(&c);
    int e = errno;
    close(ep[1]);
    free(paths);
    if (pid < 0) {
        close(ep[0]);
        errno = e;
        return -1;
    }
    /* End of file: the exec closed the pipe, the program runs. Four
     * bytes: the child's errno (it exits at once). Under a real vfork the
     * answer is there already; under Valgrind's fork this waits for it. */
    int err = 0;
    size_t got = 0;
    while (got < sizeof err) {
        ssize_t n = read(ep[0], (char *)&err + got, sizeof err - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(ep[0]);
    if (got == 0)
        return pid;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    errno = got == sizeof err && err > 0 ? err : EIO;
    return -1;
}
