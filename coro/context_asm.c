/* coro/context_asm.c: builds the first frame of a new context for the
 * assembly switch (coro/switch_<arch>.S), so that the first switch to it
 * "returns" into coro_context_entry, which calls fn(arg). */
#include "coro/context.h"
#include "coro/context_frame.h"

#include <stdint.h>
#include <string.h>

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
    memset(frame, 0, CORO_FRAME_SIZE + 16);
#if defined(__x86_64__)
    /* The ABI's initial control values: all exceptions masked, round to
     * nearest; x87 in double-extended precision. */
    const uint32_t mxcsr = 0x1F80;
    const uint16_t fpucw = 0x037F;
    memcpy(frame + CORO_FRAME_FPU, &mxcsr, sizeof mxcsr);
    memcpy(frame + CORO_FRAME_FPU + 4, &fpucw, sizeof fpucw);
#endif
    void *entry = (void *)coro_context_entry;
    memcpy(frame + CORO_FRAME_RESUME, &entry, sizeof entry);
    memcpy(frame + CORO_FRAME_ARG, &arg, sizeof arg);
    memcpy(frame + CORO_FRAME_FN, &fn, sizeof fn);
    memcpy(frame + CORO_FRAME_SELF, &ctx, sizeof ctx);
    ctx->sp = frame;
}
