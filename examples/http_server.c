/* http_server.c: a small, fast, defensive HTTP/1.1 server, one coroutine
 * per connection, one thread per core.
 *
 * WHAT IT SHOWS
 *   An HTTP server written as straight-line code: read, parse every
 *   complete request in the buffer, queue the replies, write them with
 *   one system call, read again. It answers
 *       GET /        200 "Hello, World!" (text/plain)
 *       GET /other   404
 *       POST ...     405 (GET and HEAD are the methods it knows)
 *   and speaks enough HTTP/1.1 to be fast and hard to abuse:
 *   - Keep-alive (HTTP/1.1 by default; HTTP/1.0 only when the client asks
 *     with "Connection: keep-alive"); "Connection: close" is honoured.
 *   - Pipelining: a client may send many requests without waiting. All
 *     complete requests in the buffer are answered in one batch, in order,
 *     with one write(2) per batch (unless the replies outgrow the 8 KiB
 *     output buffer): that is what makes pipelining fast.
 *   - Bounded memory: each connection has a fixed 8 KiB input buffer and
 *     an 8 KiB output buffer, on its own coroutine stack; nothing is
 *     allocated per request. A header block (request line included) that
 *     does not fit in 8 KiB gets 431 and the connection is closed.
 *   - A malformed request line or header (or an HTTP/1.1 request without
 *     exactly one Host) gets 400 and a close; an HTTP version other than
 *     1.0/1.1 gets 505. The parser is ~150 lines of explicit bounds
 *     (memchr, lengths, a token table), no sscanf, no NUL-terminated
 *     strings. It finds the end of a header block first, remembering how
 *     far it looked, so a client trickling bytes in costs no rescans.
 *   - Slowloris: a client has 10 s from the end of its previous request to
 *     deliver a complete header block and take the answers. That is one
 *     deadline (coro_set_deadline) per request cycle: every read and write
 *     of the cycle honours it, with no timer code of our own.
 *   - A connection cap: past --max-conns, a new connection gets a 503 and
 *     is closed at once (echo_server.c shows the other way: stop accepting).
 *   - Every core, as in echo_server.c: with -t N (by default one per
 *     online CPU) the process runs N schedulers, one per thread
 *     (coro_main_opts with threads = N), each a whole server of its own
 *     (a "shard"): its own listener on the same port (SO_REUSEPORT),
 *     accept loop, task group and counters; a connection stays on the
 *     thread that accepted it, and nothing is shared or locked. The
 *     limits hold for the process: --max-conns is divided between the
 *     threads (each answers 503 past its share; the kernel spreads
 *     connections by a hash, not by load, so one thread may refuse while
 *     another has room), and the timeouts and buffer sizes below are per
 *     connection. -t 1 is the single-threaded server.
 *   - Request bodies are not read: a request that announces one
 *     (Content-Length > 0, Transfer-Encoding) is answered, then the
 *     connection is closed, since its framing would be lost.
 *   - Framing no two parsers could read differently (RFC 9112 6.3; the
 *     disagreements request smuggling feeds on): Content-Length values
 *     that differ (two fields, or a list such as "5, 6") get 400 and a
 *     close, identical repeats count as one value; Transfer-Encoding
 *     together with Content-Length gets 400 and a close (this server does
 *     not decode chunked, so it cannot let the one override the other),
 *     and so does a Transfer-Encoding whose last coding is not chunked.
 *   - Closing politely ("lingering close"): when we close first, we shut
 *     down our sending side and discard input for up to 1 s, so that
 *     unread pipelined bytes do not make the kernel reset the connection
 *     and destroy our last reply.
 *   - Graceful shutdown on SIGINT/SIGTERM, as in echo_server.c:
 *     scheduler 0's main coroutine waits in coro_signal_wait() and
 *     cancels every thread's shard through its coro_spawn_on handle; in
 *     each thread the accept loop stops, open connections get 2 s
 *     (replies now say "Connection: close"), then the rest are cancelled
 *     through their task group; scheduler 0 joins the shards. Exit 0.
 *   - Flat memory however many connections come and go: the task group
 *     is CORO_GROUP_COLLECT | CORO_GROUP_REAP, which frees each
 *     connection's coroutine as it ends (see echo_server.c). No memory
 *     for a new connection's coroutine gets a 503, a line on stderr (at
 *     most one a second per thread, with a count of those held back), and
 *     the server goes on.
 *
 * HOW TO RUN IT
 *   http_server PORT [-t N] [--max-conns N] [--host ADDR]
 *       PORT 0 picks a free port; the first line on stdout is
 *       "listening on ADDR:PORT". Defaults: -t (--threads) one per online
 *       CPU, never more than --max-conns; --max-conns 10000 for the whole
 *       process; --host 127.0.0.1. With two threads or more, do not start
 *       two servers on one port: the second joins the first's
 *       SO_REUSEPORT group instead of failing (see echo_server.c). At the
 *       end it prints how many requests and connections each thread
 *       served.
 *   Then:  wrk -t1 -c100 -d3s http://127.0.0.1:PORT/
 *     or:  printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' | nc 127.0.0.1 PORT
 *
 * WHAT TO NOTICE
 *   Per request there is no allocation, no timer of its own (one deadline
 *   per cycle) and no extra system call: under wrk -t1 -c100 it serves
 *   about as many requests per second as a hand-written epoll server
 *   (90-100% of one on the 2-core development VM; the same with 16
 *   pipelined requests per write).
 *
 * WHAT IT LEAVES OUT
 *   No Date header (a real server would cache one per second), no bodies,
 *   no chunked encoding, no absolute-form targets ("GET http://h/ ..."
 *   is a 400 here). */
