/* coro/spin.h: a busy-wait hint and a small spinlock, for the few places
 * where two threads of a run share a word for a moment (a shared
 * channel's ring and queues, sync/chan_shared.c; a scheduler's wait for a
 * post, sched/sched.c).
 *
 * Why not a pthread mutex: the sections these locks guard are a few dozen
 * instructions, and a contended pthread mutex sends the loser to the
 * kernel (futex) and the winner back there to wake it: on a VM that is a
 * wake-up through the hypervisor, tens of microseconds, for a wait that
 * would have lasted a hundred nanoseconds. A holder never blocks or
 * switches coroutines inside one of these sections.
 *
 * Why it still yields: the holder may be a plain thread preempted inside
 * its section (more threads than CPUs); a waiter that has spun for a
 * while calls sched_yield so that the holder can run on its CPU. */
#ifndef CORO_SPIN_H
#define CORO_SPIN_H

#include <sched.h>

static inline void coro__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Probes of a held lock between two sched_yield calls. */
#define CORO__SPIN_YIELD_EVERY 128

typedef struct coro__spin {
    int held;
} coro__spin_t;

#define CORO__SPIN_INIT { 0 }

static inline int coro__spin_trylock(coro__spin_t *l)
{
    return __atomic_exchange_n(&l->held, 1, __ATOMIC_ACQUIRE) == 0;
}

static inline void coro__spin_lock(coro__spin_t *l)
{
    /* Test and test-and-set: wait reading (the line stays shared in both
     * caches) and try the exchange only when it looks free. */
    unsigned probes = 0;
    while (!coro__spin_trylock(l)) {
        while (__atomic_load_n(&l->held, __ATOMIC_RELAXED)) {
            if (++probes % CORO__SPIN_YIELD_EVERY == 0)
                sched_yield();
            else
                coro__cpu_relax();
        }
    }
}

static inline void coro__spin_unlock(coro__spin_t *l)
{
    __atomic_store_n(&l->held, 0, __ATOMIC_RELEASE);
}

#endif
