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
 * creation order and every walk goes in that order.
 *
 * Files. This one holds the network itself: the socket table and
 * descriptors, names and binding, the receive queue and delivery,
 * waiting, closing, ports. io/simnet_stream.c dials, accepts, reads and
 * writes (TCP and Unix streams); io/simnet_dgram.c sends and receives
 * datagrams (UDP); io/simnet_part.c holds coro_sim_partition and
 * coro_sim_heal; io/simnet_int.h is what they share. */
#include "io/simnet_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

void coro__simnet_sock_free(simnet_t *n, simsock_t *s)
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
        coro__simnet_sock_free(n, s);
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
simnet_t *coro__simnet_net_get(void)
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

simsock_t *coro__simnet_sock_new(simnet_t *n, int kind)
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
int coro__simnet_sock_attach_fd(simnet_t *n, simsock_t *s)
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
void coro__simnet_copy_str(char *dst, size_t cap, const char *src)
{
    size_t l = src ? strnlen(src, cap - 1) : 0;
    if (l)
        memcpy(dst, src, l);
    dst[l] = '\0';
}

/* ---- partitions ---------------------------------------------------------------- */

int coro__simnet_parted(const simnet_t *n, const char *a, const char *b)
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

int coro__simnet_readable(const delivery_t *d)
{
    return d && !d->held && d->ready_at <= coro_now();
}

/* When the first delivery becomes visible (CORO_NEVER: none, or held). */
int64_t coro__simnet_first_ready(const simsock_t *s)
{
    const delivery_t *d = s->rx_head;
    return d && !d->held ? d->ready_at : CORO_NEVER;
}

/* Queue len bytes (or an end of file) for s, from host `from_host`. */
int coro__simnet_deliver(simnet_t *n, simsock_t *s, const char *from_host,
                         const struct iovec *iov, int cnt, size_t skip, size_t len, int fin)
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
    if (coro__simnet_parted(n, from_host, s->host) || (s->rx_tail && s->rx_tail->held)) {
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
void coro__simnet_conn_reset(simsock_t *s)
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
int coro__simnet_parse_port(const char *port)
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
simsock_t *coro__simnet_find_bound(simnet_t *n, int kind, int is_unix, const char *host, int port)
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
    simnet_t *n = coro__simnet_net_get();
    if (!n)
        return -1;
    int p = 0;
    if (!is_unix) {
        if ((p = coro__simnet_parse_port(port)) < 0)
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
    simsock_t *s = coro__simnet_sock_new(n, kind);
    if (!s)
        return -1;
    s->is_unix = is_unix;
    s->port = p;
    s->any_host = !is_unix && !*h;
    coro__simnet_copy_str(s->host, sizeof s->host, *h ? h : "localhost");
    if (is_unix)
        coro__simnet_copy_str(s->name, sizeof s->name, port);
    else
        snprintf(s->name, sizeof s->name, "%s:%d", h, p);
    if (coro__simnet_sock_attach_fd(n, s) != 0) {
        int e = errno;
        coro__simnet_sock_free(n, s);
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

/* Put c (a listener's end of a connection) in l's backlog, ordered by
 * arrival (held ones last). */
void coro__simnet_backlog_insert(simsock_t *l, simsock_t *c)
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

/* ---- waiting, closing, ports ------------------------------------------------------- */

/* Park on s's readers until `until` (CORO_NEVER: a wake). 0 or -1. */
int coro__simnet_park_until(simsock_t *s, coro_list_t *q, int64_t until, const char *what)
{
    coro__waiter_t w;
    w.data = s;
    coro_list_push_back(q, &w.node);
    if (until == CORO_NEVER)
        return coro__park(&w, 0, CORO_NEVER, what, s, s->fd);
    return coro__park(&w, 0, until, what, s, s->fd);
}

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
            if (s->reset || coro__simnet_readable(s->rx_head))
                ready |= CORO_READ;
            else
                until = coro__simnet_first_ready(s);
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

int coro__simnet_conn_close(simnet_t *n, simsock_t *s)
{
    simsock_t *p = s->peer;
    if (p) {
        /* End of file for the peer, after the data. */
        if (!s->fin_sent && !s->reset) {
            s->fin_sent = 1;
            (void)coro__simnet_deliver(n, p, s->host, NULL, 0, 0, 0, 1);
        }
        p->peer = NULL;
        wake_owned(&p->writers, s, EBADF); /* ours, waiting for room there */
        coro__wake_all(&s->writers, EPIPE); /* the peer's, waiting for room here */
        coro__wake_all(&p->readers, 0);
        if (p->listener)
            coro__wake_all(&p->listener->acceptors, 0);
    }
    coro__wake_all(&s->readers, EBADF);
    coro__simnet_sock_free(n, s);
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
        coro__simnet_sock_free(n, a);
    }
    coro__wake_all(&l->acceptors, EBADF);
    coro__simnet_sock_free(n, l);
    return 0;
}

int coro__simnet_close(simsock_t *s)
{
    simnet_t *n = coro__simnet_tls;
    if (s->kind == SK_LISTEN)
        return listener_close(n, s);
    if (s->kind == SK_CONN)
        return coro__simnet_conn_close(n, s);
    coro__wake_all(&s->readers, EBADF);
    coro__simnet_sock_free(n, s);
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
