/* test/test_io_errors.c: I/O faults are ordinary outcomes. A deadline and
 * the data it guards arriving in the same loop pass give the data or
 * ETIMEDOUT, never lose the data. Half-close is an EOF after the data (also
 * for a reader parked when it comes), a peer reset is ECONNRESET or EPIPE,
 * and SIGPIPE never kills the process (default disposition: sockets and
 * pipes, a writer parked when the reader goes; no SIGPIPE left pending and
 * the thread's mask restored after coro_main). EMFILE on accept backs off
 * about 100 ms per call instead of spinning, ends the back-off early when
 * coro_close frees a descriptor, and the server recovers. EINTR from a
 * 1 ms SIGALRM (no SA_RESTART) is retried: big transfers arrive intact. */
#include "test/test_io.h"
#include "sched/io_wait.h"
#include "coro/compat.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

/* ---- helpers -------------------------------------------------------------- */

/* A connected TCP pair over loopback, made with coro_connect and
 * coro_accept (from a coroutine). */
static void tcp_pair(int *client, int *server)
{
    struct sockaddr_in a;
    int l = tio_tcp_listener(16, &a);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(c, 0);
    ASSERT_EQ(coro_connect(c, (struct sockaddr *)&a, sizeof a), 0);
    int s = coro_accept(l, NULL, NULL);
    ASSERT_GE(s, 0);
    ASSERT_EQ(coro_close(l), 0);
    *client = c;
    *server = s;
}

/* The byte streams the half-close and end-of-file tests run over. */
enum { OVER_TCP, OVER_SOCKETPAIR, OVER_PIPE, OVER_COUNT };

static const char *const over_names[OVER_COUNT] = { "TCP", "socketpair", "pipe" };

/* A connected stream of kind `over`: *a writes, *b reads (sockets work
 * both ways too). */
static void stream_over(int over, int *a, int *b)
{
    if (over == OVER_TCP) {
        tcp_pair(a, b);
    } else if (over == OVER_SOCKETPAIR) {
        int sv[2];
        tio_stream_pair(sv);
        *a = sv[0];
        *b = sv[1];
    } else {
        int p[2];
        ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
        *a = p[1];
        *b = p[0];
    }
}

/* coro_join(c) with a deadline `ns` from now: a coroutine that never ends
 * fails the test instead of hanging it. Returns coro_join's result. */
static int join_within(coro_t *c, int64_t ns)
{
    int64_t saved = coro_timeout(ns);
    int r = coro_join(c, NULL);
    coro_set_deadline(saved);
    return r;
}

/* ---- a deadline and the data in the same pass ------------------------------ */

typedef struct race {
    int fd;        /* the writer's end */
    int64_t at;    /* when the data is to appear */
    int how;       /* 0 timer at `at`; 1 yield until `at`; 2 a thread at `at` */
    int written;
} race_t;

static void write_token(race_t *r)
{
    ASSERT_EQ(write(r->fd, "DATA", 4), 4);
    r->written = 1;
}

static int race_writer(void *arg)
{
    race_t *r = arg;
    if (r->how == 0) {
        ASSERT_EQ(coro_sleep_until(r->at), 0);
    } else {
        while (coro_now() < r->at)
            coro_yield();
    }
    write_token(r);
    return 0;
}

static void *race_thread(void *arg)
{
    race_t *r = arg;
    while (test_now_ns() < r->at)
        ;
    ssize_t n = write(r->fd, "DATA", 4);
    (void)n;
    return NULL;
}

