/* coro/switch_x86_64.S: the context switch for x86-64 (System V ABI).
 *
 *   void coro__context_switch(coro__context_t *from, coro__context_t *to);
 *                                            rdi               rsi
 *
 * Only what the ABI says a callee must preserve is saved: rbx, rbp,
 * r12-r15, the stack pointer, and the control bits of MXCSR and the x87
 * control word. Everything else is already dead at a call. The frame it
 * pushes is drawn in coro/context_frame.h.
 *
 * It ends with `pop` + indirect `jmp` rather than `ret`: the CPU's
 * return-stack predictor pairs each ret with the last call, and a switch
 * never returns to its own caller, so `ret` would mispredict on every
 * switch (about 11 ns here, against about 2 ns for the jump). */
#include "coro/context_frame.h"

        .text
        .globl  coro__context_switch
        .hidden  coro__context_switch
        .type   coro__context_switch, @function
        .p2align 4
coro__context_switch:
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr CORO_FRAME_FPU(%rsp)
        fnstcw  CORO_FRAME_FPU+4(%rsp)
        movq    %rsp, (%rdi)            /* from->sp */
        movq    %rsp, %rax              /* from's frame, to compare below */
        movq    (%rsi), %rsp            /* to->sp */
        /* Reload MXCSR and the x87 control word only if their control bits
         * differ: ldmxcsr costs ~40 ns per switch here, and the low six
         * MXCSR bits are sticky exception flags (caller-saved, ignored). */
        movl    CORO_FRAME_FPU(%rax), %edx
        xorl    CORO_FRAME_FPU(%rsp), %edx
        andl    $0xffc0, %edx
        movzwl  CORO_FRAME_FPU+4(%rax), %ecx
        xorw    CORO_FRAME_FPU+4(%rsp), %cx
        orl     %ecx, %edx
        jnz     2f
1:      addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %rcx                    /* resume address */
        jmpq    *%rcx
2:      ldmxcsr CORO_FRAME_FPU(%rsp)
        fldcw   CORO_FRAME_FPU+4(%rsp)
        jmp     1b
        .size   coro__context_switch, .-coro__context_switch

/* The first resume of a new context lands here with r12 = arg, r13 = fn,
 * r14 = the context itself, and rsp 16-byte aligned as after a `ret`.
 * fn(arg) returns the context to switch to; the final switch is entered
 * like every other (push a resume address, jump), from a stack with no
 * outstanding calls. Nothing ever resumes it. */
        .globl  coro__context_entry
        .hidden  coro__context_entry
        .type   coro__context_entry, @function
        .p2align 4
coro__context_entry:
        movq    %r12, %rdi
        callq   *%r13
        movq    %r14, %rdi              /* from: this context, abandoned */
        movq    %rax, %rsi              /* to: what fn returned */
        leaq    1f(%rip), %rcx
        pushq   %rcx
        jmp     coro__context_switch
1:      ud2
        .size   coro__context_entry, .-coro__context_entry

        .section .note.GNU-stack, "", @progbits
