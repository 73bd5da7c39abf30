/* bench/switch_bare_x86_64.S: the benchmarks' own bare context switch
 * (x86-64, System V), the floor that BenchmarkSwitchBare measures.
 *
 *   void bench_bare_switch(bench_bare_ctx_t *from, bench_bare_ctx_t *to);
 *                                           rdi                    rsi
 *
 * The six callee-saved integer registers, the stack pointer, and nothing
 * else: no MXCSR or x87 control word, no check of any kind. Entered by a
 * push of the resume address and a `jmp` (bench/switch_bare.h), and left
 * by a `pop` and an indirect `jmp`, so no call/ret pair touches the
 * return-stack buffer.
 *
 * The frame it leaves on the suspended side's stack, from its saved sp up:
 *   +0 r15  +8 r14  +16 r13  +24 r12  +32 rbx  +40 rbp  +48 resume address
 * (bench/switch_bare.h builds the first one; keep the two in step). */

        .text
        .globl  bench_bare_switch
        .hidden bench_bare_switch
        .type   bench_bare_switch, @function
        .p2align 4
bench_bare_switch:
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, (%rdi)            /* from->sp */
        movq    (%rsi), %rsp            /* to->sp */
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %rcx                    /* resume address */
        jmpq    *%rcx
        .size   bench_bare_switch, .-bench_bare_switch

/* A new context's first resume: r12 = arg, r13 = fn, r14 = the context,
 * rsp 16-byte aligned. fn(arg) returns the context to switch to for good. */
        .globl  bench_bare_entry
        .hidden bench_bare_entry
        .type   bench_bare_entry, @function
        .p2align 4
bench_bare_entry:
        movq    %r12, %rdi
        callq   *%r13
        movq    %r14, %rdi
        movq    %rax, %rsi
        leaq    1f(%rip), %rcx
        pushq   %rcx
        jmp     bench_bare_switch
1:      ud2
        .size   bench_bare_entry, .-bench_bare_entry

        .section .note.GNU-stack, "", @progbits
