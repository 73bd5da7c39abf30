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

typedef struct coro_context {
#if defined(CORO_CONTEXT_UCONTEXT)
    ucontext_t uc;
#else
    /* The suspended side's stack pointer; its registers are on that stack. */
    void *sp;
#endif
} coro_context_t;

/* The entry point of a new context. It must never return: it ends by
 * switching away for good. */
typedef void (*coro_context_fn)(void *arg);

/* Prepare ctx so that the first switch to it calls fn(arg) on the stack
 * [stack_lo, stack_lo + size). The top is aligned down to 16 bytes. */
void coro_context_make(coro_context_t *ctx, void *stack_lo, size_t size,
                       coro_context_fn fn, void *arg);

/* Save the running context into *from and resume *to. Returns when someone
 * switches back to *from. */
void coro_context_switch(coro_context_t *from, coro_context_t *to);

#endif /* CORO_CONTEXT_H */
