/* io/stream.c: buffered streams (see io/io.h).
 *
 * One allocation per stream: the struct, then the read buffer, then the
 * write buffer, bufsize bytes each. No call allocates.
 *
 * Reading: rbuf[rpos, rlen) is what was read and not yet taken. A read of
 * the descriptor happens only when that is empty; a request of bufsize
 * bytes or more then goes straight into the caller's buffer.
 *
 * Errors part-way (read_full, readline): the bytes already taken go back
 * to the front of the (then empty) read buffer when they fit, and the call
 * fails with -1, so a timeout loses nothing and a retry sees them again.
 * Only when more than bufsize bytes were taken does it return the short
 * count instead (errno says why it stopped).
 *
 * Writing: wbuf[0, wlen) waits to be written. A write that finds the
 * buffer full writes it out first; one of bufsize bytes or more that finds
 * it empty goes straight to the descriptor. What a failed write-out did not
 * write stays buffered for the next flush. */
#include "io/io_int.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_DEFAULT_BUF 4096

struct coro_stream {
    int fd;
    size_t cap;        /* bytes in each buffer */
    char *rbuf;        /* rbuf[rpos, rlen): read, not yet taken */
    size_t rpos, rlen;
    char *wbuf;        /* wbuf[0, wlen): not yet written */
    size_t wlen;
    void *home;        /* the scheduler it belongs to (sched/wait.h) */
};

/* The entry check of every call that uses s: a checkpoint (EPERM outside
 * a coroutine), then the thread boundary (EPERM for another running
 * scheduler's stream; an unbound one is bound to the caller's). */
