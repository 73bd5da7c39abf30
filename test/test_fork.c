/* test/test_fork.c: fork() while a scheduler runs. In the child the
 * inherited scheduler is dead: it never touches the parent's poller (a
 * coro_close of an inherited descriptor must not delete the parent's
 * registration, the child's I/O must not share the parent's epoll
 * instance and lose wake-ups to it), coro calls fail with EPERM until a
 * fresh coro_main, which works also from inside the inherited coroutine's
 * stack; the parent goes on untouched. Children leave with _exit (see
 * sched/fork.c: the dead scheduler's memory is abandoned, and nothing the
 * parent buffered or registered with atexit runs twice). */
#include "test/test_io.h"
#include "sched/io_wait.h"
#include "coro/compat.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

/* Wait for pid from a coroutine without stopping the loop (the parent's
 * own I/O goes on meanwhile); returns its waitpid status. */
static int wait_child(pid_t pid)
{
    int st = 0;
    int64_t until = coro_now() + ts_bound(20 * CORO_SEC);
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        ASSERT(w == 0 || (w < 0 && errno == EINTR));
        ASSERT_LT(coro_now(), until);
        ASSERT_EQ(coro_sleep(2 * CORO_MS), 0);
    }
    test_child_valgrind_log(pid);
    return st;
}

static void assert_exited_0(int st)
{
    char why[128];
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        test_fail(__FILE__, __LINE__, "child: %s", test_describe_status(st, why, sizeof why));
}

/* ---- the child's own I/O: a ping-pong where every read parks ------------ */

typedef struct pp {
    int fd;
    int rounds;
    int first; /* sends first */
} pp_t;

static int ping_pong(void *arg)
{
    pp_t *p = arg;
    unsigned char b = 0;
    for (int i = 0; i < p->rounds; i++) {
        if (p->first || i > 0)
            ASSERT_EQ(coro_write(p->fd, &b, 1), 1);
        /* A lost wake-up shows as ETIMEDOUT, not as a hung test. */
        int64_t saved = coro_timeout(ts_bound(2 * CORO_SEC));
        ssize_t n = coro_read(p->fd, &b, 1);
        if (n != 1)
            test_fail(__FILE__, __LINE__, "read %d of %d: %zd (%s)", i, p->rounds, n,
                      strerror(errno));
        coro_set_deadline(saved);
        b++;
    }
    if (!p->first)
        ASSERT_EQ(coro_write(p->fd, &b, 1), 1);
    return 0;
}

/* Two coroutines bounce a byte `rounds` times over a fresh socket pair. */
static int child_io_main(void *arg)
{
    int rounds = *(int *)arg;
    int sv[2];
    tio_stream_pair(sv);
    pp_t a = { sv[0], rounds, 1 }, b = { sv[1], rounds, 0 };
    coro_t *x = coro_spawn(ping_pong, &a), *y = coro_spawn(ping_pong, &b);
    ASSERT_NOT_NULL(x);
    ASSERT_NOT_NULL(y);
    ASSERT_EQ(coro_join(x, NULL), 0);
    ASSERT_EQ(coro_join(y, NULL), 0);
    tio_close_pair(sv);
    return 0;
}

/* ---- the parent's reader on a descriptor registered before the fork ------ */

typedef struct reader {
    int fd;
    int want;
    int got;
} reader_t;

static int read_all(void *arg)
{
    reader_t *r = arg;
    while (r->got < r->want) {
        unsigned char buf[64];
        int64_t saved = coro_timeout(ts_bound(5 * CORO_SEC));
        ssize_t n = coro_read(r->fd, buf, sizeof buf);
        if (n < 0 && errno == ECANCELED)
            return 0; /* the parent is done */
        if (n <= 0)
            test_fail(__FILE__, __LINE__, "parent's read after %d of %d bytes: %zd (%s)",
                      r->got, r->want, n, n < 0 ? strerror(errno) : "EOF");
        coro_set_deadline(saved);
        r->got += (int)n;
    }
    return 0;
}