static int race_main(void *arg)
{
    int *won = arg; /* [0] data, [1] deadline */
    int reps = (int)ts_count(30, 5);
    for (int rep = 0; rep < reps; rep++) {
        for (int how = 0; how < 3; how++) {
            for (int use_wait = 0; use_wait < 2; use_wait++) {
                int sv[2];
                tio_stream_pair(sv);
                race_t r = { sv[1], 0, how, 0 };
                int64_t t = coro_now() + ts_bound(2 * CORO_MS);
                r.at = t + (rep % 3 == 1 ? 1 : 0) - (rep % 3 == 2 ? 1 : 0);
                coro_t *w = NULL;
                pthread_t th;
                if (how == 2)
                    ASSERT_EQ(pthread_create(&th, NULL, race_thread, &r), 0);
                else
                    ASSERT_NOT_NULL(w = coro_spawn(race_writer, &r));
                int64_t saved = coro_set_deadline(t);
                char buf[16];
                errno = 0;
                long n = use_wait ? coro_wait_fd(sv[0], CORO_READ) : coro_read(sv[0], buf, sizeof buf);
                int e = errno;
                coro_set_deadline(saved);
                if (how == 2)
                    ASSERT_EQ(pthread_join(th, NULL), 0);
                else
                    ASSERT_EQ(coro_join(w, NULL), 0);
                if (n == -1) {
                    ASSERT_EQ(e, ETIMEDOUT);
                    ASSERT_GE(coro_now(), t);
                    won[1]++;
                    /* Not lost: it is there for the next read. */
                    saved = coro_timeout(ts_bound(CORO_SEC));
                    ASSERT_EQ(coro_read(sv[0], buf, sizeof buf), 4);
                    coro_set_deadline(saved);
                    ASSERT_EQ(memcmp(buf, "DATA", 4), 0);
                } else if (use_wait) {
                    ASSERT_EQ(n, CORO_READ);
                    won[0]++;
                    ASSERT_EQ(coro_read(sv[0], buf, sizeof buf), 4);
                    ASSERT_EQ(memcmp(buf, "DATA", 4), 0);
                } else {
                    ASSERT_EQ(n, 4);
                    ASSERT_EQ(memcmp(buf, "DATA", 4), 0);
                    won[0]++;
                }
                /* Nothing more, nothing twice. */
                ASSERT_ERRNO(recv(sv[0], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
                ASSERT_EQ(coro__fd_waiters(sv[0]), 0);
                tio_close_pair(sv);
            }
        }
    }
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.timers, 0);
    ASSERT_EQ(st.io_waits, 0);
    return 0;
}

TEST(io_err_deadline_and_data_same_pass_never_lose_data)
{
    int won[2] = { 0, 0 };
    ASSERT_EQ(coro_main(race_main, won), 0);
    ASSERT_EQ(won[0] + won[1], 6 * (int)ts_count(30, 5));
    printf("data won %d, deadline won %d\n", won[0], won[1]);
}

/* ---- half-close --------------------------------------------------------------- */

typedef struct hc {
    int fd;
    size_t total;
    int eofs;
    long ret;
    int err;
    int done;
} hc_t;

/* Read until EOF, checking the pattern; then read again (EOF again). */
static int hc_reader(void *arg)
{
    hc_t *h = arg;
    static unsigned char buf[7919];
    for (;;) {
        ssize_t n = coro_read(h->fd, buf, sizeof buf);
        ASSERT_GE(n, 0);
        if (n == 0)
            break;
        ASSERT_EQ(tio_check_pattern(buf, (size_t)n, 0, h->total), (size_t)n);
        h->total += (size_t)n;
    }
    h->eofs++;
    ASSERT_EQ(coro_read(h->fd, buf, sizeof buf), 0);
    h->eofs++;
    h->done = 1;
    return 0;
}

static int half_close_main(void *arg)
{
    (void)arg;
    enum { N = 300000 };
    static unsigned char data[N];
    tio_fill_pattern(data, N, 0, 0);
    for (int over = 0; over < OVER_COUNT; over++) {
        int a, b; /* a writes, b reads */
        stream_over(over, &a, &b);
        printf("%s: %d bytes, then %s\n", over_names[over], (int)N,
               over == OVER_PIPE ? "close" : "shutdown(SHUT_WR)");
        fflush(stdout);
        hc_t h;
        memset(&h, 0, sizeof h);
        h.fd = b;
        coro_t *c = coro_spawn(hc_reader, &h);
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(coro_write(a, data, N), N);
        if (over == OVER_PIPE) {
            ASSERT_EQ(coro_close(a), 0);
        } else {
            ASSERT_EQ(shutdown(a, SHUT_WR), 0);
        }
        /* A reader that never sees the end of file is a failure, not a hang. */
        if (join_within(c, ts_bound(2 * CORO_SEC)) != 0) {
            char line[256];
            snprintf(line, sizeof line, "reader got %zu of %d bytes and %d EOFs in 2 s", h.total,
                     (int)N, h.eofs);
            test_fail(__FILE__, __LINE__, "%s", line);
        }
        ASSERT_EQ(h.total, N);
        ASSERT_EQ(h.eofs, 2);
        if (over != OVER_PIPE) {
            /* The other direction still works after the half-close. */
            ASSERT_EQ(coro_write(b, "bye", 3), 3);
            ASSERT_EQ(coro_close(b), 0);
            char buf[8];
            ASSERT_EQ(coro_read(a, buf, sizeof buf), 3);
            ASSERT_EQ(memcmp(buf, "bye", 3), 0);
            ASSERT_EQ(coro_read(a, buf, sizeof buf), 0);
            ASSERT_EQ(coro_close(a), 0);
        } else {
            ASSERT_EQ(coro_close(b), 0);
        }
    }

    /* A reader parked when the half-close comes wakes with EOF; so does
     * a wait_fd (a hang-up is readable). */
    for (int over = OVER_TCP; over <= OVER_SOCKETPAIR; over++) {
        int a, b;
        stream_over(over, &a, &b);
        hc_t h;
        memset(&h, 0, sizeof h);
        h.fd = b;
        coro_t *c = coro_spawn(hc_reader, &h);
        ASSERT_NOT_NULL(c);
        coro_yield();
        ASSERT_EQ(h.done, 0);
        ASSERT_EQ(coro__fd_waiters(b), 1);
        ASSERT_EQ(shutdown(a, SHUT_WR), 0);
        ASSERT_EQ(join_within(c, ts_bound(2 * CORO_SEC)), 0);
        ASSERT_EQ(h.total, 0);
        ASSERT_EQ(h.eofs, 2);
        ASSERT_EQ(coro_wait_fd(b, CORO_READ), CORO_READ);
        ASSERT_EQ(coro_close(a), 0);
        ASSERT_EQ(coro_close(b), 0);
    }
    return 0;
}

TEST(io_err_half_close_is_eof_after_the_data)
{
    ASSERT_EQ(coro_main(half_close_main, NULL), 0);
}

/* ---- peer reset ---------------------------------------------------------------- */

static void reset_close(int fd)
{
    struct linger lg = { 1, 0 };
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    ASSERT_EQ(coro_close(fd), 0);
}

/* One read or write, parked in a coroutine, and its outcome. */
typedef struct call {
    int fd;
    size_t n;      /* call_write: bytes to write (at most 4 MiB) */
    long ret;
    int err;
    int done;
} call_t;

static int call_read(void *arg)
{
    call_t *r = arg;
    char buf[256];
    errno = 0;
    r->ret = coro_read(r->fd, buf, sizeof buf);
    r->err = errno;
    r->done = 1;
    return 0;
}

static int call_write(void *arg)
{
    call_t *w = arg;
    static unsigned char big[4 << 20];
    ASSERT_LE(w->n, sizeof big);
    errno = 0;
    w->ret = coro_write(w->fd, big, w->n);
    w->err = errno;
    w->done = 1;
    return 0;
}

/* Start fn (call_read or call_write of n bytes) on fd; it must park. */
static coro_t *start_parked(coro_fn fn, call_t *c, int fd, size_t n)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->n = n;
    coro_t *k = coro_spawn(fn, c);
    ASSERT_NOT_NULL(k);
    coro_yield();
    ASSERT_EQ(c->done, 0);
    return k;
}

