/* test/test_io_stream.c: buffered streams (io/stream.c). readline: lines
 * longer than the buffer, pieces of max - 1 bytes, the last line without
 * '\n', empty lines, CRLF passed through, EOF (0, and again 0); read: the
 * buffered bytes first, then one read, a large request straight from the
 * descriptor; read_full across many small writes and a short count at
 * EOF; write: buffered until full or flushed, a large write bypassing an
 * empty buffer, order kept when it is not empty; a deadline interrupting
 * readline/read_full on a silent peer (ETIMEDOUT; the partial line stays
 * buffered and comes back on the retry); a flush cut by a deadline keeps
 * what it did not write; EPIPE; a stream over a pipe; bad arguments and
 * checkpoints. Every test checks that no descriptor is left open. */
#include "test/test_io.h"

#include <fcntl.h>
#include <sys/socket.h>

/* ---- helpers -------------------------------------------------------------- */

/* Bytes waiting in fd, taken without blocking (MSG_DONTWAIT); 0 when
 * none. */
static size_t drain_now(int fd, char *buf, size_t n)
{
    ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
    if (r < 0) {
        ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
        return 0;
    }
    return (size_t)r;
}

/* Expect the next line to be `want`. */
#define ASSERT_LINE(s, buf, max, want)                                   \
    do {                                                                 \
        ASSERT_EQ(coro_stream_readline(s, buf, max), (ssize_t)strlen(want)); \
        ASSERT_STR_EQ(buf, want);                                        \
    } while (0)

/* A coroutine that writes `data` in pieces of 1, 2, ... `piece` bytes
 * (yielding in between), then half-closes fd if asked. */
typedef struct feeder {
    int fd;
    const char *data;
    size_t n, piece;
    int close_after;
} feeder_t;

static int feed(void *arg)
{
    feeder_t *f = arg;
    size_t at = 0;
    for (size_t i = 0; at < f->n; i++) {
        size_t k = 1 + i % f->piece;
        if (k > f->n - at)
            k = f->n - at;
        ASSERT_EQ(coro_write(f->fd, f->data + at, k), (ssize_t)k);
        at += k;
        coro_yield();
    }
    if (f->close_after)
        ASSERT_EQ(shutdown(f->fd, SHUT_WR), 0);
    return 0;
}

/* ---- readline ------------------------------------------------------------- */

/* An 8-byte buffer; lines of 26 bytes: pieces of max - 1 bytes, or the
 * whole line when max allows, whatever the buffer size. */
static int long_lines_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    static const char text[] =
        "abcdefghijklmnopqrstuvwxyz\nshort\n"
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n" "0123456789\n";
    feeder_t f = { sv[1], text, sizeof text - 1, 5, 1 };
    coro_t *c = coro_spawn(feed, &f);
    ASSERT_NOT_NULL(c);
    coro_stream_t *s = coro_stream_new(sv[0], 8);
    ASSERT_NOT_NULL(s);
    char buf[64];
    ASSERT_LINE(s, buf, 10, "abcdefghi");
    ASSERT_LINE(s, buf, 10, "jklmnopqr");
    ASSERT_LINE(s, buf, 10, "stuvwxyz\n");
    ASSERT_LINE(s, buf, 10, "short\n");
    ASSERT_LINE(s, buf, sizeof buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n");
    ASSERT_LINE(s, buf, 11, "0123456789");  /* exactly max - 1 ... */
    ASSERT_LINE(s, buf, 11, "\n");          /* ... then its '\n' */
    ASSERT_EQ(coro_stream_readline(s, buf, sizeof buf), 0);
    ASSERT_STR_EQ(buf, "");
    ASSERT_EQ(coro_stream_readline(s, buf, 2), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    coro_stream_free(s);
    tio_close_pair(sv);
    return 0;
}

TEST(io_stream_readline_long_lines_in_pieces)
{
    tio_run(long_lines_main, NULL);
}

/* max = 2: one byte at a time. */
static int tiny_max_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    ASSERT_EQ(coro_write(sv[1], "ab\n", 3), 3);
    ASSERT_EQ(coro_close(sv[1]), 0);
    coro_stream_t *s = coro_stream_new(sv[0], 0);
    ASSERT_NOT_NULL(s);
    char buf[2];
    ASSERT_LINE(s, buf, 2, "a");
    ASSERT_LINE(s, buf, 2, "b");
    ASSERT_LINE(s, buf, 2, "\n");
    ASSERT_EQ(coro_stream_readline(s, buf, 2), 0);
    coro_stream_free(s);
    ASSERT_EQ(coro_close(sv[0]), 0);
    return 0;
}

