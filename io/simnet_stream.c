/* io/simnet_stream.c: the simulated network's streams (TCP and Unix):
 * dialing, accepting, reading and writing a connection's bytes. The model
 * (latency, order, backpressure, faults) is described in io/simnet.c; the
 * sockets, the receive queue and closing are there too. */
#include "io/simnet_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* ---- dialing ------------------------------------------------------------------- */

int coro__simnet_dial(const char *host, const char *port, int is_unix)
{
    if (coro__checkpoint() != 0)
        return -1;
    simnet_t *n = coro__simnet_net_get();
    if (!n)
        return -1;
    int p = 0;
    const char *h;
    if (is_unix) {
        h = port;
    } else {
        if ((p = coro__simnet_parse_port(port)) < 0)
            return -1;
        h = host && *host ? host : "localhost";
    }
    simsock_t *l = coro__simnet_find_bound(n, SK_LISTEN, is_unix, h, p);
    simsock_t *c = coro__simnet_sock_new(n, SK_CONN);
    if (!c)
        return -1;
    c->is_unix = is_unix;
    c->dialing = 1;
    coro__simnet_copy_str(c->host, sizeof c->host, is_unix ? "unix" : "client");
    coro__simnet_copy_str(c->remote, sizeof c->remote, is_unix ? "unix" : h);
    int64_t lat = coro__sim_latency();
    if (!l || coro__sim_fault()) {
        /* Refused, one latency later (the reset's way back). */
        int r = coro__simnet_park_until(c, &c->readers, coro_now() + lat, "sim dial");
        int e = r == 0 ? ECONNREFUSED : errno;
        coro__simnet_sock_free(n, c);
        errno = e;
        return -1;
    }
    simsock_t *a = coro__simnet_sock_new(n, SK_CONN);
    if (!a) {
        coro__simnet_sock_free(n, c);
        return -1;
    }
    a->is_unix = is_unix;
    coro__simnet_copy_str(a->host, sizeof a->host, c->remote);
    coro__simnet_copy_str(a->remote, sizeof a->remote, c->host);
    a->port = l->port;
    c->port = is_unix ? 0 : n->next_port++;
    if (n->next_port > 65535)
        n->next_port = SIMNET_FIRST_PORT;
    a->peer = c;
    c->peer = a;
    if (coro__simnet_parted(n, c->host, a->host)) {
        a->arrive_held = 1;
        a->arrive_at = CORO_NEVER;
    } else {
        a->arrive_at = coro_now() + lat;
    }
    coro__simnet_backlog_insert(l, a);
    for (;;) {
        if (c->refused || c->reset) {
            coro__simnet_sock_free(n, c);
            errno = ECONNREFUSED;
            return -1;
        }
        if (!a->arrive_held && a->arrive_at <= coro_now())
            break;
        if (coro__simnet_park_until(c, &c->readers,
                                    a->arrive_held ? CORO_NEVER : a->arrive_at,
                                    "sim dial") != 0) {
            /* Cancelled or past the deadline: give up the connection (the
             * listener's side reads end of file, as after a close). */
            int e = errno;
            coro__simnet_conn_close(n, c);
            errno = e;
            return -1;
        }
    }
    c->dialing = 0;
    if (coro__simnet_sock_attach_fd(n, c) != 0) {
        int e = errno;
        coro__simnet_conn_close(n, c);
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
            coro__simnet_sock_free(n, a);
            continue;
        }
        if (a && !a->arrive_held && a->arrive_at <= coro_now()) {
            if (!drawn) {
                drawn = 1;
                if (coro__sim_fault()) {
                    /* Out of descriptors: the real accept's back-off, then
                     * EMFILE; the connection stays queued. */
                    if (coro__simnet_park_until(l, &l->acceptors,
                                                coro_now() + SIMNET_ACCEPT_BACKOFF,
                                                "sim accept") != 0)
                        return -1;
                    errno = EMFILE;
                    return -1;
                }
            }
            if (coro__simnet_sock_attach_fd(n, a) != 0)
                return -1;
            coro_list_remove(&a->backlog_node);
            a->listener = NULL;
            fill_addr(a->peer ? a->peer : a, sa, len);
            return a->fd;
        }
        int64_t until = a && !a->arrive_held ? a->arrive_at : CORO_NEVER;
        if (coro__simnet_park_until(l, &l->acceptors, until, "sim accept") != 0)
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
        if (coro__simnet_readable(d)) {
            if (d->fin)
                return 0;
            if (want == 0)
                return 0;
            if (!drawn) {
                drawn = 1;
                if (coro__sim_fault()) {
                    if (coro__sim_below(2) == 0) {
                        coro__simnet_conn_reset(s);
                        errno = ECONNRESET;
                        return -1;
                    }
                    short_read = 1;
                }
            }
            /* What is readable now, up to want. */
            size_t avail = 0;
            for (delivery_t *e = d; coro__simnet_readable(e) && !e->fin && avail < want;
                 e = e->next)
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
        if (coro__simnet_park_until(s, &s->readers, coro__simnet_first_ready(s), "sim read") != 0)
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
            coro__simnet_conn_reset(s);
            errno = ECONNRESET;
            return done ? (ssize_t)done : -1;
        }
        size_t room = SIMNET_BUF - (p->rx_bytes < SIMNET_BUF ? p->rx_bytes : SIMNET_BUF);
        if (room == 0) {
            if (coro__simnet_park_until(s, &p->writers, CORO_NEVER, "sim write") != 0)
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
        if (coro__simnet_deliver(n, p, s->host, iov, cnt, done, chunk, 0) != 0)
            return done ? (ssize_t)done : -1;
        done += chunk;
    }
    return (ssize_t)total;
}