#include <coro.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEADER 8192                    /* one request's header block */
#define OUT_BUF 8192                       /* replies queued before a write */
#define REQUEST_TIMEOUT (10 * CORO_SEC)    /* to send a whole header block */
#define LINGER_TIMEOUT (1 * CORO_SEC)
#define DRAIN_TIMEOUT (2 * CORO_SEC)
#define CONN_STACK (64 * 1024)             /* holds struct conn (16 KiB) */
#define DEFAULT_MAX_CONNS 10000

/* ---- replies ------------------------------------------------------------------ */

enum {
    S200_OK, S400_BAD, S404_NOT_FOUND, S405_METHOD, S431_TOO_LARGE, S503_BUSY, S505_VERSION,
    S_COUNT
};

/* Each reply's status line and fixed headers are formatted once, at start
 * (format_replies), so no Content-Length is ever counted by hand. */
static struct reply {
    int code;
    const char *reason, *extra_headers, *body;
    size_t head_len, body_len;
    char head[160];
} replies[S_COUNT] = {
    [S200_OK] = { 200, "OK", "", "Hello, World!", 0, 0, "" },
    [S400_BAD] = { 400, "Bad Request", "", "Bad Request\n", 0, 0, "" },
    [S404_NOT_FOUND] = { 404, "Not Found", "", "Not Found\n", 0, 0, "" },
    [S405_METHOD] = { 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
                      "Method Not Allowed\n", 0, 0, "" },
    [S431_TOO_LARGE] = { 431, "Request Header Fields Too Large", "",
                         "Request Header Fields Too Large\n", 0, 0, "" },
    [S503_BUSY] = { 503, "Service Unavailable", "", "Service Unavailable\n", 0, 0, "" },
    [S505_VERSION] = { 505, "HTTP Version Not Supported", "",
                       "HTTP Version Not Supported\n", 0, 0, "" },
};

static void format_replies(void)
{
    for (int i = 0; i < S_COUNT; i++) {
        struct reply *r = &replies[i];
        r->body_len = strlen(r->body);
        r->head_len = (size_t)snprintf(r->head, sizeof r->head,
                                       "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\n"
                                       "Content-Length: %zu\r\n",
                                       r->code, r->reason, r->extra_headers, r->body_len);
    }
}

#define CONN_CLOSE "Connection: close\r\n"
#define CONN_KEEP "Connection: keep-alive\r\n"
#define REPLY_MAX (sizeof replies[0].head + sizeof CONN_KEEP + 2 + 64)

/* Write reply r into dst (at least REPLY_MAX bytes); returns its length.
 * keep: the connection stays open; http10: the request was HTTP/1.0 (which
 * closes by default, so keeping it open must be said). */
static size_t format_reply(char *dst, int r, int head_only, int keep, int http10)
{
    const struct reply *rp = &replies[r];
    const char *conn = !keep ? CONN_CLOSE : http10 ? CONN_KEEP : "";
    size_t conn_len = !keep ? sizeof CONN_CLOSE - 1 : http10 ? sizeof CONN_KEEP - 1 : 0;
    char *p = dst;
    memcpy(p, rp->head, rp->head_len);
    p += rp->head_len;
    memcpy(p, conn, conn_len);
    p += conn_len;
    memcpy(p, "\r\n", 2);
    p += 2;
    if (!head_only) {
        memcpy(p, rp->body, rp->body_len);
        p += rp->body_len;
    }
    return (size_t)(p - dst);
}

