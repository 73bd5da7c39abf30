/* io/simnet.h: the simulated network (io/simnet.c), io/'s private half.
 *
 * Inside a deterministic simulation (coro_main_opts with a sim) the socket
 * calls of io/io.h work on an in-memory network instead of the kernel's;
 * see io/simnet.c for the model. Each public call first asks
 * coro__simnet_sock(fd): NULL (one thread-local load, outside a
 * simulation always) means a real descriptor, the usual path. */
#ifndef CORO_IO_SIMNET_H
#define CORO_IO_SIMNET_H

#include "io/io.h"

#include <stddef.h>
#include <stdint.h>

struct coro__simnet;
struct coro__simsock;

/* The calling thread's simulated network: non-NULL only while a
 * simulation that has used it runs on this thread. */
extern __thread struct coro__simnet *coro__simnet_tls __attribute__((tls_model("initial-exec")));

struct coro__simsock *coro__simnet_lookup(struct coro__simnet *n, int fd);

/* The simulated socket behind fd, or NULL for a real descriptor. */
static inline struct coro__simsock *coro__simnet_sock(int fd)
{
    struct coro__simnet *n = coro__simnet_tls;
    if (__builtin_expect(n == NULL, 1))
        return NULL;
    return coro__simnet_lookup(n, fd);
}

/* Does this call go to the simulated network (a simulation runs)? */
int coro__simnet_on(void);

/* The simulated calls, with the contracts of their io/io.h namesakes.
 * recv flags: MSG_PEEK and MSG_DONTWAIT are honoured, others ignored. */
int coro__simnet_listen(const char *host, const char *port, int is_unix);
int coro__simnet_dial(const char *host, const char *port, int is_unix);
int coro__simnet_udp_bind(const char *host, const char *port);
int coro__simnet_accept(struct coro__simsock *s, struct sockaddr *sa, socklen_t *len);
ssize_t coro__simnet_readv(struct coro__simsock *s, const struct iovec *iov, int cnt, int flags);
ssize_t coro__simnet_writev(struct coro__simsock *s, const struct iovec *iov, int cnt);
ssize_t coro__simnet_recvfrom(struct coro__simsock *s, void *buf, size_t n, int flags,
                              struct sockaddr *from, socklen_t *fromlen);
ssize_t coro__simnet_sendto(struct coro__simsock *s, const void *buf, size_t n,
                            const struct sockaddr *to, socklen_t tolen);
int coro__simnet_wait(struct coro__simsock *s, int events);
int coro__simnet_close(struct coro__simsock *s);
int coro__simnet_port(struct coro__simsock *s);

#endif /* CORO_IO_SIMNET_H */
