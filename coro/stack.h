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
 * coro/overflow.c names the coroutine before the process dies.
 *
 * Freed stacks stay in this thread's pool: up to CORO_STACK_POOL_HOT per
 * size warm on a hot list; past it, "pending" until a release gives back
 * the pages of every pending stack of the size at once, one
 * madvise(MADV_DONTNEED) per run of adjacent slots (the guards between
 * them survive it). See coro__stack_free and coro/stack_release.c. */
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
/* How many stacks of `size` usable bytes one slab holds (each slab is one
 * mapping; a slab left with nothing in use is unmapped whole). */
uint32_t coro__stack_slab_slots(size_t size);

/* The top bytes of a stack the pool writes its record into while the
 * stack is free (its handle and a link). A handle given to coro__stack_free
 * may live in the stack it describes, anywhere below them; the handle
 * coro__stack_take returns lives there, and may be copied anywhere below
 * them. */
#define CORO_STACK_RECORD_BYTES 64

/* Take a stack of `size` usable bytes (as returned by coro__stack_size_for)
 * from this thread's pool. Its contents are unspecified. Returns its
 * handle, valid until the next call into the allocator (copy it; it may
 * lie in the stack's own top CORO_STACK_RECORD_BYTES), or NULL with
 * ENOMEM. One copy of the handle on a spawn's path, not two. */
const coro__stack_t *coro__stack_take(size_t size);

/* coro__stack_take into *st: 0, or -1 with ENOMEM. */
int coro__stack_alloc(coro__stack_t *st, size_t size);

/* Give a stack back to this thread's pool, without a system call unless a
 * slab empties or a batch fills. The pool keeps recently freed stacks warm
 * on a hot list; past its high-water mark a freed stack is "pending": its
 * pages are kept until the next release, which gives back the pages of all
 * pending stacks of its size at once, one madvise(MADV_DONTNEED) per run
 * of adjacent slots (guards included: they survive it). A release happens
 * when CORO_STACK_POOL_BATCH stacks of a size are pending, or at
 * coro__stack_trim. A slab left with nothing in use or hot is unmapped at
 * once, pending stacks and all (one munmap, no madvise). */
void coro__stack_free(const coro__stack_t *st);

/* Release every pending stack of this thread now. Cheap when none is
 * pending: the scheduler calls it each time it is about to block in its
 * poller, so a batch never holds memory while the thread is idle. */
void coro__stack_trim(void);

/* Unmap every pooled (hot or pending) stack of this thread. Stacks still
 * in use stay. */
void coro__stack_pool_release(void);

/* "guard-region" or "mprotect": how guards are made in this process. */
const char *coro__stack_guard_kind(void);

/* Guard regions are installed for the untouched slots up to the next
 * multiple of this at once, in one system call, where the kernel takes
 * them so (process_madvise); elsewhere (and under Valgrind, and for
 * mprotect guards) one slot at a time. */
#define CORO_STACK_GUARD_BATCH 32u

/* Pool tuning, for tests and benchmarks: how many freed stacks per size the
 * pool keeps warm (default CORO_STACK_POOL_HOT). Returns the old value. */
#define CORO_STACK_POOL_HOT 1024
unsigned coro__stack_pool_set_hot(unsigned max_hot);
/* How many pending stacks of one size trigger a release (default
 * CORO_STACK_POOL_BATCH; 1 releases every stack as it is freed). Returns
 * the old value. Past the hot list, a size class holds at most this many
 * freed stacks' pages; a default slab has 227 slots, so a teardown in
 * spawn order empties and unmaps whole slabs before a batch fills. */
#define CORO_STACK_POOL_BATCH 256
unsigned coro__stack_pool_set_batch(unsigned batch);

/* This thread's pool, for tests and benchmarks. */
typedef struct coro__stack_stats {
    uint64_t hot;             /* stacks on the hot lists now */
    uint64_t pending;         /* stacks waiting for release now */
    uint64_t slabs;           /* slabs mapped now */
    uint64_t releases;        /* releases of pending stacks (a batch, or a trim with some) */
    uint64_t release_calls;   /* madvise calls they made: one per run of adjacent slots */
    uint64_t released;        /* stacks whose pages they gave back */
    uint64_t slabs_unmapped;  /* slabs unmapped, each with one munmap */
} coro__stack_stats_t;
void coro__stack_stats(coro__stack_stats_t *out);

#endif /* CORO_STACK_H */
