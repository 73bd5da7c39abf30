/* io/simnet.c: the simulated network. Inside a deterministic simulation
 * (coro_main_opts with a sim, sched/sim.c) the socket calls of io/io.h
 * work here, in memory, on virtual time, instead of in the kernel.
 *
 * Descriptors. A simulated socket gets a real descriptor number, held by a
 * placeholder (/dev/null, read-only, close-on-exec), so it never collides
 * with a real descriptor; a table fd -> socket routes each call (see
 * io/simnet.h). coro_close frees the socket and closes the placeholder;
 * what is left when coro_main returns is freed by a coro__at_exit hook.
 *
 * Names. "host:port" names an endpoint (any host string: no lookup); a
 * listener on host NULL or "" takes connections for its port on every
 * host. Port "0" picks one (49152 up, in order). Unix sockets are the same
 * with the path as the name (host "unix"). A dialing socket's own host is
 * "client" (simulated sockets are never bound before they dial).
 *
 * Time. Every delivery (a dial's connection, a write's bytes, a close's
 * end of file, a datagram) becomes visible at now + a latency drawn from
 * the seed (latency_min..latency_max). On one connection the deliveries of
 * one direction stay in order: a later one is never visible before an
 * earlier one. A read, an accept, a dial waits with coro__park until the
 * first delivery's time (a timer) or a wake: a checkpoint, so a deadline
 * fires exactly at its limit in virtual time.
 *
 * TCP (and Unix) connections: two byte queues, each bounded to
 * SIMNET_BUF bytes (in flight and unread): a writer parks while its peer's
 * queue is full and wakes when the reader drains it. A dial with nobody
 * listening fails with ECONNREFUSED one latency later; otherwise the
 * connection reaches the listener's backlog one latency later and the dial
 * returns then (whether or not it has been accepted). Closing sends end of
 * file after the data; writing to a closed peer fails with EPIPE at once
 * (never SIGPIPE); closing a listener resets the connections of its
 * backlog (a dial still under way: ECONNREFUSED). A reset (a fault) resets
 * both ends at once: their reads and writes fail with ECONNRESET, unread
 * data is dropped.
 *
 * Faults, each drawn with probability fault_rate per call (none when it is
 * 0), only of kinds the call may report anyway: a read returns fewer bytes
 * than were readable, or ECONNRESET; a write's bytes go out as two
 * deliveries (so the reader sees a short read), or the connection resets
 * after some of them (the write returns the short count with ECONNRESET,
 * or -1 if none went); a dial is refused (ECONNREFUSED); an accept fails
 * with EMFILE after the 100 ms back-off of the real one (the connection
 * stays queued); a datagram is lost, or delayed by up to three more
 * latencies (so datagrams reorder).
 *
 * Partitions (coro_sim_partition / coro_sim_heal): while two hosts are
 * partitioned, deliveries between them (data, end of file, connections,
 * datagrams) are held, not lost; a heal lets them go, one fresh latency
 * later, in their order. Data already delivered stays readable.
 *
 * Determinism: no real clock, no real randomness; sockets are kept in
 * creation order and every walk goes in that order. */
#include "io/simnet.h"
#include "io/io_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bytes a connection's receive queue holds at most (in flight and
 * unread). */
#define SIMNET_BUF (256 * 1024)
/* Datagrams a UDP socket queues at most (more are dropped, as a full
 * socket buffer would). */
#define SIMNET_DGRAMS 1024
/* The real accept's back-off on EMFILE (io/socket.c). */
#define SIMNET_ACCEPT_BACKOFF (100 * CORO_MS)
#define SIMNET_FIRST_PORT 49152

enum { SK_LISTEN = 1, SK_CONN, SK_UDP };

typedef struct delivery {
    struct delivery *next;
    int64_t ready_at; /* visible from then on; CORO_NEVER while held */
    int held;         /* by a partition */
    int fin;          /* end of file (len 0) */
    size_t len, off;
    char from[80];    /* UDP: the sender's "host:port" */
    char data[];
} delivery_t;

typedef struct coro__simsock {
    int kind;
    int fd;               /* -1: none yet (a connection in a backlog) */
    coro_list_t all_node; /* in the network's list, creation order */
    char host[64];        /* its own host, for partitions */
    char remote[64];      /* the peer's host (connections) */
    char name[128];       /* listener / UDP: the name it is bound to */
    int port;
    int any_host;         /* listener / UDP bound on every host */
    int is_unix;
    /* listener */
    coro_list_t backlog;  /* connections not yet accepted, by arrive_at */
    coro_list_t acceptors;
    /* connection */
    struct coro__simsock *peer;
    struct coro__simsock *listener; /* while in a backlog */
    coro_list_t backlog_node;
    int64_t arrive_at;    /* when it reaches the backlog (CORO_NEVER: held) */
    int arrive_held;
    int dialing;          /* the dialing end, until the dial returns */
    int refused;          /* the dial failed meanwhile */
    int reset;
    int fin_sent;
    /* the receive queue (connection: bytes; UDP: datagrams) */
    delivery_t *rx_head, *rx_tail;
    size_t rx_bytes, rx_count;
    int64_t rx_last;      /* ready_at of the latest delivery not held */
    coro_list_t readers;  /* parked reading (or dialing) on this socket */
    coro_list_t writers;  /* the peer's writers, parked for room here */
} simsock_t;

typedef struct partition {
    struct partition *next;
    char a[64];
    char b[64];           /* "" for everyone */
} partition_t;