static int is_reset_error(int e)
{
    return e == ECONNRESET || e == EPIPE;
}

static int reset_main(void *arg)
{
    (void)arg;
    /* A parked reader. */
    int c, s;
    tcp_pair(&c, &s);
    call_t r;
    coro_t *k = start_parked(call_read, &r, s, 0);
    reset_close(c);
    ASSERT_EQ(join_within(k, ts_bound(2 * CORO_SEC)), 0);
    ASSERT_EQ(r.ret, -1);
    ASSERT_EQ(r.err, ECONNRESET);
    /* Writing to it now: an error, no signal. */
    errno = 0;
    ASSERT_EQ(coro_write(s, "x", 1), -1);
    ASSERT(is_reset_error(errno));
    ASSERT_EQ(coro_close(s), 0);

    /* A reset between two reads, and a write right after. */
    tcp_pair(&c, &s);
    ASSERT_EQ(coro_write(c, "abc", 3), 3);
    char buf[16];
    ASSERT_EQ(coro_read(s, buf, sizeof buf), 3);
    reset_close(c);
    ASSERT_EQ(coro_sleep(2 * CORO_MS), 0);
    errno = 0;
    long n = coro_read(s, buf, sizeof buf);
    ASSERT_EQ(n, -1);
    ASSERT_EQ(errno, ECONNRESET);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        ASSERT_EQ(coro_send(s, "y", 1, 0), -1);
        ASSERT(is_reset_error(errno));
        char ab[2] = { 'a', 'b' };
        struct iovec iov[2] = { { ab, 1 }, { ab + 1, 1 } };
        errno = 0;
        ASSERT_EQ(coro_writev(s, iov, 2), -1);
        ASSERT(is_reset_error(errno));
    }
    ASSERT_EQ(coro_close(s), 0);

    /* A writer parked on a full buffer when the reset comes: the count
     * written so far, or -1, with a reset errno. */
    tcp_pair(&c, &s);
    tio_set_buffer(s, SO_SNDBUF, 4096);
    tio_set_buffer(c, SO_RCVBUF, 4096);
    k = start_parked(call_write, &r, s, 4 << 20);
    ASSERT_EQ(coro__fd_waiters(s), 1);
    reset_close(c);
    ASSERT_EQ(join_within(k, ts_bound(2 * CORO_SEC)), 0);
    ASSERT_NE(r.ret, 0);
    ASSERT_LT(r.ret, 4 << 20);
    ASSERT(is_reset_error(r.err));
    ASSERT_EQ(coro_close(s), 0);
    return 0;
}

