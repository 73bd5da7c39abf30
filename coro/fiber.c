/* coro/fiber.c: fibers: creation on a pooled stack, the switch with its
 * Valgrind and sanitizer annotations, and the entry trampoline that owns a
 * fiber's start (see coro/fiber.h). */
#include "coro/fiber.h"
#include "coro/sanitize.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__thread coro__fiber_t *coro__fiber_running __attribute__((tls_model("initial-exec")));
static __thread unsigned tls_colour __attribute__((tls_model("initial-exec")));
/* The thread's floating-point environment while a fiber that owns its own
 * runs (coro__fiber_switch_fpenv). */
static __thread fenv_t tls_thread_fpenv;

#if CORO_ASAN
/* The fiber we switched away from, so the side that lands can tell ASan's
 * answer about the old stack to the right fiber. */
static __thread coro__fiber_t *tls_switched_from __attribute__((tls_model("initial-exec")));

/* Finish an ASan switch on the landing side. `fake` is the landing fiber's
 * saved fake stack (NULL on first entry). */
static void asan_landed(void *fake)
{
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &bottom, &size);
    coro__fiber_t *prev = tls_switched_from;
    if (prev && !prev->stack.lo && !prev->asan_bottom) {
        /* The thread's own stack: ASan just told us its bounds. */
        prev->asan_bottom = bottom;
        prev->asan_size = size;
    }
}
#endif

/* Running under Valgrind's Memcheck, asked once per process (the client
 * requests cost more than the rest of a spawn's fiber setup). Only
 * Memcheck tracks what is addressable, so only it needs the request in
 * coro__fiber_new; other tools (Callgrind counting a spawn's
 * instructions) skip it as a native run does. VALGRIND_GET_VBITS answers
 * 1 only under Memcheck: another tool leaves the request unhandled and it
 * yields its default, 0 (memcheck.h). */
static int under_memcheck(void)
{
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        v = 0;
        if (RUNNING_ON_VALGRIND) {
            static char probe, vbits;
            v = VALGRIND_GET_VBITS(&probe, &vbits, 1) == 1;
        }
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}

size_t coro__fiber_stack_bytes(const coro__fiber_t *f)
{
    return (size_t)((const char *)f - f->stack.lo);
}

static void fpenv_swap(coro__fiber_t *from, coro__fiber_t *to);

/* Runs a fiber's body, then announces the last switch out of it; the
 * assembly entry routine makes that switch once every C frame has returned. */
static coro__context_t *fiber_entry(void *arg)
{
    coro__fiber_t *f = arg;
#if CORO_ASAN
    asan_landed(NULL);
#endif
    coro__fiber_t *to = f->body(f);
#if !defined(CORO_CONTEXT_UCONTEXT)
    if (__builtin_expect(f->own_fpenv | to->own_fpenv, 0))
        fpenv_swap(f, to);
#endif
    coro__fiber_running = to;
#if CORO_ASAN
    tls_switched_from = f;
    /* NULL: this fiber is leaving for good, so ASan drops its fake stack. */
    __sanitizer_start_switch_fiber(NULL, to->asan_bottom, to->asan_size);
#endif
#if CORO_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    return &to->ctx;
}

static coro__fiber_running_fn running_hook;

void coro__fiber_set_running_hook(coro__fiber_running_fn fn)
{
    __atomic_store_n(&running_hook, fn, __ATOMIC_RELAXED);
}

coro__fiber_t *coro__fiber_running_now(void)
{
    coro__fiber_running_fn fn = __atomic_load_n(&running_hook, __ATOMIC_RELAXED);
    coro__fiber_t *f = fn ? fn() : NULL;
    return f ? f : coro__fiber_running;
}

void coro__fiber_report_signal_misuse(const coro__fiber_t *f, const char *what)
{
    /* Most likely inside a signal handler: snprintf of strings and an
     * integer (no allocation), write(2), abort(). */
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "coro: %s, in coroutine %llu \"%s\": called from a signal handler (or one "
                     "that interrupted a switch); no coro call is async-signal-safe: wait for "
                     "signals with coro_signal_wait\n",
                     what, (unsigned long long)f->id, f->name ? f->name : "");
    if (n > 0) {
        size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
        ssize_t w = write(STDERR_FILENO, msg, len);
        (void)w;
    }
    abort();
}

void coro__fiber_misuse(const coro__fiber_t *f, const char *what)
{
    coro__fiber_report_signal_misuse(f, what);
}

void coro__fiber_init_thread(coro__fiber_t *f)
{
    memset(f, 0, sizeof *f);
    f->stack.size = SIZE_MAX; /* coro__fiber_stack_ok: the thread's own stack */
#if CORO_TSAN
    f->tsan_fiber = __tsan_get_current_fiber();
#endif
    coro__fiber_running = f;
}