TEST(io_stream_readline_max_two)
{
    tio_run(tiny_max_main, NULL);
}

/* Empty lines, CRLF kept as is, and a last line without '\n'. */
static int shapes_main(void *arg)
{
    size_t bufsize = *(size_t *)arg;
    int sv[2];
    tio_stream_pair(sv);
    static const char text[] = "\n\nx\r\ny\r\n\r\n\nlast";
    feeder_t f = { sv[1], text, sizeof text - 1, 3, 1 };
    coro_t *c = coro_spawn(feed, &f);
    ASSERT_NOT_NULL(c);
    coro_stream_t *s = coro_stream_new(sv[0], bufsize);
    ASSERT_NOT_NULL(s);
    char buf[32];
    ASSERT_LINE(s, buf, sizeof buf, "\n");
    ASSERT_LINE(s, buf, sizeof buf, "\n");
    ASSERT_LINE(s, buf, sizeof buf, "x\r\n");
    ASSERT_LINE(s, buf, sizeof buf, "y\r\n");
    ASSERT_LINE(s, buf, sizeof buf, "\r\n");
    ASSERT_LINE(s, buf, sizeof buf, "\n");
    ASSERT_LINE(s, buf, sizeof buf, "last");
    ASSERT_EQ(coro_stream_readline(s, buf, sizeof buf), 0);
    ASSERT_STR_EQ(buf, "");
    ASSERT_EQ(coro_stream_readline(s, buf, sizeof buf), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    coro_stream_free(s);
    tio_close_pair(sv);
    return 0;
}

TEST(io_stream_readline_empty_lines_crlf_last_line_without_newline)
{
    size_t sizes[] = { 1, 2, 5, 0 };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        tio_run(shapes_main, &sizes[i]);
}

/* ---- read, read_full, EOF --------------------------------------------------- */

/* What is buffered comes first, without touching the descriptor; then one
 * read; a request of bufsize or more goes straight to the descriptor. */
static int read_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    coro_stream_t *s = coro_stream_new(sv[0], 16);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(coro_stream_buffered(s), 0);
    ASSERT_EQ(coro_write(sv[1], "hello world\n", 12), 12);
    char buf[64];
    ASSERT_EQ(coro_stream_read(s, buf, 3), 3);
    ASSERT_EQ(memcmp(buf, "hel", 3), 0);
    ASSERT_EQ(coro_stream_buffered(s), 9);
    ASSERT_EQ(coro_write(sv[1], "more", 4), 4);
    ASSERT_EQ(coro_stream_read(s, buf, sizeof buf), 9); /* buffered only */
    ASSERT_EQ(memcmp(buf, "lo world\n", 9), 0);
    ASSERT_EQ(coro_stream_buffered(s), 0);
    ASSERT_EQ(coro_stream_read(s, buf, sizeof buf), 4); /* bypass */
    ASSERT_EQ(coro_stream_buffered(s), 0);
    ASSERT_EQ(memcmp(buf, "more", 4), 0);
    ASSERT_EQ(coro_stream_read(s, buf, 0), 0);
    ASSERT_EQ(coro_close(sv[1]), 0);
    ASSERT_EQ(coro_stream_read(s, buf, 1), 0);  /* EOF, through the buffer */
    ASSERT_EQ(coro_stream_read(s, buf, 64), 0); /* and around it */
    ASSERT_EQ(coro_stream_read_full(s, buf, 8), 0);
    ASSERT_EQ(coro_stream_readline(s, buf, sizeof buf), 0);
    coro_stream_free(s);
    ASSERT_EQ(coro_close(sv[0]), 0);
    return 0;
}

