/* context_switch.c: what a context switch is, one floor below the
 * scheduler, using coro/context.h directly.
 *
 * WHAT IT SHOWS
 *   A coroutine is a stack plus "where it was" on that stack. Switching
 *   from one to another means: save the few registers the running code
 *   expects to find intact, remember the stack pointer, load the other
 *   side's stack pointer, restore its registers, and continue where it
 *   stopped. This program does exactly that by hand, with no scheduler:
 *   main and one context on a malloc'd stack play a generator ping-pong
 *   (the context produces Fibonacci numbers, main consumes them), and it
 *   prints the saved frame as it sits in memory.
 *
 * THE SWITCH, STEP BY STEP (x86-64, coro/switch_x86_64.S)
 *   coro__context_switch_inline(from, to), on the side that leaves:
 *     1. push the address to resume at (label "1:" right after the
 *        jump), and jmp into coro__context_switch (the library is built
 *        with -mno-red-zone, so nothing lives below rsp; code built with
 *        a red zone steps over its 128 bytes first);
 *     2. push the callee-saved registers rbp rbx r12 r13 r14 r15: with
 *        the resume address, a 56-byte frame on the *old* stack. The
 *        floating-point control words are not saved: they belong to the
 *        thread (a coroutine that wants its own asks for CORO_OWN_FPENV,
 *        and the fiber layer above saves them around its switches only);
 *     3. store rsp into from->sp. The old side is now fully described by
 *        one pointer: everything else is on its own stack.
 *   and for the side that resumes:
 *     4. load rsp from to->sp: we are on the other stack now;
 *     5. pop its frame back into the registers, pop its resume address
 *        and jmp to it; it continues after its own step 1 as if its
 *        "function call" had just returned.
 *   (aarch64, coro/switch_aarch64.S, is the same dance with x19-x30,
 *   q8-q15, resuming with `br x30`; the program prints whichever
 *   frame it was built for.)
 *
 *   The frame a suspended side leaves (coro/context_frame.h has the real
 *   offsets; addresses grow upward):
 *
 *         higher addresses
 *        +---------------------------+
 *        | ...the side's C frames... |
 *        +---------------------------+
 *   sp+48| resume address            |  pushed by step 1, popped last
 *   sp+40| rbp                       |
 *   sp+32| rbx                       |
 *   sp+24| r12                       |
 *   sp+16| r13                       |
 *   sp+8 | r14                       |
 *   sp+0 | r15                       |  <- ctx->sp
 *        +---------------------------+
 *         lower addresses: free stack
 *
 * WHY ONLY THE CALLEE-SAVED REGISTERS
 *   To the compiler a switch is a call: the inline assembly declares every
 *   caller-saved register (rax, rcx, rdx, rsi, rdi, r8-r11, all the vector
 *   registers) clobbered, so nothing live is kept in them across it, just
 *   as across any call. Only what the ABI promises a callee will preserve
 *   needs saving: 56 bytes, a dozen instructions. swapcontext(3), by
 *   contrast, saves everything plus the signal mask, with a system call
 *   (build with CONTEXT=ucontext to compare).
 *
 * WHY IT ENDS WITH pop + jmp, NOT ret
 *   The CPU predicts where a `ret` goes with its return-stack buffer, a
 *   small stack of the addresses pushed by recent `call`s. A switch never
 *   returns to where it was called from (it "returns" on another stack),
 *   so a `ret` would be mispredicted on every switch. An indirect `jmp`
 *   is predicted by the branch target predictor instead, which learns the
 *   pattern.
 *
 * WHY IT IS ENTERED WITH push + jmp, NOT call
 *   A `call` would push an entry onto the return-stack buffer that no `ret`
 *   ever consumes. One stale entry per switch, and every `ret` the resumed
 *   side executes afterwards pops a wrong prediction. Pushing the resume
 *   address by hand and jumping leaves the buffer balanced for both sides.
 *   (coro/context.h quotes a scheduler yield at 26 ns when the switch was
 *   entered with `call` and left with `jmp`, 9 ns with a balanced
 *   call + ret, and less than that with push + jmp and pop + jmp.)
 *
 * STARTING AND ENDING A CONTEXT
 *   A new context has no frame to pop, so coro__context_make() writes a fake
 *   one at the top of the new stack: the resume address is the assembly
 *   routine coro__context_entry, and fn, arg and the context itself ride in
 *   r13, r12 and r14. The first switch pops them like any frame and jumps
 *   into the entry routine, which calls fn(arg). fn must never return into the
 *   routine's caller (it has none); it returns the context to go to next,
 *   and the entry routine makes that last switch. The program prints this first
 *   frame and checks it.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - main and gen alternate strictly, and each resumes exactly where it
 *     left off, local variables intact (gen's a and b live on its stack).
 *   - The first frame holds fn, arg and the context, and resumes at
 *     coro__context_entry; gen's later frame sits a few hundred bytes below
 *     the top of its malloc'd stack and resumes inside gen's own code.
 *   - A bare switch costs a few nanoseconds, typically less than the
 *     scheduler's switch in ping_pong, which also keeps a run queue,
 *     timers and statistics.
 *
 * Valgrind and the sanitizers follow the stack pointer and must be told
 * about the second stack; the few lines at the bottom do that (they are
 * no-ops in a normal build). The scheduler does the same in coro/fiber.c. */
