/* coro/context.h: the bare machine context and the switch between two of
 * them. Nothing here knows about stacks' owners, sanitizers or scheduling:
 * it is the few instructions that move a thread of control from one stack
 * to another.
 *
 * Backends (one is compiled in, chosen by `make CONTEXT=...`):
 *   asm       coro/switch_x86_64.S or coro/switch_aarch64.S: saves only the
 *             callee-saved registers on the old stack and the stack pointer
 *             in the context, then resumes the other side with an indirect
 *             jump (not `ret`, which would mispredict on every switch).
 *   ucontext  coro/context_ucontext.c: swapcontext(3). Portable, slower: it
 *             saves the signal mask with a system call on every switch. */
#ifndef CORO_CONTEXT_H
#define CORO_CONTEXT_H

#include <stddef.h>

#if defined(CORO_CONTEXT_UCONTEXT)
#include <ucontext.h>
#elif !defined(__x86_64__) && !defined(__aarch64__)
#error "no assembly context switch for this CPU: build with CONTEXT=ucontext"
#endif

typedef struct coro__context {
#if defined(CORO_CONTEXT_UCONTEXT)
    ucontext_t uc;
#else
    /* The suspended side's stack pointer; its registers are on that stack. */
    void *sp;
#endif
} coro__context_t;

/* The entry point of a new context. When it returns, the context is over:
 * the entry routine switches to the context fn returned and never comes back.
 * Leaving by return (rather than switching away from deep inside fn)
 * leaves no outstanding calls, so the return-stack buffer stays balanced
 * for the context that runs next. */
typedef struct coro__context *(*coro__context_fn)(void *arg);

/* Prepare ctx so that the first switch to it calls fn(arg) on the stack
 * [stack_lo, stack_lo + size), then switches to the context fn returns
 * (the final switch saves into ctx, which is never resumed again). The top
 * is aligned down to 16 bytes. Inline for the assembly backend: it is on
 * every spawn's path. */
#if defined(CORO_CONTEXT_UCONTEXT)
void coro__context_make(coro__context_t *ctx, void *stack_lo, size_t size,
                       coro__context_fn fn, void *arg);
#else
#include "coro/context_frame.h"
#include <stdint.h>

void coro__context_entry(void);

#if defined(__aarch64__)
_Static_assert(CORO_FRAME_SIZE % 16 == 0, "aarch64 keeps sp 16-byte aligned at all times");
#endif
_Static_assert(offsetof(coro__context_t, sp) == 0, "the assembly reads ctx->sp at offset 0");

/* Builds the first frame so that the first switch "returns" into
 * coro__context_entry (coro/switch_<arch>.S), which calls fn(arg). */
static inline void coro__context_make(coro__context_t *ctx, void *stack_lo, size_t size,
                                     coro__context_fn fn, void *arg)
{
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    /* 16 spare bytes above the frame: after the last pop the entry runs
     * with a 16-byte aligned stack pointer (as before a `call`) and a
     * zeroed slot above it. */
    uintptr_t *words = (uintptr_t *)(top - 16 - CORO_FRAME_SIZE);
    for (size_t i = 0; i < (CORO_FRAME_SIZE + 16) / sizeof(uintptr_t); i++)
        words[i] = 0;
    words[CORO_FRAME_RESUME / sizeof(uintptr_t)] = (uintptr_t)coro__context_entry;
    words[CORO_FRAME_ARG / sizeof(uintptr_t)] = (uintptr_t)arg;
    words[CORO_FRAME_FN / sizeof(uintptr_t)] = (uintptr_t)fn;
    words[CORO_FRAME_SELF / sizeof(uintptr_t)] = (uintptr_t)ctx;
    ctx->sp = words;
}
#endif

/* Save the running context into *from and resume *to. Returns when someone
 * switches back to *from. */
void coro__context_switch(coro__context_t *from, coro__context_t *to);

/* The same switch, entered without a `call`: it pushes the resume address
 * and jumps. The assembly leaves with `pop` + indirect `jmp`, so with no
 * call/ret pair the CPU's return-stack buffer stays balanced: the rets that
 * follow in the resumed coroutine are predicted. Calling the function form
 * instead leaves one stale return-stack entry per switch, and every later
 * ret mispredicts (a scheduler yield measured 26 ns that way, 9 ns with a
 * plain `ret` ending, and less with this). Used by coro/fiber.c. */
#if defined(CORO_CONTEXT_UCONTEXT)
#define coro__context_switch_inline coro__context_switch
#elif defined(__x86_64__)
#if defined(__AVX512F__)
#define CORO_CLOBBER_ZMM_HI , "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", \
    "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", \
    "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"
#else
#define CORO_CLOBBER_ZMM_HI
#endif
static inline __attribute__((always_inline)) void
coro__context_switch_inline(coro__context_t *from, coro__context_t *to)
{
    register coro__context_t *rdi __asm__("rdi") = from;
    register coro__context_t *rsi __asm__("rsi") = to;
    /* The push below writes under rsp. The library is built with
     * -mno-red-zone (the Makefile defines CORO_NO_RED_ZONE with it), so
     * nothing the compiler keeps lives there; code built with a red zone
     * steps over its 128 bytes first. Without the step, rsp at the resume
     * point is exactly what the compiler's unwind tables expect, so a
     * debugger unwinds a parked coroutine from its saved frame. */
#if defined(CORO_NO_RED_ZONE)
#define CORO_RED_ZONE_SKIP ""
#define CORO_RED_ZONE_BACK ""
#else
#define CORO_RED_ZONE_SKIP "leaq -128(%%rsp), %%rsp\n\t"
#define CORO_RED_ZONE_BACK "\n\tleaq 128(%%rsp), %%rsp"
#endif
    __asm__ volatile(CORO_RED_ZONE_SKIP
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "jmp coro__context_switch\n"
                     "1:" CORO_RED_ZONE_BACK
                     : "+r"(rdi), "+r"(rsi)
                     :
                     : "rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "memory", "cc",
                       "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
                       "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)"
                       CORO_CLOBBER_ZMM_HI);
}
#elif defined(__aarch64__)
#if defined(__ARM_FEATURE_SVE)
/* SVE: the predicates and the bits of z8-z15 above 128 are caller-saved
 * too, and the switch keeps neither. */
#define CORO_CLOBBER_SVE , "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15", \
    "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11", "p12", \
    "p13", "p14", "p15", "ffr"
#else
#define CORO_CLOBBER_SVE
#endif
static inline __attribute__((always_inline)) void
coro__context_switch_inline(coro__context_t *from, coro__context_t *to)
{
    register coro__context_t *x0 __asm__("x0") = from;
    register coro__context_t *x1 __asm__("x1") = to;
    /* x30 carries the resume address, set without `bl` so the
     * return-address stack is left alone. */
    __asm__ volatile("adr x30, 1f\n\t"
                     "b coro__context_switch\n"
                     "1:"
                     : "+r"(x0), "+r"(x1)
                     :
                     : "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12",
                       "x13", "x14", "x15", "x16", "x17", "x18", "x30", "memory", "cc",
                       "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17", "v18",
                       "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28",
                       "v29", "v30", "v31" CORO_CLOBBER_SVE);
}
#endif

#endif /* CORO_CONTEXT_H */
