/* test/test_sched.h: small helpers shared by the scheduler tests
 * (test/test_sched_*.c) and the others: time bounds scaled for slow runs,
 * stderr capture, captured text and coro_dump's, switch counts, and the
 * process's memory figures. Everything is static inline so a file
 * that uses only part of it stays warning-free. */
#ifndef CORO_TEST_TEST_SCHED_H
#define CORO_TEST_TEST_SCHED_H

#include "test/test.h"
#include "coro.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1 when the run is much slower than native (Valgrind, sanitizers). */
static inline int ts_slow(void)
{
    return test_under_valgrind() || test_under_sanitizer();
}

/* A generous upper bound for something that takes `native` ns natively:
 * Valgrind runs about 20-50 times slower, qemu-user about 10, sanitizers a
 * few times. */
static inline int64_t ts_bound(int64_t native)
{
    if (test_under_valgrind())
        return native * 20;
    if (test_under_emulator())
        return native * 10;
    if (test_under_sanitizer())
        return native * 4;
    return native;
}

/* Run fn(arg) in a deterministic simulation with the given seed: virtual
 * time, so a test of logic (deadlines, shields, groups) asserts times that
 * no loaded machine can stretch. */
static inline int ts_main_sim(coro_fn fn, void *arg, uint64_t seed)
{
    coro_sim_t sim = { .seed = seed };
    coro_main_opts_t o = { .sim = &sim };
    return coro_main_opts(fn, arg, &o);
}

/* Pick a loop count: n natively, n_slow under Valgrind or a sanitizer. */
static inline long ts_count(long n, long n_slow)
{
    return ts_slow() ? n_slow : n;
}

static inline int64_t ts_ms(int64_t ns)
{
    return ns / CORO_MS;
}

/* ---- stderr capture ----------------------------------------------------- */

/* Redirect file descriptor 2 into an unlinked temporary file until
 * ts_capture_end(), which returns what was written there (malloc'd,
 * NUL-terminated). Valgrind's own messages do not go through the client's
 * fd 2, so they are not swallowed. */
typedef struct ts_capture {
    FILE *file;
    int saved;
} ts_capture_t;

static inline void ts_capture_begin(ts_capture_t *c)
{
    fflush(stderr);
    c->file = tmpfile();
    ASSERT_NOT_NULL(c->file);
    c->saved = dup(STDERR_FILENO);
    ASSERT_GE(c->saved, 0);
    ASSERT_EQ(dup2(fileno(c->file), STDERR_FILENO), STDERR_FILENO);
}

static inline char *ts_capture_end(ts_capture_t *c)
{
    fflush(stderr);
    ASSERT_EQ(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
    close(c->saved);
    int fd = fileno(c->file);
    off_t len = lseek(fd, 0, SEEK_END);
    ASSERT_GE(len, 0);
    char *buf = malloc((size_t)len + 1);
    ASSERT_NOT_NULL(buf);
    size_t got = 0;
    while (got < (size_t)len) {
        ssize_t n = pread(fd, buf + got, (size_t)len - got, (off_t)got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    fclose(c->file);
    return buf;
}

/* Read everything from fd (a pipe's read end) until EOF into a malloc'd,
 * NUL-terminated string. */
static inline char *ts_read_all(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ASSERT_NOT_NULL(buf);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ASSERT_NOT_NULL(buf);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* Number of lines of s that contain needle. */
static inline int ts_count_lines_with(const char *s, const char *needle)
{
    int n = 0;
    while (s && *s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        const char *hit = strstr(s, needle);
        if (hit && hit < s + len)
            n++;
        s += len + (nl != NULL);
    }
    return n;
}

/* The line of `text` that contains `needle`, copied into buf ("" if none). */
static inline const char *ts_line_with(const char *text, const char *needle, char *buf,
                                       size_t size)
{
    buf[0] = '\0';
    const char *hit = text ? strstr(text, needle) : NULL;
    if (!hit)
        return buf;
    const char *start = hit;
    while (start > text && start[-1] != '\n')
        start--;
    const char *end = strchr(hit, '\n');
    size_t n = end ? (size_t)(end - start) : strlen(start);
    if (n >= size)
        n = size - 1;
    memcpy(buf, start, n);
    buf[n] = '\0';
    return buf;
}

/* What coro_dump writes now, as a malloc'd, NUL-terminated string. */
static inline char *ts_dump_text(void)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    coro_dump(p[1]);
    ASSERT_EQ(close(p[1]), 0);
    char *out = ts_read_all(p[0]);
    ASSERT_EQ(close(p[0]), 0);
    return out;
}

/* ---- statistics ----------------------------------------------------------- */

/* Context switches so far (coro_stats). */
static inline uint64_t ts_switches(void)
{
    coro_stats_t st;
    coro_stats(&st);
    return st.switches;
}

/* ---- memory ------------------------------------------------------------- */

/* VmRSS of this process in KiB, or -1. */
static inline long ts_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

/* A tiny deterministic PRNG (xorshift64*), for randomized tests with a
 * fixed seed. */
static inline uint64_t ts_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif /* CORO_TEST_TEST_SCHED_H */