#include "coro/context.h"
#include "coro/context_frame.h"
#include "coro/sanitize.h"
#include <coro.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STACK_SIZE ((size_t)64 * 1024)
#define VALUES 6
#define BOUNCES 200000

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "context_switch: unexpected: " __VA_ARGS__);    \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* One side of the ping-pong: its context, its stack, and what the tools
 * need (see the bottom of the file). */
struct side {
    coro__context_t ctx;
    const void *stack_lo; /* NULL for main: the thread's own stack */
    size_t stack_size;
    unsigned vg_id;
    void *asan_fake;
    void *tsan_fiber;
};

static struct side main_side, gen_side;

static void tools_setup(struct side *s);
static void tools_leave(struct side *from, struct side *to, int for_good);
static void tools_land(struct side *self);
static void tools_first_land(void);
static void tools_teardown(struct side *s);

/* Switch from `from` to `to` (and tell the tools); returns when someone
 * switches back to `from`. */
static inline void hop(struct side *from, struct side *to)
{
    tools_leave(from, to, 0);
    coro__context_switch_inline(&from->ctx, &to->ctx);
    tools_land(from);
}

/* ---- the generator --------------------------------------------------- */

struct gen {
    long long value; /* the value handed out */
    int done;
    int resumes;
};

static coro__context_t *generator(void *arg)
{
    struct gen *g = arg;
    tools_first_land();
    long long a = 0, b = 1; /* live on gen's own stack, across switches */
    printf("  gen : first run, on the malloc'd stack (a local at %p)\n", (void *)&a);
    for (int i = 0; i < VALUES; i++) {
        g->value = a;
        printf("  gen : yield %lld\n", a);
        hop(&gen_side, &main_side);
        g->resumes++;
        long long next = a + b;
        a = b;
        b = next;
    }
    g->done = 1;
    printf("  gen : finished: return &main's context; the entry routine switches there\n");
    tools_leave(&gen_side, &main_side, 1);
    return &main_side.ctx;
}

/* ---- a bare switch, timed -------------------------------------------- */

static struct side bounce_side;

static coro__context_t *bouncer(void *arg)
{
    int *n = arg;
    tools_first_land();
    for (int i = 0; i < *n; i++)
        hop(&bounce_side, &main_side);
    tools_leave(&bounce_side, &main_side, 1);
    return &main_side.ctx;
}

/* ---- looking at a saved frame ---------------------------------------- */

#if !defined(CORO_CONTEXT_UCONTEXT)
void coro__context_entry(void); /* the assembly entry routine, coro/switch_<arch>.S */

static uintptr_t frame_word(const coro__context_t *c, int off)
{
    uintptr_t v;
    memcpy(&v, (const char *)c->sp + off, sizeof v);
    return v;
}

static uintptr_t fn_addr(coro__context_fn f)
{
    uintptr_t v;
    memcpy(&v, &f, sizeof v);
    return v;
}

static const struct {
    const char *reg, *first_role;
    int off;
} frame_slots[] = {
#if defined(__x86_64__)
    { "resume", "coro__context_entry", CORO_FRAME_RESUME },
    { "rbp", "", CORO_FRAME_RBP },
    { "rbx", "", CORO_FRAME_RBX },
    { "r12", "arg", CORO_FRAME_R12 },
    { "r13", "fn", CORO_FRAME_R13 },
    { "r14", "the context itself", CORO_FRAME_R14 },
    { "r15", "", CORO_FRAME_R15 },
#elif defined(__aarch64__)
    { "x30 (resume)", "coro__context_entry", CORO_FRAME_RESUME },
    { "x29 (fp)", "", CORO_FRAME_X29 },
    { "x21", "the context itself", CORO_FRAME_X21 },
    { "x20", "fn", CORO_FRAME_X20 },
    { "x19", "arg", CORO_FRAME_X19 },
#endif
};

static void show_frame(const char *title, const struct side *s, int first)
{
    const char *top = (const char *)s->stack_lo + s->stack_size;
    printf("  %s: ctx->sp = %p, %td bytes below the stack top\n", title, s->ctx.sp,
           top - (const char *)s->ctx.sp);
    for (size_t i = 0; i < sizeof frame_slots / sizeof frame_slots[0]; i++)
        printf("    sp+%-3d %-12s 0x%016" PRIxPTR "%s%s\n", frame_slots[i].off,
               frame_slots[i].reg, frame_word(&s->ctx, frame_slots[i].off),
               first && *frame_slots[i].first_role ? "  = " : "",
               first ? frame_slots[i].first_role : "");
}
#endif