TEST(io_err_peer_reset_is_an_error_not_a_crash)
{
    /* The runner ignores SIGPIPE and its children inherit that: put the
     * default back, so a stray SIGPIPE would kill this test. */
    ASSERT(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    ASSERT_EQ(coro_main(reset_main, NULL), 0);
}

/* ---- SIGPIPE ------------------------------------------------------------------- */

static int sigpipe_main(void *arg)
{
    (void)arg;
    /* A pipe whose reader is gone. */
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    ASSERT_EQ(close(p[0]), 0);
    ASSERT_ERRNO(coro_write(p[1], "x", 1), EPIPE);
    char ab[2] = { 'a', 'b' };
    struct iovec iov[2] = { { ab, 1 }, { ab + 1, 1 } };
    ASSERT_ERRNO(coro_writev(p[1], iov, 2), EPIPE);
    ASSERT_ERRNO(coro_write(p[1], "x", 1), EPIPE);
    ASSERT_EQ(coro_close(p[1]), 0);

    /* A socket whose peer is gone. */
    int sv[2];
    tio_stream_pair(sv);
    ASSERT_EQ(close(sv[1]), 0);
    ASSERT_ERRNO(coro_write(sv[0], "x", 1), EPIPE);
    ASSERT_ERRNO(coro_send(sv[0], "x", 1, 0), EPIPE);
    ASSERT_ERRNO(coro_writev(sv[0], iov, 2), EPIPE);
    ASSERT_EQ(coro_close(sv[0]), 0);

    /* A datagram socket connected to a peer that closed. */
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    ASSERT_EQ(close(sv[1]), 0);
    errno = 0;
    ASSERT_EQ(coro_sendto(sv[0], "x", 1, 0, NULL, 0), -1);
    ASSERT(errno == ECONNREFUSED || errno == EPIPE || errno == ENOTCONN);
    ASSERT_EQ(coro_close(sv[0]), 0);

    /* TCP: the peer closed; writing until the stack says so. */
    int c, s;
    tcp_pair(&c, &s);
    ASSERT_EQ(coro_close(c), 0);
    int failed = 0;
    for (int i = 0; i < 100 && !failed; i++) {
        errno = 0;
        if (coro_write(s, "zzzz", 4) < 0) {
            ASSERT(is_reset_error(errno));
            failed = 1;
        } else {
            ASSERT_EQ(coro_sleep(CORO_MS), 0);
        }
    }
    ASSERT_EQ(failed, 1);
    ASSERT_EQ(coro_close(s), 0);

    /* A pipe writer parked on a full pipe when the reader goes. */
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    call_t w;
    coro_t *k = start_parked(call_write, &w, p[1], 100000); /* more than a 64 KiB pipe */
    ASSERT_EQ(close(p[0]), 0);
    ASSERT_EQ(join_within(k, ts_bound(2 * CORO_SEC)), 0);
    ASSERT_EQ(w.err, EPIPE);
    ASSERT_LT(w.ret, 100000);
    ASSERT_EQ(coro_close(p[1]), 0);
    return 0;
}

/* Only sockets: they never raise SIGPIPE at all (MSG_NOSIGNAL). */
static int sockets_only_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    ASSERT_EQ(close(sv[1]), 0);
    ASSERT_ERRNO(coro_write(sv[0], "x", 1), EPIPE);
    ASSERT_ERRNO(coro_send(sv[0], "x", 1, 0), EPIPE);
    char ab[2] = { 'a', 'b' };
    struct iovec iov[2] = { { ab, 1 }, { ab + 1, 1 } };
    ASSERT_ERRNO(coro_writev(sv[0], iov, 2), EPIPE);
    ASSERT_EQ(coro_close(sv[0]), 0);
    int c, s;
    tcp_pair(&c, &s);
    ASSERT_EQ(coro_close(c), 0);
    for (int i = 0; i < 100; i++) {
        if (coro_write(s, "zzzz", 4) < 0)
            break;
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    }
    ASSERT_EQ(coro_close(s), 0);
    return 0;
}

