/* coro/context_ucontext.c: the portable context backend over
 * getcontext/makecontext/swapcontext (CONTEXT=ucontext). Correct wherever
 * POSIX ucontext exists; slower than the assembly because swapcontext saves
 * and restores the signal mask with a system call on every switch.
 *
 * That per-context signal mask is wrong for us: the mask belongs to the
 * thread (io/ blocks SIGPIPE for the whole scheduler, coro_signal_wait
 * blocks its set), but swapcontext gives every resumed context the mask it
 * had when it last switched out, undoing a change made meanwhile by
 * another coroutine (and delivering, inside swapcontext, a signal that was
 * pending while blocked: a SIGPIPE would kill the process). So before each
 * switch the thread's current mask is copied into the target context,
 * which swapcontext then installs unchanged: one more system call per
 * switch, on the backend that is already the slow, portable one. */
#include "coro/context.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>

/* Make `to` resume with the thread's signal mask as it is now. */
static void carry_mask(coro__context_t *to)
{
    pthread_sigmask(SIG_SETMASK, NULL, &to->uc.uc_sigmask);
}

/* The context being started, handed from coro__context_make's caller to
 * entry(): makecontext() passes only int arguments, so pointers travel as
 * 32-bit halves. */
static void entry(unsigned fn_hi, unsigned fn_lo, unsigned arg_hi, unsigned arg_lo,
                  unsigned self_hi, unsigned self_lo)
{
    coro__context_fn fn = (coro__context_fn)(((uintptr_t)fn_hi << 32) | fn_lo);
    void *arg = (void *)(((uintptr_t)arg_hi << 32) | arg_lo);
    coro__context_t *self = (coro__context_t *)(((uintptr_t)self_hi << 32) | self_lo);
    coro__context_t *to = fn(arg);
    carry_mask(to);
    swapcontext(&self->uc, &to->uc);
    abort(); /* never resumed */
}

void coro__context_make(coro__context_t *ctx, void *stack_lo, size_t size,
                       coro__context_fn fn, void *arg)
{
    uintptr_t f = (uintptr_t)fn, a = (uintptr_t)arg, c = (uintptr_t)ctx;
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = stack_lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    makecontext(&ctx->uc, (void (*)(void))entry, 6, (unsigned)(f >> 32), (unsigned)f,
                (unsigned)(a >> 32), (unsigned)a, (unsigned)(c >> 32), (unsigned)c);
}

void coro__context_switch(coro__context_t *from, coro__context_t *to)
{
    carry_mask(to);
    swapcontext(&from->uc, &to->uc);
}