/* ---- parsing ------------------------------------------------------------------ */

enum { M_GET, M_HEAD, M_OTHER };

struct request {
    int method;       /* M_GET, M_HEAD or M_OTHER */
    int root;         /* the path is "/" (a query string is ignored) */
    int minor;        /* HTTP/1.<minor>: 0 or 1 */
    int conn_close;   /* "Connection: close" */
    int conn_keep;    /* "Connection: keep-alive" */
    int hosts;        /* Host headers seen */
    int has_length;   /* a Content-Length was given: its value is length */
    uint64_t length;
    int has_te;       /* a Transfer-Encoding was given */
    int te_chunked;   /* ...and its last coding is chunked */
    int has_body;     /* Content-Length > 0 or Transfer-Encoding */
};

/* The length of the header block at b[0..n), through the empty line that
 * ends it, or 0 if that line has not arrived yet. Lines end in "\r\n" or
 * "\n". *scan says where the previous call stopped looking (0 for a new
 * request), so a client that trickles bytes in does not make us rescan
 * the whole block each time. */
static size_t header_end(const char *b, size_t n, size_t *scan)
{
    size_t i = *scan;
    const char *nl;
    while ((nl = memchr(b + i, '\n', n - i)) != NULL) {
        size_t j = (size_t)(nl - b) + 1;           /* the next line starts here */
        if (j < n && b[j] == '\n')
            return j + 1;
        if (j + 1 < n && b[j] == '\r' && b[j + 1] == '\n')
            return j + 2;
        if (j + 1 >= n) {                          /* too soon to tell */
            *scan = j - 1;
            return 0;
        }
        i = j;
    }
    *scan = n;
    return 0;
}

/* RFC 9110 token characters (method and header names), as a table: this
 * check runs on every byte of every header name. */
static unsigned char tchar[256];

static void init_tchar(void)
{
    for (int c = 0; c < 256; c++)
        tchar[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_token(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!tchar[(unsigned char)s[i]])
            return 0;
    return n > 0;
}

/* s[0..n) equals the lower-case ASCII word w (of length wn), ignoring case. */
static int is_word(const char *s, size_t n, const char *w, size_t wn)
{
    if (n != wn)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] + 32) : s[i];
        if (c != w[i])
            return 0;
    }
    return 1;
}
#define IS(s, n, word) is_word(s, n, word, sizeof word - 1)