typedef struct fork_io {
    int children;
    int rounds;
} fork_io_t;

static int fork_io_main(void *arg)
{
    fork_io_t *f = arg;
    int sv[2];
    tio_stream_pair(sv);
    /* Generous: the parent writes one byte per 1 ms nap while children run. */
    reader_t r = { sv[0], 1 << 30, 0 };
    coro_t *rc = coro_spawn(read_all, &r);
    ASSERT_NOT_NULL(rc);
    ASSERT_EQ(coro_sleep(CORO_MS), 0); /* the reader has parked: sv[0] is registered */
    ASSERT_EQ(coro__fd_waiters(sv[0]), 1);
    int sent = 0;
    unsigned char one = 'x';
    for (int k = 0; k < f->children; k++) {
        fflush(NULL);
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            /* The inherited descriptor registered in the parent's poller. */
            ASSERT_EQ(coro_close(sv[0]), 0);
            ASSERT_EQ(close(sv[1]), 0);
            int rounds = f->rounds;
            errno = 0;
            int rc2 = coro_main(child_io_main, &rounds);
            if (rc2 != 0) {
                printf("child: coro_main: %d (%s)\n", rc2, strerror(errno));
                _exit(2);
            }
            _exit(0);
        }
        /* The parent keeps polling and reading while the child works. */
        int st = 0;
        int64_t until = coro_now() + ts_bound(20 * CORO_SEC);
        for (;;) {
            ASSERT_EQ(coro_write(sv[1], &one, 1), 1);
            sent++;
            ASSERT_EQ(coro_sleep(CORO_MS), 0);
            pid_t w = waitpid(pid, &st, WNOHANG);
            if (w == pid)
                break;
            ASSERT(w == 0 || (w < 0 && errno == EINTR));
            ASSERT_LT(coro_now(), until);
        }
        test_child_valgrind_log(pid);
        assert_exited_0(st);
        /* And after the child's coro_close: still registered here. */
        for (int i = 0; i < 3; i++) {
            ASSERT_EQ(coro_sleep(CORO_MS), 0);
            ASSERT_EQ(coro_write(sv[1], &one, 1), 1);
            sent++;
        }
    }
    int64_t until = coro_now() + ts_bound(5 * CORO_SEC);
    while (r.got < sent) {
        ASSERT_LT(coro_now(), until);
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    }
    ASSERT_EQ(r.got, sent);
    ASSERT_EQ(coro_cancel(rc), 0);
    ASSERT_EQ(coro_join(rc, NULL), 0);
    tio_close_pair(sv);
    return 0;
}

TEST(fork_child_io_leaves_parent_registrations_alone)
{
    /* Before the fix the child shared the parent's epoll instance: its
     * coro_close deleted the parent's registration (the parent's read
     * timed out), its own reads lost wake-ups to the parent's polls, and
     * its coro_main said EBUSY. */
    fork_io_t f = { (int)ts_count(6, 3), (int)ts_count(300, 100) };
    tio_run(fork_io_main, &f);
}

/* ---- coro calls in the child before a fresh coro_main ---------------------- */

static int sleeper(void *arg)
{
    (void)arg;
    return coro_sleep(20 * CORO_MS) == 0 ? 0 : 1;
}

static int nothing(void *arg)
{
    (void)arg;
    return 7;
}

