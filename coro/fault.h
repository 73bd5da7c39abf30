/* coro/fault.h: fault injection for tests. Each allocation or system call
 * that can fail in the library asks coro__fault() first; a test arms a
 * point with coro__fault_arm(point, n) and the n-th call from then on fails
 * as the real call would (ENOMEM). Disarmed, it is one predictable load. */
#ifndef CORO_FAULT_H
#define CORO_FAULT_H

#include <stddef.h>

enum coro__fault_point {
    CORO_FAULT_MALLOC, /* coro__malloc / coro__calloc / coro__realloc */
    CORO_FAULT_MMAP,   /* mapping a slab of stacks */
    CORO_FAULT_GUARD,  /* installing a stack's guard */
    CORO_FAULT_NPOINTS
};

/* Calls left until the armed failure, per point; 0 = disarmed. */
extern int coro__fault_countdown[CORO_FAULT_NPOINTS];
int coro__fault_fire(enum coro__fault_point p);

/* The n-th call (1 = the next one) at point p fails; n = 0 disarms. */
void coro__fault_arm(enum coro__fault_point p, int n);

/* 1 if this call at point p must fail. */
static inline int coro__fault(enum coro__fault_point p)
{
    if (__builtin_expect(coro__fault_countdown[p] != 0, 0))
        return coro__fault_fire(p);
    return 0;
}

/* The library's allocator: malloc and friends behind fault injection. They
 * set errno to ENOMEM on failure. */
void *coro__malloc(size_t n);
void *coro__calloc(size_t count, size_t n);
void *coro__realloc(void *p, size_t n);
char *coro__strdup(const char *s);

#endif /* CORO_FAULT_H */
