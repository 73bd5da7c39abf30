/* test/test_io.h: small helpers shared by the I/O tests (test/test_io_*.c):
 * socket pairs, a loopback TCP listener and client, descriptor counting, a
 * test body run under a deadline, a checkable byte pattern, and a run of
 * coro_main that must not report a deadlock. Everything is static inline
 * so a file that uses only part of it stays warning-free. */
#ifndef CORO_TEST_TEST_IO_H
#define CORO_TEST_TEST_IO_H

#include "test/test_sched.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

/* ---- descriptors ---------------------------------------------------------- */

/* A connected pair of Unix stream sockets (blocking, close-on-exec). */
static inline void tio_stream_pair(int sv[2])
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* Close both ends of a pair with coro_close. */
static inline void tio_close_pair(int sv[2])
{
    ASSERT_EQ(coro_close(sv[0]), 0);
    ASSERT_EQ(coro_close(sv[1]), 0);
}

/* Set a socket's send or receive buffer (opt: SO_SNDBUF or SO_RCVBUF). */
static inline void tio_set_buffer(int fd, int opt, int bytes)
{
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes), 0);
}

/* 127.0.0.1, port 0 (an ephemeral port when bound). */
static inline void tio_loopback(struct sockaddr_in *a)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* A non-blocking TCP listener on 127.0.0.1 with an ephemeral port and
 * SO_REUSEADDR; rcvbuf, when not 0, is its SO_RCVBUF (set before listen,
 * so accepted connections inherit it). *addr (if not NULL) gets its
 * address. */
static inline int tio_tcp_listener_rcvbuf(int backlog, int rcvbuf, struct sockaddr_in *addr)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ASSERT_GE(l, 0);
    int one = 1;
    ASSERT_EQ(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    if (rcvbuf)
        tio_set_buffer(l, SO_RCVBUF, rcvbuf);
    struct sockaddr_in a;
    tio_loopback(&a);
    ASSERT_EQ(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ(getsockname(l, (struct sockaddr *)&a, &len), 0);
    ASSERT_EQ(listen(l, backlog), 0);
    if (addr)
        *addr = a;
    return l;
}

/* The same with the system's receive buffer. */
static inline int tio_tcp_listener(int backlog, struct sockaddr_in *addr)
{
    return tio_tcp_listener_rcvbuf(backlog, 0, addr);
}

/* A client connected to a (blocking connect: loopback completes at once
 * while the listener's backlog has room). */
static inline int tio_tcp_client(const struct sockaddr_in *a)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(c, 0);
    ASSERT_EQ(connect(c, (const struct sockaddr *)a, sizeof *a), 0);
    return c;
}

/* Descriptors open in this process (the count includes the one that
 * reads /proc/self/fd, so compare counts, not a count with a number). */
static inline int tio_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ASSERT_NOT_NULL(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ---- running a test body ------------------------------------------------------ */

typedef struct tio_body {
    coro_fn fn;
    void *arg;
} tio_body_t;

/* A hang fails within seconds (ETIMEDOUT), not at the runner's timeout. */
static inline int tio_with_deadline(void *arg)
{
    tio_body_t *b = arg;
    coro_timeout(ts_bound(10 * CORO_SEC));
    return b->fn(b->arg);
}

/* Run fn as the main coroutine, under that deadline; no descriptor may be
 * left behind. */
static inline void tio_run(coro_fn fn, void *arg)
{
    int before = tio_count_fds();
    tio_body_t b = { fn, arg };
    ASSERT_EQ(coro_main(tio_with_deadline, &b), 0);
    ASSERT_EQ(tio_count_fds(), before);
}

/* Run coro_main(fn, arg) with stderr captured, copy the capture to stdout
 * (for the test's log) and check that the scheduler did not call the run a
 * deadlock. Returns coro_main's result, errno as coro_main left it. */
static inline int tio_main_without_deadlock(coro_fn fn, void *arg)
{
    ts_capture_t cap;
    ts_capture_begin(&cap);
    errno = 0;
    int r = coro_main(fn, arg);
    int e = errno;
    char *out = ts_capture_end(&cap);
    printf("%s", out);
    ASSERT_NOT_CONTAINS(out, "deadlock");
    free(out);
    errno = e;
    return r;
}

/* ---- data ------------------------------------------------------------------------ */

/* The byte at offset i of the test stream numbered seed: no short period,
 * so a lost, doubled or reordered piece shows. */
static inline unsigned char tio_pattern(uint64_t seed, uint64_t i)
{
    uint64_t x = i + seed * 0x9E3779B97F4A7C15ull;
    return (unsigned char)((x ^ (x >> 8) ^ (x >> 19)) * 29u + 3u);
}

/* buf = bytes off .. off + n - 1 of stream seed. */
static inline void tio_fill_pattern(unsigned char *buf, size_t n, uint64_t seed, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = tio_pattern(seed, off + i);
}

/* Index of the first byte of buf that is not the pattern, or n. */
static inline size_t tio_check_pattern(const unsigned char *buf, size_t n, uint64_t seed,
                                       uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != tio_pattern(seed, off + i))
            return i;
    return n;
}

/* ---- threads ----------------------------------------------------------------------- */

/* Sleep the calling thread for ns nanoseconds, whatever interrupts it. */
static inline void tio_nap_ns(int64_t ns)
{
    struct timespec ts = { (time_t)(ns / CORO_SEC), (long)(ns % CORO_SEC) };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

#endif /* CORO_TEST_TEST_IO_H */