/* "METHOD SP target SP HTTP/1.x": 0, S400_BAD or S505_VERSION. */
static int parse_request_line(const char *s, size_t n, struct request *rq)
{
    const char *end = s + n, *sp1 = memchr(s, ' ', n);
    if (!sp1 || !is_token(s, (size_t)(sp1 - s)))
        return S400_BAD;
    const char *t = sp1 + 1, *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (!sp2 || sp2 == t || *t != '/')
        return S400_BAD;
    for (const unsigned char *q = (const unsigned char *)t; q < (const unsigned char *)sp2; q++)
        if (*q <= ' ' || *q >= 0x7f)           /* visible ASCII only */
            return S400_BAD;
    const char *v = sp2 + 1;
    if (end - v != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9')
        return S400_BAD;
    if (v[5] != '1' || v[7] > '1')
        return S505_VERSION;
    rq->minor = v[7] - '0';
    size_t mlen = (size_t)(sp1 - s);
    rq->method = mlen == 3 && memcmp(s, "GET", 3) == 0    ? M_GET
                 : mlen == 4 && memcmp(s, "HEAD", 4) == 0 ? M_HEAD
                                                         : M_OTHER;
    rq->root = sp2 - t == 1 || t[1] == '?';
    return 0;
}

/* The next element of the comma-separated list [*v, end), spaces and tabs
 * around it trimmed, into [*a, *b) (maybe empty: RFC 9110 5.6.1 allows
 * empty elements); *v moves past it and its comma. 0 once the list is used
 * up. */
static int list_next(const char **v, const char *end, const char **a, const char **b)
{
    if (!*v)
        return 0;
    const char *comma = memchr(*v, ',', (size_t)(end - *v));
    const char *e = comma ? comma : end;
    const char *x = *v, *y = e;
    while (x < y && (*x == ' ' || *x == '\t'))
        x++;
    while (y > x && (y[-1] == ' ' || y[-1] == '\t'))
        y--;
    *a = x;
    *b = y;
    *v = comma ? comma + 1 : NULL;   /* NULL: that was the last element */
    return 1;
}

/* Does the comma-separated list v[0..n) hold the token w? */
static int list_has(const char *v, size_t n, const char *w)
{
    const char *end = v + n, *a, *b;
    while (list_next(&v, end, &a, &b))
        if (is_word(a, (size_t)(b - a), w, strlen(w)))
            return 1;
    return 0;
}

/* A Content-Length field's value: one decimal number or a list of them
 * (RFC 9110 8.6: repeated fields may have been combined into one). Every
 * number, in this field and any earlier one, must be the same: anything
 * else is 400 (RFC 9112 6.3). */
static int parse_content_length(const char *v, size_t n, struct request *rq)
{
    const char *end = v + n, *a, *b;
    while (list_next(&v, end, &a, &b)) {
        if (a == b || b - a > 18)           /* empty, or past what 64 bits hold */
            return S400_BAD;
        uint64_t x = 0;
        for (const char *d = a; d < b; d++) {
            if (*d < '0' || *d > '9')
                return S400_BAD;
            x = x * 10 + (uint64_t)(*d - '0');
        }
        if (rq->has_length && x != rq->length)
            return S400_BAD;
        rq->has_length = 1;
        rq->length = x;
    }
    return 0;
}

/* A Transfer-Encoding field's value: a list of codings (each maybe with
 * parameters), applied in order, fields in order; what matters here is
 * whether the very last coding is chunked (RFC 9112 6.3). A field with no
 * coding at all is 400. */
static int parse_transfer_encoding(const char *v, size_t n, struct request *rq)
{
    const char *end = v + n, *a, *b, *last = NULL, *last_end = NULL;
    while (list_next(&v, end, &a, &b))
        if (a < b) {
            last = a;
            last_end = b;
        }
    if (!last)
        return S400_BAD;
    rq->has_te = 1;
    rq->te_chunked = IS(last, (size_t)(last_end - last), "chunked");
    return 0;
}

/* "Name: value": 0 or S400_BAD. Only five headers matter here. */
static int parse_header(const char *s, size_t n, struct request *rq)
{
    const char *colon = memchr(s, ':', n);
    if (!colon || !is_token(s, (size_t)(colon - s)))   /* also rejects folding and "Name :" */
        return S400_BAD;
    const char *v = colon + 1, *end = s + n;
    for (const unsigned char *q = (const unsigned char *)v; q < (const unsigned char *)end; q++)
        if ((*q < ' ' && *q != '\t') || *q == 0x7f)   /* no control characters */
            return S400_BAD;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t name_len = (size_t)(colon - s), len = (size_t)(end - v);

    if (IS(s, name_len, "host")) {
        rq->hosts++;
    } else if (IS(s, name_len, "content-length")) {
        return parse_content_length(v, len, rq);
    } else if (IS(s, name_len, "transfer-encoding")) {
        return parse_transfer_encoding(v, len, rq);
    } else if (IS(s, name_len, "connection")) {
        rq->conn_close |= list_has(v, len, "close");
        rq->conn_keep |= list_has(v, len, "keep-alive");
    }
    return 0;
}

/* Parse the complete header block b[0..n) (see header_end) into *rq and
 * pick the reply: S200_OK, S404_NOT_FOUND, S405_METHOD, S400_BAD or S505_VERSION. */
static int parse_request(const char *b, size_t n, struct request *rq)
{
    const char *p = b, *end = b + n;
    memset(rq, 0, sizeof *rq);
    for (int line = 0;; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));  /* found: b ends in '\n' */
        size_t len = (size_t)(nl - p);
        if (len > 0 && p[len - 1] == '\r')
            len--;
        if (len == 0)
            break;                                 /* the empty line */
        int r = line == 0 ? parse_request_line(p, len, rq) : parse_header(p, len, rq);
        if (r != 0)
            return r;
        p = nl + 1;
    }
    if (rq->hosts > 1 || (rq->minor == 1 && rq->hosts == 0))
        return S400_BAD;                              /* RFC 9112 3.2 */
    /* RFC 9112 6.3: with both, Transfer-Encoding would override
     * Content-Length, which needs a chunked decoder this server does not
     * have, and a peer that honours the length would see other requests
     * in the same bytes; without chunked last the length is unknowable. */
    if (rq->has_te && (rq->has_length || !rq->te_chunked))
        return S400_BAD;
    rq->has_body = rq->has_te || (rq->has_length && rq->length > 0);
    if (rq->method == M_OTHER)
        return S405_METHOD;
    return rq->root ? S200_OK : S404_NOT_FOUND;
}

