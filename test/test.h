/* test/test.h: the suite's registry and assertions.
 *
 *   TEST(name) { ... }      defines a test; a constructor registers it, so a
 *                           test file never edits a central list
 *   TEST_SCALE(name) { ... } a scale test (a million coroutines, gigabytes,
 *                           tens of seconds): skipped by the default run,
 *                           run by `make test-scale` (runner --scale)
 *   ASSERT_EQ(a, b) ...     on failure print both sides with file:line and
 *                           exit(1); integers compare as long long
 *   TEST_SKIP("why %d", n)  end the test as skipped (exit code 77)
 *
 * test/runner.c runs each test in its own forked process with a timeout;
 * see there for how the outcome is judged. */
#ifndef CORO_TEST_TEST_H
#define CORO_TEST_TEST_H

#include "coro/sanitize.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef void (*test_fn)(void);

/* Flags of a registered test. */
enum { TEST_FLAG_SCALE = 1 };

/* Called by TEST()'s constructor; the runner owns the list. */
void test_register(const char *name, test_fn fn, const char *file, int line, int flags);

#define TEST_DEFINE_(name, flags)                                        \
    static void test_##name(void);                                       \
    __attribute__((constructor)) static void test_register_##name(void)  \
    {                                                                    \
        test_register(#name, test_##name, __FILE__, __LINE__, flags);    \
    }                                                                    \
    static void test_##name(void)

#define TEST(name) TEST_DEFINE_(name, 0)
#define TEST_SCALE(name) TEST_DEFINE_(name, TEST_FLAG_SCALE)

/* The exit code of a skipped test. */
#define TEST_EXIT_SKIP 77
/* Printed before a skip's reason; the runner looks for it. */
#define TEST_SKIP_MARK "test skipped: "

/* ---- failure reporters (each prints, then exit(1)) --------------------- */

__attribute__((noreturn, format(printf, 3, 4)))
void test_fail(const char *file, int line, const char *fmt, ...);
__attribute__((noreturn))
void test_fail_cmp(const char *file, int line, const char *a_expr, const char *op,
                   const char *b_expr, long long a, long long b);
__attribute__((noreturn))
void test_fail_ptr(const char *file, int line, const char *a_expr, const char *b_expr,
                   const void *a, const void *b);
__attribute__((noreturn))
void test_fail_str(const char *file, int line, const char *a_expr, const char *b_expr,
                   const char *a, const char *b);
__attribute__((noreturn))
void test_fail_errno(const char *file, int line, const char *call, const char *want_ret,
                     long long ret, const char *e_expr, int want_errno, int got_errno);
__attribute__((noreturn, format(printf, 1, 2)))
void test_skip(const char *fmt, ...);

#define ASSERT(cond)                                                     \
    do {                                                                 \
        if (!(cond))                                                     \
            test_fail(__FILE__, __LINE__, "ASSERT(%s) failed", #cond);   \
    } while (0)

/* Each side is evaluated exactly once. */
#define TEST_CMP_(a, op, b)                                              \
    do {                                                                 \
        long long test_a_ = (long long)(a);                              \
        long long test_b_ = (long long)(b);                              \
        if (!(test_a_ op test_b_))                                       \
            test_fail_cmp(__FILE__, __LINE__, #a, #op, #b, test_a_, test_b_); \
    } while (0)

#define ASSERT_EQ(a, b) TEST_CMP_(a, ==, b)
#define ASSERT_NE(a, b) TEST_CMP_(a, !=, b)
#define ASSERT_LT(a, b) TEST_CMP_(a, <, b)
#define ASSERT_LE(a, b) TEST_CMP_(a, <=, b)
#define ASSERT_GT(a, b) TEST_CMP_(a, >, b)
#define ASSERT_GE(a, b) TEST_CMP_(a, >=, b)

#define ASSERT_PTR_EQ(a, b)                                              \
    do {                                                                 \
        const void *test_pa_ = (a);                                      \
        const void *test_pb_ = (b);                                      \
        if (test_pa_ != test_pb_)                                        \
            test_fail_ptr(__FILE__, __LINE__, #a, #b, test_pa_, test_pb_); \
    } while (0)

#define ASSERT_NULL(a) ASSERT_PTR_EQ(a, NULL)
#define ASSERT_NOT_NULL(a)                                               \
    do {                                                                 \
        if ((a) == NULL)                                                 \
            test_fail(__FILE__, __LINE__, "ASSERT_NOT_NULL(%s) failed", #a); \
    } while (0)

/* NULL equals only NULL. */
#define ASSERT_STR_EQ(a, b)                                              \
    do {                                                                 \
        const char *test_sa_ = (a);                                      \
        const char *test_sb_ = (b);                                      \
        if (!test_str_eq(test_sa_, test_sb_))                            \
            test_fail_str(__FILE__, __LINE__, #a, #b, test_sa_, test_sb_); \
    } while (0)

/* `haystack` contains `needle` (for captured output). */
#define ASSERT_CONTAINS(haystack, needle)                                \
    do {                                                                 \
        const char *test_h_ = (haystack);                                \
        const char *test_n_ = (needle);                                  \
        if (!test_h_ || !test_n_ || !test_contains(test_h_, test_n_))    \
            test_fail(__FILE__, __LINE__,                                \
                      "ASSERT_CONTAINS(%s, %s) failed\n  needle:   \"%s\"\n" \
                      "  haystack: \"%s\"", #haystack, #needle,          \
                      test_n_ ? test_n_ : "(null)", test_h_ ? test_h_ : "(null)"); \
    } while (0)

#define ASSERT_NOT_CONTAINS(haystack, needle)                            \
    do {                                                                 \
        const char *test_h_ = (haystack);                                \
        const char *test_n_ = (needle);                                  \
        if (test_contains(test_h_, test_n_))                             \
            test_fail(__FILE__, __LINE__,                                \
                      "ASSERT_NOT_CONTAINS(%s, %s) failed\n  needle:   \"%s\"\n" \
                      "  haystack: \"%s\"", #haystack, #needle, test_n_, test_h_); \
    } while (0)

/* `call` returns `ret` and sets errno to `e` (errno is cleared first). */
#define ASSERT_RET_ERRNO(call, ret, e) TEST_RET_ERRNO_(call, ret, #ret, e, #e)

/* `call` returns -1 and sets errno to `e`. */
#define ASSERT_ERRNO(call, e) TEST_RET_ERRNO_(call, -1, "-1", e, #e)

/* The strings are made by the public macros, before `e` expands. */
#define TEST_RET_ERRNO_(call, ret, ret_str, e, e_str)                    \
    do {                                                                 \
        errno = 0;                                                       \
        long long test_r_ = (long long)(call);                           \
        int test_e_ = errno;                                             \
        if (test_r_ != (long long)(ret) || test_e_ != (e))               \
            test_fail_errno(__FILE__, __LINE__, #call, ret_str, test_r_, e_str, (e), test_e_); \
    } while (0)

/* `call` returns a NULL pointer and sets errno to `e`. */
#define ASSERT_NULL_ERRNO(call, e)                                       \
    do {                                                                 \
        errno = 0;                                                       \
        const void *test_p_ = (call);                                    \
        int test_e_ = errno;                                             \
        if (test_p_ != NULL || test_e_ != (e))                           \
            test_fail_errno(__FILE__, __LINE__, #call, "NULL",           \
                            (long long)(intptr_t)test_p_, #e, (e), test_e_); \
    } while (0)

/* End the test as skipped: prints the reason and exits with code 77. */
#define TEST_SKIP(...) test_skip(__VA_ARGS__)

/* ---- helpers ----------------------------------------------------------- */

int test_str_eq(const char *a, const char *b);
int test_contains(const char *haystack, const char *needle);

/* 1 when running under Valgrind. */
int test_under_valgrind(void);
/* 1 in an AddressSanitizer or ThreadSanitizer build. */
int test_under_sanitizer(void);

/* 1 under a user-mode emulator (qemu-user, as `make TEST_EXEC=...` runs
 * the aarch64 suite), whose own mappings and emulated /proc/self/maps make
 * mapping counts meaningless. CORO_TEST_EMULATED=1 forces it. */
int test_under_emulator(void);

/* Monotonic time in nanoseconds. */
int64_t test_now_ns(void);

/* pthread_create, the library's calls included, goes through the runner
 * (test/thread_hook.c): from now on each call first sleeps ns (0: not);
 * the first ok_first calls from now succeed and every later one fails
 * with err (ok_first -1: none fails); reset disarms both. calls counts
 * every pthread_create of the process. */
void test_thread_create_delay(int64_t ns);
void test_thread_create_fail(int ok_first, int err);
void test_thread_create_reset(void);
int test_thread_create_calls(void);

/* Mappings in /proc/self/maps, not counting malloc's [heap] (whose
 * growth shows up as a mapping of its own after a fork), or -1. */
long test_count_mappings(void);
/* 1 if [addr, addr + 1) is mapped in this process (by mincore(2)). */
int test_is_mapped(const void *addr);

/* Run fn(arg) in a forked child whose stdout and stderr go into `out`
 * (NUL-terminated, truncated to outsz - 1 bytes). A child that returns from
 * fn exits with exit(0). The child is killed after `timeout` seconds (the
 * suite's timeout when 0), which test_run_child reports as a SIGKILL status.
 * Stores the waitpid(2) status in *status; returns 0, or -1 with errno if
 * the child could not be started. */
int test_run_child(void (*fn)(void *), void *arg, char *out, size_t outsz, int *status);

/* A child the test forked itself (not through test_run_child) has ended:
 * under `make test`'s Valgrind pass its Valgrind log (a file of its own)
 * is copied to stdout, where the runner looks for the stack-switch
 * warning, and removed. Valgrind's errors in the child show in its exit
 * status (99), which the test checks. No-op natively. */
void test_child_valgrind_log(pid_t pid);

/* The per-test timeout in seconds (CORO_TEST_TIMEOUT, default 30, times 20
 * under Valgrind). */
double test_timeout_seconds(void);

/* Describe a waitpid status ("exit code 3", "signal 11 (Segmentation
 * fault)") into buf. */
const char *test_describe_status(int status, char *buf, size_t size);

/* ---- for the runner ---------------------------------------------------- */

/* Output captured from a child: buf is NUL-terminated (NULL if nothing came)
 * and holds at most `limit` bytes; `truncated` says more was dropped.
 * maxrss_kib is the child's peak resident set (wait4's ru_maxrss; that of
 * its largest waited-for descendant if larger), 0 if unknown. */
typedef struct test_capture {
    char *buf;
    size_t len, cap, limit;
    int truncated;
    long maxrss_kib;
} test_capture_t;

/* Fork; the child sends stdout and stderr into a pipe, runs fn(arg) and
 * exit(0)s. The parent collects the output into *cap and waits for the
 * child for at most timeout_s seconds, then kills it with SIGKILL (its
 * whole process group when new_group) and sets *timed_out. *status is the
 * wait status and cap->maxrss_kib the child's peak RSS. Returns 0, or -1 with errno if fork or pipe failed. */
int test_capture_run(void (*fn)(void *), void *arg, double timeout_s, int new_group,
                     test_capture_t *cap, int *status, int *timed_out);

#endif /* CORO_TEST_TEST_H */
