/* http_server.c: a small, fast, defensive HTTP/1.1 server, one coroutine
 * per connection.
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
 *   - Graceful shutdown on SIGINT/SIGTERM, as in echo_server.c: a
 *     coroutine waits in coro_signal_wait(), the accept loop is cancelled,
 *     open connections get 2 s (replies now say "Connection: close"), then
 *     the rest are cancelled through their task group. Exit 0.
 *   - Flat memory however many connections come and go: the task group
 *     is CORO_GROUP_COLLECT | CORO_GROUP_REAP, which frees each
 *     connection's coroutine as it ends (see echo_server.c). No memory
 *     for a new connection's coroutine gets a 503, a line on stderr (at
 *     most one a second, with a count of those held back), and the server
 *     goes on.
 *
 * HOW TO RUN IT
 *   http_server PORT [--max-conns N] [--host ADDR]
 *       PORT 0 picks a free port; the first line on stdout is
 *       "listening on ADDR:PORT". Defaults: --max-conns 10000,
 *       --host 127.0.0.1.
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

struct config {
    const char *host, *port;
    long max_conns;
};

static struct {
    const struct config *cfg;
    int lfd;
    coro_group_t *conns;
    coro_t *acceptor;
    int draining;            /* shutting down: close after each reply */
    long open, served, refused;
    long turned_away;        /* 503s for want of memory for a coroutine */
    unsigned long long requests;
} srv;

static sigset_t stop_signals;

/* One connection's state, on its coroutine's stack. */
struct conn {
    int fd;
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
static int keep_alive(const struct request *rq, int r)
{
    if (r == S400_BAD || r == S505_VERSION || srv.draining)
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
        keep = keep_alive(&rq, r);
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
        srv.requests += (unsigned)answered;
        if (answered > 0)    /* the next request's clock starts now */
            coro_set_deadline(coro_now() + REQUEST_TIMEOUT);
    }
    if (keep == 0)
        linger_close(c.fd);
    else
        coro_close(c.fd);
    srv.open--;
    return 0;
}

/* Trouble that may come in floods is reported at most once a second, with
 * a count of the reports held back (see echo_server.c). */
struct ratelimit {
    int printed;
    int64_t last;
    long held;
};

static struct ratelimit accept_trouble, spawn_trouble;

static __attribute__((format(printf, 2, 3))) void report(struct ratelimit *rl,
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
        fprintf(stderr, "http_server: %s (and %ld more since the last report)\n", msg, rl->held);
    else
        fprintf(stderr, "http_server: %s\n", msg);
    rl->printed = 1;
    rl->last = now;
    rl->held = 0;
}