static int eperm_main(void *arg)
{
    (void)arg;
    coro_t *other = coro_spawn(sleeper, NULL);
    ASSERT_NOT_NULL(other);
    int st = 0;
    ASSERT_EQ(coro_run_blocking(nothing, NULL, &st), 0); /* the pool exists */
    ASSERT_EQ(st, 7);
    coro_mutex_t m = CORO_MUTEX_INIT;
    coro_chan_t *ch = coro_chan_new(sizeof(int), 1);
    ASSERT_NOT_NULL(ch);
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        char c;
        int v = 1;
        sigset_t usr2;
        sigemptyset(&usr2);
        sigaddset(&usr2, SIGUSR2);
        ASSERT_NULL(coro_self());
        ASSERT_ERRNO(coro_sleep(CORO_MS), EPERM);
        ASSERT_NULL_ERRNO(coro_spawn(nothing, NULL), EPERM);
        ASSERT_ERRNO(coro_join(other, NULL), EPERM);
        ASSERT_ERRNO(coro_read(p[0], &c, 1), EPERM);
        ASSERT_ERRNO(coro_write(p[1], &c, 1), EPERM);
        ASSERT_ERRNO(coro_wait_fd(p[0], CORO_READ), EPERM);
        ASSERT_ERRNO(coro_run_blocking(nothing, NULL, &st), EPERM);
        ASSERT_ERRNO(coro_signal_wait(&usr2), EPERM);
        ASSERT_ERRNO(coro_mutex_lock(&m), EPERM);
        ASSERT_ERRNO(coro_chan_send(ch, &v), EPERM);
        ASSERT_ERRNO(coro_chan_recv(ch, &v), EPERM);
        ASSERT_ERRNO(coro_shield(1), EPERM);
        ASSERT_RET_ERRNO(coro_timeout(CORO_SEC), CORO_NEVER, EPERM);
        coro_yield(); /* nothing to yield to: returns */
        coro_stats_t s;
        coro_stats(&s);
        ASSERT_EQ(s.live, 0);
        _exit(0);
    }
    assert_exited_0(wait_child(pid));
    ASSERT_EQ(coro_join(other, &st), 0);
    ASSERT_EQ(st, 0);
    ASSERT_EQ(coro_run_blocking(nothing, NULL, &st), 0);
    ASSERT_EQ(st, 7);
    coro_chan_free(ch);
    ASSERT_EQ(close(p[0]), 0);
    ASSERT_EQ(close(p[1]), 0);
    return 0;
}

TEST(fork_child_coro_calls_fail_with_eperm)
{
    /* Before the fix the child ran on the inherited scheduler: its sleep
     * succeeded (and ran the parent's other coroutines in the child). */
    tio_run(eperm_main, NULL);
}

/* ---- a fresh coro_main in the child, from the inherited coroutine ----------- */

static sigset_t mask_before_main;

static void thread_mask(sigset_t *m)
{
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, m), 0);
}

static void assert_same_mask(const sigset_t *a, const sigset_t *b)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(a, sig) != sigismember(b, sig))
            test_fail(__FILE__, __LINE__, "signal %d (%s): %s in one mask, not in the other",
                      sig, strsignal(sig), sigismember(a, sig) == 1 ? "blocked" : "unblocked");
}

/* Descriptors of this process that are epoll instances, eventfds or
 * signalfds (the pollers' own: the runner has none). */
static int poller_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ASSERT_NOT_NULL(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[300], link[64];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (strstr(link, "[eventpoll]") || strstr(link, "[eventfd]") || strstr(link, "[signalfd]"))
            n++;
    }
    closedir(d);
    return n;
}

static int sleep_a_little(void *arg)
{
    int64_t t0 = coro_now();
    ASSERT_EQ(coro_sleep(*(int64_t *)arg), 0);
    ASSERT_GE(coro_now() - t0, *(int64_t *)arg);
    return 3;
}

static int raise_usr2(void *arg)
{
    (void)arg;
    ASSERT_EQ(raise(SIGUSR2), 0);
    return 0;
}

