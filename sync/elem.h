/* sync/elem.h: copying one element of a channel or generator. Private to
 * sync/. */
#ifndef CORO_SYNC_ELEM_H
#define CORO_SYNC_ELEM_H

#include <stddef.h>
#include <string.h>

/* Is n one of the sizes copied inline (sync_copy_small)? */
static inline int sync_small_elem(size_t n)
{
    /* Bits 1, 2, 4, 8 and 16. */
    return n <= 16 && ((0x10116u >> n) & 1);
}

/* sync_copy_elem for n where sync_small_elem(n) holds: never a call. */
static inline void sync_copy_small(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 1: memcpy(dst, src, 1); break;
    case 2: memcpy(dst, src, 2); break;
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 16: memcpy(dst, src, 16); break;
    default: __builtin_unreachable();
    }
}

/* memcpy of a run-time size is a call; the common small sizes inline. */
static inline void sync_copy_elem(void *dst, const void *src, size_t n)
{
    if (sync_small_elem(n))
        sync_copy_small(dst, src, n);
    else
        memcpy(dst, src, n);
}

#endif /* CORO_SYNC_ELEM_H */