TEST(io_stream_read_buffered_first_then_descriptor_and_eof)
{
    tio_run(read_main, NULL);
}

/* A peer writing 1..7 bytes at a time; read_full gathers them, in order,
 * whatever the request and buffer sizes; at EOF a short count, then 0. */
static int read_full_main(void *arg)
{
    size_t bufsize = *(size_t *)arg;
    int sv[2];
    tio_stream_pair(sv);
    enum { N = 5000 };
    static char data[N];
    for (int i = 0; i < N; i++)
        data[i] = (char)(i * 7 + i / 251);
    feeder_t f = { sv[1], data, N, 7, 1 };
    coro_t *c = coro_spawn(feed, &f);
    ASSERT_NOT_NULL(c);
    coro_stream_t *s = coro_stream_new(sv[0], bufsize);
    ASSERT_NOT_NULL(s);
    static char got[N + 10];
    size_t at = 0;
    size_t asks[] = { 1, 3, 100, 4096, 17 };
    for (int i = 0; at + asks[i % 5] <= N; i++) {
        size_t k = asks[i % 5];
        ASSERT_EQ(coro_stream_read_full(s, got + at, k), (ssize_t)k);
        at += k;
    }
    ASSERT_EQ(coro_stream_read_full(s, got + at, N - at + 10), (ssize_t)(N - at)); /* EOF */
    ASSERT_EQ(memcmp(got, data, N), 0);
    ASSERT_EQ(coro_stream_read_full(s, got, 10), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    coro_stream_free(s);
    tio_close_pair(sv);
    return 0;
}

TEST(io_stream_read_full_across_many_small_writes)
{
    size_t sizes[] = { 1, 16, 0, 65536 };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        tio_run(read_full_main, &sizes[i]);
}

/* ---- write -------------------------------------------------------------------- */

/* Nothing reaches the descriptor until the buffer is full or flushed. */
static int buffering_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    coro_stream_t *s = coro_stream_new(sv[0], 16);
    ASSERT_NOT_NULL(s);
    char buf[64];
    ASSERT_EQ(coro_stream_write(s, "0123456789", 10), 10);
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 0);
    ASSERT_EQ(coro_stream_write(s, "abcdef", 6), 6);     /* exactly full */
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 0);
    ASSERT_EQ(coro_stream_write(s, "XYZ", 3), 3);        /* writes 16 out */
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 16);
    ASSERT_EQ(memcmp(buf, "0123456789abcdef", 16), 0);
    ASSERT_EQ(coro_stream_write(s, "", 0), 0);
    ASSERT_EQ(coro_stream_write(s, NULL, 0), 0);
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 0);
    ASSERT_EQ(coro_stream_flush(s), 0);
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 3);
    ASSERT_EQ(memcmp(buf, "XYZ", 3), 0);
    ASSERT_EQ(coro_stream_flush(s), 0); /* nothing left: a no-op */
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 0);
    /* Unflushed output is discarded by free. */
    ASSERT_EQ(coro_stream_write(s, "lost", 4), 4);
    coro_stream_free(s);
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 0);
    tio_close_pair(sv);
    return 0;
}

TEST(io_stream_write_buffers_until_full_or_flushed)
{
    tio_run(buffering_main, NULL);
}

/* A write of bufsize bytes or more into an empty buffer goes straight
 * out; into a non-empty one it tops the buffer up, writes it, then the
 * rest, keeping the order. */
