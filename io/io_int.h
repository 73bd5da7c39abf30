/* io/io_int.h: what the files of io/ share: the entry checks every call
 * makes, and the per-thread state of the I/O floor. */
#ifndef CORO_IO_IO_INT_H
#define CORO_IO_IO_INT_H

#include "io/io.h"
#include "sched/io_wait.h"
#include "sched/sched.h"

#include <errno.h>

/* The checks at the top of every I/O call on fd: a checkpoint (ECANCELED,
 * ETIMEDOUT, EPERM outside a coroutine), then the descriptor made
 * non-blocking the first time it is seen. Returns its SCHED_FD_* flags, or
 * -1 with errno (EBADF for a descriptor that is not open). */
int coro__io_enter(int fd);

/* A socket just made by this floor (accept, socket): non-blocking,
 * close-on-exec; stream says SOCK_STREAM. Resets whatever the table knew
 * of its number. */
void coro__io_new_socket(int fd, int stream);

/* Park until a descriptor is released through coro_close or `ns` pass
 * (the EMFILE back-off of accept). Returns 0, or -1 with errno when
 * cancelled or past the deadline. */
int coro__io_wait_release(int64_t ns);

/* Is e one of the errno values that mean "try again once ready"? */
static inline int coro__io_again(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK;
}

#endif /* CORO_IO_IO_INT_H */