void coro__fiber_fini_thread(coro__fiber_t *f)
{
    if (coro__fiber_running == f)
        coro__fiber_running = NULL;
}

/* The fiber's own copy of its stack handle lies in its stack, below the
 * top bytes the pool keeps its record in while the stack is free: so
 * coro__fiber_new copies the pool's handle straight into the header and
 * coro__fiber_free gives the header's handle straight back. The smallest
 * header is rounded up to a cache line, at the stack's very top. */
_Static_assert(offsetof(coro__fiber_t, stack) + sizeof(coro__stack_t) + CORO_STACK_RECORD_BYTES <=
                   ((sizeof(coro__fiber_t) + 63) & ~(size_t)63),
               "a fiber's stack handle lies below the pool's record");

coro__fiber_t *coro__fiber_new_lines(size_t stack_size, size_t hdr_lines, coro__fiber_body body)
{
    const coro__stack_t *taken = coro__stack_take(stack_size);
    if (!taken)
        return NULL;
    coro__stack_t st = *taken;
    /* The header sits near the top, 64-byte aligned (a cache line), lowered
     * by a "colour" of 0-7 cache lines that changes from fiber to fiber.
     * Without it every stack top, and so every switch frame, has the same
     * offset within its page (slots are whole pages apart), and the CPU's
     * 4 KiB store-to-load aliasing check stalls each switch on the other
     * stack's stores: a yield ping-pong measured 12.5 ns without the colour
     * and 8.5 ns with it. A reused stack moves its header on by one line
     * from where the last fiber had it, so a handle to that fiber does not
     * name the new one (sched/'s stale-handle check) until the stack has
     * been reused 8 times; a fresh stack takes the thread's next colour.
     * Only the fiber's own fields are set here; the caller initialises the
     * rest of its header (no memset: this is on every spawn's path). */
    unsigned c = st.colour == CORO_STACK_FRESH ? tls_colour++ : st.colour + 1u;
    st.colour = (uint8_t)(c & 7);
    char *hdr = st.lo + st.size - (hdr_lines + st.colour) * 64;
    /* Memcheck marks stack below a popped frame as no-access; on a reused
     * stack the new header and first frame may lie there. */
    if (under_memcheck())
        VALGRIND_MAKE_MEM_UNDEFINED(hdr - 1024, (size_t)(st.lo + st.size - hdr) + 1024);
    coro__fiber_t *f = (coro__fiber_t *)(void *)hdr;
    f->stack = st;
    f->body = body;
    f->own_fpenv = 0;
    f->id = 0;
    f->name = NULL;
    size_t usable = (size_t)(hdr - st.lo);
#if CORO_ASAN
    f->asan_fake = NULL;
    /* A reused stack may still carry poison from frames of a fiber that
     * never returned through them. */
    ASAN_UNPOISON_MEMORY_REGION(st.lo, usable);
    f->asan_bottom = st.lo;
    f->asan_size = usable;
#endif
#if CORO_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
    coro__context_make(&f->ctx, st.lo, usable, fiber_entry, f);
    return f;
}

void coro__fiber_own_fpenv(coro__fiber_t *f)
{
    fegetenv(&f->fpenv);
    f->own_fpenv = 1;
}

/* Leave from's environment (its own, or the thread's) for to's. */
static void fpenv_swap(coro__fiber_t *from, coro__fiber_t *to)
{
    /* While a fiber with its own environment runs, the thread's waits in
     * tls_thread_fpenv; from one such fiber to another it stays there. */
    if (from->own_fpenv)
        fegetenv(&from->fpenv);
    else
        fegetenv(&tls_thread_fpenv);
    fesetenv(to->own_fpenv ? &to->fpenv : &tls_thread_fpenv);
}

void coro__fiber_switch_fpenv(coro__fiber_t *from, coro__fiber_t *to)
{
    fpenv_swap(from, to);
    coro__fiber_switch_unchecked(from, to);
}

void coro__fiber_before_switch(coro__fiber_t *from, coro__fiber_t *to)
{
#if CORO_ASAN
    tls_switched_from = from;
    __sanitizer_start_switch_fiber(&from->asan_fake, to->asan_bottom, to->asan_size);
#endif
#if CORO_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    (void)from;
    (void)to;
}

void coro__fiber_after_switch(coro__fiber_t *from)
{
#if CORO_ASAN
    asan_landed(from->asan_fake);
#endif
    (void)from;
}

void coro__fiber_free(coro__fiber_t *f)
{
#if CORO_TSAN
    __tsan_destroy_fiber(f->tsan_fiber);
#endif
    if (f->name)
        free(f->name);
    /* f lives on that stack, below the pool's record (see above). */
    coro__stack_free(&f->stack);
}
