/* sched/home.c: the thread boundary and identity.
 *
 * Which scheduler an object belongs to (its "home", see sched/wait.h):
 * every scheduler is on the process-wide list of live ones from
 * coro_main's start to its end (sched/fork.c), so a check that meets
 * another scheduler's object can tell whether that scheduler still runs (then the object is not the caller's: EPERM)
 * or has ended (then nothing of it waits on the object any more, and the
 * caller may take the object over). Only mismatches come here; the common
 * case is one compare, inline.
 *
 * Coroutine ids are process-wide and never reused: a process-wide counter
 * hands out blocks of ids to each thread, so a spawn takes an id from its
 * thread's block without touching shared memory. */
#include "sched/sched_int.h"

#include <errno.h>
#include <pthread.h>

int coro__home_slow(void **home, coro__sched_t *s)
{
    void *h = __atomic_load_n(home, __ATOMIC_ACQUIRE);
    for (;;) {
        if (h == (void *)s)
            return 0;
        if (!h) {
            /* Unbound: a plain thread may use it as plain memory; the
             * first scheduler to use it binds it. */
            if (!s || __atomic_compare_exchange_n(home, &h, (void *)s, 0, __ATOMIC_ACQ_REL,
                                                  __ATOMIC_ACQUIRE))
                return 0;
            continue; /* another thread bound it meanwhile: h is the new value */
        }
        if (coro__sched_alive(h)) {
            errno = EPERM;
            return -1;
        }
        /* Its scheduler has ended (coro_main returns only once every
         * coroutine has ended, so none of them waits here): take it over,
         * or unbind it for a plain thread. */
        if (__atomic_compare_exchange_n(home, &h, (void *)s, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return 1;
    }
}

/* ---- ids ------------------------------------------------------------------ */

#define ID_BLOCK 1024

static uint64_t id_blocks; /* ids handed out to threads so far */
/* The calling thread's block: [coro__id_next, coro__id_end), taken by
 * coro__new_id inline (sched/sched_int.h). */
__thread uint64_t coro__id_next __attribute__((tls_model("initial-exec")));
__thread uint64_t coro__id_end __attribute__((tls_model("initial-exec")));

/* The thread's block is used up (or it never had one): the next id of a
 * new block. */
uint64_t coro__new_id_block(void)
{
    uint64_t first = __atomic_fetch_add(&id_blocks, ID_BLOCK, __ATOMIC_RELAXED) + 1;
    coro__id_next = first + 1;
    coro__id_end = first + ID_BLOCK;
    return first;
}
