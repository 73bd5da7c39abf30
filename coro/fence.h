/* coro/fence.h: asymmetric fences, for a Dekker-style handshake whose one
 * side runs all the time and the other rarely (a shared channel's push
 * or pop, which must see a waiter that has just linked itself, and that
 * waiter's last look before it sleeps: sync/chan_shared.c).
 *
 * Each side writes its word, then reads the other's; without a full fence
 * between the two on both sides, each may read the other's old value and
 * the waiter sleeps with work waiting. A full fence costs the busy side
 * about 7 ns per call on x86-64 (it waits for its store buffer to drain).
 * With membarrier(2)'s MEMBARRIER_CMD_PRIVATE_EXPEDITED the rare side
 * instead makes every running thread of the process execute a full
 * barrier, and the busy side needs only a compiler barrier: the pattern
 * the membarrier man page describes. Where membarrier is missing (other
 * systems, kernels before 4.14, Valgrind, COMPAT=fallback), both sides
 * pay the full fence.
 *
 *     busy side:  store A; coro__fence_light(); load B
 *     rare side:  store B; coro__fence_heavy(); load A
 *
 * coro__fence_setup() must have returned before any thread runs either
 * side on the shared data (call it where the data is made): a light
 * fence that skips the hardware barrier is only sound once heavy ones
 * use membarrier. */
#ifndef CORO_FENCE_H
#define CORO_FENCE_H

/* 1 once membarrier is registered for the process; never goes back. */
extern int coro__fence_asymmetric;

/* Decide once (later calls return at once). */
void coro__fence_setup(void);

static inline void coro__fence_light(void)
{
    if (__builtin_expect(__atomic_load_n(&coro__fence_asymmetric, __ATOMIC_RELAXED), 1))
        __asm__ __volatile__("" ::: "memory");
    else
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void coro__fence_heavy(void);

#endif
