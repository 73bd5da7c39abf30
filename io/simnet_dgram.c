/* io/simnet_dgram.c: the simulated network's datagrams (UDP): sending to
 * and receiving from a "host:port" named by a sockaddr. Binding, the
 * receive queue and closing are io/simnet.c's; the model is described
 * there. */
#include "io/simnet_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    simsock_t *r = coro__simnet_find_bound(n, SK_UDP, 0, host, port);
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
    if (coro__simnet_parted(n, s->host, r->host)) {
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
    coro__simnet_copy_str(host, sizeof host, from);
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
        if (coro__simnet_readable(d)) {
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
        if (coro__simnet_park_until(s, &s->readers, coro__simnet_first_ready(s), "sim recv") != 0)
            return -1;
    }
}
