/* coro/context_frame.h: the layout of a suspended context's saved-register
 * frame, shared by the assembly (which pushes and pops it) and by
 * coro/context_asm.c (which builds the first frame of a new context).
 * Offsets are from the saved stack pointer upward. Plain #defines so the
 * .S files can include this through the C preprocessor. */
#ifndef CORO_CONTEXT_FRAME_H
#define CORO_CONTEXT_FRAME_H

#if defined(__x86_64__)
/*   sp+0   MXCSR (4 bytes) and x87 control word (2 bytes, at +4): the
 *          System V ABI makes their control bits callee-saved
 *   sp+8   r15      sp+16  r14      sp+24  r13      sp+32  r12
 *   sp+40  rbx      sp+48  rbp
 *   sp+56  resume address (where the `call` into the switch would return)
 *   sp+64  the switched-to side's stack pointer after the switch        */
#define CORO_FRAME_FPU    0
#define CORO_FRAME_R15    8
#define CORO_FRAME_R14    16
#define CORO_FRAME_R13    24
#define CORO_FRAME_R12    32
#define CORO_FRAME_RBX    40
#define CORO_FRAME_RBP    48
#define CORO_FRAME_RESUME 56
#define CORO_FRAME_SIZE   64
/* A new context starts in coro__context_entry with r12 = arg, r13 = fn,
 * r14 = its own context (for the final switch). */
#define CORO_FRAME_ARG    CORO_FRAME_R12
#define CORO_FRAME_FN     CORO_FRAME_R13
#define CORO_FRAME_SELF   CORO_FRAME_R14

#elif defined(__aarch64__)
/*   sp+0   x19 x20   sp+16  x21 x22   sp+32  x23 x24   sp+48  x25 x26
 *   sp+64  x27 x28   sp+80  x29 (frame pointer) x30 (resume address)
 *   sp+96  q8 q9     sp+128 q10 q11   sp+160 q12 q13   sp+192 q14 q15
 *          (all 128 bits: AAPCS64 makes only their low halves d8-d15
 *          callee-saved, but coro__context_switch_inline's clobber list
 *          promises the compiler the whole of v8-v15)
 *   sp+224 FPCR (rounding and trap modes)   sp+232 unused (keeps 16-byte
 *   alignment)   sp+240 the stack pointer after the switch              */
#define CORO_FRAME_X19    0
#define CORO_FRAME_X20    8
#define CORO_FRAME_X29    80
#define CORO_FRAME_RESUME 88
#define CORO_FRAME_Q8     96
#define CORO_FRAME_FPCR   224
#define CORO_FRAME_SIZE   240
/* A new context starts in coro__context_entry with x19 = arg, x20 = fn,
 * x21 = its own context (for the final switch). */
#define CORO_FRAME_X21    16
#define CORO_FRAME_ARG    CORO_FRAME_X19
#define CORO_FRAME_FN     CORO_FRAME_X20
#define CORO_FRAME_SELF   CORO_FRAME_X21
#endif

#endif /* CORO_CONTEXT_FRAME_H */
