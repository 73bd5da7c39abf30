/* test/runner.c: runs the registered tests, each in its own forked process
 * with its output captured and a timeout.
 *
 *   runner [-l] [-h] [--scale] [substring ...]
 *
 * With substrings, only tests whose name contains one of them run; -l lists
 * the names instead. Scale tests (TEST_SCALE: a million coroutines,
 * gigabytes, tens of seconds) are skipped, each with a skip line, unless
 * --scale is given, which runs the scale tests only (`make test-scale`).
 * One line per test:
 *
 *   ok   <name> (<ms> ms[, <n> MiB peak RSS])
 *   FAIL <name>: <exit code N | killed by signal N | timeout ...>
 *       <the test's output, indented>
 *   skip <name>: <reason>
 *
 * (the peak RSS, the test process's ru_maxrss from wait4, is shown when it
 * is at least RSS_NOTE_MIB), then the largest peak RSS of the run, and last
 * `N passed, N failed, N skipped`. The exit status is non-zero iff a test
 * failed or none ran.
 *
 * Environment: CORO_TEST_TIMEOUT seconds per test (default 30; times 20
 * under Valgrind; times SCALE_TIMEOUT_FACTOR for a scale test); CORO_TEST_VERBOSE=1 also shows passing tests' output;
 * CORO_TEST_SUMMARY=FILE writes the three counts there too, as
 * "<passed> <failed> <skipped>\n" (how `make test` adds up its two halves).
 *
 * Under Valgrind a test also fails if it exits with 99 (`make test` passes
 * --error-exitcode=99) or its output holds Valgrind's "client switching
 * stacks?" warning. Valgrind writes its messages through its own copy of
 * the stderr it started with, never through the test's captured stderr; to
 * see them per test, run it with --log-file=DIR/vg.%p.log (a forked child
 * then logs to a file of its own) and the same pattern in the environment
 * as CORO_TEST_VALGRIND_LOG: each test's log is then read into its output,
 * and removed. Valgrind prints the stack-switch warning only at its default
 * verbosity, not with -q. */
#include "test/test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The exit code `make test` gives Valgrind for "errors found". */
#define VALGRIND_ERROR_EXIT 99
/* Keep at most this much of a test's output. */
#define OUTPUT_LIMIT ((size_t)4 << 20)
/* A scale test may take this many times the suite's timeout (a million
 * page faults take 20 s on an idle 2-core VM, 50 s on a busy one). */
#define SCALE_TIMEOUT_FACTOR 4
/* A test line shows the test's peak RSS from this size up. */
#define RSS_NOTE_MIB 128

typedef struct test_case {
    const char *name;
    test_fn fn;
    const char *file;
    int line;
    int flags;
} test_case_t;

static test_case_t *tests;
static size_t ntests, tests_cap;

void test_register(const char *name, test_fn fn, const char *file, int line, int flags)
{
    if (ntests == tests_cap) {
        size_t ncap = tests_cap ? tests_cap * 2 : 64;
        test_case_t *t = realloc(tests, ncap * sizeof *t);
        if (!t) {
            fprintf(stderr, "runner: out of memory registering %s\n", name);
            exit(2);
        }
        tests = t;
        tests_cap = ncap;
    }
    tests[ntests++] = (test_case_t){ name, fn, file, line, flags };
}

static int by_name(const void *a, const void *b)
{
    const test_case_t *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int selected(const char *name, int nfilters, char **filters)
{
    if (nfilters == 0)
        return 1;
    for (int i = 0; i < nfilters; i++)
        if (strstr(name, filters[i]))
            return 1;
    return 0;
}

/* The forked child's body: one test. */
static void run_one(void *arg)
{
    const test_case_t *t = arg;
    t->fn();
}

/* Print `text` with every line indented. */
static void print_indented(const char *text)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        printf("    %.*s\n", (int)n, p);
        p += n + (nl != NULL);
    }
}

/* The reason given to TEST_SKIP, copied into buf. */
static const char *skip_reason(const char *out, char *buf, size_t size)
{
    const char *m = out ? strstr(out, TEST_SKIP_MARK) : NULL;
    if (!m)
        return "(no reason given)";
    m += strlen(TEST_SKIP_MARK);
    size_t n = strcspn(m, "\n");
    if (n >= size)
        n = size - 1;
    memcpy(buf, m, n);
    buf[n] = '\0';
    return buf;
}

static void usage(const char *argv0)
{
    printf("usage: %s [-l] [--scale] [substring ...]\n"
           "  runs the tests whose names contain a substring (all by default);\n"
           "  -l lists them instead; --scale runs the scale tests, which the\n"
           "  default run skips\n", argv0);
}

/* CORO_TEST_SUMMARY=FILE: the counts, for `make test`'s closing line. */
static void write_summary(unsigned passed, unsigned failed, unsigned skipped)
{
    const char *path = getenv("CORO_TEST_SUMMARY");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%u %u %u\n", passed, failed, skipped) < 0 || fclose(f) != 0)
        printf("runner: cannot write the summary to %s: %s\n", path, strerror(errno));
}