typedef struct coro__simnet {
    simsock_t **tab;      /* fd -> socket */
    int cap;
    coro_list_t all;      /* every socket, creation order */
    partition_t *parts;
    int next_port;
} simnet_t;

__thread simnet_t *coro__simnet_tls __attribute__((tls_model("initial-exec")));

/* ---- the network ------------------------------------------------------------- */

simsock_t *coro__simnet_lookup(simnet_t *n, int fd)
{
    if (fd < 0 || fd >= n->cap)
        return NULL;
    return n->tab[fd];
}

int coro__simnet_on(void)
{
    return coro__sim_active();
}

static void free_queue(simsock_t *s)
{
    delivery_t *d = s->rx_head;
    while (d) {
        delivery_t *next = d->next;
        free(d);
        d = next;
    }
    s->rx_head = s->rx_tail = NULL;
    s->rx_bytes = 0;
    s->rx_count = 0;
}

static void sock_free(simnet_t *n, simsock_t *s)
{
    free_queue(s);
    coro_list_remove(&s->all_node);
    coro_list_remove(&s->backlog_node);
    if (s->fd >= 0) {
        if (s->fd < n->cap && n->tab[s->fd] == s)
            n->tab[s->fd] = NULL;
        (void)coro__fd_close(s->fd);
        close(s->fd);
    }
    free(s);
}

/* coro_main is returning: every coroutine has ended, nothing waits. */
static void net_free(void *arg)
{
    simnet_t *n = arg;
    while (!coro_list_empty(&n->all)) {
        simsock_t *s = coro_container_of(n->all.next, simsock_t, all_node);
        sock_free(n, s);
    }
    while (n->parts) {
        partition_t *p = n->parts;
        n->parts = p->next;
        free(p);
    }
    free(n->tab);
    if (coro__simnet_tls == n)
        coro__simnet_tls = NULL;
    free(n);
}

/* The calling thread's network, made on first use. NULL with errno. */
static simnet_t *net_get(void)
{
    if (coro__simnet_tls)
        return coro__simnet_tls;
    simnet_t *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    coro_list_init(&n->all);
    n->next_port = SIMNET_FIRST_PORT;
    if (coro__at_exit(net_free, n) != 0) {
        free(n);
        return NULL;
    }
    coro__simnet_tls = n;
    return n;
}

static simsock_t *sock_new(simnet_t *n, int kind)
{
    simsock_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->kind = kind;
    s->fd = -1;
    coro_list_init(&s->backlog);
    coro_list_init(&s->acceptors);
    coro_list_init(&s->backlog_node);
    coro_list_init(&s->readers);
    coro_list_init(&s->writers);
    coro_list_push_back(&n->all, &s->all_node);
    return s;
}

/* Give s a descriptor number (a placeholder). 0 or -1 (EMFILE, ...). */
static int sock_attach_fd(simnet_t *n, simsock_t *s)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fd >= n->cap) {
        int cap = n->cap ? n->cap : 64;
        while (cap <= fd)
            cap *= 2;
        simsock_t **t = realloc(n->tab, (size_t)cap * sizeof *t);
        if (!t) {
            close(fd);
            errno = ENOMEM;
            return -1;
        }
        memset(t + n->cap, 0, (size_t)(cap - n->cap) * sizeof *t);
        n->tab = t;
        n->cap = cap;
    }
    /* The number may have been a real descriptor's, closed behind the
     * library's back: forget what the table knew of it. */
    coro__fd_new(fd, 0);
    n->tab[fd] = s;
    s->fd = fd;
    return 0;
}

/* Copy src (NULL: "") into dst of cap bytes, cut to fit. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t l = src ? strnlen(src, cap - 1) : 0;
    if (l)
        memcpy(dst, src, l);
    dst[l] = '\0';
}

/* ---- partitions ---------------------------------------------------------------- */

static int parted(const simnet_t *n, const char *a, const char *b)
{
    for (const partition_t *p = n->parts; p; p = p->next) {
        if (!p->b[0]) {
            if (!strcmp(p->a, a) || !strcmp(p->a, b))
                return 1;
        } else if ((!strcmp(p->a, a) && !strcmp(p->b, b)) ||
                   (!strcmp(p->a, b) && !strcmp(p->b, a))) {
            return 1;
        }
    }
    return 0;
}

/* ---- the receive queue ------------------------------------------------------------ */

static int readable(const delivery_t *d)
{
    return d && !d->held && d->ready_at <= coro_now();
}

/* When the first delivery becomes visible (CORO_NEVER: none, or held). */
static int64_t first_ready(const simsock_t *s)
{
    const delivery_t *d = s->rx_head;
    return d && !d->held ? d->ready_at : CORO_NEVER;
}

/* Queue len bytes (or an end of file) for s, from host `from_host`. */
static int deliver(simnet_t *n, simsock_t *s, const char *from_host, const struct iovec *iov,
                   int cnt, size_t skip, size_t len, int fin)
{
    delivery_t *d = malloc(sizeof *d + len);
    if (!d)
        return -1;
    memset(d, 0, sizeof *d);
    d->fin = fin;
    d->len = len;
    /* Gather len bytes from iov, starting skip bytes in. */
    size_t at = 0;
    for (int i = 0; i < cnt && at < len; i++) {
        size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        size_t take = l - skip < len - at ? l - skip : len - at;
        memcpy(d->data + at, (const char *)iov[i].iov_base + skip, take);
        at += take;
        skip = 0;
    }
    int64_t lat = coro__sim_latency();
    if (parted(n, from_host, s->host) || (s->rx_tail && s->rx_tail->held)) {
        d->held = 1;
        d->ready_at = CORO_NEVER;
    } else {
        int64_t r = coro_now() + lat;
        d->ready_at = r > s->rx_last ? r : s->rx_last;
        s->rx_last = d->ready_at;
    }
    if (s->rx_tail)
        s->rx_tail->next = d;
    else
        s->rx_head = d;
    s->rx_tail = d;
    s->rx_bytes += len;
    s->rx_count++;
    coro__wake_all(&s->readers, 0); /* they look again */
    return 0;
}

