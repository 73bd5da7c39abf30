/* sync/elem.h: copying one element of a channel or generator. Private to
 * sync/. */
#ifndef CORO_SYNC_ELEM_H
#define CORO_SYNC_ELEM_H

#include <stddef.h>
#include <string.h>

/* memcpy of a run-time size is a call; the common small sizes inline. */
static inline void sync_copy_elem(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 1: memcpy(dst, src, 1); break;
    case 2: memcpy(dst, src, 2); break;
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 16: memcpy(dst, src, 16); break;
    default: memcpy(dst, src, n); break;
    }
}

/* Is n one of the sizes copied inline (sync_copy_small)? */
static inline int sync_small_elem(size_t n)
{
    return n <= 16 && (n & (n - 1)) == 0 && n != 0;
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

#endif /* CORO_SYNC_ELEM_H */
