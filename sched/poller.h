/* sched/poller.h: the poller interface. One backend file implements it
 * (sched/poller_epoll.c on Linux; kqueue comes with the I/O work). The
 * scheduler uses it to sleep until the next timer or until a registered
 * descriptor is ready; io/ registers each descriptor once, edge-triggered,
 * for both directions, and never re-arms it per wait.
 *
 * Backend flags are translated inside the backend: callers only ever see
 * SCHED_POLL_READ and SCHED_POLL_WRITE (hang-ups and errors wake both, so
 * the retried system call reports them). */
#ifndef CORO_SCHED_POLLER_H
#define CORO_SCHED_POLLER_H

#include <stdint.h>

typedef struct sched_poller sched_poller_t;

enum { SCHED_POLL_READ = 1, SCHED_POLL_WRITE = 2 };

/* Called for each ready registration with the udata given to arm. */
typedef void (*sched_poller_ready_fn)(void *ctx, void *udata, int events);

/* A new poller; NULL with errno on failure. */
sched_poller_t *sched_poller_new(void);

/* Register fd once, edge-triggered, readable and writable, reporting udata.
 * 0 or -1 with errno (EEXIST: already registered). */
int sched_poller_arm(sched_poller_t *p, int fd, void *udata);

/* Wait up to timeout_ns (< 0: no limit; 0: just look) and report ready
 * registrations through ready(). Sub-millisecond timeouts are honoured
 * (epoll_pwait2 takes a timespec). Returns the number of events, or -1
 * with errno (EINTR is reported as 0 events). */
int sched_poller_wait(sched_poller_t *p, int64_t timeout_ns,
                      sched_poller_ready_fn ready, void *ctx);

void sched_poller_free(sched_poller_t *p);

#endif /* CORO_SCHED_POLLER_H */
