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

#endif /* CORO_SYNC_ELEM_H */
