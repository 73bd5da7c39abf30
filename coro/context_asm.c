/* coro/context_asm.c: builds the first frame of a new context for the
 * assembly switch (coro/switch_<arch>.S), so that the first switch to it
 * "returns" into coro_context_entry, which calls fn(arg). */
#include "coro/context.h"
#include "coro/context_frame.h"

#include <stdint.h>

void coro_context_entry(void);

_Static_assert(CORO_FRAME_SIZE % 16 == 0, "the frame keeps 16-byte alignment");
_Static_assert(offsetof(coro_context_t, sp) == 0, "the assembly reads ctx->sp at offset 0");

void coro_context_make(coro_context_t *ctx, void *stack_lo, size_t size,
                       coro_context_fn fn, void *arg)
{
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    /* 16 spare bytes above the frame: after the last pop the entry runs
     * with an aligned stack pointer and a zeroed slot above it, which ends
     * debuggers' backtraces cleanly. */
    char *frame = (char *)(top - 16 - CORO_FRAME_SIZE);
    uintptr_t *words = (uintptr_t *)(void *)frame;
    for (size_t i = 0; i < (CORO_FRAME_SIZE + 16) / sizeof(uintptr_t); i++)
        words[i] = 0;
#if defined(__x86_64__)
    /* The ABI's initial control values: all exceptions masked, round to
     * nearest (MXCSR); x87 in double-extended precision. */
    words[CORO_FRAME_FPU / 8] = (uintptr_t)0x037F << 32 | 0x1F80;
#endif
    words[CORO_FRAME_RESUME / sizeof(uintptr_t)] = (uintptr_t)coro_context_entry;
    words[CORO_FRAME_ARG / sizeof(uintptr_t)] = (uintptr_t)arg;
    words[CORO_FRAME_FN / sizeof(uintptr_t)] = (uintptr_t)fn;
    words[CORO_FRAME_SELF / sizeof(uintptr_t)] = (uintptr_t)ctx;
    ctx->sp = frame;
}