static int stream_enter(coro_stream_t *s)
{
    if (coro__checkpoint() != 0)
        return -1;
    return coro__home(&s->home) < 0 ? -1 : 0;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static int invalid(void)
{
    errno = EINVAL;
    return -1;
}

/* The short count of a call that stopped after `done` bytes (errno kept). */
static ssize_t stopped(size_t done)
{
    return done ? (ssize_t)done : -1;
}

coro_stream_t *coro_stream_new(int fd, size_t bufsize)
{
    if (fd < 0) {
        errno = EINVAL;
        return NULL;
    }
    if (bufsize == 0)
        bufsize = STREAM_DEFAULT_BUF;
    if (bufsize > (SIZE_MAX - sizeof(coro_stream_t)) / 2) {
        errno = ENOMEM;
        return NULL;
    }
    coro_stream_t *s = malloc(sizeof *s + 2 * bufsize);
    if (!s)
        return NULL;
    s->fd = fd;
    s->cap = bufsize;
    s->rbuf = (char *)(s + 1);
    s->wbuf = s->rbuf + bufsize;
    s->rpos = s->rlen = s->wlen = 0;
    s->home = NULL;
    return s;
}

void coro_stream_free(coro_stream_t *s)
{
    if (s && coro__home(&s->home) < 0) {
        fprintf(stderr, "coro: coro_stream_free(%p): the stream belongs to a scheduler running "
                        "on another thread; not freed\n", (void *)s);
        return;
    }
    free(s);
}

size_t coro_stream_buffered(const coro_stream_t *s)
{
    if (!s)
        return 0;
    void *h = __atomic_load_n(&s->home, __ATOMIC_RELAXED);
    if (h && h != (void *)coro__tls && coro__sched_alive(h)) {
        errno = EPERM;
        return 0;
    }
    return s->rlen - s->rpos;
}

/* ---- reading ------------------------------------------------------------------ */

/* Move up to n buffered bytes into buf. */
static size_t take(coro_stream_t *s, void *buf, size_t n)
{
    size_t k = min_size(n, s->rlen - s->rpos);
    memcpy(buf, s->rbuf + s->rpos, k);
    s->rpos += k;
    return k;
}

/* One read into the empty read buffer: bytes read, 0 at end of file, -1. */
static ssize_t fill(coro_stream_t *s)
{
    ssize_t r = coro_read(s->fd, s->rbuf, s->cap);
    s->rpos = 0;
    s->rlen = r > 0 ? (size_t)r : 0;
    return r;
}

/* An error after `got` bytes of buf were taken, with the read buffer
 * empty: put them back if they fit (-1), else the short count. */
static ssize_t unread(coro_stream_t *s, const void *buf, size_t got)
{
    if (got > s->cap)
        return (ssize_t)got;
    memcpy(s->rbuf, buf, got);
    s->rpos = 0;
    s->rlen = got;
    return -1;
}

/* coro_stream_read without the entry checks. */
static ssize_t read_some(coro_stream_t *s, void *buf, size_t n)
{
    if (s->rpos < s->rlen)
        return (ssize_t)take(s, buf, n);
    if (n >= s->cap)
        return coro_read(s->fd, buf, n);
    ssize_t r = fill(s);
    return r > 0 ? (ssize_t)take(s, buf, n) : r;
}

ssize_t coro_stream_read(coro_stream_t *s, void *buf, size_t n)
{
    if (!s || !buf)
        return invalid();
    if (stream_enter(s) != 0)
        return -1;
    return n ? read_some(s, buf, n) : 0;
}

ssize_t coro_stream_read_full(coro_stream_t *s, void *buf, size_t n)
{
    if (!s || !buf || n > SSIZE_MAX)
        return invalid();
    if (stream_enter(s) != 0)
        return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read_some(s, (char *)buf + got, n - got);
        if (r < 0)
            return unread(s, buf, got);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Take buffered bytes into buf (room left) up to and including a '\n';
 * sets *eol when one was taken. */
static size_t take_line(coro_stream_t *s, char *buf, size_t room, int *eol)
{
    size_t k = min_size(room, s->rlen - s->rpos);
    const char *nl = memchr(s->rbuf + s->rpos, '\n', k);
    if (nl)
        k = (size_t)(nl - (s->rbuf + s->rpos)) + 1;
    *eol = nl != NULL;
    return take(s, buf, k);
}

ssize_t coro_stream_readline(coro_stream_t *s, char *buf, size_t max)
{
    if (!s || !buf || max < 2 || max - 1 > SSIZE_MAX)
        return invalid();
    if (stream_enter(s) != 0)
        return -1;
    size_t got = 0;
    int eol = 0;
    while (got < max - 1 && !eol) {
        if (s->rpos == s->rlen) {
            ssize_t r = fill(s);
            if (r == 0)
                break;
            if (r < 0) {
                ssize_t ret = unread(s, buf, got);
                buf[ret < 0 ? 0 : got] = '\0';
                return ret;
            }
        }
        got += take_line(s, buf + got, max - 1 - got, &eol);
    }
    buf[got] = '\0';
    return (ssize_t)got;
}

/* ---- writing ------------------------------------------------------------------ */

/* Write the buffer out. 0, or -1 with what was not written kept. */
static int write_out(coro_stream_t *s)
{
    if (!s->wlen)
        return 0;
    ssize_t r = coro_write(s->fd, s->wbuf, s->wlen);
    if (r == (ssize_t)s->wlen) {
        s->wlen = 0;
        return 0;
    }
    if (r > 0) {
        memmove(s->wbuf, s->wbuf + r, s->wlen - (size_t)r);
        s->wlen -= (size_t)r;
    }
    return -1;
}

ssize_t coro_stream_write(coro_stream_t *s, const void *buf, size_t n)
{
    if (!s || (!buf && n) || n > SSIZE_MAX)
        return invalid();
    if (stream_enter(s) != 0)
        return -1;
    const char *p = buf;
    size_t done = 0;
    while (done < n) {
        if (s->wlen == s->cap && write_out(s) < 0)
            return stopped(done);
        if (s->wlen == 0 && n - done >= s->cap) {
            ssize_t r = coro_write(s->fd, p + done, n - done);
            return r == (ssize_t)(n - done) ? (ssize_t)n : stopped(done + (r > 0 ? (size_t)r : 0));
        }
        size_t k = min_size(s->cap - s->wlen, n - done);
        memcpy(s->wbuf + s->wlen, p + done, k);
        s->wlen += k;
        done += k;
    }
    return (ssize_t)n;
}

int coro_stream_flush(coro_stream_t *s)
{
    if (!s)
        return invalid();
    if (stream_enter(s) != 0)
        return -1;
    return write_out(s);
}