static int bypass_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    coro_stream_t *s = coro_stream_new(sv[0], 16);
    ASSERT_NOT_NULL(s);
    char big[100], buf[256];
    for (int i = 0; i < 100; i++)
        big[i] = (char)('A' + i % 26);
    ASSERT_EQ(coro_stream_write(s, big, 16), 16);  /* exactly bufsize */
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 16);
    ASSERT_EQ(coro_stream_write(s, big, 100), 100);
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 100);
    ASSERT_EQ(memcmp(buf, big, 100), 0);

    ASSERT_EQ(coro_stream_write(s, "12345", 5), 5);
    ASSERT_EQ(coro_stream_write(s, big, 100), 100);
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 105);
    ASSERT_EQ(memcmp(buf, "12345", 5), 0);
    ASSERT_EQ(memcmp(buf + 5, big, 100), 0);
    ASSERT_EQ(coro_stream_flush(s), 0);
    ASSERT_EQ(drain_now(sv[1], buf, sizeof buf), 0);
    coro_stream_free(s);
    tio_close_pair(sv);
    return 0;
}

TEST(io_stream_big_write_bypasses_the_buffer)
{
    tio_run(bypass_main, NULL);
}

/* A writer blocked on a full socket, cut by its deadline mid-flush: what
 * it did not write stays buffered, and the next flush sends it, in order. */
typedef struct drainer {
    int fd;
    char *got;
    size_t n;
    int64_t start_after;
} drainer_t;

static int drain_all(void *arg)
{
    drainer_t *d = arg;
    coro_sleep(d->start_after);
    size_t at = 0;
    ssize_t r;
    while ((r = coro_read(d->fd, d->got + at, d->n + 1 - at)) > 0)
        at += (size_t)r;
    ASSERT_EQ(r, 0);
    d->n = at;
    return 0;
}

static int flush_deadline_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    tio_set_buffer(sv[0], SO_SNDBUF, 4096);
    enum { N = 1 << 20 };
    coro_stream_t *s = coro_stream_new(sv[0], N);
    ASSERT_NOT_NULL(s);
    char *data = malloc(N), *got = malloc(N + 1);
    ASSERT_NOT_NULL(data);
    ASSERT_NOT_NULL(got);
    for (size_t i = 0; i < N; i++)
        data[i] = (char)(i ^ (i >> 9));
    ASSERT_EQ(coro_stream_write(s, data, N - 1), N - 1); /* all buffered */

    int64_t saved = coro_timeout(30 * CORO_MS);
    ASSERT_ERRNO(coro_stream_flush(s), ETIMEDOUT);
    ASSERT_ERRNO(coro_stream_write(s, data + N - 1, 1), ETIMEDOUT);
    coro_set_deadline(saved);

    drainer_t d = { sv[1], got, N, 0 };
    coro_t *c = coro_spawn(drain_all, &d);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_stream_write(s, data + N - 1, 1), 1);
    ASSERT_EQ(coro_stream_flush(s), 0);
    ASSERT_EQ(shutdown(sv[0], SHUT_WR), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(d.n, N);
    ASSERT_EQ(memcmp(got, data, N), 0);
    free(data);
    free(got);
    coro_stream_free(s);
    tio_close_pair(sv);
    return 0;
}

TEST(io_stream_flush_cut_by_deadline_keeps_the_rest)
{
    tio_run(flush_deadline_main, NULL);
}

/* Writing to a closed peer: EPIPE (no SIGPIPE), buffered or direct. */
static int epipe_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    ASSERT_EQ(coro_close(sv[1]), 0);
    coro_stream_t *s = coro_stream_new(sv[0], 8);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(coro_stream_write(s, "abc", 3), 3);
    ASSERT_ERRNO(coro_stream_flush(s), EPIPE);
    ASSERT_ERRNO(coro_stream_flush(s), EPIPE); /* still buffered */
    coro_stream_free(s);
    s = coro_stream_new(sv[0], 8);
    ASSERT_NOT_NULL(s);
    ASSERT_ERRNO(coro_stream_write(s, "0123456789", 10), EPIPE);
    coro_stream_free(s);
    ASSERT_EQ(coro_close(sv[0]), 0);
    return 0;
}

TEST(io_stream_write_to_closed_peer_epipe)
{
    tio_run(epipe_main, NULL);
}

/* ---- deadlines ------------------------------------------------------------ */

/* A silent peer: readline ends with ETIMEDOUT at the deadline. A partial
 * line read before it stays in the stream and comes back whole. */