static int child_full_main(void *arg)
{
    (void)arg;
    int64_t nap = 2 * CORO_MS;
    coro_t *a = coro_spawn(sleep_a_little, &nap), *b = coro_spawn(sleep_a_little, &nap);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    int rounds = 50;
    ASSERT_EQ(child_io_main(&rounds), 0);
    int st = 0;
#if !CORO_TSAN /* TSan refuses to start threads after a multi-threaded fork */
    ASSERT_EQ(coro_run_blocking(nothing, NULL, &st), 0); /* a pool of its own */
    ASSERT_EQ(st, 7);
#endif
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    coro_t *r = coro_spawn(raise_usr2, NULL); /* runs once the set is blocked */
    ASSERT_NOT_NULL(r);
    ASSERT_EQ(coro_signal_wait(&usr2), SIGUSR2);
    ASSERT_EQ(coro_join(r, NULL), 0);
    ASSERT_EQ(coro_join(a, &st), 0);
    ASSERT_EQ(st, 3);
    ASSERT_EQ(coro_join(b, &st), 0);
    return 0;
}

/* A job that blocks a pool thread until the pipe says go. */
static int job_started;

static int wait_pipe(void *arg)
{
    char c;
    __atomic_store_n(&job_started, 1, __ATOMIC_RELEASE);
    return read(*(int *)arg, &c, 1) == 1 ? 5 : -1;
}

static int usr2_waiter(void *arg)
{
    (void)arg;
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    return coro_signal_wait(&usr2) == SIGUSR2 ? 0 : 1;
}

static int job_runner(void *arg)
{
    int st = -1;
    ASSERT_EQ(coro_run_blocking(wait_pipe, arg, &st), 0);
    return st;
}

static int forker(void *arg)
{
    (void)arg;
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        /* The inherited scheduler is dead: the thread's mask is the one
         * from before its coro_main, and a fresh coro_main works here, on
         * the inherited coroutine's stack. */
        sigset_t m;
        thread_mask(&m);
        assert_same_mask(&m, &mask_before_main);
        /* Its poller's epoll instance, eventfd and signalfd are closed,
         * and the other thread's epoll instance. */
        ASSERT_EQ(poller_fds(), 0);
        errno = 0;
        int r = coro_main(child_full_main, NULL);
        if (r != 0) {
            printf("child: coro_main: %d (%s)\n", r, strerror(errno));
            _exit(2);
        }
        thread_mask(&m);
        assert_same_mask(&m, &mask_before_main);
        /* And once more: the fresh scheduler ended cleanly. */
        ASSERT_EQ(coro_main(child_full_main, NULL), 0);
        _exit(0);
    }
    return wait_child(pid);
}

/* Another thread's scheduler, parked on a pipe until the test ends: in
 * the child it is dead too, and its poller's descriptors are closed. */
typedef struct other {
    int fd;
    int ready;
} other_t;

static int other_body(void *arg)
{
    other_t *o = arg;
    char c;
    __atomic_store_n(&o->ready, 1, __ATOMIC_RELEASE);
    return coro_read(o->fd, &c, 1) == 1 ? 0 : 1;
}

static void *other_thread(void *arg)
{
    return (void *)(intptr_t)coro_main(other_body, arg);
}