static int sigpipe_blocked(void)
{
    sigset_t m;
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, &m), 0);
    return sigismember(&m, SIGPIPE);
}

static int sigpipe_pending(void)
{
    sigset_t m;
    ASSERT_EQ(sigpending(&m), 0);
    return sigismember(&m, SIGPIPE);
}

static void *sigpipe_thread(void *arg)
{
    int *ret = arg;
    for (int i = 0; i < 3; i++)
        *ret |= coro_main(sigpipe_main, NULL);
    return NULL;
}

/* Schedulers on several threads at once: each blocks SIGPIPE for itself. */
TEST(io_err_sigpipe_never_kills_threads)
{
    ASSERT(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    pthread_t th[3];
    int ret[3] = { 0, 0, 0 };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, sigpipe_thread, &ret[i]), 0);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
        ASSERT_EQ(ret[i], 0);
    }
    ASSERT_EQ(sigpipe_pending(), 0);
}

TEST(io_err_sigpipe_never_kills)
{
    ASSERT(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    struct sigaction sa;
    ASSERT_EQ(sigaction(SIGPIPE, NULL, &sa), 0);
    ASSERT(sa.sa_handler == SIG_DFL);
    ASSERT_EQ(sigpipe_blocked(), 0);
    for (int round = 0; round < 2; round++) {
        ASSERT_EQ(coro_main(sigpipe_main, NULL), 0);
        /* Afterwards: nothing pending that the restored mask would now
         * deliver, the mask as it was, the disposition untouched. */
        ASSERT_EQ(sigpipe_pending(), 0);
        ASSERT_EQ(sigpipe_blocked(), 0);
        ASSERT_EQ(sigaction(SIGPIPE, NULL, &sa), 0);
        ASSERT(sa.sa_handler == SIG_DFL);
    }
    /* A thread that blocked SIGPIPE itself keeps it blocked (and what
     * is pending stays visible: socket writes left nothing, with
     * MSG_NOSIGNAL or SO_NOSIGPIPE). */
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    struct timespec zero = { 0, 0 };
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &pipe_only, NULL), 0);
    ASSERT_EQ(coro_main(sockets_only_main, NULL), 0);
    ASSERT_EQ(sigpipe_blocked(), 1);
#if CORO_HAVE_MSG_NOSIGNAL || defined(SO_NOSIGPIPE)
    ASSERT_EQ(sigpipe_pending(), 0);
#else
    /* Neither (COMPAT=fallback on Linux): the socket writes raised SIGPIPE
     * and only the blocked mask kept it from killing the process; what is
     * pending is the thread's own, as for pipes. */
    ASSERT_EQ(sigpipe_pending(), 1);
    while (sigtimedwait(&pipe_only, NULL, &zero) == SIGPIPE)
        ;
#endif
    ASSERT_EQ(coro_main(sigpipe_main, NULL), 0);
    ASSERT_EQ(sigpipe_blocked(), 1);
    /* (Its pending SIGPIPEs are its own business: take them.) */
    while (sigtimedwait(&pipe_only, NULL, &zero) == SIGPIPE)
        ;
    ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &pipe_only, NULL), 0);
}

/* The smallest case of the above: a short message and the end of file in
 * one poller edge. The read that takes the message comes back short; the
 * next one must still see the end of file (no further edge will come). */
typedef struct eof2 {
    int fd;
    long first, second;
    int err;
    char buf[4096];
} eof2_t;

static int eof2_reader(void *arg)
{
    eof2_t *r = arg;
    r->first = coro_read(r->fd, r->buf, sizeof r->buf);
    int64_t saved = coro_timeout(ts_bound(CORO_SEC));
    errno = 0;
    r->second = coro_read(r->fd, r->buf, sizeof r->buf);
    r->err = errno;
    coro_set_deadline(saved);
    return 0;
}

