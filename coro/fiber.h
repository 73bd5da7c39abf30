/* coro/fiber.h: the coroutine object of the ground floor: a context, the
 * stack it runs on, its identity, and the bookkeeping that Valgrind and the
 * sanitizers need on every switch. It knows nothing about scheduling.
 *
 * A fiber lives at the top of its own stack, inside a header the caller
 * sizes (sched/ puts its whole coroutine struct there), so an idle
 * coroutine costs one page for both its struct and its first frames:
 *
 *   lo                                   hdr                 lo + size
 *   +--------------------------------------+--------------------+
 *   | stack (grows down from hdr)      <-- | header: fiber, ... |
 *   +--------------------------------------+--------------------+
 *
 * The thread's own stack is a fiber too (coro__fiber_init_thread): the
 * scheduler's context. */
#ifndef CORO_FIBER_H
#define CORO_FIBER_H

#include "coro/context.h"
#include "coro/sanitize.h"
#include "coro/stack.h"

#include <fenv.h>
#include <stdint.h>

typedef struct coro__fiber coro__fiber_t;
/* A fiber's body. It returns the fiber to switch to when it is over; the
 * fiber is then abandoned (free it from another fiber). */
typedef coro__fiber_t *(*coro__fiber_body)(coro__fiber_t *f);

struct coro__fiber {
    /* Saved registers while switched out. */
    coro__context_t ctx;
    /* Non-zero: the fiber keeps its own floating-point environment
     * (CORO_OWN_FPENV), saved in fpenv while it is switched out. Next to
     * ctx: the switch reads both sides' flag from the lines it loads. */
    uint8_t own_fpenv;
    /* The stack; zeroed for the thread's own fiber. */
    coro__stack_t stack;
    /* Runs on the fiber's first switch-in. */
    coro__fiber_body body;
    /* Identity for messages (the overflow report, dumps). */
    uint64_t id;
    char *name;
    /* Only in sanitizer builds (every other build keeps the header 32
     * bytes, half a cache line, smaller).
     * AddressSanitizer: the fake stack saved while switched out, and the
     * stack bounds announced when switching to this fiber (for the
     * thread's own fiber they are learned on its first switch out). */
#if CORO_ASAN
    void *asan_fake;
    const void *asan_bottom;
    size_t asan_size;
#endif
#if CORO_TSAN
    /* ThreadSanitizer's fiber handle. */
    void *tsan_fiber;
#endif
    /* The fiber's own floating-point environment while it is switched out
     * (only when own_fpenv). */
    fenv_t fpenv;
};

/* The fiber running on this thread (NULL before the first
 * coro__fiber_init_thread), as coro__fiber_switch records it. Read by the
 * overflow handler, unless a layer above that knows the running fiber
 * itself (sched/: the running coroutine) has registered a hook for it
 * (coro__fiber_set_running_hook); its switches then skip the record
 * (coro__fiber_switch_as without CORO__SWITCH_TRACK). */
extern __thread coro__fiber_t *coro__fiber_running
    __attribute__((tls_model("initial-exec")));

/* The hook: returns the calling thread's running fiber, or NULL if it does
 * not know (no scheduler on this thread); then coro__fiber_running is
 * used. Called in a signal handler: it must be async-signal-safe. Set
 * once per process (later calls must pass the same function). */
typedef coro__fiber_t *(*coro__fiber_running_fn)(void);
void coro__fiber_set_running_hook(coro__fiber_running_fn fn);
/* The running fiber as the overflow handler sees it. */
coro__fiber_t *coro__fiber_running_now(void);

/* Make f stand for the calling thread's own stack and mark it running. */
void coro__fiber_init_thread(coro__fiber_t *f);
/* Forget the thread's fiber (after the last switch back to it). */
void coro__fiber_fini_thread(coro__fiber_t *f);

/* coro__fiber_new with the header's size in cache lines (>= the fiber's). */
coro__fiber_t *coro__fiber_new_lines(size_t stack_size, size_t hdr_lines, coro__fiber_body body);

/* A new fiber on a fresh stack of `stack_size` usable bytes (from
 * coro__stack_size_for), with `hdr_size` header bytes at the top; the fiber
 * is the first member of that header and is returned, its own fields set
 * (id 0, no name) and the rest of the header left for the caller to
 * initialise. NULL+ENOMEM. */
static inline coro__fiber_t *coro__fiber_new(size_t stack_size, size_t hdr_size,
                                             coro__fiber_body body)
{
    /* In whole cache lines, at least the fiber's own: worked out here,
     * where hdr_size is a constant. */
    if (hdr_size < sizeof(coro__fiber_t))
        hdr_size = sizeof(coro__fiber_t);
    return coro__fiber_new_lines(stack_size, (hdr_size + 63) / 64, body);
}

/* Give f its own floating-point environment, starting as the caller's
 * current one: from now on the environment is saved when f switches out
 * and put back when it switches in (coro__fiber_switch_fpenv). Without
 * it, the environment belongs to the thread: a fiber that changes the
 * rounding mode changes it for whatever runs next. The ucontext backend
 * needs neither: swapcontext(3) saves and restores the environment of
 * every context. */
void coro__fiber_own_fpenv(coro__fiber_t *f);

/* The switch where either side owns its environment: from's (or the
 * thread's) is saved, to's (or the thread's) is loaded, then the switch. */
__attribute__((cold)) void coro__fiber_switch_fpenv(coro__fiber_t *from, coro__fiber_t *to);

/* Sanitizer halves of a switch (coro/fiber.c), called only in ASan and
 * TSan builds. */
void coro__fiber_before_switch(coro__fiber_t *from, coro__fiber_t *to);
void coro__fiber_after_switch(coro__fiber_t *from);