/* ---- main ------------------------------------------------------------ */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    static struct gen g;
    static const long long fib[VALUES] = { 0, 1, 1, 2, 3, 5 };

    void *stack = malloc(STACK_SIZE);
    if (!stack) {
        fprintf(stderr, "context_switch: malloc: %s\n", strerror(errno));
        return 1;
    }
    gen_side.stack_lo = stack;
    gen_side.stack_size = STACK_SIZE;
    tools_setup(&main_side);
    tools_setup(&gen_side);

    printf("1. a context on a %zu KiB malloc'd stack at %p\n", STACK_SIZE / 1024, stack);
    coro__context_make(&gen_side.ctx, stack, STACK_SIZE, generator, &g);
#if defined(CORO_CONTEXT_UCONTEXT)
    printf("  (built with CONTEXT=ucontext: the context is a ucontext_t filled by\n"
           "   getcontext/makecontext, not a frame on the stack; nothing to show)\n");
#else
    show_frame("the first frame, written by coro__context_make", &gen_side, 1);
    uintptr_t entry;
    void (*entry_fn)(void) = coro__context_entry;
    memcpy(&entry, &entry_fn, sizeof entry);
    CHECK(frame_word(&gen_side.ctx, CORO_FRAME_RESUME) == entry,
          "the first frame does not resume at coro__context_entry");
    CHECK(frame_word(&gen_side.ctx, CORO_FRAME_ARG) == (uintptr_t)&g, "arg slot");
    CHECK(frame_word(&gen_side.ctx, CORO_FRAME_FN) == fn_addr(generator), "fn slot");
    CHECK(frame_word(&gen_side.ctx, CORO_FRAME_SELF) == (uintptr_t)&gen_side.ctx,
          "self slot");
#endif

    printf("2. the ping-pong\n");
    int got = 0;
    for (;;) {
        printf("  main: switch to gen\n");
        hop(&main_side, &gen_side);
        if (g.done)
            break;
        printf("  main: got %lld\n", g.value);
        CHECK(got < VALUES && g.value == fib[got], "value #%d is %lld", got, g.value);
        got++;
#if !defined(CORO_CONTEXT_UCONTEXT)
        if (got == 1)
            show_frame("gen is suspended; its saved frame", &gen_side, 0);
#endif
    }
    printf("  main: gen is done after %d values; its stack can be freed\n", got);
    CHECK(got == VALUES && g.resumes == VALUES, "%d values, %d resumes", got, g.resumes);
    tools_teardown(&gen_side);

    printf("3. %d round trips through a bare context, timed\n", BOUNCES);
    int n = BOUNCES;
    bounce_side.stack_lo = stack; /* gen has ended: reuse its stack */
    bounce_side.stack_size = STACK_SIZE;
    tools_setup(&bounce_side);
    coro__context_make(&bounce_side.ctx, stack, STACK_SIZE, bouncer, &n);
    int64_t t0 = coro_now();
    for (int i = 0; i <= BOUNCES; i++) /* the last one comes back through the entry routine */
        hop(&main_side, &bounce_side);
    int64_t ns = coro_now() - t0;
    tools_teardown(&bounce_side);
    printf("  %d switches in %.2f ms: %.1f ns per switch\n", 2 * (BOUNCES + 1),
           (double)ns / 1e6, (double)ns / (2.0 * (BOUNCES + 1)));

    free(stack);
    return failures ? 1 : 0;
}

/* ---- telling the tools ----------------------------------------------- *
 * Valgrind sees the stack pointer jump into a heap block and would warn
 * "client switching stacks?" unless the block is registered as a stack.
 * AddressSanitizer keeps a shadow of each stack and must be told, around
 * every switch, which stack is about to run; ThreadSanitizer keeps a
 * shadow call stack per "fiber". All of it compiles to nothing when the
 * tool is absent. */

static void tools_setup(struct side *s)
{
    if (s->stack_lo)
        s->vg_id = VALGRIND_STACK_REGISTER(s->stack_lo,
                                           (const char *)s->stack_lo + s->stack_size);
#if CORO_TSAN
    s->tsan_fiber = s->stack_lo ? __tsan_create_fiber(0) : __tsan_get_current_fiber();
#endif
}

static void tools_teardown(struct side *s)
{
    if (s->stack_lo)
        VALGRIND_STACK_DEREGISTER(s->vg_id);
#if CORO_TSAN
    __tsan_destroy_fiber(s->tsan_fiber);
#endif
}

/* `from` is about to switch to `to`; for_good: and never come back. */
static void tools_leave(struct side *from, struct side *to, int for_good)
{
#if CORO_ASAN
    /* NULL: the leaving side's fake frames can be dropped. */
    __sanitizer_start_switch_fiber(for_good ? NULL : &from->asan_fake, to->stack_lo,
                                   to->stack_size);
#endif
#if CORO_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    (void)from;
    (void)to;
    (void)for_good;
}

/* `self` runs again after a switch. */
static void tools_land(struct side *self)
{
#if CORO_ASAN
    __sanitizer_finish_switch_fiber(self->asan_fake, NULL, NULL);
#endif
    (void)self;
}

/* A new context's first instructions: ASan tells us the bounds of the
 * stack we came from (main's, the thread's own). */
static void tools_first_land(void)
{
#if CORO_ASAN
    __sanitizer_finish_switch_fiber(NULL, &main_side.stack_lo, &main_side.stack_size);
#endif
}
