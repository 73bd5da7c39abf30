/* coro/stack_int.h: the stack allocator's own types, shared by its two
 * files: coro/stack.c (size classes, slabs, guards, the hot list) and
 * coro/stack_release.c (freed stacks waiting to be given back, released
 * in runs). Nothing outside coro/stack*.c includes it. */
#ifndef CORO_STACK_INT_H
#define CORO_STACK_INT_H

#include "coro/stack.h"

#include <stddef.h>
#include <stdint.h>

#define SLAB_MAX_SLOTS 1024u

struct size_class;

/* A slot of a slab is in one of four states:
 *   in use or hot  counted in `used` (a hot one is on the class's hot list);
 *   pending        freed past the hot list's mark, pages still committed,
 *                  waiting for the next release (a bit in `pending`);
 *   cold           free, pages returned to the system (in `cold[]`);
 *   untouched      never handed out (slots [bump, nslots)).
 * A slab whose slots are all pending, cold or untouched is unmapped. */
typedef struct stack_slab {
    struct stack_slab *next, *prev;   /* in the class's list of all slabs */
    struct stack_slab *pnext, *pprev; /* in the class's "has cold or untouched slots" list */
    struct stack_slab *dnext, *dprev; /* in the class's "has pending slots" list */
    int in_partial;
    struct size_class *cls;
    char *base;                       /* the mapping */
    size_t bytes;
    uint32_t nslots;
    uint32_t bump;                    /* slots [bump, nslots) never handed out */
    uint32_t guarded;                 /* slots [0, guarded) have their guard */
    uint32_t ncold;                   /* entries in cold[] */
    uint32_t used;                    /* slots in use or on the hot list */
    uint32_t npending;                /* bits set in pending[] */
    uint64_t pending[SLAB_MAX_SLOTS / 64];
    uint32_t cold[];                  /* free slots whose pages were returned */
} stack_slab_t;

/* The record at the top of a free stack whose pages are kept (hot or
 * pending): the next hot one, and the stack's own handle (its Valgrind id
 * and header colour), ready to hand out again. */
typedef struct hot_stack {
    struct hot_stack *next;
    coro__stack_t st;
} hot_stack_t;
_Static_assert(sizeof(hot_stack_t) <= CORO_STACK_RECORD_BYTES,
               "the record fits the bytes coro/stack.h promises to use");

typedef struct size_class {
    struct size_class *next;
    size_t size;                      /* usable bytes per stack */
    size_t slot_bytes;                /* guard + size */
    uint32_t slots_per_slab;
    hot_stack_t *hot;
    unsigned nhot;
    stack_slab_t *slabs;              /* all slabs */
    stack_slab_t *partial;            /* slabs with a cold or untouched slot */
    stack_slab_t *dirty;              /* slabs with a pending slot */
    unsigned npending;                /* pending slots in all its slabs */
} size_class_t;

/* This thread's counters (coro__stack_stats), kept by both files. */
extern __thread coro__stack_stats_t coro__stack_tls_stats;

/* Where slot i of sl starts (its guard) and its usable stack. */
static inline char *coro__slot_base(const stack_slab_t *sl, uint32_t i)
{
    return sl->base + (size_t)i * sl->cls->slot_bytes;
}
static inline hot_stack_t *coro__slot_record(const stack_slab_t *sl, uint32_t i)
{
    char *top = coro__slot_base(sl, i) + sl->cls->slot_bytes;
    return (hot_stack_t *)(void *)(top - sizeof(hot_stack_t));
}

/* coro/stack.c */
void coro__stack_partial_add(size_class_t *c, stack_slab_t *sl);
/* Unmap sl (nothing in it in use or hot), its pending slots with it. */
void coro__stack_slab_unmap(size_class_t *c, stack_slab_t *sl);
/* Is this process under Valgrind (asked once)? */
int coro__stack_under_valgrind(void);

/* coro/stack_release.c */
/* A freed stack past the hot list's mark, in a slab that keeps another
 * stack in use or hot: it waits, pages kept, for the class's next release. */
void coro__stack_pend(size_class_t *c, const coro__stack_t *st);
/* Take a pending stack of c back into use (c->dirty is not NULL). */
void coro__stack_unpend(size_class_t *c, coro__stack_t *st);
/* Give back the pages of every pending stack of c, one madvise per run
 * of adjacent slots; the slots become cold. */
void coro__stack_release_pending(size_class_t *c);
/* sl is about to be unmapped: forget its pending slots. */
void coro__stack_drop_pending(size_class_t *c, stack_slab_t *sl);

#endif /* CORO_STACK_INT_H */
