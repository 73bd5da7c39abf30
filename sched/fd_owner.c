/* sched/fd_owner.c: which scheduler owns each descriptor number, process
 * wide (see sched/io_wait.h). The descriptor tables are per scheduler, so
 * a thread cannot see whether another has coroutines waiting on a number;
 * this table records it: the scheduler that registered the number with
 * its poller (at its first wait), until that scheduler forgets it
 * (coro_close, coro_fd_forget, a new descriptor with the number) or ends.
 *
 * Two levels indexed by fd, lock-free to read: a static array of pointers
 * to leaves of 64 Ki slots, each made on first use (calloc, published with
 * a compare-and-swap; never freed, so a reader never meets a freed leaf).
 * Descriptor numbers are ints: 2^15 leaves cover them all, and the array
 * costs address space only until a leaf exists. */
#include "sched/io_wait.h"
#include "sched/sched_int.h"

#include <errno.h>
#include <stdlib.h>

#define LEAF_SHIFT 16
#define LEAF_SLOTS (1u << LEAF_SHIFT)
#define LEAVES (1u << (31 - LEAF_SHIFT))

typedef void *owner_leaf_t[LEAF_SLOTS];

static owner_leaf_t *leaves[LEAVES];

/* fd's slot; NULL when its leaf does not exist and create is 0, or when
 * it cannot be made. */
static void **slot(int fd, int create)
{
    unsigned i = (unsigned)fd >> LEAF_SHIFT;
    owner_leaf_t *leaf = __atomic_load_n(&leaves[i], __ATOMIC_ACQUIRE);
    if (!leaf) {
        if (!create)
            return NULL;
        /* Plain calloc, not the fault-injected one: a test's n-th
         * allocation failing must not land here, where it would turn a
         * wait into a spurious error. Untouched pages cost nothing. */
        owner_leaf_t *made = calloc(1, sizeof *made);
        if (!made)
            return NULL;
        if (__atomic_compare_exchange_n(&leaves[i], &leaf, made, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            leaf = made;
        else
            free(made); /* another thread's leaf won: leaf holds it */
    }
    return &(*leaf)[(unsigned)fd & (LEAF_SLOTS - 1)];
}

int coro__fd_claim(int fd, struct sched *s)
{
    void **p = slot(fd, 1);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    void *cur = NULL;
    while (!__atomic_compare_exchange_n(p, &cur, (void *)s, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
        if (cur == (void *)s)
            return 0;
        if (coro__sched_alive(cur)) {
            errno = EPERM;
            return -1;
        }
        /* cur has ended (it releases its numbers as it ends, so only a
         * race gets here): the number is free; cur is what we replace. */
    }
    return 0;
}

void coro__fd_unclaim(int fd, struct sched *s)
{
    void **p = slot(fd, 0);
    void *expected = s;
    if (p)
        __atomic_compare_exchange_n(p, &expected, NULL, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

void coro__fd_unclaim_stale(int fd)
{
    void **p = slot(fd, 0);
    if (p)
        __atomic_store_n(p, NULL, __ATOMIC_RELEASE);
}

int coro__fd_foreign(int fd)
{
    void **p = slot(fd, 0);
    if (!p)
        return 0;
    void *owner = __atomic_load_n(p, __ATOMIC_ACQUIRE);
    /* A scheduler that has ended, or died in a fork's child, owns
     * nothing any more. */
    return owner && owner != (void *)coro__tls && coro__sched_alive(owner);
}

struct sched *coro__fd_owner(int fd)
{
    void **p = slot(fd, 0);
    return p ? __atomic_load_n(p, __ATOMIC_ACQUIRE) : NULL;
}
