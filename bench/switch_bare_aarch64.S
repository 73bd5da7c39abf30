/* bench/switch_bare_aarch64.S: the benchmarks' own bare context switch
 * (aarch64, AAPCS64), the floor that BenchmarkSwitchBare measures.
 *
 *   void bench_bare_switch(bench_bare_ctx_t *from, bench_bare_ctx_t *to);
 *                                           x0                     x1
 *
 * What AAPCS64 makes callee-saved and nothing more: x19-x28, x29, x30 (the
 * resume address) and d8-d15 (the low halves of v8-v15; the inline entry
 * in bench/switch_bare.h declares the rest of v8-v15 clobbered), and the
 * stack pointer. No FPCR. Entered with `adr x30` + `b` and left with
 * `br x30`, so the return-address stack is never touched.
 *
 * The frame, from the suspended side's saved sp up (160 bytes):
 *   +0 x19 x20  +16 x21 x22  +32 x23 x24  +48 x25 x26  +64 x27 x28
 *   +80 x29 x30  +96 d8 d9  +112 d10 d11  +128 d12 d13  +144 d14 d15
 * (bench/switch_bare.h builds the first one; keep the two in step). */

        .text
        .globl  bench_bare_switch
        .hidden bench_bare_switch
        .type   bench_bare_switch, %function
        .p2align 4
bench_bare_switch:
        sub     sp, sp, #160
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8,  d9,  [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mov     x9, sp
        str     x9, [x0]                /* from->sp */
        ldr     x9, [x1]                /* to->sp */
        mov     sp, x9
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8,  d9,  [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        add     sp, sp, #160
        br      x30
        .size   bench_bare_switch, .-bench_bare_switch

/* A new context's first resume: x19 = arg, x20 = fn, x21 = the context.
 * fn(arg) returns the context to switch to for good. */
        .globl  bench_bare_entry
        .hidden bench_bare_entry
        .type   bench_bare_entry, %function
        .p2align 4
bench_bare_entry:
        mov     x0, x19
        blr     x20
        mov     x1, x0
        mov     x0, x21
        adr     x30, 1f
        b       bench_bare_switch
1:      brk     #0
        .size   bench_bare_entry, .-bench_bare_entry

        .section .note.GNU-stack, "", %progbits