/* ---- the server ------------------------------------------------------------------ */

/* The command line. Written by main() before any scheduler starts, only
 * read after: every thread may read it without a lock. */
static struct config {
    const char *host, *port;
    long max_conns;          /* for the whole process */
    int threads;
} cfg;

/* Trouble that may come in floods is reported at most once a second, with
 * a count of the reports held back (see echo_server.c). */
struct ratelimit {
    int printed;
    int64_t last;
    long held;
};

/* One thread's server (see echo_server.c): only that thread touches it
 * while the server runs; scheduler 0 reads the counters once the shard has
 * been joined. Each shard starts on a cache line of its own, so that two
 * threads counting their own requests never write to the same line. */
struct shard {
    _Alignas(64) int index;  /* its scheduler's index, coro_thread_index() */
    char tag[16];            /* "thread 1: " before its messages; "" with one thread */
    long max_conns;          /* its share of --max-conns */
    int lfd;
    coro_group_t *conns;
    coro_t *co;              /* the shard's coroutine: scheduler 0 keeps the handle */
    int draining;            /* shutting down: close after each reply */
    long open, served, refused;
    long turned_away;        /* 503s for want of memory for a coroutine */
    unsigned long long requests;
    struct ratelimit accept_trouble, spawn_trouble;
};

#define MAX_THREADS 1024     /* coro_main_opts' limit */
static struct shard shards[MAX_THREADS];

/* Scheduler 0's main coroutine, which stops the server (see conduct). */
static coro_t *conductor;

static sigset_t stop_signals;

/* One connection's state, on its coroutine's stack. */
struct conn {
    int fd;
    struct shard *sh;        /* the thread's server, which accepted it */
    size_t len;              /* bytes in in[] */
    size_t scan;             /* header_end's progress in the first request */
    size_t outlen;           /* bytes queued in out[] */
    char in[MAX_HEADER];
    char out[OUT_BUF];
};

static int flush(struct conn *c)
{
    if (c->outlen > 0 && coro_write(c->fd, c->out, c->outlen) != (ssize_t)c->outlen)
        return -1;
    c->outlen = 0;
    return 0;
}

static int queue_reply(struct conn *c, int r, int head_only, int keep, int http10)
{
    if (sizeof c->out - c->outlen < REPLY_MAX && flush(c) != 0)
        return -1;
    c->outlen += format_reply(c->out + c->outlen, r, head_only, keep, http10);
    return 0;
}

/* Does the connection stay open after answering rq with reply r? */
static int keep_alive(const struct conn *c, const struct request *rq, int r)
{
    if (r == S400_BAD || r == S505_VERSION || c->sh->draining)
        return 0;
    if (rq->has_body)        /* we do not read bodies: the next request's start is lost */
        return 0;
    if (rq->conn_close)
        return 0;
    return rq->minor == 1 || rq->conn_keep;   /* HTTP/1.0 closes unless asked not to */
}

/* Answer every complete request in c->in, in order, queueing the replies
 * in c->out; keep the incomplete rest for the next read. Returns 1 to go
 * on, 0 to close once the queue is written out, -1 on a write error.
 * *answered counts the requests answered. */
static int answer_batch(struct conn *c, int *answered)
{
    size_t off = 0;
    int keep = 1;
    while (keep) {
        while (off < c->len && (c->in[off] == '\r' || c->in[off] == '\n'))
            off++;                     /* RFC 9112 2.2: empty lines between requests */
        size_t n = header_end(c->in + off, c->len - off, &c->scan);
        if (n == 0) {
            if (off == 0 && c->len == sizeof c->in) {  /* full, and still no end */
                keep = 0;
                if (queue_reply(c, S431_TOO_LARGE, 0, 0, 0) != 0)
                    return -1;
            }
            break;
        }
        struct request rq;
        int r = parse_request(c->in + off, n, &rq);
        off += n;
        c->scan = 0;
        (*answered)++;
        keep = keep_alive(c, &rq, r);
        if (queue_reply(c, r, rq.method == M_HEAD, keep, rq.minor == 0) != 0)
            return -1;
    }
    memmove(c->in, c->in + off, c->len - off);
    c->len -= off;
    return keep;
}

