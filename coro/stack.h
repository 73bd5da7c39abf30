/* coro/stack.h: coroutine stacks: mmap'd, lazily committed, guarded,
 * pooled per thread.
 *
 * One stack, as the allocator hands it out (addresses grow upward):
 *
 *   lo - guard          lo                                    lo + size
 *   +-------------------+-------------------------------------+
 *   | guard (no access) | usable stack  ...  grows downward <- | top
 *   +-------------------+-------------------------------------+
 *
 * Stacks are carved from slabs: one mapping holds many stacks, so a
 * million stacks need a few thousand mappings, not a million. Each guard is
 * a kernel guard region (madvise MADV_GUARD_INSTALL, Linux 6.13+), kept in
 * the page tables without splitting the mapping; on older kernels it is an
 * mprotect(PROT_NONE) range, which splits the mapping in two per stack and
 * so limits a process to about vm.max_map_count / 2 live stacks (ENOMEM
 * after that). Either way a write into the guard faults, and
 * coro/overflow.c names the coroutine before the process dies. */
#ifndef CORO_STACK_H
#define CORO_STACK_H

#include <stddef.h>
#include <stdint.h>

struct stack_slab;

typedef struct coro__stack {
    /* Lowest usable byte, just above the guard. */
    char *lo;
    /* Usable bytes, a whole number of pages. */
    size_t size;
    /* Where it came from, to give it back. */
    struct stack_slab *slab;
    uint32_t slot;
    /* Valgrind's id for this stack: registered while the slot is in use or
     * warm in the pool (not per coroutine: that would cost every spawn). */
    unsigned vg_id;
    /* For coro/fiber.c: where the last fiber on this stack put its header
     * (0-7), kept while the stack waits in the pool; CORO_STACK_FRESH for
     * a stack that had none or whose pages went back to the system. */
    uint8_t colour;
} coro__stack_t;
#define CORO_STACK_FRESH 0xff

/* Bytes of guard below every stack (a whole number of pages). */
size_t coro__stack_guard_size(void);

/* The usable size for a request: 0 means the default; rounded up to
 * pages. Returns 0 (errno EINVAL) if out of [CORO_STACK_MIN, CORO_STACK_MAX]. */
size_t coro__stack_size_for(size_t requested);

/* Take a stack of `size` usable bytes (as returned by coro__stack_size_for)
 * from this thread's pool. Its contents are unspecified. Returns 0, or -1
 * with ENOMEM. */
int coro__stack_alloc(coro__stack_t *st, size_t size);

/* Give a stack back to this thread's pool. The pool keeps recently freed
 * stacks warm; past its high-water mark a stack's pages go back to the
 * system (MADV_DONTNEED) and a slab with no stacks in use is unmapped. */
void coro__stack_free(const coro__stack_t *st);

/* Unmap every pooled stack of this thread. Stacks still in use stay. */
void coro__stack_pool_release(void);

/* "guard-region" or "mprotect": how guards are made in this process. */
const char *coro__stack_guard_kind(void);

/* Pool tuning, for tests and benchmarks: how many freed stacks per size the
 * pool keeps warm (default CORO_STACK_POOL_HOT). Returns the old value. */
#define CORO_STACK_POOL_HOT 1024
unsigned coro__stack_pool_set_hot(unsigned max_hot);

#endif /* CORO_STACK_H */
