/* bench/bench_net.h: the network benchmarks' shared declarations.
 *
 * Servers run in child processes of their own (bench/bench_net.c starts
 * them); two implementations of each protocol are compared in the same run:
 *
 *   bench/bench_net_epoll.c   the baseline: a plain single-threaded epoll
 *                             loop (level-triggered, non-blocking, one read
 *                             then one write per ready connection)
 *   bench/bench_net_coro.c    the same protocols written with the coro API:
 *                             one coroutine per connection, coro_read and
 *                             coro_write
 *
 * Protocols:
 *   echo  every byte read is written back (the load sends 64-byte messages)
 *   http  HTTP/1.1 keep-alive: each "\r\n\r\n"-terminated request head gets
 *         NET_HTTP_RESPONSE; pipelined requests read together are answered
 *         with one write; request bodies are not supported (GET only). */
#ifndef CORO_BENCH_BENCH_NET_H
#define CORO_BENCH_BENCH_NET_H

#include "bench/bench.h"

#include <stddef.h>
#include <string.h>

enum net_proto { NET_ECHO, NET_HTTP };

/* Serve proto on a fresh listener on 127.0.0.1 and an ephemeral port,
 * forever: once listening, write the port (an int) to report_fd and close
 * it. Return only on failure (after printing why), with a non-zero status. */
int net_epoll_serve(enum net_proto proto, int report_fd);
int net_coro_serve(enum net_proto proto, int report_fd);

/* The response to every request, the same from both servers. */
#define NET_HTTP_RESPONSE                                                      \
    "HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/plain\r\n"         \
    "Content-Length: 13\r\n\r\nHello, World!"
#define NET_HTTP_RESPONSE_LEN (sizeof NET_HTTP_RESPONSE - 1)
/* Bytes a connection buffers for request heads: a longer head is an error
 * (the connection is closed). */
#define NET_HTTP_MAX_HEAD 4096

/* The complete request heads at the start of buf[0..len): their count in
 * *nreq, and the bytes they take (the rest is a partial head). */
static inline size_t net_http_heads(const char *buf, size_t len, int *nreq)
{
    size_t used = 0;
    int k = 0;
    for (;;) {
        const char *end = memmem(buf + used, len - used, "\r\n\r\n", 4);
        if (!end)
            break;
        used = (size_t)(end - buf) + 4;
        k++;
    }
    *nreq = k;
    return used;
}

/* ---- the benchmarks (bench/bench_net.c) ----------------------------------- */

int bench_echo1_epoll(bench_run_t *r);
int bench_echo1_coro(bench_run_t *r);
int bench_echo100_epoll(bench_run_t *r);
int bench_echo100_coro(bench_run_t *r);
int bench_echo1000_epoll(bench_run_t *r);
int bench_echo1000_coro(bench_run_t *r);
int bench_http_epoll(bench_run_t *r);
int bench_http_coro(bench_run_t *r);
int bench_idle_conns_epoll(bench_run_t *r);
int bench_idle_conns_coro(bench_run_t *r);

/* Throughput targets are on ns per operation: >= 0.95x the baseline's
 * operations per second is <= 1/0.95 its time per operation. */
#define BENCH_NET_THROUGHPUT_RATIO (1 / 0.95)

#endif /* CORO_BENCH_BENCH_NET_H */