static int fresh_main(void *arg)
{
    (void)arg;
    int go[2], stop[2];
    ASSERT_EQ(pipe(go), 0);
    ASSERT_EQ(pipe(stop), 0);
    other_t o = { stop[0], 0 };
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, other_thread, &o), 0);
    while (!__atomic_load_n(&o.ready, __ATOMIC_ACQUIRE))
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    /* The parent's state at the fork: a pool thread busy with a job, a
     * signal wait (a signalfd), a descriptor written to, a sleeper. */
    coro_t *w = coro_spawn(usr2_waiter, NULL), *j = coro_spawn(job_runner, &go[0]);
    coro_t *s = coro_spawn(sleeper, NULL);
    ASSERT_NOT_NULL(w);
    ASSERT_NOT_NULL(j);
    ASSERT_NOT_NULL(s);
    char c = 'g';
    int sv[2];
    tio_stream_pair(sv);
    ASSERT_EQ(coro_write(sv[0], &c, 1), 1);
    /* Fork only once the pool thread is inside the job: a thread still
     * starting may hold a lock of the allocator at the fork (GCC 12's
     * ASan has no fork handler for its allocator, and the child's first
     * thread start then waits for that lock forever). */
    while (!__atomic_load_n(&job_started, __ATOMIC_ACQUIRE))
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    /* 2 epoll, eventfd (the pool; a pipe in COMPAT=fallback), signalfd */
    ASSERT_GE(poller_fds(), CORO_HAVE_EVENTFD ? 4 : 3);
    coro_t *f = coro_spawn(forker, NULL);
    ASSERT_NOT_NULL(f);
    int st = -1;
    ASSERT_EQ(coro_join(f, &st), 0);
    assert_exited_0(st);
    /* The parent goes on: the job finishes, the signal arrives. */
    ASSERT_EQ(write(go[1], &c, 1), 1);
    ASSERT_EQ(coro_join(j, &st), 0);
    ASSERT_EQ(st, 5);
    ASSERT_EQ(raise(SIGUSR2), 0);
    ASSERT_EQ(coro_join(w, &st), 0);
    ASSERT_EQ(st, 0);
    ASSERT_EQ(coro_join(s, &st), 0);
    ASSERT_EQ(st, 0);
    ASSERT_EQ(coro_read(sv[1], &c, 1), 1);
    tio_close_pair(sv);
    ASSERT_EQ(close(go[0]), 0);
    ASSERT_EQ(close(go[1]), 0);
    /* The other thread's scheduler goes on in the parent. */
    ASSERT_EQ(write(stop[1], &c, 1), 1);
    void *ret = NULL;
    ASSERT_EQ(pthread_join(th, &ret), 0);
    ASSERT_EQ((intptr_t)ret, 0);
    ASSERT_EQ(close(stop[0]), 0);
    ASSERT_EQ(close(stop[1]), 0);
    return 0;
}

TEST(fork_child_coro_main_from_inherited_coroutine)
{
    /* The parent has other threads at the fork (a pool thread, another
     * scheduler) and the child starts pool threads of its own: qemu-user
     * 7.2 aborts there (an assertion in its vCPU set-up), whatever the
     * program does. fork_child_io_leaves_parent_registrations_alone and
     * fork_child_coro_calls_fail_with_eperm still run emulated. */
    if (test_under_emulator())
        TEST_SKIP("qemu-user aborts in a forked child of a multi-threaded process");
    /* Before the fix the child's coro_main said EBUSY. */
    thread_mask(&mask_before_main);
    tio_run(fresh_main, NULL);
    sigset_t m;
    thread_mask(&m);
    assert_same_mask(&m, &mask_before_main);
}

/* ---- a job that forks ----------------------------------------------------------- */

static int fork_in_job(void *arg)
{
    (void)arg;
    pid_t pid = fork();
    if (pid == 0)
        return 42; /* back into the pool's thread, in the child */
    return (int)pid;
}

static int job_fork_main(void *arg)
{
    (void)arg;
    fflush(NULL);
    int pid = -1;
    ASSERT_EQ(coro_run_blocking(fork_in_job, NULL, &pid), 0);
    ASSERT_GT(pid, 0);
    int st = wait_child((pid_t)pid);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 42);
    int seven = 0;
    ASSERT_EQ(coro_run_blocking(nothing, NULL, &seven), 0);
    ASSERT_EQ(seven, 7);
    return 0;
}

TEST(fork_in_blocking_job_child_leaves_with_its_status)
{
    /* Before the fix the child's pool thread went back to serving a
     * scheduler that does not exist there, and the child hung. */
    if (test_under_valgrind())
        TEST_SKIP("Memcheck counts the TLS block of a thread that forked as possibly "
                  "lost (so does a plain pthread program's child)");
    tio_run(job_fork_main, NULL);
}
