/* bench/switch_bare.h: the benchmarks' own bare context switch, the floor
 * of every switch ratio (BenchmarkSwitchBare and its call variants).
 *
 * It is not the library's: coro/context.h's switch also keeps the
 * floating-point control state (MXCSR and the x87 control word, FPCR) and
 * may grow other duties; this one saves the callee-saved registers and
 * the stack pointer and nothing else (bench/switch_bare_<arch>.S), so a
 * ratio to it counts all the library's work, the switch's included.
 *
 * It is entered the way the library enters its own (push the resume
 * address and jump, or `adr x30` and branch): with no call/ret pair around
 * the switch, the return-stack buffer stays balanced.
 *
 * Built only for the assembly context backend on x86-64 and aarch64
 * (BENCH_HAVE_BARE, bench/bench.h); elsewhere the bare benchmarks skip and
 * the ratios fall back to BenchmarkSwitchRaw. */
#ifndef CORO_BENCH_SWITCH_BARE_H
#define CORO_BENCH_SWITCH_BARE_H

#include "bench/bench.h"

#if BENCH_HAVE_BARE
#include <stddef.h>
#include <stdint.h>

typedef struct bench_bare_ctx {
    void *sp; /* the suspended side's stack pointer; its registers below it */
} bench_bare_ctx_t;

/* Runs fn(arg) on a fresh stack; when fn returns, its result is switched
 * to and the context is over. */
typedef bench_bare_ctx_t *(*bench_bare_fn)(void *arg);

void bench_bare_switch(bench_bare_ctx_t *from, bench_bare_ctx_t *to);
void bench_bare_entry(void);

#if defined(__x86_64__)
/* r15 r14 r13 r12 rbx rbp resume: the frame of bench/switch_bare_x86_64.S. */
#define BENCH_BARE_FRAME_WORDS 7
#define BENCH_BARE_ARG 3    /* r12 */
#define BENCH_BARE_FN 2     /* r13 */
#define BENCH_BARE_SELF 1   /* r14 */
#define BENCH_BARE_RESUME 6
#else
/* x19-x28 x29 x30 d8-d15: the frame of bench/switch_bare_aarch64.S. */
#define BENCH_BARE_FRAME_WORDS 20
#define BENCH_BARE_ARG 0    /* x19 */
#define BENCH_BARE_FN 1     /* x20 */
#define BENCH_BARE_SELF 2   /* x21 */
#define BENCH_BARE_RESUME 11 /* x30 */
#endif

/* Prepare ctx so that the first switch to it runs fn(arg) on the stack
 * [lo, lo + size). */
static inline void bench_bare_make(bench_bare_ctx_t *ctx, void *lo, size_t size,
                                   bench_bare_fn fn, void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    /* After the frame is popped the stack pointer is top - 16: 16-byte
     * aligned, with a zeroed word above it for debuggers' backtraces. */
    uintptr_t *w = (uintptr_t *)(top - 16) - BENCH_BARE_FRAME_WORDS;
    for (int i = 0; i < BENCH_BARE_FRAME_WORDS + 2; i++)
        w[i] = 0;
    w[BENCH_BARE_ARG] = (uintptr_t)arg;
    w[BENCH_BARE_FN] = (uintptr_t)fn;
    w[BENCH_BARE_SELF] = (uintptr_t)ctx;
    w[BENCH_BARE_RESUME] = (uintptr_t)bench_bare_entry;
    ctx->sp = w;
}

/* Save the running side into *from and resume *to; returns when someone
 * switches back to *from. Everything the ABI lets a call destroy is
 * declared clobbered. */
#if defined(__x86_64__)
static inline __attribute__((always_inline)) void
bench_bare_switch_inline(bench_bare_ctx_t *from, bench_bare_ctx_t *to)
{
    register bench_bare_ctx_t *a0 __asm__("rdi") = from;
    register bench_bare_ctx_t *a1 __asm__("rsi") = to;
    /* The push must not land in the caller's red zone (128 bytes below
     * rsp, where it may keep live data): step over it first, unless the
     * build has no red zone (-mno-red-zone, which defines CORO_NO_RED_ZONE
     * with it), as the library's inline switch does. */
#if defined(CORO_NO_RED_ZONE)
#define BENCH_BARE_SKIP ""
#define BENCH_BARE_BACK ""
#else
#define BENCH_BARE_SKIP "lea -128(%%rsp), %%rsp\n\t"
#define BENCH_BARE_BACK "\n\tlea 128(%%rsp), %%rsp"
#endif
    __asm__ volatile(BENCH_BARE_SKIP
                     "lea 2f(%%rip), %%rax\n\t"
                     "push %%rax\n\t"
                     "jmp bench_bare_switch\n"
                     "2:" BENCH_BARE_BACK
                     : "+r"(a0), "+r"(a1)
                     :
                     : "rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "memory", "cc",
                       "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                       "xmm15", "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)",
                       "st(7)"
#if defined(__AVX512F__)
                       , "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22",
                       "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29",
                       "xmm30", "xmm31", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"
#endif
    );
}
#else
static inline __attribute__((always_inline)) void
bench_bare_switch_inline(bench_bare_ctx_t *from, bench_bare_ctx_t *to)
{
    register bench_bare_ctx_t *a0 __asm__("x0") = from;
    register bench_bare_ctx_t *a1 __asm__("x1") = to;
    /* v8-v15: the switch keeps only their low halves (d8-d15), so the
     * whole registers are declared clobbered; the compiler saves d8-d15
     * itself in the function around this, once. */
    __asm__ volatile("adr x30, 2f\n\t"
                     "b bench_bare_switch\n"
                     "2:"
                     : "+r"(a0), "+r"(a1)
                     :
                     : "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12",
                       "x13", "x14", "x15", "x16", "x17", "x18", "x30", "memory", "cc",
                       "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10",
                       "v11", "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19",
                       "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28",
                       "v29", "v30", "v31"
#if defined(__ARM_FEATURE_SVE)
                       , "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10",
                       "p11", "p12", "p13", "p14", "p15", "ffr"
#endif
    );
}
#endif
#endif /* BENCH_HAVE_BARE */

#endif /* CORO_BENCH_SWITCH_BARE_H */