static int deadline_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    coro_stream_t *s = coro_stream_new(sv[0], 0);
    ASSERT_NOT_NULL(s);
    char buf[64];
    int64_t t0 = coro_now();
    int64_t saved = coro_timeout(30 * CORO_MS);
    ASSERT_ERRNO(coro_stream_readline(s, buf, sizeof buf), ETIMEDOUT);
    coro_set_deadline(saved);
    ASSERT_GE(coro_now() - t0, 30 * CORO_MS);
    ASSERT_LT(coro_now() - t0, ts_bound(2 * CORO_SEC));

    ASSERT_EQ(coro_write(sv[1], "abc", 3), 3);
    for (int64_t timeout = 30 * CORO_MS;; timeout *= 2) {
        saved = coro_timeout(timeout);
        ASSERT_ERRNO(coro_stream_readline(s, buf, sizeof buf), ETIMEDOUT);
        ASSERT_STR_EQ(buf, "");
        if (coro_stream_buffered(s) != 0)
            break;
        /* Nothing read: the deadline passed before the call began (a
         * stalled machine), so it failed at its entry checkpoint. */
        coro_set_deadline(saved);
        ASSERT_LT(timeout, ts_bound(480 * CORO_MS));
    }
    ASSERT_EQ(coro_stream_buffered(s), 3);
    ASSERT_ERRNO(coro_stream_read_full(s, buf, 5), ETIMEDOUT);
    ASSERT_EQ(coro_stream_buffered(s), 3);
    coro_set_deadline(saved);
    ASSERT_EQ(coro_write(sv[1], "def\nghi", 7), 7);
    ASSERT_LINE(s, buf, sizeof buf, "abcdef\n");
    ASSERT_EQ(coro_stream_read_full(s, buf, 3), 3);
    ASSERT_EQ(memcmp(buf, "ghi", 3), 0);
    coro_stream_free(s);
    tio_close_pair(sv);
    return 0;
}

TEST(io_stream_readline_deadline_on_silent_peer)
{
    tio_run(deadline_main, NULL);
}

/* A cancelled reader wakes with ECANCELED; the stream still works. */
static int blocked_reader(void *arg)
{
    coro_stream_t *s = arg;
    char buf[16];
    ASSERT_ERRNO(coro_stream_readline(s, buf, sizeof buf), ECANCELED);
    return 0;
}

static int cancel_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    coro_stream_t *s = coro_stream_new(sv[0], 0);
    ASSERT_NOT_NULL(s);
    coro_t *c = coro_spawn(blocked_reader, s);
    ASSERT_NOT_NULL(c);
    coro_yield();
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(coro_write(sv[1], "ok\n", 3), 3);
    char buf[16];
    ASSERT_LINE(s, buf, sizeof buf, "ok\n");
    coro_stream_free(s);
    tio_close_pair(sv);
    return 0;
}

TEST(io_stream_cancelled_reader)
{
    tio_run(cancel_main, NULL);
}

/* ---- a pipe ----------------------------------------------------------------- */

/* Lines through a pipe, more than its buffer holds: a writer stream on
 * one end, a reader stream on the other. */
enum { PIPE_LINES = 20000 };

static int pipe_writer(void *arg)
{
    int fd = *(int *)arg;
    coro_stream_t *w = coro_stream_new(fd, 512);
    ASSERT_NOT_NULL(w);
    char line[64];
    for (int i = 0; i < PIPE_LINES; i++) {
        int n = snprintf(line, sizeof line, "line %d %s\n", i, i % 3 ? "x" : "");
        ASSERT_EQ(coro_stream_write(w, line, (size_t)n), n);
    }
    ASSERT_EQ(coro_stream_write(w, "tail", 4), 4);
    ASSERT_EQ(coro_stream_flush(w), 0);
    coro_stream_free(w);
    ASSERT_EQ(coro_close(fd), 0);
    return 0;
}

