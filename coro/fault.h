/* coro/fault.h: fault injection for tests. Each allocation or system call
 * that can fail in the library asks coro_fault() first; a test arms a
 * point with coro_fault_arm(point, n) and the n-th call from then on fails
 * as the real call would (ENOMEM). Disarmed, it is one predictable load. */
#ifndef CORO_FAULT_H
#define CORO_FAULT_H

#include <stddef.h>

enum coro_fault_point {
    CORO_FAULT_MALLOC, /* coro_malloc / coro_calloc / coro_realloc */
    CORO_FAULT_MMAP,   /* mapping a slab of stacks */
    CORO_FAULT_GUARD,  /* installing a stack's guard */
    CORO_FAULT_NPOINTS
};

/* Calls left until the armed failure, per point; 0 = disarmed. */
extern int coro_fault_countdown[CORO_FAULT_NPOINTS];
int coro_fault_fire(enum coro_fault_point p);

/* The n-th call (1 = the next one) at point p fails; n = 0 disarms. */
void coro_fault_arm(enum coro_fault_point p, int n);

/* 1 if this call at point p must fail. */
static inline int coro_fault(enum coro_fault_point p)
{
    if (__builtin_expect(coro_fault_countdown[p] != 0, 0))
        return coro_fault_fire(p);
    return 0;
}

/* The library's allocator: malloc and friends behind fault injection. They
 * set errno to ENOMEM on failure. */
void *coro_malloc(size_t n);
void *coro_calloc(size_t count, size_t n);
void *coro_realloc(void *p, size_t n);
char *coro_strdup(const char *s);

#endif /* CORO_FAULT_H */
