/* coro/fault.c: the fault-injection counters and the library's allocator
 * (see coro/fault.h). */
#include "coro/fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int coro_fault_countdown[CORO_FAULT_NPOINTS];

int coro_fault_fire(enum coro_fault_point p)
{
    if (--coro_fault_countdown[p] == 0)
        return 1;
    return 0;
}

void coro_fault_arm(enum coro_fault_point p, int n)
{
    coro_fault_countdown[p] = n < 0 ? 0 : n;
}

void *coro_malloc(size_t n)
{
    if (coro_fault(CORO_FAULT_MALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc(n);
}

void *coro_calloc(size_t count, size_t n)
{
    if (coro_fault(CORO_FAULT_MALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return calloc(count, n);
}

void *coro_realloc(void *p, size_t n)
{
    if (coro_fault(CORO_FAULT_MALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n);
}

char *coro_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = coro_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
