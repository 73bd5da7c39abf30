/* io/simnet_int.h: what the files of the simulated network share (io/simnet.c,
 * io/simnet_stream.c, io/simnet_dgram.c, io/simnet_part.c): its sockets,
 * deliveries and partitions, and the helpers of io/simnet.c the others
 * call. Private to those files: the rest of io/ uses io/simnet.h. */
#ifndef CORO_IO_SIMNET_INT_H
#define CORO_IO_SIMNET_INT_H

#include "io/simnet.h"
#include "io/io_int.h"

#include <stddef.h>
#include <stdint.h>

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

/* The network (io/simnet.c). */

/* The calling thread's network, made on first use. NULL with errno. */
simnet_t *coro__simnet_net_get(void);
/* A socket of that kind, in the network's list, with no descriptor yet. */
simsock_t *coro__simnet_sock_new(simnet_t *n, int kind);
/* Give s a descriptor number (a placeholder). 0 or -1 (EMFILE, ...). */
int coro__simnet_sock_attach_fd(simnet_t *n, simsock_t *s);
/* Free s: its queue, its place in the lists, its descriptor. */
void coro__simnet_sock_free(simnet_t *n, simsock_t *s);
/* Copy src (NULL: "") into dst of cap bytes, cut to fit. */
void coro__simnet_copy_str(char *dst, size_t cap, const char *src);
/* Are hosts a and b partitioned from each other? */
int coro__simnet_parted(const simnet_t *n, const char *a, const char *b);

/* The receive queue (io/simnet.c). */

/* Is d (NULL: none) visible now? */
int coro__simnet_readable(const delivery_t *d);
/* When the first delivery becomes visible (CORO_NEVER: none, or held). */
int64_t coro__simnet_first_ready(const simsock_t *s);
/* Queue len bytes (or an end of file) for s, from host `from_host`. */
int coro__simnet_deliver(simnet_t *n, simsock_t *s, const char *from_host,
                         const struct iovec *iov, int cnt, size_t skip, size_t len, int fin);
/* Reset s's connection, both ends. */
void coro__simnet_conn_reset(simsock_t *s);

/* Names, listeners, waiting, closing (io/simnet.c). */

/* Split a port string: 0..65535 as a number, or -1 (EINVAL). */
int coro__simnet_parse_port(const char *port);
/* The listener or UDP socket bound to host:port (exact host first, then
 * one on every host). */
simsock_t *coro__simnet_find_bound(simnet_t *n, int kind, int is_unix, const char *host, int port);
/* Put c (a listener's end of a connection) in l's backlog, ordered by
 * arrival (held ones last). */
void coro__simnet_backlog_insert(simsock_t *l, simsock_t *c);
/* Park on s's readers until `until` (CORO_NEVER: a wake). 0 or -1. */
int coro__simnet_park_until(simsock_t *s, coro_list_t *q, int64_t until, const char *what);
/* Close a connection's end s: end of file for its peer, then free it. */
int coro__simnet_conn_close(simnet_t *n, simsock_t *s);

#endif /* CORO_IO_SIMNET_INT_H */