/* Wake the waiters of `q` that belong to socket `owner` (waiter.data). */
static void wake_owned(coro_list_t *q, const simsock_t *owner, int result)
{
    coro_list_t *it = q->next;
    while (it != q) {
        coro_list_t *next = it->next;
        coro__waiter_t *w = coro_container_of(it, coro__waiter_t, node);
        if (w->data == owner) {
            if (coro__can_wake(w))
                coro__wake(w, result);
            else
                coro_list_remove(&w->node);
        }
        it = next;
    }
}

/* Reset s's connection, both ends. */
static void conn_reset(simsock_t *s)
{
    simsock_t *ends[2] = { s, s->peer };
    for (int i = 0; i < 2; i++) {
        simsock_t *e = ends[i];
        if (!e)
            continue;
        e->reset = 1;
        free_queue(e);
        coro__wake_all(&e->readers, ECONNRESET);
        coro__wake_all(&e->writers, ECONNRESET);
        if (e->listener) /* still in a backlog: its accept will see the reset */
            coro__wake_all(&e->listener->acceptors, 0);
    }
}

/* ---- listening ----------------------------------------------------------------- */

/* Split a port string: 0..65535 as a number, or -1 (EINVAL). */
static int parse_port(const char *port)
{
    if (!port || !*port) {
        errno = EINVAL;
        return -1;
    }
    long v = 0;
    for (const char *c = port; *c; c++) {
        if (*c < '0' || *c > '9' || v > 65535) {
            errno = EINVAL; /* service names need a lookup: none here */
            return -1;
        }
        v = v * 10 + (*c - '0');
    }
    if (v > 65535) {
        errno = EINVAL;
        return -1;
    }
    return (int)v;
}

/* The listener or UDP socket bound to host:port (exact host first, then
 * one on every host). */
static simsock_t *find_bound(simnet_t *n, int kind, int is_unix, const char *host, int port)
{
    simsock_t *any = NULL;
    for (coro_list_t *it = n->all.next; it != &n->all; it = it->next) {
        simsock_t *s = coro_container_of(it, simsock_t, all_node);
        if (s->kind != kind || s->is_unix != is_unix || s->fd < 0)
            continue;
        if (is_unix) {
            if (!strcmp(s->name, host))
                return s;
            continue;
        }
        if (s->port != port)
            continue;
        if (!s->any_host && !strcmp(s->host, host))
            return s;
        if (s->any_host && !any)
            any = s;
    }
    return any;
}

/* A socket bound to exactly that name (EADDRINUSE for a second one). */
static simsock_t *exact_bound(simnet_t *n, int kind, int is_unix, const char *host, int port)
{
    for (coro_list_t *it = n->all.next; it != &n->all; it = it->next) {
        simsock_t *s = coro_container_of(it, simsock_t, all_node);
        if (s->kind != kind || s->is_unix != is_unix || s->fd < 0)
            continue;
        if (is_unix ? !strcmp(s->name, host)
                    : s->port == port && s->any_host == !*host &&
                          (s->any_host || !strcmp(s->host, host)))
            return s;
    }
    return NULL;
}

static int bind_sock(int kind, const char *host, const char *port, int is_unix)
{
    if (coro__checkpoint() != 0)
        return -1;
    simnet_t *n = net_get();
    if (!n)
        return -1;
    int p = 0;
    if (!is_unix) {
        if ((p = parse_port(port)) < 0)
            return -1;
        if (p == 0) {
            /* The next free one, in order. */
            for (;;) {
                p = n->next_port++;
                if (n->next_port > 65535)
                    n->next_port = SIMNET_FIRST_PORT;
                if (!exact_bound(n, kind, 0, host ? host : "", p))
                    break;
            }
        }
    }
    const char *h = is_unix ? "unix" : (host && *host ? host : "");
    if (exact_bound(n, kind, is_unix, is_unix ? port : h, p)) {
        errno = EADDRINUSE;
        return -1;
    }
    simsock_t *s = sock_new(n, kind);
    if (!s)
        return -1;
    s->is_unix = is_unix;
    s->port = p;
    s->any_host = !is_unix && !*h;
    copy_str(s->host, sizeof s->host, *h ? h : "localhost");
    if (is_unix)
        copy_str(s->name, sizeof s->name, port);
    else
        snprintf(s->name, sizeof s->name, "%s:%d", h, p);
    if (sock_attach_fd(n, s) != 0) {
        int e = errno;
        sock_free(n, s);
        errno = e;
        return -1;
    }
    return s->fd;
}

int coro__simnet_listen(const char *host, const char *port, int is_unix)
{
    return bind_sock(SK_LISTEN, host, port, is_unix);
}

int coro__simnet_udp_bind(const char *host, const char *port)
{
    return bind_sock(SK_UDP, host, port, 0);
}