/* We close first: send FIN after our last reply, then read and discard
 * whatever the client still sends, for at most LINGER_TIMEOUT, so that
 * unread input does not turn our close into a reset. */
static void linger_close(int fd)
{
    char sink[512];
    shutdown(fd, SHUT_WR);
    coro_set_deadline(coro_now() + LINGER_TIMEOUT);
    while (coro_read(fd, sink, sizeof sink) > 0)
        ;
    coro_close(fd);
}

/* One connection: read, answer the batch, write, until one side closes.
 * keep is 1 while the connection goes on, 0 once we decide to close it
 * (politely), -1 when it failed or the client left. */
static int serve_conn(void *arg)
{
    struct conn c;           /* 16 KiB of buffers: not zeroed, not touched until used */
    c.fd = (int)(intptr_t)arg;
    /* A coroutine runs on the scheduler that spawned it: scheduler i
     * serves shard i. */
    c.sh = &shards[coro_thread_index()];
    c.len = c.scan = c.outlen = 0;

    int keep = 1;
    coro_set_deadline(coro_now() + REQUEST_TIMEOUT);
    while (keep == 1) {
        /* There is always room: a full buffer without a request is a 431. */
        ssize_t n = coro_read(c.fd, c.in + c.len, sizeof c.in - c.len);
        if (n <= 0) {
            keep = -1;       /* the client closed, or reset, timed out, cancelled */
            break;
        }
        c.len += (size_t)n;
        int answered = 0;
        keep = answer_batch(&c, &answered);
        if (keep >= 0 && flush(&c) != 0)
            keep = -1;
        c.sh->requests += (unsigned)answered;
        if (answered > 0)    /* the next request's clock starts now */
            coro_set_deadline(coro_now() + REQUEST_TIMEOUT);
    }
    if (keep == 0)
        linger_close(c.fd);
    else
        coro_close(c.fd);
    c.sh->open--;
    return 0;
}

static __attribute__((format(printf, 3, 4))) void report(const struct shard *sh,
                                                        struct ratelimit *rl,
                                                        const char *fmt, ...)
{
    int64_t now = coro_now();
    if (rl->printed && now - rl->last < CORO_SEC) {
        rl->held++;
        return;
    }
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (rl->held > 0)
        fprintf(stderr, "http_server: %s%s (and %ld more since the last report)\n", sh->tag,
                msg, rl->held);
    else
        fprintf(stderr, "http_server: %s%s\n", sh->tag, msg);
    rl->printed = 1;
    rl->last = now;
    rl->held = 0;
}

static void report_held(const struct shard *sh, const struct ratelimit *rl, const char *what)
{
    if (rl->held > 0)
        fprintf(stderr, "http_server: %s%ld more %s not reported\n", sh->tag, rl->held, what);
}

/* Turn a new connection away: a 503 with a non-blocking send (a fresh
 * socket's buffer has room; if not, the client just sees the close), then
 * close. */
static void refuse(int fd)
{
    char buf[REPLY_MAX];
    size_t n = format_reply(buf, S503_BUSY, 0, 0, 0);
    send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);   /* best effort */
    coro_close(fd);
}

/* Accept, and spawn a coroutine per connection into the group, until
 * cancelled (0) or a fatal error (1); the same loop as echo_server.c's,
 * with a counter instead of a semaphore. */