int main(int argc, char **argv)
{
    int list = 0, scale = 0, nfilters = 0;
    char **filters = calloc((size_t)argc + 1, sizeof *filters);
    if (!filters)
        return 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-l") == 0) {
            list = 1;
        } else if (strcmp(argv[i], "--scale") == 0) {
            scale = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(argv[0]);
            free(filters);
            free(tests);
            return 0;
        } else {
            filters[nfilters++] = argv[i];
        }
    }

    if (ntests)
        qsort(tests, ntests, sizeof *tests, by_name);
    int status_code = 0;
    for (size_t i = 1; i < ntests; i++) {
        if (strcmp(tests[i - 1].name, tests[i].name) == 0) {
            printf("runner: test %s is defined twice (%s:%d and %s:%d)\n", tests[i].name,
                   tests[i - 1].file, tests[i - 1].line, tests[i].file, tests[i].line);
            status_code = 1;
        }
    }

    if (list) {
        for (size_t i = 0; i < ntests; i++)
            if (selected(tests[i].name, nfilters, filters))
                printf("%s\n", tests[i].name);
        free(filters);
        free(tests);
        return status_code;
    }

    /* A child killed by SIGPIPE must not take us with it when our own
     * stdout is a closed pipe: we want the summary. */
    signal(SIGPIPE, SIG_IGN);
    const int valgrind = test_under_valgrind();
    const int verbose = getenv("CORO_TEST_VERBOSE") && strcmp(getenv("CORO_TEST_VERBOSE"), "0");
    const double timeout = test_timeout_seconds();
    unsigned passed = 0, failed = 0, skipped = 0;
    long peak_kib = 0;
    const char *peak_name = NULL;

    for (size_t i = 0; i < ntests; i++) {
        test_case_t *t = &tests[i];
        if (!selected(t->name, nfilters, filters))
            continue;
        const int is_scale = (t->flags & TEST_FLAG_SCALE) != 0;
        if (scale && !is_scale)
            continue;
        if (is_scale && !scale) {
            printf("skip %s: scale test (make test-scale, or runner --scale)\n", t->name);
            skipped++;
            fflush(stdout);
            continue;
        }
        test_capture_t cap = { .buf = NULL, .len = 0, .cap = 0,
                               .limit = OUTPUT_LIMIT, .truncated = 0, .maxrss_kib = 0 };
        int status, timed_out;
        int64_t t0 = test_now_ns();
        const double limit = is_scale ? timeout * SCALE_TIMEOUT_FACTOR : timeout;
        if (test_capture_run(run_one, t, limit, 1, &cap, &status, &timed_out) != 0) {
            printf("FAIL %s: could not start: %s\n", t->name, strerror(errno));
            failed++;
            free(cap.buf);
            fflush(stdout);
            continue;
        }
        long long ms = (long long)((test_now_ns() - t0) / 1000000);
        const char *out = cap.buf ? cap.buf : "";
        if (cap.maxrss_kib > peak_kib) {
            peak_kib = cap.maxrss_kib;
            peak_name = t->name;
        }
        char rss[64] = "";
        if (cap.maxrss_kib >= (long)RSS_NOTE_MIB * 1024)
            snprintf(rss, sizeof rss, ", %ld MiB peak RSS", cap.maxrss_kib / 1024);

        char reason[256];
        reason[0] = '\0';
        int skip = 0;
        if (timed_out) {
            snprintf(reason, sizeof reason, "timeout after %g s (killed)", limit);
        } else if (WIFSIGNALED(status)) {
            test_describe_status(status, reason, sizeof reason);
        } else if (!WIFEXITED(status)) {
            test_describe_status(status, reason, sizeof reason);
        } else if (valgrind && WEXITSTATUS(status) == VALGRIND_ERROR_EXIT) {
            snprintf(reason, sizeof reason, "Valgrind reported errors (exit code %d)",
                     VALGRIND_ERROR_EXIT);
        } else if (valgrind && strstr(out, "switching stacks")) {
            snprintf(reason, sizeof reason,
                     "Valgrind warned \"client switching stacks?\" (exit code %d)",
                     WEXITSTATUS(status));
        } else if (WEXITSTATUS(status) == TEST_EXIT_SKIP) {
            skip = 1;
        } else if (WEXITSTATUS(status) != 0) {
            test_describe_status(status, reason, sizeof reason);
        }

        if (skip) {
            char why[256];
            printf("skip %s: %s\n", t->name, skip_reason(out, why, sizeof why));
            skipped++;
        } else if (reason[0]) {
            if (rss[0])
                printf("FAIL %s: %s (%s)\n", t->name, reason, rss + 2);
            else
                printf("FAIL %s: %s\n", t->name, reason);
            print_indented(out);
            if (cap.truncated)
                printf("    [output truncated]\n");
            failed++;
        } else {
            printf("ok   %s (%lld ms%s)\n", t->name, ms, rss);
            if (verbose)
                print_indented(out);
            passed++;
        }
        fflush(stdout);
        free(cap.buf);
    }

    if (passed + failed + skipped == 0) {
        printf("runner: no test matched\n");
        status_code = 1;
    }
    if (peak_name)
        printf("largest peak RSS: %ld MiB (%s)\n", (peak_kib + 1023) / 1024, peak_name);
    printf("%u passed, %u failed, %u skipped\n", passed, failed, skipped);
    fflush(stdout);
    write_summary(passed, failed, skipped);
    free(filters);
    free(tests);
    return failed || passed + failed + skipped == 0 ? 1 : status_code;
}
