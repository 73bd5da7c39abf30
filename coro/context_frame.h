/* coro/context_frame.h: the layout of a suspended context's saved-register
 * frame, shared by the assembly (which pushes and pops it) and by
 * coro/context.h (which builds the first frame of a new context).
 * Offsets are from the saved stack pointer upward. Plain #defines so the
 * .S files can include this through the C preprocessor. */
#ifndef CORO_CONTEXT_FRAME_H
#define CORO_CONTEXT_FRAME_H

#if defined(__x86_64__)
/*   sp+0   r15      sp+8   r14      sp+16  r13      sp+24  r12
 *   sp+32  rbx      sp+40  rbp
 *   sp+48  resume address (where the `call` into the switch would return)
 *   sp+56  the switched-to side's stack pointer after the switch
 * No floating-point control state: the thread owns it (see
 * coro/switch_x86_64.S).                                                 */
#define CORO_FRAME_R15    0
#define CORO_FRAME_R14    8
#define CORO_FRAME_R13    16
#define CORO_FRAME_R12    24
#define CORO_FRAME_RBX    32
#define CORO_FRAME_RBP    40
#define CORO_FRAME_RESUME 48
#define CORO_FRAME_SIZE   56
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
 *   sp+224 the stack pointer after the switch
 * No FPCR: the thread owns the floating-point modes (see
 * coro/switch_aarch64.S).                                                */
#define CORO_FRAME_X19    0
#define CORO_FRAME_X20    8
#define CORO_FRAME_X29    80
#define CORO_FRAME_RESUME 88
#define CORO_FRAME_Q8     96
#define CORO_FRAME_SIZE   224
/* A new context starts in coro__context_entry with x19 = arg, x20 = fn,
 * x21 = its own context (for the final switch). */
#define CORO_FRAME_X21    16
#define CORO_FRAME_ARG    CORO_FRAME_X19
#define CORO_FRAME_FN     CORO_FRAME_X20
#define CORO_FRAME_SELF   CORO_FRAME_X21
#endif

#endif /* CORO_CONTEXT_FRAME_H */