/* ---- dialing ------------------------------------------------------------------- */

/* Put c (a listener's end of a connection) in l's backlog, ordered by
 * arrival (held ones last). */
static void backlog_insert(simsock_t *l, simsock_t *c)
{
    coro_list_remove(&c->backlog_node);
    coro_list_t *it = l->backlog.next;
    while (it != &l->backlog) {
        simsock_t *o = coro_container_of(it, simsock_t, backlog_node);
        if (o->arrive_at > c->arrive_at)
            break;
        it = it->next;
    }
    /* Insert before it. */
    c->backlog_node.next = it;
    c->backlog_node.prev = it->prev;
    it->prev->next = &c->backlog_node;
    it->prev = &c->backlog_node;
    c->listener = l;
    coro__wake_all(&l->acceptors, 0);
}

/* Park on s's readers until `until` (CORO_NEVER: a wake). 0 or -1. */
static int park_until(simsock_t *s, coro_list_t *q, int64_t until, const char *what)
{
    coro__waiter_t w;
    w.data = s;
    coro_list_push_back(q, &w.node);
    if (until == CORO_NEVER)
        return coro__park(&w, 0, CORO_NEVER, what, s, s->fd);
    return coro__park(&w, 0, until, what, s, s->fd);
}

static int conn_close(simnet_t *n, simsock_t *s);

int coro__simnet_dial(const char *host, const char *port, int is_unix)
{
    if (coro__checkpoint() != 0)
        return -1;
    simnet_t *n = net_get();
    if (!n)
        return -1;
    int p = 0;
    const char *h;
    if (is_unix) {
        h = port;
    } else {
        if ((p = parse_port(port)) < 0)
            return -1;
        h = host && *host ? host : "localhost";
    }
    simsock_t *l = find_bound(n, SK_LISTEN, is_unix, h, p);
    simsock_t *c = sock_new(n, SK_CONN);
    if (!c)
        return -1;
    c->is_unix = is_unix;
    c->dialing = 1;
    copy_str(c->host, sizeof c->host, is_unix ? "unix" : "client");
    copy_str(c->remote, sizeof c->remote, is_unix ? "unix" : h);
    int64_t lat = coro__sim_latency();
    if (!l || coro__sim_fault()) {
        /* Refused, one latency later (the reset's way back). */
        int r = park_until(c, &c->readers, coro_now() + lat, "sim dial");
        int e = r == 0 ? ECONNREFUSED : errno;
        sock_free(n, c);
        errno = e;
        return -1;
    }
    simsock_t *a = sock_new(n, SK_CONN);
    if (!a) {
        sock_free(n, c);
        return -1;
    }
    a->is_unix = is_unix;
    copy_str(a->host, sizeof a->host, c->remote);
    copy_str(a->remote, sizeof a->remote, c->host);
    a->port = l->port;
    c->port = is_unix ? 0 : n->next_port++;
    if (n->next_port > 65535)
        n->next_port = SIMNET_FIRST_PORT;
    a->peer = c;
    c->peer = a;
    if (parted(n, c->host, a->host)) {
        a->arrive_held = 1;
        a->arrive_at = CORO_NEVER;
    } else {
        a->arrive_at = coro_now() + lat;
    }
    backlog_insert(l, a);
    for (;;) {
        if (c->refused || c->reset) {
            sock_free(n, c);
            errno = ECONNREFUSED;
            return -1;
        }
        if (!a->arrive_held && a->arrive_at <= coro_now())
            break;
        if (park_until(c, &c->readers, a->arrive_held ? CORO_NEVER : a->arrive_at,
                       "sim dial") != 0) {
            /* Cancelled or past the deadline: give up the connection (the
             * listener's side reads end of file, as after a close). */
            int e = errno;
            conn_close(n, c);
            errno = e;
            return -1;
        }
    }
    c->dialing = 0;
    if (sock_attach_fd(n, c) != 0) {
        int e = errno;
        conn_close(n, c);
        errno = e;
        return -1;
    }
    return c->fd;
}

/* ---- accepting ----------------------------------------------------------------- */

static void fill_addr(const simsock_t *s, struct sockaddr *sa, socklen_t *len)
{
    if (!sa || !len)
        return;
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    in.sin_port = htons((uint16_t)s->port);
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = *len < (socklen_t)sizeof in ? *len : (socklen_t)sizeof in;
    memcpy(sa, &in, l);
    *len = sizeof in;
}

int coro__simnet_accept(simsock_t *l, struct sockaddr *sa, socklen_t *len)
{
    if (coro__checkpoint() != 0)
        return -1;
    if (l->kind != SK_LISTEN) {
        errno = EINVAL;
        return -1;
    }
    simnet_t *n = coro__simnet_tls;
    int drawn = 0;
    for (;;) {
        coro_list_t *first = coro_list_first(&l->backlog);
        simsock_t *a = first ? coro_container_of(first, simsock_t, backlog_node) : NULL;
        if (a && a->reset) {
            /* Reset in the backlog (its dialer gave up badly): drop it, as
             * the kernel does (ECONNABORTED is retried). */
            if (a->peer)
                a->peer->peer = NULL;
            sock_free(n, a);
            continue;
        }
        if (a && !a->arrive_held && a->arrive_at <= coro_now()) {
            if (!drawn) {
                drawn = 1;
                if (coro__sim_fault()) {
                    /* Out of descriptors: the real accept's back-off, then
                     * EMFILE; the connection stays queued. */
                    if (park_until(l, &l->acceptors, coro_now() + SIMNET_ACCEPT_BACKOFF,
                                   "sim accept") != 0)
                        return -1;
                    errno = EMFILE;
                    return -1;
                }
            }
            if (sock_attach_fd(n, a) != 0)
                return -1;
            coro_list_remove(&a->backlog_node);
            a->listener = NULL;
            fill_addr(a->peer ? a->peer : a, sa, len);
            return a->fd;
        }
        int64_t until = a && !a->arrive_held ? a->arrive_at : CORO_NEVER;
        if (park_until(l, &l->acceptors, until, "sim accept") != 0)
            return -1;
    }
}