static int accept_loop(struct shard *sh)
{
    coro_opts_t opts = { .stack_size = CONN_STACK, .name = "http" };
    for (;;) {
        int fd = coro_accept(sh->lfd, NULL, NULL);
        if (fd < 0) {
            int err = errno;
            if (err == ECANCELED)
                return 0;
            if (err == EBADF || err == EINVAL || err == ENOTSOCK) {
                fprintf(stderr, "http_server: %saccept: %s\n", sh->tag, strerror(err));
                return 1;
            }
            /* EMFILE, ENOBUFS...: coro_accept already waited; retry. */
            report(sh, &sh->accept_trouble, "accept: %s (retrying)", strerror(err));
            continue;
        }
        if (sh->open >= sh->max_conns) {
            sh->refused++;
            refuse(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* The handle is not kept: in a REAP group it dies with the
         * connection. */
        if (!coro_group_spawn_opts(sh->conns, serve_conn, (void *)(intptr_t)fd, &opts)) {
            /* Out of memory or mappings: say so, 503, go on. */
            report(sh, &sh->spawn_trouble, "no coroutine for a new connection: %s; answered 503",
                   strerror(errno));
            sh->turned_away++;
            refuse(fd);
            continue;
        }
        sh->open++;
        sh->served++;
    }
}

/* Replies say "Connection: close" from now on; open connections get
 * DRAIN_TIMEOUT, then the group cancels the rest. */
static void drain(struct shard *sh)
{
    sh->draining = 1;
    printf("%s%ld connection%s open; waiting up to %lld s\n", sh->tag, sh->open,
           sh->open == 1 ? "" : "s", (long long)(DRAIN_TIMEOUT / CORO_SEC));
    int64_t saved = coro_timeout(DRAIN_TIMEOUT);
    int rc = coro_group_wait(sh->conns);
    int err = errno;
    coro_set_deadline(saved);
    if (rc == -1 && err == ETIMEDOUT)
        printf("%scancelled the connections still open after the deadline\n", sh->tag);
    coro_group_free(sh->conns);
}

/* Cancel c, which may run on another thread (see echo_server.c). */
static void cancel(coro_t *c)
{
    while (coro_cancel(c) != 0 && errno == ENOMEM)
        coro_sleep(CORO_MS);
}

/* A shard's coroutine, on its own scheduler: serve until cancelled (by the
 * conductor, at shutdown), then close the listener and drain. */
static int serve_shard(void *arg)
{
    struct shard *sh = arg;
    sh->conns = coro_group_new(CORO_GROUP_COLLECT | CORO_GROUP_REAP);
    if (!sh->conns) {
        fprintf(stderr, "http_server: %stask group: %s\n", sh->tag, strerror(errno));
        cancel(conductor);
        coro_close(sh->lfd);
        return 1;
    }
    int status = accept_loop(sh);
    if (status != 0)
        cancel(conductor);   /* a thread that cannot accept stops the server */
    coro_shield(1);          /* let the drain wait: the cancellation is sticky */
    coro_close(sh->lfd);
    drain(sh);
    report_held(sh, &sh->accept_trouble, "accept errors");
    report_held(sh, &sh->spawn_trouble, "connections turned away for want of a coroutine");
    if (sh->turned_away > 0)
        printf("%sturned away %ld connection%s: no memory for a coroutine\n", sh->tag,
               sh->turned_away, sh->turned_away == 1 ? "" : "s");
    return status;
}

/* ---- the conductor: starting and stopping the threads -------------------------- *
 *
 * As in echo_server.c, which explains it step by step: scheduler 0's main
 * coroutine opens each thread's listener on that thread, spawns each
 * shard there with coro_spawn_on and keeps the handles, waits for
 * SIGINT/SIGTERM (or for a failing shard to cancel it), cancels every
 * shard, and joins them (shielded). The other schedulers' main coroutines
 * return at once. */

static char listen_port[8];

/* Runs on the shard's own scheduler (coro_spawn_on). */
static int open_listener(void *arg)
{
    struct shard *sh = arg;
    int flags = cfg.threads > 1 ? CORO_REUSEPORT : 0;
    sh->lfd = coro_tcp_listen(cfg.host, listen_port, flags);
    if (sh->lfd < 0) {
        fprintf(stderr, "http_server: %slisten on %s:%s: %s\n", sh->tag, cfg.host, listen_port,
                strerror(errno));
        return 1;
    }
    return 0;
}

/* The first listener picks the port when PORT is 0; the others share it.
 * On failure the listeners already made stay open until the process
 * exits, which it is about to. */
static int open_listeners(void)
{
    snprintf(listen_port, sizeof listen_port, "%s", cfg.port);
    for (int i = 0; i < cfg.threads; i++) {
        int status = 1;
        coro_t *c = coro_spawn_on(i, open_listener, &shards[i]);
        if (!c) {
            perror("http_server: coro_spawn_on");
            return -1;
        }
        coro_join(c, &status);
        if (status != 0)
            return -1;
        if (i == 0)
            snprintf(listen_port, sizeof listen_port, "%d", coro_sock_port(shards[0].lfd));
    }
    return 0;
}

/* 0 on a signal or when a shard cancelled us, 1 if signals cannot be
 * waited for (then the server stops at once). */
static int wait_for_stop(void)
{
    int sig = coro_signal_wait(&stop_signals);
    if (sig >= 0) {
        printf("got %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return 0;
    }
    if (errno == ECANCELED)
        return 0;            /* a shard failed: it said why */
    perror("http_server: coro_signal_wait");
    return 1;
}

static int conduct(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0;
    conductor = coro_self();
    if (open_listeners() != 0)
        return 1;
    printf("listening on %s:%s\n", cfg.host, listen_port);
    if (cfg.threads > 1)
        printf("%d threads, each with its own listener (SO_REUSEPORT) and at most %ld "
               "connections (%ld in all)\n",
               cfg.threads, shards[0].max_conns, cfg.max_conns);

    int started = 0, status = 0;
    for (; started < cfg.threads; started++) {
        struct shard *sh = &shards[started];
        if (!(sh->co = coro_spawn_on(started, serve_shard, sh))) {
            perror("http_server: coro_spawn_on");
            status = 1;
            break;
        }
    }
    if (status == 0)
        status = wait_for_stop();
    coro_shield(1);          /* we may have been cancelled: the joins must wait */
    for (int i = 0; i < started; i++)
        cancel(shards[i].co);
    unsigned long long requests = 0;
    long served = 0, refused = 0;
    for (int i = 0; i < started; i++) {
        int shard_status = 1;
        coro_join(shards[i].co, &shard_status);
        status |= shard_status;
        requests += shards[i].requests;
        served += shards[i].served;
        refused += shards[i].refused;
    }
    printf("served %llu request%s on %ld connection%s (%ld refused", requests,
           requests == 1 ? "" : "s", served, served == 1 ? "" : "s", refused);
    for (int i = 0; i < started && cfg.threads > 1; i++)
        printf("%sthread %d: %llu on %ld", i == 0 ? "; " : ", ", i, shards[i].requests,
               shards[i].served);
    printf("); bye\n");
    return status;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: http_server PORT [-t N] [--max-conns N] [--host ADDR]\n"
            "  PORT            0 picks a free port (printed: \"listening on ADDR:PORT\")\n"
            "  -t, --threads N threads, 1 to %d, each a server with its own listener on\n"
            "                  PORT (SO_REUSEPORT); default: one per online CPU (%ld here),\n"
            "                  never more than --max-conns\n"
            "  --max-conns N   connections open at once, 1 to 1000000, for the whole\n"
            "                  process: each thread takes its share and answers 503\n"
            "                  past it (default %d)\n"
            "  --host ADDR     the address to listen on (default 127.0.0.1)\n",
            MAX_THREADS, sysconf(_SC_NPROCESSORS_ONLN), DEFAULT_MAX_CONNS);
    exit(2);
}

/* A decimal number in [lo, hi], or usage(). */
static long number(const char *what, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "http_server: %s must be a number from %ld to %ld, not \"%s\"\n", what,
                lo, hi, s);
        usage();
    }
    return v;
}