static int pipe_main(void *arg)
{
    (void)arg;
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    coro_t *c = coro_spawn(pipe_writer, &p[1]);
    ASSERT_NOT_NULL(c);
    coro_stream_t *r = coro_stream_new(p[0], 100);
    ASSERT_NOT_NULL(r);
    char buf[64], want[64];
    for (int i = 0; i < PIPE_LINES; i++) {
        snprintf(want, sizeof want, "line %d %s\n", i, i % 3 ? "x" : "");
        ASSERT_LINE(r, buf, sizeof buf, want);
    }
    ASSERT_LINE(r, buf, sizeof buf, "tail");
    ASSERT_EQ(coro_stream_readline(r, buf, sizeof buf), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    coro_stream_free(r);
    ASSERT_EQ(coro_close(p[0]), 0);
    return 0;
}

TEST(io_stream_over_a_pipe)
{
    tio_run(pipe_main, NULL);
}

/* ---- errors ----------------------------------------------------------------- */

static int badargs_main(void *arg)
{
    (void)arg;
    int sv[2];
    tio_stream_pair(sv);
    coro_stream_t *s = coro_stream_new(sv[0], 0);
    ASSERT_NOT_NULL(s);
    char buf[8];
    ASSERT_ERRNO(coro_stream_read(NULL, buf, 1), EINVAL);
    ASSERT_ERRNO(coro_stream_read(s, NULL, 1), EINVAL);
    ASSERT_ERRNO(coro_stream_read_full(NULL, buf, 1), EINVAL);
    ASSERT_ERRNO(coro_stream_read_full(s, NULL, 1), EINVAL);
    ASSERT_ERRNO(coro_stream_readline(NULL, buf, sizeof buf), EINVAL);
    ASSERT_ERRNO(coro_stream_readline(s, NULL, sizeof buf), EINVAL);
    ASSERT_ERRNO(coro_stream_readline(s, buf, 1), EINVAL);
    ASSERT_ERRNO(coro_stream_readline(s, buf, 0), EINVAL);
    ASSERT_ERRNO(coro_stream_write(NULL, "x", 1), EINVAL);
    ASSERT_ERRNO(coro_stream_write(s, NULL, 1), EINVAL);
    ASSERT_ERRNO(coro_stream_flush(NULL), EINVAL);
    ASSERT_EQ(coro_stream_buffered(NULL), 0);
    coro_stream_free(NULL);

    /* Checkpoints: cancelled, even with data buffered. */
    ASSERT_EQ(coro_write(sv[1], "data\n", 5), 5);
    ASSERT_EQ(coro_stream_read(s, buf, 1), 1);
    ASSERT_EQ(coro_cancel(coro_self()), 0);
    ASSERT_ERRNO(coro_stream_read(s, buf, 1), ECANCELED);
    ASSERT_ERRNO(coro_stream_read_full(s, buf, 1), ECANCELED);
    ASSERT_ERRNO(coro_stream_readline(s, buf, sizeof buf), ECANCELED);
    ASSERT_ERRNO(coro_stream_write(s, "x", 1), ECANCELED);
    ASSERT_ERRNO(coro_stream_flush(s), ECANCELED);
    ASSERT_EQ(coro_stream_buffered(s), 4);
    coro_stream_free(s);
    tio_close_pair(sv);
    return 0;
}

TEST(io_stream_bad_arguments_and_checkpoints)
{
    ASSERT_NULL_ERRNO(coro_stream_new(-1, 0), EINVAL);
    ASSERT_NULL_ERRNO(coro_stream_new(0, (size_t)-1), ENOMEM);
    /* Outside a coroutine: a stream can be made and freed, not used. */
    int sv[2];
    tio_stream_pair(sv);
    coro_stream_t *s = coro_stream_new(sv[0], 0);
    ASSERT_NOT_NULL(s);
    char buf[8];
    ASSERT_ERRNO(coro_stream_read(s, buf, 1), EPERM);
    ASSERT_ERRNO(coro_stream_readline(s, buf, sizeof buf), EPERM);
    ASSERT_ERRNO(coro_stream_write(s, "x", 1), EPERM);
    ASSERT_ERRNO(coro_stream_flush(s), EPERM);
    coro_stream_free(s);
    close(sv[0]);
    close(sv[1]);
    tio_run(badargs_main, NULL);
}