static int eof2_main(void *arg)
{
    (void)arg;
    for (int over = 0; over < OVER_COUNT; over++) {
        int a, b;
        stream_over(over, &a, &b);
        eof2_t r;
        memset(&r, 0, sizeof r);
        r.fd = b;
        coro_t *c = coro_spawn(eof2_reader, &r);
        ASSERT_NOT_NULL(c);
        coro_yield(); /* parked in its first read */
        ASSERT_EQ(coro__fd_waiters(b), 1);
        ASSERT_EQ(write(a, "0123456789", 10), 10);
        ASSERT_EQ(coro_close(a), 0);
        ASSERT_EQ(coro_join(c, NULL), 0);
        ASSERT_EQ(r.first, 10);
        if (r.second != 0)
            test_fail(__FILE__, __LINE__,
                      "%s: after a short read of everything, the next read returned %ld (%s), "
                      "not the end of file", over_names[over], r.second, strerror(r.err));
        ASSERT_EQ(coro_close(b), 0);
    }
    return 0;
}

TEST(io_err_eof_after_short_read_is_seen)
{
    ASSERT_EQ(coro_main(eof2_main, NULL), 0);
}

/* ---- EMFILE on accept --------------------------------------------------------------- */

#define EMF_MAX 16

typedef struct emf {
    int l;
    int calls;                 /* EMFILE results */
    int64_t took[EMF_MAX];     /* how long each of those calls took */
    int64_t at[EMF_MAX];       /* when each returned */
    int64_t t_ok;
    int accepted;
} emf_t;

static int emf_acceptor(void *arg)
{
    emf_t *m = arg;
    for (;;) {
        int64_t t0 = coro_now();
        errno = 0;
        int s = coro_accept(m->l, NULL, NULL);
        if (s >= 0) {
            m->accepted = s;
            m->t_ok = coro_now();
            return 0;
        }
        ASSERT_EQ(errno, EMFILE);
        ASSERT_LT(m->calls, EMF_MAX);
        m->at[m->calls] = coro_now();
        m->took[m->calls] = m->at[m->calls] - t0;
        m->calls++;
    }
}

static int highest_open_fd(void)
{
    int hi = -1;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            hi = fd;
    return hi;
}

static int emfile_main(void *arg)
{
    (void)arg;
    struct sockaddr_in a;
    int l = tio_tcp_listener(16, &a);
    int client = tio_tcp_client(&a); /* waits in the backlog */

    struct rlimit old;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    struct rlimit low = old;
    int hi = highest_open_fd();
    printf("highest open descriptor %d\n", hi);
    low.rlim_cur = (rlim_t)hi + 1 + 8;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    /* Fill every free number below the limit (inherited descriptors may
     * leave holes). */
    int *fillers = malloc(sizeof *fillers * ((size_t)hi + 16));
    ASSERT_NOT_NULL(fillers);
    int nf = 0;
    for (;;) {
        int x = dup(client);
        if (x < 0) {
            ASSERT_EQ(errno, EMFILE);
            break;
        }
        ASSERT_LT(nf, hi + 16);
        fillers[nf++] = x;
    }
    ASSERT_GT(nf, 0);

    emf_t m;
    memset(&m, 0, sizeof m);
    m.l = l;
    m.accepted = -1;
    coro_t *c = coro_spawn(emf_acceptor, &m);
    ASSERT_NOT_NULL(c);
    /* Two full back-offs, then release a descriptor just after the third
     * began: its 100 ms timer is then ~99 ms away, so a wake-up by the
     * close and one by the timer are far apart even on a stalled machine. */
    int64_t give_up = coro_now() + ts_bound(2 * CORO_SEC);
    while (m.calls < 2) {
        ASSERT_LT(coro_now(), give_up);
        ASSERT_EQ(coro_sleep(CORO_MS), 0);
    }
    /* Out of descriptors for ~200 ms: 2 calls, not thousands. */
    ASSERT_EQ(m.accepted, -1);
    int64_t t_close = coro_now();
    ASSERT_EQ(coro_close(fillers[--nf]), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);

    for (int i = 0; i < m.calls; i++)
        printf("EMFILE %d after %lld ms\n", i, (long long)ts_ms(m.took[i]));
    printf("accepted %lld ms after the close\n", (long long)ts_ms(m.t_ok - t_close));
    ASSERT_GE(m.calls, 2);
    ASSERT_LE(m.calls, 4);
    /* Every full back-off lasted its 100 ms... */
    for (int i = 0; i < m.calls - 1; i++)
        ASSERT_GE(m.took[i], 95 * CORO_MS);
    /* ...the last one ended early, when the descriptor was released. */
    ASSERT_LT(m.took[m.calls - 1], 95 * CORO_MS);
    ASSERT_GE(m.at[m.calls - 1], t_close);
    ASSERT_LT(m.at[m.calls - 1] - t_close, 80 * CORO_MS);
    ASSERT_LT(m.t_ok - t_close, 80 * CORO_MS);

    /* The connection works. */
    ASSERT_GE(m.accepted, 0);
    ASSERT_EQ(write(client, "ping", 4), 4);
    char buf[8];
    ASSERT_EQ(coro_read(m.accepted, buf, sizeof buf), 4);
    ASSERT_EQ(memcmp(buf, "ping", 4), 0);

    /* And the server goes on serving once descriptors are back. */
    while (nf > 0)
        ASSERT_EQ(close(fillers[--nf]), 0);
    free(fillers);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    int client2 = tio_tcp_client(&a);
    int64_t saved = coro_timeout(ts_bound(CORO_SEC));
    int s2 = coro_accept(l, NULL, NULL);
    coro_set_deadline(saved);
    ASSERT_GE(s2, 0);
    ASSERT_EQ(coro_close(s2), 0);
    ASSERT_EQ(close(client2), 0);
    ASSERT_EQ(coro_close(m.accepted), 0);
    ASSERT_EQ(close(client), 0);
    ASSERT_EQ(coro_close(l), 0);
    return 0;
}

