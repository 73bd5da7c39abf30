/* bench/bench_net_coro.c: the network benchmarks' servers written with
 * coro: a listener coroutine accepting, and one coroutine per connection
 * doing plain blocking-style reads and writes (coro_read parks the
 * coroutine until the socket is readable; coro_write writes everything).
 * The same protocols as the epoll baseline (bench/bench_net_epoll.c), in
 * the code a coro user would write. */
#include "bench/bench_net.h"

#include "coro.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The echo's read buffer, on the connection's stack. The messages are 64
 * bytes; what matters for memory is where the read lands: an idle
 * connection costs the stack pages touched, and with this size the buffer's
 * start and the frames of coro_read below it stay in the stack's first
 * page (4 KiB or more puts them in a second one: 8 KiB per connection). */
#define ECHO_BUF 2048
/* Replies to pipelined requests are written in batches of this many. */
#define HTTP_BATCH 16

static int echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[ECHO_BUF];
    ssize_t n;
    while ((n = coro_read(fd, buf, sizeof buf)) > 0)
        if (coro_write(fd, buf, (size_t)n) != n)
            break;
    coro_close(fd);
    return 0;
}

static int http_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char head[NET_HTTP_MAX_HEAD];
    size_t have = 0;
    for (;;) {
        ssize_t n = coro_read(fd, head + have, sizeof head - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        int k;
        size_t used = net_http_heads(head, have, &k);
        if (used == 0 && have == sizeof head)
            break; /* a head too long */
        memmove(head, head + used, have - used);
        have -= used;
        if (k == 1) {
            if (coro_write(fd, NET_HTTP_RESPONSE, NET_HTTP_RESPONSE_LEN) < 0)
                break;
            continue;
        }
        char out[HTTP_BATCH * NET_HTTP_RESPONSE_LEN];
        while (k > 0) {
            int m = k < HTTP_BATCH ? k : HTTP_BATCH;
            for (int i = 0; i < m; i++)
                memcpy(out + (size_t)i * NET_HTTP_RESPONSE_LEN, NET_HTTP_RESPONSE,
                       NET_HTTP_RESPONSE_LEN);
            if (coro_write(fd, out, (size_t)m * NET_HTTP_RESPONSE_LEN) < 0)
                break;
            k -= m;
        }
        if (k > 0)
            break;
    }
    coro_close(fd);
    return 0;
}

typedef struct serve_args {
    enum net_proto proto;
    int report_fd;
} serve_args_t;

static int serve(void *arg)
{
    serve_args_t *a = arg;
    int lfd = coro_tcp_listen("127.0.0.1", "0", 0);
    int port = lfd < 0 ? -1 : coro_sock_port(lfd);
    if (port < 0) {
        perror("coro server: listen");
        return 1;
    }
    if (write(a->report_fd, &port, sizeof port) != (ssize_t)sizeof port) {
        perror("coro server: reporting the port");
        return 1;
    }
    close(a->report_fd);
    coro_fn fn = a->proto == NET_ECHO ? echo_conn : http_conn;
    for (;;) {
        int fd = coro_accept(lfd, NULL, NULL);
        if (fd < 0) {
            /* Out of descriptors or memory: coro_accept has paused. */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                continue;
            perror("coro server: accept");
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        coro_t *c = coro_spawn(fn, (void *)(intptr_t)fd);
        if (!c) {
            perror("coro server: coro_spawn");
            coro_close(fd);
            continue;
        }
        coro_detach(c);
    }
}

int net_coro_serve(enum net_proto proto, int report_fd)
{
    serve_args_t a = { proto, report_fd };
    if (coro_main(serve, &a) != 0) {
        fprintf(stderr, "coro server: coro_main failed\n");
        return 1;
    }
    return 1; /* serve never returns 0 */
}
