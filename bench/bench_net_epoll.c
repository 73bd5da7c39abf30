/* bench/bench_net_epoll.c: the baseline servers of the network benchmarks:
 * what a careful C programmer writes without a runtime. One thread, one
 * level-triggered epoll set, non-blocking sockets; a ready connection gets
 * one read and one write (the reply), so a round trip costs the two
 * system calls plus its share of an epoll_wait. Output that does not fit
 * in the socket is kept and the connection waits for EPOLLOUT instead (it
 * reads nothing meanwhile). Per connection the server keeps one slot of a
 * table indexed by descriptor (and, for HTTP, a head buffer only while a
 * request head arrives in pieces). */
#include "bench/bench_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
/* One read's worth: an echo reads up to this much at once. */
#define READ_BUF 65536

typedef struct conn {
    char *out;              /* output the socket did not take, or NULL */
    size_t out_off, out_len;
    char *head;             /* http: a partial request head, or NULL */
    size_t head_len;
} conn_t;

typedef struct server {
    enum net_proto proto;
    int ep, lfd;
    conn_t *conns;          /* indexed by descriptor */
    size_t nconns;
    char rbuf[READ_BUF];
    /* http: the replies to one read's requests (a head is >= 4 bytes). */
    char obuf[(NET_HTTP_MAX_HEAD / 4 + 1) * NET_HTTP_RESPONSE_LEN];
} server_t;

static int fail(const char *what)
{
    fprintf(stderr, "epoll server: %s: %s\n", what, strerror(errno));
    return 1;
}

/* A listener on 127.0.0.1, an ephemeral port; its port in *port. */
static int listen_local(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static conn_t *conn_of(server_t *s, int fd)
{
    if ((size_t)fd >= s->nconns) {
        size_t n = s->nconns ? s->nconns : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        conn_t *c = realloc(s->conns, n * sizeof *c);
        if (!c)
            return NULL;
        memset(c + s->nconns, 0, (n - s->nconns) * sizeof *c);
        s->conns = c;
        s->nconns = n;
    }
    return &s->conns[fd];
}

static void conn_close(server_t *s, int fd)
{
    conn_t *c = &s->conns[fd];
    free(c->out);
    free(c->head);
    memset(c, 0, sizeof *c);
    close(fd); /* also leaves the epoll set: the descriptor is not shared */
}

static void accept_all(server_t *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                fail("accept4"); /* EMFILE...: the backlog keeps it */
            return;
        }
        int one = 1;
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
        if (!conn_of(s, fd) || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
            epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            fail("new connection");
            close(fd);
        }
    }
}

/* Write buf[0..n) to fd; keep what the socket does not take and wait for
 * EPOLLOUT. 0, or -1 when the connection is broken. */
static int reply(server_t *s, int fd, const char *buf, size_t n)
{
    ssize_t w;
    while ((w = write(fd, buf, n)) < 0 && errno == EINTR)
        ;
    if (w == (ssize_t)n)
        return 0;
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        w = 0;
    }
    conn_t *c = &s->conns[fd];
    c->out_len = n - (size_t)w;
    c->out_off = 0;
    c->out = malloc(c->out_len);
    if (!c->out)
        return -1;
    memcpy(c->out, buf + w, c->out_len);
    struct epoll_event ev = { .events = EPOLLOUT, .data.fd = fd };
    return epoll_ctl(s->ep, EPOLL_CTL_MOD, fd, &ev);
}

/* EPOLLOUT: write what is pending; back to reading once it is all out. */
static int flush_pending(server_t *s, int fd)
{
    conn_t *c = &s->conns[fd];
    while (c->out_off < c->out_len) {
        ssize_t w = write(fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        c->out_off += (size_t)w;
    }
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = 0;
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
    return epoll_ctl(s->ep, EPOLL_CTL_MOD, fd, &ev);
}

/* One read; -1 when the connection is over (end of file or error), 0 when
 * there was nothing to read, else the bytes read. */
static ssize_t read_some(int fd, char *buf, size_t n)
{
    ssize_t r;
    while ((r = read(fd, buf, n)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    return r == 0 ? -1 : r;
}

static int on_echo(server_t *s, int fd)
{
    ssize_t n = read_some(fd, s->rbuf, sizeof s->rbuf);
    if (n <= 0)
        return (int)n;
    return reply(s, fd, s->rbuf, (size_t)n);
}

static int on_http(server_t *s, int fd)
{
    conn_t *c = &s->conns[fd];
    size_t have = c->head_len;
    if (have)
        memcpy(s->rbuf, c->head, have);
    ssize_t n = read_some(fd, s->rbuf + have, NET_HTTP_MAX_HEAD - have);
    if (n <= 0)
        return (int)n;
    have += (size_t)n;
    int k;
    size_t used = net_http_heads(s->rbuf, have, &k);
    size_t rest = have - used;
    if (rest == NET_HTTP_MAX_HEAD)
        return -1; /* a head too long */
    if (rest) {
        if (!c->head && !(c->head = malloc(NET_HTTP_MAX_HEAD)))
            return -1;
        memmove(c->head, s->rbuf + used, rest);
    }
    c->head_len = rest;
    if (k == 0)
        return 0;
    if (k == 1)
        return reply(s, fd, NET_HTTP_RESPONSE, NET_HTTP_RESPONSE_LEN);
    for (int i = 0; i < k; i++)
        memcpy(s->obuf + (size_t)i * NET_HTTP_RESPONSE_LEN, NET_HTTP_RESPONSE,
               NET_HTTP_RESPONSE_LEN);
    return reply(s, fd, s->obuf, (size_t)k * NET_HTTP_RESPONSE_LEN);
}

int net_epoll_serve(enum net_proto proto, int report_fd)
{
    server_t *s = calloc(1, sizeof *s);
    if (!s)
        return fail("calloc");
    s->proto = proto;
    int port;
    s->lfd = listen_local(&port);
    if (s->lfd < 0)
        return fail("listen");
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = s->lfd };
    if (s->ep < 0 || epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev) != 0)
        return fail("epoll");
    if (write(report_fd, &port, sizeof port) != (ssize_t)sizeof port)
        return fail("reporting the port");
    close(report_fd);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(s->ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == s->lfd) {
                accept_all(s);
                continue;
            }
            int rc;
            if (s->conns[fd].out)
                rc = flush_pending(s, fd);
            else
                rc = proto == NET_ECHO ? on_echo(s, fd) : on_http(s, fd);
            if (rc < 0)
                conn_close(s, fd);
        }
    }
}