TEST(io_err_emfile_accept_backs_off_and_recovers)
{
    if (test_under_valgrind())
        TEST_SKIP("Valgrind reserves descriptors at the top of RLIMIT_NOFILE");
    ASSERT_EQ(coro_main(emfile_main, NULL), 0);
}

/* ---- EINTR ------------------------------------------------------------------------- */

/* Counted from whichever thread the signal lands on: an atomic, and the
 * handler keeps errno as it found it. */
static int alarms;

static void on_alarm(int sig)
{
    (void)sig;
    int saved = errno;
    __atomic_fetch_add(&alarms, 1, __ATOMIC_RELAXED);
    errno = saved;
}

typedef struct xfer {
    int fd;
    uint64_t n;
    uint64_t seed;
    uint64_t done;
} xfer_t;

static size_t xfer_len(uint64_t *rng, uint64_t left)
{
    uint64_t len = 1 + ts_rand(rng) % 70000;
    return (size_t)(len < left ? len : left);
}

static int xfer_writer(void *arg)
{
    xfer_t *x = arg;
    unsigned char *buf = malloc(70000); /* one each: the writers interleave */
    ASSERT_NOT_NULL(buf);
    uint64_t rng = x->seed;
    while (x->done < x->n) {
        size_t len = xfer_len(&rng, x->n - x->done);
        tio_fill_pattern(buf, len, 0, x->done);
        ASSERT_EQ(coro_write(x->fd, buf, len), (long)len);
        x->done += len;
    }
    free(buf);
    return 0;
}

static int xfer_reader(void *arg)
{
    xfer_t *x = arg;
    unsigned char *buf = malloc(70000);
    ASSERT_NOT_NULL(buf);
    uint64_t rng = x->seed;
    while (x->done < x->n) {
        size_t len = xfer_len(&rng, x->n - x->done);
        ssize_t got = coro_read(x->fd, buf, len);
        ASSERT_GT(got, 0);
        ASSERT_EQ(tio_check_pattern(buf, (size_t)got, 0, x->done), (size_t)got);
        x->done += (uint64_t)got;
    }
    free(buf);
    return 0;
}

/* The thread side uses blocking calls and handles EINTR itself. */
static void *thread_writer(void *arg)
{
    xfer_t *x = arg;
    unsigned char *buf = malloc(70000);
    ASSERT_NOT_NULL(buf);
    uint64_t rng = x->seed;
    while (x->done < x->n) {
        size_t len = xfer_len(&rng, x->n - x->done);
        tio_fill_pattern(buf, len, 0, x->done);
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(x->fd, buf + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            ASSERT_GT(w, 0);
            off += (size_t)w;
        }
        x->done += len;
    }
    free(buf);
    return NULL;
}

static void *thread_reader(void *arg)
{
    xfer_t *x = arg;
    unsigned char *buf = malloc(70000);
    ASSERT_NOT_NULL(buf);
    uint64_t rng = x->seed;
    while (x->done < x->n) {
        size_t len = xfer_len(&rng, x->n - x->done);
        ssize_t got = read(x->fd, buf, len);
        if (got < 0 && errno == EINTR)
            continue;
        ASSERT_GT(got, 0);
        ASSERT_EQ(tio_check_pattern(buf, (size_t)got, 0, x->done), (size_t)got);
        x->done += (uint64_t)got;
    }
    free(buf);
    return NULL;
}

