/* coro/switch_aarch64.S: the context switch for aarch64 (AAPCS64).
 *
 *   void coro__context_switch(coro__context_t *from, coro__context_t *to);
 *                                            x0                x1
 *
 * Saves what AAPCS64 makes callee-saved: x19-x28, the frame pointer x29,
 * the link register x30 (the resume address), v8-v15 whole, and the
 * stack pointer. AAPCS64 asks only for the low halves d8-d15 of v8-v15,
 * but coro__context_switch_inline (coro/context.h) leaves v8-v15 out of
 * its clobber list, so the compiler may keep whole 128-bit vectors there
 * across it: all of q8-q15 is saved (as many instructions; `ldp d8, d9`
 * would zero the upper halves). The frame is drawn in
 * coro/context_frame.h.
 *
 * FPCR (rounding and trap modes) is not switched: the thread owns it, as
 * on x86-64 (coro/switch_x86_64.S says why); a coroutine spawned with
 * CORO_OWN_FPENV gets its own, saved around its switches by coro/fiber.c.
 *
 * It resumes with `br x30`, not `ret`: `ret` is predicted from the
 * return-address stack, which a switch always defeats.
 *
 * The CFI directives let a debugger stopped in here unwind into the side
 * that entered it (x30 holds its resume address, as after a `bl`); the
 * entry routine marks the bottom of every coroutine's stack. */
#include "coro/context_frame.h"

        .text
        .globl  coro__context_switch
        .hidden  coro__context_switch
        .type   coro__context_switch, %function
        .p2align 4
coro__context_switch:
        .cfi_startproc
        sub     sp, sp, #CORO_FRAME_SIZE
        .cfi_adjust_cfa_offset CORO_FRAME_SIZE
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        .cfi_rel_offset x19, 0
        .cfi_rel_offset x20, 8
        .cfi_rel_offset x21, 16
        .cfi_rel_offset x22, 24
        .cfi_rel_offset x23, 32
        .cfi_rel_offset x24, 40
        .cfi_rel_offset x25, 48
        .cfi_rel_offset x26, 56
        .cfi_rel_offset x27, 64
        .cfi_rel_offset x28, 72
        .cfi_rel_offset x29, 80
        .cfi_rel_offset x30, 88
        stp     q8,  q9,  [sp, #96]
        stp     q10, q11, [sp, #128]
        stp     q12, q13, [sp, #160]
        stp     q14, q15, [sp, #192]
        mov     x10, sp
        str     x10, [x0]               /* from->sp */
        /* The same frame layout describes the other side's stack: the
         * rules above stay true across the move. */
        ldr     x10, [x1]               /* to->sp */
        mov     sp, x10
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     q8,  q9,  [sp, #96]
        ldp     q10, q11, [sp, #128]
        ldp     q12, q13, [sp, #160]
        ldp     q14, q15, [sp, #192]
        add     sp, sp, #CORO_FRAME_SIZE
        .cfi_adjust_cfa_offset -CORO_FRAME_SIZE
        .cfi_restore x19
        .cfi_restore x20
        .cfi_restore x21
        .cfi_restore x22
        .cfi_restore x23
        .cfi_restore x24
        .cfi_restore x25
        .cfi_restore x26
        .cfi_restore x27
        .cfi_restore x28
        .cfi_restore x29
        .cfi_restore x30
        br      x30
        .cfi_endproc
        .size   coro__context_switch, .-coro__context_switch

/* The first resume of a new context lands here with x19 = arg, x20 = fn,
 * x21 = the context itself. fn(arg) returns the context to switch to; the
 * final switch is entered with `b` (no `bl`), so no return-address-stack
 * entry is left behind. Nothing ever resumes it. */
        .globl  coro__context_entry
        .hidden  coro__context_entry
        .type   coro__context_entry, %function
        .p2align 4
coro__context_entry:
        .cfi_startproc
        /* The outermost frame of a coroutine: there is no caller. */
        .cfi_undefined x30
        mov     x0, x19
        blr     x20
        mov     x1, x0                  /* to: what fn returned */
        mov     x0, x21                 /* from: this context, abandoned */
        adr     x30, 1f
        b       coro__context_switch
1:      brk     #0
        .cfi_endproc
        .size   coro__context_entry, .-coro__context_entry

        .section .note.GNU-stack, "", %progbits