/* ---- reading ------------------------------------------------------------------- */

static size_t iov_len(const struct iovec *iov, int cnt)
{
    size_t t = 0;
    for (int i = 0; iov && i < cnt; i++)
        t += iov[i].iov_len;
    return t;
}

ssize_t coro__simnet_readv(simsock_t *s, const struct iovec *iov, int cnt, int flags)
{
    if (coro__checkpoint() != 0)
        return -1;
    if (cnt < 0 || (!iov && cnt > 0)) {
        errno = EINVAL;
        return -1;
    }
    if (s->kind == SK_UDP)
        return coro__simnet_recvfrom(s, cnt ? iov[0].iov_base : NULL, cnt ? iov[0].iov_len : 0,
                                     flags, NULL, NULL);
    if (s->kind != SK_CONN) {
        errno = ENOTCONN;
        return -1;
    }
    size_t want = iov_len(iov, cnt);
    int drawn = 0, short_read = 0;
    for (;;) {
        if (s->reset) {
            errno = ECONNRESET;
            return -1;
        }
        delivery_t *d = s->rx_head;
        if (readable(d)) {
            if (d->fin)
                return 0;
            if (want == 0)
                return 0;
            if (!drawn) {
                drawn = 1;
                if (coro__sim_fault()) {
                    if (coro__sim_below(2) == 0) {
                        conn_reset(s);
                        errno = ECONNRESET;
                        return -1;
                    }
                    short_read = 1;
                }
            }
            /* What is readable now, up to want. */
            size_t avail = 0;
            for (delivery_t *e = d; readable(e) && !e->fin && avail < want; e = e->next)
                avail += e->len - e->off;
            size_t take = avail < want ? avail : want;
            if (short_read && take > 1)
                take = 1 + coro__sim_below((uint32_t)(take - 1 > UINT32_MAX - 1 ? UINT32_MAX - 1
                                                                                 : take - 1));
            /* Copy take bytes into iov, consuming unless peeking. */
            size_t done = 0;
            int vi = 0;
            size_t voff = 0;
            delivery_t *e = d;
            size_t eoff = e->off;
            while (done < take) {
                while (vi < cnt && voff == iov[vi].iov_len) {
                    vi++;
                    voff = 0;
                }
                size_t el = e->len - eoff;
                if (el == 0) {
                    e = e->next;
                    eoff = e->off;
                    continue;
                }
                size_t vl = iov[vi].iov_len - voff;
                size_t k = el < vl ? el : vl;
                if (k > take - done)
                    k = take - done;
                memcpy((char *)iov[vi].iov_base + voff, e->data + eoff, k);
                voff += k;
                eoff += k;
                done += k;
            }
            if (!(flags & MSG_PEEK)) {
                size_t left = take;
                while (left) {
                    delivery_t *h = s->rx_head;
                    size_t hl = h->len - h->off;
                    if (hl > left) {
                        h->off += left;
                        break;
                    }
                    left -= hl;
                    s->rx_head = h->next;
                    if (!s->rx_head)
                        s->rx_tail = NULL;
                    s->rx_count--;
                    free(h);
                }
                s->rx_bytes -= take;
                /* Drop emptied deliveries at the front (not an end of file). */
                while (s->rx_head && !s->rx_head->fin && s->rx_head->off == s->rx_head->len &&
                       s->rx_head->len > 0) {
                    delivery_t *h = s->rx_head;
                    s->rx_head = h->next;
                    if (!s->rx_head)
                        s->rx_tail = NULL;
                    s->rx_count--;
                    free(h);
                }
                coro__wake_all(&s->writers, 0); /* room for the peer */
            }
            return (ssize_t)take;
        }
        if (flags & MSG_DONTWAIT) {
            errno = EAGAIN;
            return -1;
        }
        if (park_until(s, &s->readers, first_ready(s), "sim read") != 0)
            return -1;
    }
}

/* ---- writing ------------------------------------------------------------------- */

