/* coro/coro.h: the ground floor's public names: the coroutine body type,
 * spawn options, time units and version. Included by <coro.h>; never
 * includes a header from a floor above. */
#ifndef CORO_CORO_H
#define CORO_CORO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only the names in the public headers are exported from libcoro.so: the
 * library is built with -fvisibility=hidden, and these mark the public
 * declarations between them as visible. */
#if defined(__GNUC__) && !defined(CORO_NO_VISIBILITY_PRAGMAS)
#define CORO_PUBLIC_BEGIN _Pragma("GCC visibility push(default)")
#define CORO_PUBLIC_END   _Pragma("GCC visibility pop")
#else
#define CORO_PUBLIC_BEGIN
#define CORO_PUBLIC_END
#endif

CORO_PUBLIC_BEGIN

#define CORO_VERSION_MAJOR 0
#define CORO_VERSION_MINOR 1
#define CORO_VERSION_PATCH 0

/* A coroutine's body. Its return value is the coroutine's status
 * (0 = success), collected by coro_join() or a task group. */
typedef int (*coro_fn)(void *arg);

/* The coroutine handle: opaque, owned by the scheduler. */
typedef struct coro coro_t;

/* An intrusive list link (coro/list.h has the operations). Public only
 * because the synchronisation objects users embed (coro_mutex_t, ...) hold
 * a list of waiters; treat it as opaque. */
typedef struct coro_list {
    struct coro_list *next, *prev;
} coro_list_t;

/* Options for coro_spawn_opts(). Zero-initialise and set what you need. */
typedef struct coro_opts {
    /* Usable stack bytes, rounded up to whole pages. 0 picks
     * CORO_STACK_DEFAULT; less than CORO_STACK_MIN, or more than
     * CORO_STACK_MAX, is EINVAL. */
    size_t stack_size;
    /* Shown in dumps, deadlock reports and stack-overflow messages.
     * Copied; NULL means unnamed. */
    const char *name;
    /* CORO_OWN_FPENV, or 0. Any other bit is EINVAL. */
    unsigned flags;
} coro_opts_t;

/* The floating-point environment (rounding mode, exception masks and
 * flags, on x86-64 also x87 precision and MXCSR's flush-to-zero; on
 * aarch64 FPCR and FPSR) belongs to the thread: a coroutine that changes
 * it with fesetround(3) or fesetenv(3) changes it for the scheduler and
 * every coroutine that runs after it on the thread, as in Go, libco and
 * minicoro. The switch then stays the bare register swap. A coroutine
 * spawned with CORO_OWN_FPENV keeps its own instead: it starts with the
 * spawner's environment, its changes are invisible to others, and others'
 * are invisible to it; only its own switches pay for the save and restore
 * (fegetenv + fesetenv, some tens of ns). With `make CONTEXT=ucontext`
 * every coroutine keeps its own (swapcontext(3) saves it), with or without
 * the flag. */
#define CORO_OWN_FPENV 1u

/* Stack sizes. The default costs address space, not memory: pages are
 * committed only when touched, so an idle coroutine costs about one page. */
#define CORO_STACK_DEFAULT ((size_t)128 * 1024)
#define CORO_STACK_MIN     ((size_t)16 * 1024)
#define CORO_STACK_MAX     ((size_t)1024 * 1024 * 1024)

/* Time is int64_t nanoseconds on the monotonic clock. */
#define CORO_NS    ((int64_t)1)
#define CORO_US    ((int64_t)1000)
#define CORO_MS    ((int64_t)1000000)
#define CORO_SEC   ((int64_t)1000000000)
/* "No deadline": a time that never comes. */
#define CORO_NEVER INT64_MAX

CORO_PUBLIC_END

#ifdef __cplusplus
}
#endif

#endif /* CORO_CORO_H */