static void report_held(const struct ratelimit *rl, const char *what)
{
    if (rl->held > 0)
        fprintf(stderr, "http_server: %ld more %s not reported\n", rl->held, what);
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

/* Accept, and spawn a coroutine per connection into the group; the same
 * loop as echo_server.c's, with a counter instead of a semaphore. */
static int accept_loop(void *arg)
{
    (void)arg;
    coro_opts_t opts = { .stack_size = CONN_STACK, .name = "http" };
    for (;;) {
        int fd = coro_accept(srv.lfd, NULL, NULL);
        if (fd < 0) {
            int err = errno;
            if (err == ECANCELED)
                return 0;
            if (err == EBADF || err == EINVAL || err == ENOTSOCK) {
                fprintf(stderr, "http_server: accept: %s\n", strerror(err));
                return 1;
            }
            /* EMFILE, ENOBUFS...: coro_accept already waited; retry. */
            report(&accept_trouble, "accept: %s (retrying)", strerror(err));
            continue;
        }
        if (srv.open >= srv.cfg->max_conns) {
            srv.refused++;
            refuse(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* The handle is not kept: in a REAP group it dies with the
         * connection. */
        if (!coro_group_spawn_opts(srv.conns, serve_conn, (void *)(intptr_t)fd, &opts)) {
            /* Out of memory or mappings: say so, 503, go on. */
            report(&spawn_trouble, "no coroutine for a new connection: %s; answered 503",
                   strerror(errno));
            srv.turned_away++;
            refuse(fd);
            continue;
        }
        srv.open++;
        srv.served++;
    }
}

/* SIGINT or SIGTERM: stop the accept loop (see echo_server.c). */
static int watch_signals(void *arg)
{
    (void)arg;
    int sig = coro_signal_wait(&stop_signals);
    if (sig < 0 && errno == ECANCELED)
        return 0;
    if (sig < 0)             /* no way to be stopped gracefully: stop now */
        perror("http_server: coro_signal_wait");
    else
        printf("got %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    coro_cancel(srv.acceptor);
    return sig < 0;
}

/* Replies say "Connection: close" from now on; open connections get
 * DRAIN_TIMEOUT, then the group cancels the rest. */
static void drain(void)
{
    srv.draining = 1;
    printf("%ld connection%s open; waiting up to %lld s\n", srv.open,
           srv.open == 1 ? "" : "s", (long long)(DRAIN_TIMEOUT / CORO_SEC));
    int64_t saved = coro_timeout(DRAIN_TIMEOUT);
    int rc = coro_group_wait(srv.conns);
    int err = errno;
    coro_set_deadline(saved);
    if (rc == -1 && err == ETIMEDOUT)
        printf("cancelled the connections still open after the deadline\n");
    coro_group_free(srv.conns);
}

static int serve(void *arg)
{
    srv.cfg = arg;
    srv.lfd = coro_tcp_listen(srv.cfg->host, srv.cfg->port, 0);
    if (srv.lfd < 0) {
        fprintf(stderr, "http_server: listen on %s:%s: %s\n", srv.cfg->host, srv.cfg->port,
                strerror(errno));
        return 1;
    }
    srv.conns = coro_group_new(CORO_GROUP_COLLECT | CORO_GROUP_REAP);
    coro_opts_t aopts = { .name = "accept" }, sopts = { .name = "signals" };
    coro_t *watcher = NULL;
    if (!srv.conns || !(srv.acceptor = coro_spawn_opts(accept_loop, NULL, &aopts)) ||
        !(watcher = coro_spawn_opts(watch_signals, NULL, &sopts))) {
        perror("http_server: setup");
        if (srv.acceptor) {
            coro_cancel(srv.acceptor);
            coro_join(srv.acceptor, NULL);
        }
        return 1;
    }
    printf("listening on %s:%d\n", srv.cfg->host, coro_sock_port(srv.lfd));

    int status = 0, watcher_status = 0;
    coro_join(srv.acceptor, &status);
    coro_cancel(watcher);
    coro_join(watcher, &watcher_status);
    coro_close(srv.lfd);
    drain();
    report_held(&accept_trouble, "accept errors");
    report_held(&spawn_trouble, "connections turned away for want of a coroutine");
    if (srv.turned_away > 0)
        printf("turned away %ld connection%s: no memory for a coroutine\n", srv.turned_away,
               srv.turned_away == 1 ? "" : "s");
    printf("served %llu request%s on %ld connection%s (%ld refused); bye\n", srv.requests,
           srv.requests == 1 ? "" : "s", srv.served, srv.served == 1 ? "" : "s", srv.refused);
    return status || watcher_status;
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
    fprintf(stderr, "usage: http_server PORT [--max-conns N] [--host ADDR]\n");
    exit(2);
}

static long number(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    struct config cfg = { "127.0.0.1", NULL, DEFAULT_MAX_CONNS };
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--max-conns") == 0 && i + 1 < argc)
            cfg.max_conns = number(argv[++i], 1, 1000000);
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            cfg.host = argv[++i];
        else if (!cfg.port && argv[i][0] != '-' && number(argv[i], 0, 65535) >= 0)
            cfg.port = argv[i];
        else
            usage();
    }
    if (!cfg.port)
        usage();

    format_replies();
    init_tchar();
    raise_fd_limit();
    sigemptyset(&stop_signals);              /* see echo_server.c */
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int rc = coro_main(serve, &cfg);
    if (rc < 0) {
        perror("http_server: coro_main");
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