ssize_t coro__simnet_writev(simsock_t *s, const struct iovec *iov, int cnt)
{
    if (coro__checkpoint() != 0)
        return -1;
    if (cnt < 0 || (!iov && cnt > 0)) {
        errno = EINVAL;
        return -1;
    }
    if (s->kind == SK_UDP) {
        errno = EDESTADDRREQ;
        return -1;
    }
    if (s->kind != SK_CONN) {
        errno = ENOTCONN;
        return -1;
    }
    simnet_t *n = coro__simnet_tls;
    size_t total = iov_len(iov, cnt);
    if (total > SSIZE_MAX) {
        errno = EINVAL;
        return -1;
    }
    /* A fault: -1 none, 0 a reset after reset_at bytes, 1 a split. */
    int fault = -1;
    size_t reset_at = 0;
    if (total > 0 && coro__sim_fault()) {
        fault = (int)coro__sim_below(2);
        if (fault == 0)
            reset_at = coro__sim_below(total > UINT32_MAX ? UINT32_MAX : (uint32_t)total);
    }
    size_t done = 0;
    while (done < total) {
        if (s->reset) {
            errno = ECONNRESET;
            return done ? (ssize_t)done : -1;
        }
        simsock_t *p = s->peer;
        if (!p || s->fin_sent) {
            errno = EPIPE;
            return done ? (ssize_t)done : -1;
        }
        if (fault == 0 && done >= reset_at) {
            conn_reset(s);
            errno = ECONNRESET;
            return done ? (ssize_t)done : -1;
        }
        size_t room = SIMNET_BUF - (p->rx_bytes < SIMNET_BUF ? p->rx_bytes : SIMNET_BUF);
        if (room == 0) {
            if (park_until(s, &p->writers, CORO_NEVER, "sim write") != 0)
                return done ? (ssize_t)done : -1;
            continue;
        }
        size_t chunk = total - done < room ? total - done : room;
        if (fault == 0 && chunk > reset_at - done)
            chunk = reset_at - done;
        if (fault == 1 && chunk > 1) {
            chunk = 1 + coro__sim_below(chunk - 1 > UINT32_MAX - 1 ? UINT32_MAX - 1
                                                                  : (uint32_t)(chunk - 1));
            fault = -1; /* one split per call */
        }
        if (deliver(n, p, s->host, iov, cnt, done, chunk, 0) != 0)
            return done ? (ssize_t)done : -1;
        done += chunk;
    }
    return (ssize_t)total;
}

/* ---- datagrams ----------------------------------------------------------------- */

/* "host:port" of a sockaddr (numeric), or -1 (EAFNOSUPPORT / EINVAL). */
static int addr_name(const struct sockaddr *sa, socklen_t len, char *host, size_t cap, int *port)
{
    if (!sa) {
        errno = EDESTADDRREQ;
        return -1;
    }
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        if (!inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)cap))
            return -1;
        *port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)cap))
            return -1;
        *port = ntohs(in6->sin6_port);
        return 0;
    }
    errno = len < (socklen_t)sizeof(sa_family_t) ? EINVAL : EAFNOSUPPORT;
    return -1;
}

ssize_t coro__simnet_sendto(simsock_t *s, const void *buf, size_t len,
                            const struct sockaddr *to, socklen_t tolen)
{
    if (coro__checkpoint() != 0)
        return -1;
    if (s->kind == SK_CONN) {
        struct iovec v = { (void *)buf, len };
        return coro__simnet_writev(s, &v, 1);
    }
    if (s->kind != SK_UDP) {
        errno = ENOTCONN;
        return -1;
    }
    simnet_t *n = coro__simnet_tls;
    char host[64];
    int port;
    if (addr_name(to, tolen, host, sizeof host, &port) != 0)
        return -1;
    if (len > 65507) {
        errno = EMSGSIZE;
        return -1;
    }
    simsock_t *r = find_bound(n, SK_UDP, 0, host, port);
    /* Lost (a fault), or nobody there, or the receiver's queue full: the
     * send still succeeds, as UDP's does. */
    int lost = coro__sim_fault() && coro__sim_below(2) == 0;
    int late = !lost && coro__sim_fault();
    if (!r || lost || r->rx_count >= SIMNET_DGRAMS)
        return (ssize_t)len;
    delivery_t *d = malloc(sizeof *d + len);
    if (!d)
        return -1;
    memset(d, 0, sizeof *d);
    d->len = len;
    memcpy(d->data, buf, len);
    snprintf(d->from, sizeof d->from, "%s:%d", s->any_host ? "127.0.0.1" : s->host, s->port);
    int64_t lat = coro__sim_latency();
    if (late)
        lat += (int64_t)(1 + coro__sim_below(3)) * coro__sim_latency();
    if (parted(n, s->host, r->host)) {
        d->held = 1;
        d->ready_at = CORO_NEVER;
    } else {
        d->ready_at = coro_now() + lat;
    }
    /* Datagrams are kept by time (held ones last): the queue is ordered
     * by visibility, so reordering shows. */
    delivery_t **at = &r->rx_head;
    while (*at && (*at)->ready_at <= d->ready_at)
        at = &(*at)->next;
    d->next = *at;
    *at = d;
    if (!d->next)
        r->rx_tail = d;
    r->rx_count++;
    r->rx_bytes += len;
    coro__wake_all(&r->readers, 0);
    return (ssize_t)len;
}

static void fill_from(const char *from, struct sockaddr *sa, socklen_t *len)
{
    if (!sa || !len)
        return;
    char host[64];
    copy_str(host, sizeof host, from);
    char *colon = strrchr(host, ':');
    int port = 0;
    if (colon) {
        *colon = '\0';
        port = atoi(colon + 1);
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t l;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        l = sizeof *in6;
    } else {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        l = sizeof *in;
    }
    memcpy(sa, &ss, *len < l ? *len : l);
    *len = l;
}

