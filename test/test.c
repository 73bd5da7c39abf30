/* test/test.c: the assertion reporters and helpers declared in test/test.h,
 * and the fork-and-capture engine shared by the runner and
 * test_run_child(). */
#include "test/test.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- failure reporters -------------------------------------------------- */

static void flush_all(void)
{
    fflush(stdout);
    fflush(stderr);
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    flush_all();
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void test_fail_cmp(const char *file, int line, const char *a_expr, const char *op,
                   const char *b_expr, long long a, long long b)
{
    test_fail(file, line,
              "ASSERT(%s %s %s) failed\n  %s = %lld (%#llx)\n  %s = %lld (%#llx)",
              a_expr, op, b_expr, a_expr, a, (unsigned long long)a,
              b_expr, b, (unsigned long long)b);
}

void test_fail_ptr(const char *file, int line, const char *a_expr, const char *b_expr,
                   const void *a, const void *b)
{
    test_fail(file, line, "ASSERT_PTR_EQ(%s, %s) failed\n  %s = %p\n  %s = %p",
              a_expr, b_expr, a_expr, a, b_expr, b);
}

void test_fail_str(const char *file, int line, const char *a_expr, const char *b_expr,
                   const char *a, const char *b)
{
    test_fail(file, line, "ASSERT_STR_EQ(%s, %s) failed\n  %s = %s%s%s\n  %s = %s%s%s",
              a_expr, b_expr,
              a_expr, a ? "\"" : "", a ? a : "NULL", a ? "\"" : "",
              b_expr, b ? "\"" : "", b ? b : "NULL", b ? "\"" : "");
}

void test_fail_errno(const char *file, int line, const char *call, const char *want_ret,
                     long long ret, const char *e_expr, int want_errno, int got_errno)
{
    test_fail(file, line,
              "%s: expected %s with errno %s\n"
              "  returned %lld (%#llx)\n"
              "  errno    %d (%s), expected %d (%s)",
              call, want_ret, e_expr, ret, (unsigned long long)ret,
              got_errno, strerror(got_errno), want_errno, strerror(want_errno));
}

void test_skip(const char *fmt, ...)
{
    va_list ap;
    flush_all();
    fputs(TEST_SKIP_MARK, stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(TEST_EXIT_SKIP);
}

/* ---- small helpers ------------------------------------------------------ */

int test_str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

int test_contains(const char *haystack, const char *needle)
{
    return haystack && needle && strstr(haystack, needle) != NULL;
}

int test_under_valgrind(void)
{
    return RUNNING_ON_VALGRIND ? 1 : 0;
}

int test_under_sanitizer(void)
{
    return CORO_ASAN || CORO_TSAN;
}

/* Whether this process runs under qemu-user; worked out once. Tests call
 * it from several threads, so the cached answer is an atomic (a benign race
 * otherwise, but one ThreadSanitizer rightly reports). */
static int emulated(void)
{
    const char *e = getenv("CORO_TEST_EMULATED");
    if (e && *e && strcmp(e, "0") != 0)
        return 1;
    /* qemu-user fakes /proc/self/exe as the guest program, but not the
     * parent's link: a test's parent (the runner, or the test for
     * test_run_child) runs under the same emulator. */
    char path[64], exe[4096];
    snprintf(path, sizeof path, "/proc/%ld/exe", (long)getppid());
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    if (n <= 0)
        return 0;
    exe[n] = '\0';
    const char *base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    return strncmp(base, "qemu-", 5) == 0;
}

int test_under_emulator(void)
{
    static int known = -1;
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (k < 0) {
        k = emulated();
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k;
}

int64_t test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

long test_count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    long n = 0;
    char line[4096];
    int at_start = 1;
    while (fgets(line, sizeof line, f)) {
        /* Count each line once, however long; skip malloc's heap, which
         * after a fork grows as a second [heap] mapping. */
        if (at_start && !strstr(line, "[heap]"))
            n++;
        at_start = strchr(line, '\n') != NULL;
    }
    fclose(f);
    return n;
}

int test_is_mapped(const void *addr)
{
    uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
    void *page = (void *)((uintptr_t)addr & ~(ps - 1));
    unsigned char vec;
    /* mincore fails with ENOMEM exactly when the range is not mapped. */
    return mincore(page, 1, &vec) == 0 || errno != ENOMEM;
}

double test_timeout_seconds(void)
{
    double t = 30;
    const char *e = getenv("CORO_TEST_TIMEOUT");
    if (e && *e) {
        char *end;
        double v = strtod(e, &end);
        if (end != e && v > 0)
            t = v;
    }
    if (test_under_valgrind())
        t *= 20;
    return t;
}

const char *test_describe_status(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, size, "status %#x", (unsigned)status);
    return buf;
}

/* ---- fork and capture --------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Read whatever the pipe holds now. Sets *eof at end of file. */
static void drain(int fd, test_capture_t *cap, int *eof)
{
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n > 0) {
            size_t want = (size_t)n;
            size_t room = cap->limit > cap->len ? cap->limit - cap->len : 0;
            if (want > room) {
                want = room;
                cap->truncated = 1;
            }
            if (want) {
                if (cap->len + want + 1 > cap->cap) {
                    size_t ncap = cap->cap ? cap->cap : 4096;
                    while (ncap < cap->len + want + 1)
                        ncap *= 2;
                    char *nb = realloc(cap->buf, ncap);
                    if (!nb) {
                        cap->truncated = 1;
                        continue;
                    }
                    cap->buf = nb;
                    cap->cap = ncap;
                }
                memcpy(cap->buf + cap->len, chunk, want);
                cap->len += want;
                cap->buf[cap->len] = '\0';
            }
            continue;
        }
        if (n == 0)
            *eof = 1;
        else if (errno == EINTR)
            continue;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            *eof = 1;
        return;
    }
}