/* Start loading the saved registers of a switched-out fiber into the
 * cache: a scheduler that has just woken a batch of coroutines (a poll's
 * worth of ready sockets) calls it for each, so the switches to them later
 * do not each wait for a cold stack line. */
static inline void coro__fiber_prefetch(const coro__fiber_t *f)
{
#if !defined(CORO_CONTEXT_UCONTEXT)
    __builtin_prefetch(f->ctx.sp);
#else
    (void)f;
#endif
}

/* Print "coro: <what> in coroutine <id> "<name>" ...: no coro call is
 * async-signal-safe ..." with write(2) and abort(): the report of a coro
 * call made from a signal handler (coro/fiber.c). */
__attribute__((noreturn, cold))
void coro__fiber_report_signal_misuse(const coro__fiber_t *f, const char *what);

/* A switch out of `from` saves the running context as from's: right only
 * if the code runs on from's own stack, [stack.lo, from). It does not when
 * a signal handler runs on the alternate signal stack and yields, or when
 * a handler interrupts a switch after the scheduler already names the
 * next coroutine as running but before the stack pointer has moved, and
 * calls coro_yield or a blocking call: the context saved then overwrites
 * another one, which is later resumed on the wrong stack and returns
 * through a clobbered frame (the "jump to address 0"). One subtraction and
 * one compare per switch catch both and abort with a message. The
 * thread's own fiber has stack.size SIZE_MAX: never checked. */
static inline int coro__fiber_stack_ok(const coro__fiber_t *from)
{
    /* Below from (the header tops the stack) by at most the stack's size:
     * from - sp, subtracted in place on the two asm backends. */
    uintptr_t below = (uintptr_t)from;
#if defined(__x86_64__)
    __asm__("subq %%rsp, %0" : "+r"(below));
#elif defined(__aarch64__)
    uintptr_t sp;
    __asm__("mov %0, sp" : "=r"(sp));
    below -= sp;
#else
    char probe;
    __asm__("" : : "r"(&probe));
    below -= (uintptr_t)&probe;
#endif
    return __builtin_expect(below <= from->stack.size, 1);
}

/* coro__fiber_report_signal_misuse (it aborts) under a declaration
 * without noreturn: a fast path whose check fails in tail position reaches
 * it by a jump, so the fast path needs no stack frame of its own for it. */
__attribute__((cold)) void coro__fiber_misuse(const coro__fiber_t *f, const char *what);

/* The switch proper, once the checks have passed, without recording
 * the running fiber (for a caller whose layer has registered the running
 * hook). */
static inline __attribute__((always_inline)) void
coro__fiber_switch_core(coro__fiber_t *from, coro__fiber_t *to)
{
#if CORO_ASAN || CORO_TSAN
    coro__fiber_before_switch(from, to);
#endif
    coro__context_switch_inline(&from->ctx, &to->ctx);
#if CORO_ASAN
    coro__fiber_after_switch(from);
#endif
}

static inline __attribute__((always_inline)) void
coro__fiber_switch_unchecked(coro__fiber_t *from, coro__fiber_t *to)
{
    coro__fiber_running = to;
    coro__fiber_switch_core(from, to);
}

/* How a switch is made, constant at each call site:
 *   CORO__SWITCH_TRACK  record `to` in coro__fiber_running (the fiber
 *                       layer's own record; a layer that registered the
 *                       running hook leaves it out, a TLS store less)
 *   CORO__SWITCH_FPENV  look at both sides' own_fpenv (a caller that knows
 *                       neither side has one leaves it out: the
 *                       scheduler's fast paths, three instructions less) */
enum { CORO__SWITCH_TRACK = 1, CORO__SWITCH_FPENV = 2 };

/* Switch from the running fiber `from` to `to`; returns when switched back.
 * Inline: it is the heart of every yield, park and wake. The two rare
 * cases leave by tail calls (the misuse report, and the switch that
 * carries a floating-point environment, coro__fiber_switch_fpenv), so a
 * caller whose switch is its last act needs no stack frame. */
static inline __attribute__((always_inline)) void
coro__fiber_switch_as(coro__fiber_t *from, coro__fiber_t *to, unsigned how)
{
    if (!coro__fiber_stack_ok(from))
        return coro__fiber_misuse(from, "a switch away on a stack that is not its own");
#if !defined(CORO_CONTEXT_UCONTEXT)
    if ((how & CORO__SWITCH_FPENV) && __builtin_expect(from->own_fpenv | to->own_fpenv, 0))
        return coro__fiber_switch_fpenv(from, to);
#endif
    if (how & CORO__SWITCH_TRACK)
        coro__fiber_running = to;
    coro__fiber_switch_core(from, to);
}

/* The fiber layer's switch: every check, and the record. */
static inline __attribute__((always_inline)) void
coro__fiber_switch(coro__fiber_t *from, coro__fiber_t *to)
{
    coro__fiber_switch_as(from, to, CORO__SWITCH_TRACK | CORO__SWITCH_FPENV);
}

/* Release a fiber that is not running (and never will again): its
 * stack (header included) goes back to the pool. */
void coro__fiber_free(coro__fiber_t *f);

/* The usable stack below the header: [stack.lo, stack.lo + bytes). */
size_t coro__fiber_stack_bytes(const coro__fiber_t *f);

/* Install the stack-overflow reporter for this thread: a SIGSEGV/SIGBUS
 * handler (once per process) running on an alternate signal stack (one per
 * thread). Returns 0 or -1 with errno. */
int coro__overflow_thread_init(void);
void coro__overflow_thread_fini(void);

#endif /* CORO_FIBER_H */