ssize_t coro__simnet_recvfrom(simsock_t *s, void *buf, size_t len, int flags,
                              struct sockaddr *from, socklen_t *fromlen)
{
    if (coro__checkpoint() != 0)
        return -1;
    if (s->kind == SK_CONN) {
        struct iovec v = { buf, len };
        ssize_t r = coro__simnet_readv(s, &v, 1, flags);
        if (r >= 0 && fromlen)
            *fromlen = 0;
        return r;
    }
    if (s->kind != SK_UDP) {
        errno = ENOTCONN;
        return -1;
    }
    for (;;) {
        delivery_t *d = s->rx_head;
        if (readable(d)) {
            size_t k = d->len < len ? d->len : len;
            if (k)
                memcpy(buf, d->data, k);
            fill_from(d->from, from, fromlen);
            if (!(flags & MSG_PEEK)) {
                s->rx_head = d->next;
                if (!s->rx_head)
                    s->rx_tail = NULL;
                s->rx_count--;
                s->rx_bytes -= d->len;
                free(d);
            }
            return (ssize_t)k; /* the rest of a long datagram is dropped */
        }
        if (flags & MSG_DONTWAIT) {
            errno = EAGAIN;
            return -1;
        }
        if (park_until(s, &s->readers, first_ready(s), "sim recv") != 0)
            return -1;
    }
}

/* ---- waiting, closing, ports ------------------------------------------------------- */

int coro__simnet_wait(simsock_t *s, int events)
{
    if (coro__checkpoint() != 0)
        return -1;
    if (!events || (events & ~(CORO_READ | CORO_WRITE))) {
        errno = EINVAL;
        return -1;
    }
    for (;;) {
        int ready = 0;
        int64_t until = CORO_NEVER;
        coro_list_t *q = &s->readers;
        if (s->kind == SK_LISTEN) {
            coro_list_t *f = coro_list_first(&s->backlog);
            simsock_t *a = f ? coro_container_of(f, simsock_t, backlog_node) : NULL;
            if (a && !a->arrive_held && a->arrive_at <= coro_now())
                ready |= CORO_READ;
            else if (a && !a->arrive_held)
                until = a->arrive_at;
            q = &s->acceptors;
        } else {
            if (s->reset || readable(s->rx_head))
                ready |= CORO_READ;
            else
                until = first_ready(s);
            if (s->kind == SK_UDP || s->reset || !s->peer || s->fin_sent ||
                s->peer->rx_bytes < SIMNET_BUF)
                ready |= CORO_WRITE;
        }
        if (ready & events)
            return ready & events;
        coro__waiter_t w, room;
        w.data = s;
        coro_list_push_back(q, &w.node);
        /* A writer's room comes from the peer's reads: wait there too. */
        coro_list_init(&room.node);
        if ((events & CORO_WRITE) && s->kind == SK_CONN && s->peer) {
            room.coro = coro__current();
            room.primary = &w;
            room.data = s;
            coro_list_push_back(&s->peer->writers, &room.node);
        }
        int r = until == CORO_NEVER ? coro__park(&w, 0, CORO_NEVER, "sim wait", s, s->fd)
                                    : coro__park(&w, 0, until, "sim wait", s, s->fd);
        /* Woken through one of the two: unlink the other. */
        coro_list_remove(&w.node);
        coro_list_remove(&room.node);
        if (r != 0 && errno != EPIPE && errno != ECONNRESET)
            return -1; /* those two: the peer went; look again (ready) */
    }
}

static int conn_close(simnet_t *n, simsock_t *s)
{
    simsock_t *p = s->peer;
    if (p) {
        /* End of file for the peer, after the data. */
        if (!s->fin_sent && !s->reset) {
            s->fin_sent = 1;
            (void)deliver(n, p, s->host, NULL, 0, 0, 0, 1);
        }
        p->peer = NULL;
        wake_owned(&p->writers, s, EBADF); /* ours, waiting for room there */
        coro__wake_all(&s->writers, EPIPE); /* the peer's, waiting for room here */
        coro__wake_all(&p->readers, 0);
        if (p->listener)
            coro__wake_all(&p->listener->acceptors, 0);
    }
    coro__wake_all(&s->readers, EBADF);
    sock_free(n, s);
    return 0;
}

static int listener_close(simnet_t *n, simsock_t *l)
{
    /* The backlog's connections are reset; a dial still under way is
     * refused. */
    while (!coro_list_empty(&l->backlog)) {
        simsock_t *a = coro_container_of(l->backlog.next, simsock_t, backlog_node);
        coro_list_remove(&a->backlog_node);
        a->listener = NULL;
        simsock_t *c = a->peer;
        if (c) {
            c->peer = NULL;
            if (c->dialing)
                c->refused = 1;
            c->reset = 1;
            free_queue(c);
            coro__wake_all(&c->readers, c->dialing ? 0 : ECONNRESET);
            coro__wake_all(&c->writers, ECONNRESET);
            wake_owned(&a->writers, c, ECONNRESET);
        }
        sock_free(n, a);
    }
    coro__wake_all(&l->acceptors, EBADF);
    sock_free(n, l);
    return 0;
}

int coro__simnet_close(simsock_t *s)
{
    simnet_t *n = coro__simnet_tls;
    if (s->kind == SK_LISTEN)
        return listener_close(n, s);
    if (s->kind == SK_CONN)
        return conn_close(n, s);
    coro__wake_all(&s->readers, EBADF);
    sock_free(n, s);
    return 0;
}

int coro__simnet_port(simsock_t *s)
{
    if (s->is_unix) {
        errno = EINVAL;
        return -1;
    }
    return s->port;
}

/* ---- partitions (public) ---------------------------------------------------------- */

static int check_hosts(const char *a)
{
    if (!coro__sim_active()) {
        errno = EPERM;
        return -1;
    }
    if (!a || !*a) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* Move a UDP socket's held datagrams to the end of its queue (in their
 * order): the queue stays ordered by visibility. */