static int napper(void *arg)
{
    int *naps = arg;
    for (int i = 0; i < 40; i++) {
        int64_t t0 = coro_now();
        ASSERT_EQ(coro_sleep(CORO_MS + CORO_MS / 3), 0);
        ASSERT_GE(coro_now() - t0, CORO_MS + CORO_MS / 3);
        (*naps)++;
    }
    return 0;
}

static int eintr_main(void *arg)
{
    (void)arg;
    uint64_t n = test_under_valgrind() ? (512u << 10) : test_under_sanitizer() ? (2u << 20) : (8u << 20);
    int sp[2], p1[2], p2[2], p3[2];
    tio_stream_pair(sp);
    ASSERT_EQ(pipe2(p1, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(p2, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(p3, O_CLOEXEC), 0);
    /* coroutine -> coroutine over a socket pair and over a pipe; coroutine
     * -> thread and thread -> coroutine over pipes. */
    xfer_t x[8] = {
        { sp[0], n, 1, 0 }, { sp[1], n, 1, 0 },
        { p1[1], n, 2, 0 }, { p1[0], n, 2, 0 },
        { p2[1], n / 2, 3, 0 }, { p2[0], n / 2, 3, 0 },
        { p3[1], n / 2, 4, 0 }, { p3[0], n / 2, 4, 0 },
    };
    int naps = 0;
    coro_t *c[6] = {
        coro_spawn(xfer_writer, &x[0]), coro_spawn(xfer_reader, &x[1]),
        coro_spawn(xfer_writer, &x[2]), coro_spawn(xfer_reader, &x[3]),
        coro_spawn(xfer_writer, &x[4]), coro_spawn(xfer_reader, &x[7]),
    };
    for (int i = 0; i < 6; i++)
        ASSERT_NOT_NULL(c[i]);
    coro_t *nap = coro_spawn(napper, &naps);
    ASSERT_NOT_NULL(nap);
    pthread_t tr, tw;
    ASSERT_EQ(pthread_create(&tr, NULL, thread_reader, &x[5]), 0);
    ASSERT_EQ(pthread_create(&tw, NULL, thread_writer, &x[6]), 0);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    ASSERT_EQ(coro_join(nap, NULL), 0);
    ASSERT_EQ(pthread_join(tr, NULL), 0);
    ASSERT_EQ(pthread_join(tw, NULL), 0);
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(x[i].done, x[i].n);
    ASSERT_EQ(naps, 40);
    int fds[] = { sp[0], sp[1], p1[0], p1[1], p2[0], p2[1], p3[0], p3[1] };
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(coro_close(fds[i]), 0);
    return 0;
}

TEST(io_err_eintr_under_1ms_sigalrm_every_byte_arrives)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = 0; /* no SA_RESTART: blocking calls fail with EINTR */
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);
    struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
    ASSERT_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);
    int r = coro_main(eintr_main, NULL);
    struct itimerval off;
    memset(&off, 0, sizeof off);
    ASSERT_EQ(setitimer(ITIMER_REAL, &off, NULL), 0);
    ASSERT_EQ(r, 0);
    int n_alarms = __atomic_load_n(&alarms, __ATOMIC_RELAXED);
    printf("%d alarms\n", n_alarms);
    ASSERT_GE(n_alarms, 20);
}

/* ---- argument checks come after the checkpoint ---------------------------- */

/* coro_writev, like coro_readv, coro_write and every other I/O call, meets
 * its checkpoint and the fd checks before it looks at its vector: a
 * cancelled caller gets ECANCELED, a negative fd EBADF, whatever else is
 * wrong. */
static int writev_order_main(void *arg)
{
    (void)arg;
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    ASSERT_ERRNO(coro_writev(-1, NULL, -1), EBADF);
    ASSERT_ERRNO(coro_readv(-1, NULL, -1), EBADF);
    ASSERT_ERRNO(coro_writev(p[1], NULL, -1), EINVAL);
    ASSERT_EQ(coro_cancel(coro_self()), 0);
    ASSERT_ERRNO(coro_writev(p[1], NULL, -1), ECANCELED);
    ASSERT_ERRNO(coro_readv(p[0], NULL, -1), ECANCELED);
    ASSERT_ERRNO(coro_write(p[1], NULL, 1), ECANCELED);
    ASSERT_EQ(coro_close(p[0]), 0);
    ASSERT_EQ(coro_close(p[1]), 0);
    return 0;
}

TEST(io_err_writev_checks_arguments_after_the_checkpoint)
{
    ASSERT_EQ(coro_main(writev_order_main, NULL), 0);
}
