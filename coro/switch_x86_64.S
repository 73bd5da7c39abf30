/* coro/switch_x86_64.S: the context switch for x86-64 (System V ABI).
 *
 *   void coro__context_switch(coro__context_t *from, coro__context_t *to);
 *                                            rdi               rsi
 *
 * Only what the ABI says a callee must preserve is saved: rbx, rbp,
 * r12-r15 and the stack pointer. Everything else is already dead at a
 * call. The frame it pushes is drawn in coro/context_frame.h.
 *
 * The floating-point control state (MXCSR, the x87 control word) is not
 * switched: it belongs to the thread, as in Go, libco and minicoro. Saving
 * it cost about 4 ns per switch on the development machine (stmxcsr and
 * fnstcw alone), half of the bare switch; a coroutine that needs its own
 * rounding or exception modes asks for them with CORO_OWN_FPENV, and only
 * its switches pay (coro/fiber.c).
 *
 * It ends with `pop` + indirect `jmp` rather than `ret`: the CPU's
 * return-stack predictor pairs each ret with the last call, and a switch
 * never returns to its own caller, so `ret` would mispredict on every
 * switch (about 11 ns here, against about 2 ns for the jump).
 *
 * The CFI directives describe the frame as it is pushed and popped, so a
 * debugger stopped anywhere in here unwinds into the side that entered it;
 * the entry routine marks the bottom of every coroutine's stack. */
#include "coro/context_frame.h"

        .text
        .globl  coro__context_switch
        .hidden  coro__context_switch
        .type   coro__context_switch, @function
        .p2align 4
coro__context_switch:
        .cfi_startproc
        /* Entered as if called: the resume address is on the stack. */
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %rbp, 0
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %rbx, 0
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r12, 0
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r13, 0
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r14, 0
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r15, 0
        movq    %rsp, (%rdi)            /* from->sp */
        /* From here on the same frame layout describes the other side's
         * stack, so the rules above stay true across the move. */
        movq    (%rsi), %rsp            /* to->sp */
        popq    %r15
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r15
        popq    %r14
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r14
        popq    %r13
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r13
        popq    %r12
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r12
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        .cfi_restore %rbx
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        .cfi_restore %rbp
        popq    %rcx                    /* resume address */
        .cfi_adjust_cfa_offset -8
        .cfi_register %rip, %rcx
        jmpq    *%rcx
        .cfi_endproc
        .size   coro__context_switch, .-coro__context_switch

/* The first resume of a new context lands here with r12 = arg, r13 = fn,
 * r14 = the context itself, and rsp 16-byte aligned as before a `call`.
 * fn(arg) returns the context to switch to; the final switch is entered
 * like every other (push a resume address, jump), from a stack with no
 * outstanding calls. Nothing ever resumes it. */
        .globl  coro__context_entry
        .hidden  coro__context_entry
        .type   coro__context_entry, @function
        .p2align 4
coro__context_entry:
        .cfi_startproc
        /* The outermost frame of a coroutine: there is no caller. */
        .cfi_undefined %rip
        movq    %r12, %rdi
        callq   *%r13
        movq    %r14, %rdi              /* from: this context, abandoned */
        movq    %rax, %rsi              /* to: what fn returned */
        leaq    1f(%rip), %rcx
        pushq   %rcx
        jmp     coro__context_switch
1:      ud2
        .cfi_endproc
        .size   coro__context_entry, .-coro__context_entry

        .section .note.GNU-stack, "", @progbits
