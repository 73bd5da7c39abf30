/* coro/stack_release.c: freed stacks' pages go back to the system in
 * batches (the pending slots of coro/stack_int.h).
 *
 * Why batches: one madvise(MADV_DONTNEED) per freed stack costs a system
 * call and a TLB flush for a page or two; cancelling and joining 100k
 * parked coroutines cost 19-22x what the kernel needs to free the same
 * pages in one call. So a stack freed past the hot list is only marked
 * pending (one bit per slot in its slab). When CORO_STACK_POOL_BATCH
 * stacks of a size are pending, or at coro__stack_trim (the scheduler is
 * about to sleep, or coro_main ends), each slab's pending slots are read
 * in address order and each run of adjacent ones is given back with one
 * madvise, from the run's first usable byte to the end of its last stack.
 *
 * The guards between the stacks of a run lie inside that range, and stay
 * guards: madvise(2) says guard regions (MADV_GUARD_INSTALL) are not
 * removed by MADV_DONTNEED, and an mprotect guard is a PROT_NONE mapping
 * whose protection MADV_DONTNEED does not touch (it walks every mapping of
 * the range, and only fails on a hole, ENOMEM, or on locked, huge-TLB or
 * PFN mappings, EINVAL). test/test_stack.c checks that a guard inside a
 * released run still faults, with both kinds.
 *
 * Until its release a pending stack is warm memory: coro__stack_alloc takes
 * one before a cold slot, which saves its fault and its share of the
 * madvise. Its record at the top keeps its handle (Valgrind id, header
 * colour) for that. */
#include "coro/stack_int.h"
#include "coro/sanitize.h"

#include <string.h>
#include <sys/mman.h>

static unsigned pool_batch = CORO_STACK_POOL_BATCH;

unsigned coro__stack_pool_set_batch(unsigned batch)
{
    unsigned old = pool_batch;
    pool_batch = batch ? batch : 1;
    return old;
}

static void dirty_add(size_class_t *c, stack_slab_t *sl)
{
    sl->dprev = NULL;
    sl->dnext = c->dirty;
    if (c->dirty)
        c->dirty->dprev = sl;
    c->dirty = sl;
}

static void dirty_remove(size_class_t *c, stack_slab_t *sl)
{
    if (sl->dprev)
        sl->dprev->dnext = sl->dnext;
    else
        c->dirty = sl->dnext;
    if (sl->dnext)
        sl->dnext->dprev = sl->dprev;
}

static uint64_t bit(uint32_t slot)
{
    return (uint64_t)1 << (slot % 64);
}

/* The first slot at or after i that is pending (want 1) or not (want 0);
 * sl->nslots if there is none. */
static uint32_t next_slot(const stack_slab_t *sl, uint32_t i, int want)
{
    while (i < sl->nslots) {
        uint64_t w = sl->pending[i / 64];
        if (!want)
            w = ~w;
        w &= ~(uint64_t)0 << (i % 64);
        if (w) {
            uint32_t j = (i & ~63u) + (uint32_t)__builtin_ctzll(w);
            return j < sl->nslots ? j : sl->nslots;
        }
        i = (i & ~63u) + 64;
    }
    return sl->nslots;
}

void coro__stack_pend(size_class_t *c, const coro__stack_t *st)
{
    stack_slab_t *sl = st->slab;
    hot_stack_t *h = (hot_stack_t *)(void *)(st->lo + st->size - sizeof(hot_stack_t));
    h->next = NULL;
    h->st = *st;
    sl->pending[st->slot / 64] |= bit(st->slot);
    if (sl->npending++ == 0)
        dirty_add(c, sl);
    c->npending++;
    coro__stack_tls_stats.pending++;
    if (c->npending >= pool_batch)
        coro__stack_release_pending(c);
}

void coro__stack_unpend(size_class_t *c, coro__stack_t *st)
{
    stack_slab_t *sl = c->dirty;
    /* The highest pending slot of the slab pended last: in a teardown in
     * spawn order, the stack freed last, so the likeliest still cached. */
    uint32_t w = (sl->nslots - 1) / 64;
    while (!sl->pending[w])
        w--;
    uint32_t slot = w * 64 + 63 - (uint32_t)__builtin_clzll(sl->pending[w]);
    sl->pending[w] &= ~bit(slot);
    if (--sl->npending == 0)
        dirty_remove(c, sl);
    c->npending--;
    coro__stack_tls_stats.pending--;
    sl->used++;
    *st = coro__slot_record(sl, slot)->st;
}

/* Forget the stacks of slots [a, b) for Valgrind: their pages are going. */
static void deregister(const stack_slab_t *sl, uint32_t a, uint32_t b)
{
    if (!coro__stack_under_valgrind())
        return; /* spare the reads of the records */
    for (uint32_t i = a; i < b; i++)
        VALGRIND_STACK_DEREGISTER(coro__slot_record(sl, i)->st.vg_id);
}

/* Slots [a, b) are pending and adjacent: one madvise for all of them. */
static void release_run(stack_slab_t *sl, uint32_t a, uint32_t b)
{
    size_t guard = coro__stack_guard_size();
    deregister(sl, a, b);
    char *lo = coro__slot_base(sl, a) + guard;
    char *hi = coro__slot_base(sl, b);
    /* A failure (EINVAL: the memory is mlock'ed) leaves the pages
     * resident; a cold slot's contents are unspecified anyway. */
    int rc = madvise(lo, (size_t)(hi - lo), MADV_DONTNEED);
    /* Memcheck does not follow MADV_DONTNEED: the stacks now read as
     * zeroes, not as what their records' padding left undefined. Each
     * stack only: the guards between them stay inaccessible to it. */
    if (rc == 0 && coro__stack_under_valgrind())
        for (uint32_t i = a; i < b; i++)
            VALGRIND_MAKE_MEM_DEFINED(coro__slot_base(sl, i) + guard, sl->cls->size);
    for (uint32_t i = a; i < b; i++)
        sl->cold[sl->ncold++] = i;
    coro__stack_tls_stats.release_calls++;
    coro__stack_tls_stats.released += b - a;
}

void coro__stack_release_pending(size_class_t *c)
{
    if (!c->npending)
        return;
    stack_slab_t *sl;
    while ((sl = c->dirty) != NULL) {
        dirty_remove(c, sl);
        uint32_t a = 0;
        while ((a = next_slot(sl, a, 1)) < sl->nslots) {
            uint32_t b = next_slot(sl, a, 0);
            release_run(sl, a, b);
            a = b;
        }
        memset(sl->pending, 0, sizeof sl->pending);
        coro__stack_tls_stats.pending -= sl->npending;
        sl->npending = 0;
        /* A dirty slab always holds a stack in use or hot (it would have
         * been unmapped otherwise): it stays, with cold slots to offer. */
        coro__stack_partial_add(c, sl);
    }
    c->npending = 0;
    coro__stack_tls_stats.releases++;
}

void coro__stack_drop_pending(size_class_t *c, stack_slab_t *sl)
{
    if (!sl->npending)
        return;
    for (uint32_t a = 0; (a = next_slot(sl, a, 1)) < sl->nslots;) {
        uint32_t b = next_slot(sl, a, 0);
        deregister(sl, a, b);
        a = b;
    }
    dirty_remove(c, sl);
    c->npending -= sl->npending;
    coro__stack_tls_stats.pending -= sl->npending;
    sl->npending = 0;
}
