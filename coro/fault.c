/* coro/fault.c: the fault-injection counters and the library's allocator
 * (see coro/fault.h). */
#include "coro/fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int coro__fault_countdown[CORO_FAULT_NPOINTS];

int coro__fault_fire(enum coro__fault_point p)
{
    if (--coro__fault_countdown[p] == 0)
        return 1;
    return 0;
}

void coro__fault_arm(enum coro__fault_point p, int n)
{
    coro__fault_countdown[p] = n < 0 ? 0 : n;
}

void *coro__malloc(size_t n)
{
    if (coro__fault(CORO_FAULT_MALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc(n);
}

void *coro__calloc(size_t count, size_t n)
{
    if (coro__fault(CORO_FAULT_MALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return calloc(count, n);
}

void *coro__realloc(void *p, size_t n)
{
    if (coro__fault(CORO_FAULT_MALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n);
}

char *coro__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = coro__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
