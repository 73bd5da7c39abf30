/* coro/fence.c: the heavy side of coro/fence.h, and its setup. */
#include "coro/fence.h"
#include "coro/compat.h"
#include "coro/sanitize.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#if CORO_HAVE_MEMBARRIER
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

static int membarrier(int cmd)
{
    return (int)syscall(SYS_membarrier, cmd, 0, 0);
}
#endif

int coro__fence_asymmetric;

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static void setup(void)
{
#if CORO_HAVE_MEMBARRIER
    /* Valgrind does not know the call (and runs one thread at a time). */
    if (RUNNING_ON_VALGRIND)
        return;
    int cmds = membarrier(MEMBARRIER_CMD_QUERY);
    if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) ||
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0)
        return;
    __atomic_store_n(&coro__fence_asymmetric, 1, __ATOMIC_SEQ_CST);
#endif
}

void coro__fence_setup(void)
{
    pthread_once(&setup_once, setup);
}

void coro__fence_heavy(void)
{
#if CORO_HAVE_MEMBARRIER
    if (__atomic_load_n(&coro__fence_asymmetric, __ATOMIC_RELAXED)) {
        if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
            return;
        /* A forked child may have to register again (the registration
         * belongs to the address space the fork copied). */
        if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
            membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
            return;
        /* The light sides skip their barrier from now on: nothing else
         * is sound. */
        fprintf(stderr, "coro: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after "
                        "it had worked\n");
        abort();
    }
#endif
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