static void udp_held_last(simsock_t *s)
{
    delivery_t *keep = NULL, **kt = &keep, *held = NULL, **ht = &held;
    for (delivery_t *d = s->rx_head, *next; d; d = next) {
        next = d->next;
        d->next = NULL;
        if (d->held) {
            *ht = d;
            ht = &d->next;
        } else {
            *kt = d;
            kt = &d->next;
        }
    }
    *kt = held;
    s->rx_head = keep;
    s->rx_tail = NULL;
    for (delivery_t *d = s->rx_head; d; d = d->next)
        s->rx_tail = d;
}

int coro_sim_partition(const char *a, const char *b)
{
    if (check_hosts(a) != 0)
        return -1;
    simnet_t *n = net_get();
    if (!n)
        return -1;
    partition_t *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    copy_str(p->a, sizeof p->a, a);
    copy_str(p->b, sizeof p->b, b);
    p->next = n->parts;
    n->parts = p;
    /* What is in flight between them now is held. */
    int64_t now = coro_now();
    for (coro_list_t *it = n->all.next; it != &n->all; it = it->next) {
        simsock_t *s = coro_container_of(it, simsock_t, all_node);
        if (s->kind == SK_LISTEN)
            continue;
        for (delivery_t *d = s->rx_head; d; d = d->next) {
            const char *from = s->kind == SK_UDP ? d->from : s->remote;
            char fh[64];
            copy_str(fh, sizeof fh, from);
            if (s->kind == SK_UDP && strrchr(fh, ':'))
                *strrchr(fh, ':') = '\0';
            if (!d->held && d->ready_at > now && parted(n, fh, s->host)) {
                d->held = 1;
                d->ready_at = CORO_NEVER;
            }
            /* Behind a held one, every later delivery waits too (order). */
            if (s->kind == SK_CONN && d->held) {
                for (delivery_t *e = d->next; e; e = e->next) {
                    e->held = 1;
                    e->ready_at = CORO_NEVER;
                }
                break;
            }
        }
        if (s->kind == SK_UDP)
            udp_held_last(s);
        if (s->kind == SK_CONN && s->listener && !s->arrive_held && s->arrive_at > now &&
            parted(n, s->host, s->remote)) {
            s->arrive_held = 1;
            s->arrive_at = CORO_NEVER;
            backlog_insert(s->listener, s);
        }
    }
    return 0;
}

int coro_sim_heal(const char *a, const char *b)
{
    if (check_hosts(a) != 0)
        return -1;
    simnet_t *n = coro__simnet_tls;
    if (!n)
        return 0;
    for (partition_t **pp = &n->parts; *pp;) {
        partition_t *p = *pp;
        int hit = !b || !*b ? (!strcmp(p->a, a) || !strcmp(p->b, a))
                            : ((!strcmp(p->a, a) && !strcmp(p->b, b)) ||
                               (!strcmp(p->a, b) && !strcmp(p->b, a)));
        if (hit) {
            *pp = p->next;
            free(p);
        } else {
            pp = &p->next;
        }
    }
    /* Let go what is no longer partitioned, in order, a fresh latency
     * from now. */
    int64_t now = coro_now();
    for (coro_list_t *it = n->all.next; it != &n->all; it = it->next) {
        simsock_t *s = coro_container_of(it, simsock_t, all_node);
        if (s->kind == SK_LISTEN)
            continue;
        int woke = 0;
        if (s->kind == SK_CONN) {
            if (!parted(n, s->remote, s->host)) {
                int64_t last = s->rx_last;
                for (delivery_t *d = s->rx_head; d; d = d->next) {
                    if (!d->held)
                        continue;
                    int64_t r = now + coro__sim_latency();
                    d->ready_at = r > last ? r : last;
                    last = d->ready_at;
                    d->held = 0;
                    woke = 1;
                }
                s->rx_last = last;
            }
            if (s->listener && s->arrive_held && !parted(n, s->host, s->remote)) {
                s->arrive_held = 0;
                s->arrive_at = now + coro__sim_latency();
                backlog_insert(s->listener, s);
                if (s->peer)
                    coro__wake_all(&s->peer->readers, 0);
            }
        } else {
            /* Datagrams: take the held ones out, give them a time, put
             * them back in order. */
            delivery_t *held = NULL, **ht = &held;
            for (delivery_t **at = &s->rx_head; *at;) {
                delivery_t *d = *at;
                char fh[64];
                copy_str(fh, sizeof fh, d->from);
                if (strrchr(fh, ':'))
                    *strrchr(fh, ':') = '\0';
                if (d->held && !parted(n, fh, s->host)) {
                    *at = d->next;
                    d->next = NULL;
                    *ht = d;
                    ht = &d->next;
                } else {
                    at = &d->next;
                }
            }
            while (held) {
                delivery_t *d = held;
                held = d->next;
                d->held = 0;
                d->ready_at = now + coro__sim_latency();
                delivery_t **at = &s->rx_head;
                while (*at && !(*at)->held && (*at)->ready_at <= d->ready_at)
                    at = &(*at)->next;
                d->next = *at;
                *at = d;
                woke = 1;
            }
            s->rx_tail = s->rx_head;
            while (s->rx_tail && s->rx_tail->next)
                s->rx_tail = s->rx_tail->next;
        }
        if (woke)
            coro__wake_all(&s->readers, 0);
    }
    return 0;
}