/* One thread per online CPU, at least one. */
static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/* Give each shard its index, its tag and its share of --max-conns (the
 * first max_conns % threads get one more). */
static void plan_shards(void)
{
    if (cfg.threads > cfg.max_conns)
        cfg.threads = (int)cfg.max_conns;    /* every thread must take at least one */
    for (int i = 0; i < cfg.threads; i++) {
        struct shard *sh = &shards[i];
        sh->index = i;
        sh->lfd = -1;
        sh->max_conns = cfg.max_conns / cfg.threads + (i < cfg.max_conns % cfg.threads);
        if (cfg.threads > 1)
            snprintf(sh->tag, sizeof sh->tag, "thread %d: ", i);
    }
}

int main(int argc, char **argv)
{
    cfg = (struct config){ "127.0.0.1", NULL, DEFAULT_MAX_CONNS, online_cpus() };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if ((strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) && has_value)
            cfg.threads = (int)number(a, argv[++i], 1, MAX_THREADS);
        else if (strcmp(a, "--max-conns") == 0 && has_value)
            cfg.max_conns = number(a, argv[++i], 1, 1000000);
        else if (strcmp(a, "--host") == 0 && has_value)
            cfg.host = argv[++i];
        else if (!cfg.port && a[0] != '-' && number("PORT", a, 0, 65535) >= 0)
            cfg.port = a;
        else
            usage();
    }
    if (!cfg.port)
        usage();
    plan_shards();

    format_replies();
    init_tchar();
    raise_fd_limit();
    sigemptyset(&stop_signals);              /* see echo_server.c */
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    coro_main_opts_t opts = { .threads = cfg.threads };
    int rc = coro_main_opts(conduct, NULL, &opts);
    if (rc < 0) {
        perror("http_server: coro_main_opts");
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