/* Under Valgrind with --log-file=...%p... (named again in
 * CORO_TEST_VALGRIND_LOG), each forked process writes its Valgrind messages
 * to its own file: move the child's into its captured output, since
 * Valgrind never writes them to the child's stderr (it keeps a private
 * duplicate of the original one). */
static void take_valgrind_log(pid_t pid, test_capture_t *cap)
{
    const char *pattern = getenv("CORO_TEST_VALGRIND_LOG");
    if (!pattern || !*pattern || !test_under_valgrind())
        return;
    char path[4096];
    size_t n = 0;
    for (const char *p = pattern; *p && n + 24 < sizeof path; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            n += (size_t)snprintf(path + n, sizeof path - n, "%ld", (long)pid);
            p++;
        } else {
            path[n++] = *p;
        }
    }
    path[n] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    int eof = 0;
    while (!eof)
        drain(fd, cap, &eof);
    close(fd);
    unlink(path);
}

void test_child_valgrind_log(pid_t pid)
{
    test_capture_t cap = { .buf = NULL, .len = 0, .cap = 0,
                           .limit = (size_t)1 << 20, .truncated = 0 };
    take_valgrind_log(pid, &cap);
    if (cap.buf) {
        printf("---- Valgrind log of child %ld ----\n%s", (long)pid, cap.buf);
        fflush(stdout);
    }
    free(cap.buf);
}

int test_capture_run(void (*fn)(void *), void *arg, double timeout_s, int new_group,
                     test_capture_t *cap, int *status, int *timed_out)
{
    int fds[2];
    *timed_out = 0;
    *status = 0;
    if (pipe(fds) != 0)
        return -1;
    /* Nothing buffered may be written twice, by parent and child. */
    flush_all();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        if (new_group)
            setpgid(0, 0);
        close(fds[0]);
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        if (fds[1] > STDERR_FILENO)
            close(fds[1]);
        /* A crash must not lose what was printed before it. */
        setvbuf(stdout, NULL, _IONBF, 0);
        setvbuf(stderr, NULL, _IONBF, 0);
        fn(arg);
        /* exit, not _exit: atexit handlers and Valgrind's and
         * LeakSanitizer's leak checks run now. */
        exit(0);
    }
    if (new_group)
        setpgid(pid, pid); /* also done by the child: whichever runs first */
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);

    int64_t deadline = test_now_ns() + (int64_t)(timeout_s * 1e9);
    int eof = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    for (;;) {
        if (!eof)
            drain(fds[0], cap, &eof);
        pid_t w = wait4(pid, status, WNOHANG, &ru);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            /* Cannot happen for our own child; do not spin. */
            *status = 0;
            break;
        }
        int64_t left = deadline - test_now_ns();
        if (left <= 0) {
            if (new_group)
                kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (wait4(pid, status, 0, &ru) < 0 && errno == EINTR)
                ;
            *timed_out = 1;
            break;
        }
        long ms = (long)(left / 1000000) + 1;
        if (eof) {
            /* The pipe is closed but the child has not been reaped yet. */
            sleep_ms(1);
        } else {
            struct pollfd p = { .fd = fds[0], .events = POLLIN, .revents = 0 };
            poll(&p, 1, (int)(ms < 50 ? ms : 50));
        }
    }
    /* What the child wrote just before it ended. A grandchild still holding
     * the pipe must not keep us here: read only what is there. */
    if (!eof)
        drain(fds[0], cap, &eof);
    if (new_group)
        kill(-pid, SIGKILL); /* leftovers in its process group */
    close(fds[0]);
    take_valgrind_log(pid, cap);
    cap->maxrss_kib = ru.ru_maxrss; /* kilobytes on Linux and the BSDs */
    return 0;
}

int test_run_child(void (*fn)(void *), void *arg, char *out, size_t outsz, int *status)
{
    test_capture_t cap = { .buf = NULL, .len = 0, .cap = 0,
                           .limit = outsz ? outsz - 1 : 0, .truncated = 0 };
    int timed_out;
    /* Same process group as the test, so a runner timeout kills both. */
    int r = test_capture_run(fn, arg, test_timeout_seconds(), 0, &cap, status, &timed_out);
    if (outsz) {
        if (cap.len)
            memcpy(out, cap.buf, cap.len);
        out[cap.len] = '\0';
    }
    free(cap.buf);
    return r;
}
