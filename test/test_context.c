/* test/test_context.c: the bare context switch (coro/context.h) and the
 * fiber layer on top of it (coro/fiber.h): control really moves back and
 * forth, every callee-saved register and the FPU control state survive a
 * switch, and a new context starts on a 16-byte-aligned stack inside the
 * one it was given. Must pass with CONTEXT=asm and CONTEXT=ucontext. */
#include "test/test.h"

#include "coro/context.h"
#include "coro/fiber.h"
#include "coro/stack.h"
#include "coro/coro.h"

#include <fenv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a stack for a bare context ---------------------------------------- */

/* A stack for a bare context. coro__stack_alloc registers it with Valgrind
 * (else Valgrind would warn "client switching stacks?" on every switch). */
typedef struct raw_stack {
    coro__stack_t st;
} raw_stack_t;

static void raw_stack_new(raw_stack_t *s, size_t size)
{
    size_t sz = coro__stack_size_for(size);
    ASSERT_NE(sz, 0);
    ASSERT_EQ(coro__stack_alloc(&s->st, sz), 0);
}

static void raw_stack_free(raw_stack_t *s)
{
    coro__stack_free(&s->st);
}

/* ThreadSanitizer keeps a shadow call stack per thread; a bare switch that
 * does not tell it (the fiber layer does) corrupts it. */
static void skip_bare_under_tsan(void)
{
    if (CORO_TSAN)
        TEST_SKIP("a bare context switch has no ThreadSanitizer annotations");
}

/* ---- ping-pong ---------------------------------------------------------- */

#define PINGPONG_ROUNDS 200000

typedef struct pingpong {
    coro__context_t main_ctx, co_ctx;
    void *arg_seen;
    long co_count;
    long main_count;
    /* Each side checks the other ran exactly once in between. */
    int bad;
} pingpong_t;

static coro__context_t *pingpong_co(void *arg)
{
    pingpong_t *p = arg;
    p->arg_seen = arg;
    for (;;) {
        if (p->co_count != p->main_count - 1)
            p->bad = 1;
        p->co_count++;
        coro__context_switch(&p->co_ctx, &p->main_ctx);
    }
    return NULL; /* not reached */
}

TEST(context_pingpong)
{
    skip_bare_under_tsan();
    raw_stack_t rs;
    raw_stack_new(&rs, 0);
    /* The argument lives in the mapping, so its address has high bits set
     * (the ucontext backend passes it in two 32-bit halves). */
    pingpong_t *p = (pingpong_t *)(void *)rs.st.lo;
    memset(p, 0, sizeof *p);
    coro__context_make(&p->co_ctx, rs.st.lo + 4096, rs.st.size - 4096, pingpong_co, p);
    for (long i = 0; i < PINGPONG_ROUNDS; i++) {
        p->main_count++;
        coro__context_switch(&p->main_ctx, &p->co_ctx);
        ASSERT_EQ(p->co_count, i + 1);
    }
    ASSERT_PTR_EQ(p->arg_seen, p);
    ASSERT_EQ(p->bad, 0);
    raw_stack_free(&rs);
    coro__stack_pool_release();
}

/* ---- a ring of contexts ------------------------------------------------- */

#define RING 5
#define RING_ROUNDS 2000

typedef struct ring {
    coro__context_t main_ctx, ctx[RING];
    /* Who ran, in order. */
    unsigned char trace[RING * RING_ROUNDS];
    size_t ntrace;
} ring_t;

typedef struct ring_member {
    ring_t *ring;
    int index;
} ring_member_t;

static coro__context_t *ring_co(void *arg)
{
    ring_member_t *m = arg;
    ring_t *r = m->ring;
    for (;;) {
        r->trace[r->ntrace++] = (unsigned char)m->index;
        coro__context_t *next = m->index + 1 < RING ? &r->ctx[m->index + 1] : &r->main_ctx;
        coro__context_switch(&r->ctx[m->index], next);
    }
    return NULL; /* not reached */
}

TEST(context_ring_passes_control_in_order)
{
    skip_bare_under_tsan();
    static ring_t r;
    ring_member_t members[RING];
    raw_stack_t stacks[RING];
    for (int i = 0; i < RING; i++) {
        raw_stack_new(&stacks[i], CORO_STACK_MIN);
        members[i] = (ring_member_t){ &r, i };
        coro__context_make(&r.ctx[i], stacks[i].st.lo, stacks[i].st.size, ring_co, &members[i]);
    }
    for (int round = 0; round < RING_ROUNDS; round++) {
        coro__context_switch(&r.main_ctx, &r.ctx[0]);
        ASSERT_EQ(r.ntrace, (size_t)(round + 1) * RING);
    }
    for (size_t i = 0; i < r.ntrace; i++)
        ASSERT_EQ(r.trace[i], i % RING);
    for (int i = 0; i < RING; i++)
        raw_stack_free(&stacks[i]);
    coro__stack_pool_release();
}

/* ---- callee-saved registers --------------------------------------------- */

/* test_switch_regs_ctx(from, to, in, out): load every callee-saved
 * register from in[], call coro__context_switch(from, to), and when it
 * returns store the same registers into out[]. test_switch_regs_fiber does
 * the same around coro__fiber_switch. Written in assembly so that no
 * compiler-generated save/restore can hide a register the switch loses. */
#if defined(__x86_64__)
/* rbx rbp r12 r13 r14 r15 */
#define NREGS 6
#define SWITCH_REGS_ASM(name, target)                                    \
    ".text\n"                                                            \
    ".globl " name "\n"                                                  \
    ".type " name ", @function\n"                                        \
    ".p2align 4\n"                                                       \
    name ":\n"                                                           \
    "    pushq %rbp\n"                                                   \
    "    pushq %rbx\n"                                                   \
    "    pushq %r12\n"                                                   \
    "    pushq %r13\n"                                                   \
    "    pushq %r14\n"                                                   \
    "    pushq %r15\n"                                                   \
    "    pushq %rcx\n" /* out; 7 pushes keep rsp 16-byte aligned */     \
    "    movq 0(%rdx), %rbx\n"                                           \
    "    movq 8(%rdx), %rbp\n"                                           \
    "    movq 16(%rdx), %r12\n"                                          \
    "    movq 24(%rdx), %r13\n"                                          \
    "    movq 32(%rdx), %r14\n"                                          \
    "    movq 40(%rdx), %r15\n"                                          \
    "    call " target "@PLT\n"                                          \
    "    movq (%rsp), %rcx\n"                                            \
    "    movq %rbx, 0(%rcx)\n"                                           \
    "    movq %rbp, 8(%rcx)\n"                                           \
    "    movq %r12, 16(%rcx)\n"                                          \
    "    movq %r13, 24(%rcx)\n"                                          \
    "    movq %r14, 32(%rcx)\n"                                          \
    "    movq %r15, 40(%rcx)\n"                                          \
    "    popq %rcx\n"                                                    \
    "    popq %r15\n"                                                    \
    "    popq %r14\n"                                                    \
    "    popq %r13\n"                                                    \
    "    popq %r12\n"                                                    \
    "    popq %rbx\n"                                                    \
    "    popq %rbp\n"                                                    \
    "    ret\n"                                                          \
    ".size " name ", .-" name "\n"
static const char *const reg_names[NREGS] = { "rbx", "rbp", "r12", "r13", "r14", "r15" };
#elif defined(__aarch64__)
/* x19-x28, x29 (frame pointer), d8-d15 */
#define NREGS 19
#define SWITCH_REGS_ASM(name, target)                                    \
    ".text\n"                                                            \
    ".globl " name "\n"                                                  \
    ".type " name ", %function\n"                                        \
    ".p2align 4\n"                                                       \
    name ":\n"                                                           \
    "    sub sp, sp, #176\n"                                             \
    "    stp x19, x20, [sp, #0]\n"                                       \
    "    stp x21, x22, [sp, #16]\n"                                      \
    "    stp x23, x24, [sp, #32]\n"                                      \
    "    stp x25, x26, [sp, #48]\n"                                      \
    "    stp x27, x28, [sp, #64]\n"                                      \
    "    stp x29, x30, [sp, #80]\n"                                      \
    "    stp d8, d9, [sp, #96]\n"                                        \
    "    stp d10, d11, [sp, #112]\n"                                     \
    "    stp d12, d13, [sp, #128]\n"                                     \
    "    stp d14, d15, [sp, #144]\n"                                     \
    "    str x3, [sp, #160]\n"                                           \
    "    ldp x19, x20, [x2, #0]\n"                                       \
    "    ldp x21, x22, [x2, #16]\n"                                      \
    "    ldp x23, x24, [x2, #32]\n"                                      \
    "    ldp x25, x26, [x2, #48]\n"                                      \
    "    ldp x27, x28, [x2, #64]\n"                                      \
    "    ldr x29, [x2, #80]\n"                                           \
    "    ldp d8, d9, [x2, #88]\n"                                        \
    "    ldp d10, d11, [x2, #104]\n"                                     \
    "    ldp d12, d13, [x2, #120]\n"                                     \
    "    ldp d14, d15, [x2, #136]\n"                                     \
    "    bl " target "\n"                                                \
    "    ldr x3, [sp, #160]\n"                                           \
    "    stp x19, x20, [x3, #0]\n"                                       \
    "    stp x21, x22, [x3, #16]\n"                                      \
    "    stp x23, x24, [x3, #32]\n"                                      \
    "    stp x25, x26, [x3, #48]\n"                                      \
    "    stp x27, x28, [x3, #64]\n"                                      \
    "    str x29, [x3, #80]\n"                                           \
    "    stp d8, d9, [x3, #88]\n"                                        \
    "    stp d10, d11, [x3, #104]\n"                                     \
    "    stp d12, d13, [x3, #120]\n"                                     \
    "    stp d14, d15, [x3, #136]\n"                                     \
    "    ldp x19, x20, [sp, #0]\n"                                       \
    "    ldp x21, x22, [sp, #16]\n"                                      \
    "    ldp x23, x24, [sp, #32]\n"                                      \
    "    ldp x25, x26, [sp, #48]\n"                                      \
    "    ldp x27, x28, [sp, #64]\n"                                      \
    "    ldp x29, x30, [sp, #80]\n"                                      \
    "    ldp d8, d9, [sp, #96]\n"                                        \
    "    ldp d10, d11, [sp, #112]\n"                                     \
    "    ldp d12, d13, [sp, #128]\n"                                     \
    "    ldp d14, d15, [sp, #144]\n"                                     \
    "    add sp, sp, #176\n"                                             \
    "    ret\n"                                                          \
    ".size " name ", .-" name "\n"
static const char *const reg_names[NREGS] = {
    "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29",
    "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15"
};
#endif

#ifdef NREGS
__asm__(SWITCH_REGS_ASM("test_switch_regs_ctx", "coro__context_switch")
        SWITCH_REGS_ASM("test_switch_regs_fiber", "test_fiber_switch_outlined"));
/* coro__fiber_switch is inline; the assembly calls it through this. */
void test_fiber_switch_outlined(coro__fiber_t *from, coro__fiber_t *to);
__attribute__((noinline)) void test_fiber_switch_outlined(coro__fiber_t *from, coro__fiber_t *to)
{
    coro__fiber_switch(from, to);
}

void test_switch_regs_ctx(coro__context_t *from, coro__context_t *to,
                          const uint64_t *in, uint64_t *out);
void test_switch_regs_fiber(coro__fiber_t *from, coro__fiber_t *to,
                            const uint64_t *in, uint64_t *out);

/* Distinct values per register, side and round, with high and low bits set
 * (and valid doubles on aarch64, which does not matter to a move). */
static void reg_values(uint64_t *v, int side, long round)
{
    for (int i = 0; i < NREGS; i++)
        v[i] = 0x8000000000000001ull ^ ((uint64_t)(i + 1) << 56) ^
               ((uint64_t)side << 48) ^ ((uint64_t)round << 8) ^ (uint64_t)(i * 0x1111);
}

static void check_regs(const uint64_t *want, const uint64_t *got, const char *who, long round)
{
    for (int i = 0; i < NREGS; i++)
        if (want[i] != got[i])
            test_fail(__FILE__, __LINE__,
                      "%s, round %ld: %s was %#llx before the switch, %#llx after",
                      who, round, reg_names[i], (unsigned long long)want[i],
                      (unsigned long long)got[i]);
}

#define REG_ROUNDS 1000

typedef struct regs_state {
    coro__context_t main_ctx, co_ctx;
    coro__fiber_t *main_f, *co_f;
    int use_fiber;
} regs_state_t;

/* The other side: load its own values (clobbering the first side's), and
 * check them on every resume. */
__attribute__((noreturn)) static void regs_other_side(regs_state_t *s)
{
    uint64_t in[NREGS], out[NREGS];
    for (long round = 0;; round++) {
        reg_values(in, 2, round);
        if (s->use_fiber)
            test_switch_regs_fiber(s->co_f, s->main_f, in, out);
        else
            test_switch_regs_ctx(&s->co_ctx, &s->main_ctx, in, out);
        check_regs(in, out, "the switched-to side", round);
    }
}

static coro__context_t *regs_co(void *arg)
{
    regs_other_side(arg);
    return NULL;
}

static regs_state_t *fiber_regs_state;

static coro__fiber_t *regs_fiber_body(coro__fiber_t *f)
{
    (void)f;
    regs_other_side(fiber_regs_state);
    return NULL;
}

static void run_regs_main_side(regs_state_t *s)
{
    uint64_t in[NREGS], out[NREGS];
    for (long round = 0; round < REG_ROUNDS; round++) {
        reg_values(in, 1, round);
        if (s->use_fiber)
            test_switch_regs_fiber(s->main_f, s->co_f, in, out);
        else
            test_switch_regs_ctx(&s->main_ctx, &s->co_ctx, in, out);
        check_regs(in, out, "the switching side", round);
    }
}
#endif /* NREGS */

TEST(context_callee_saved_registers_survive)
{
#ifndef NREGS
    TEST_SKIP("no register test for this CPU");
#else
    skip_bare_under_tsan();
    raw_stack_t rs;
    raw_stack_new(&rs, 0);
    regs_state_t s;
    memset(&s, 0, sizeof s);
    coro__context_make(&s.co_ctx, rs.st.lo, rs.st.size, regs_co, &s);
    run_regs_main_side(&s);
    raw_stack_free(&rs);
    coro__stack_pool_release();
#endif
}

TEST(fiber_callee_saved_registers_survive)
{
#ifndef NREGS
    TEST_SKIP("no register test for this CPU");
#else
    coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    regs_state_t s;
    memset(&s, 0, sizeof s);
    s.use_fiber = 1;
    s.main_f = &main_f;
    s.co_f = coro__fiber_new(coro__stack_size_for(0), sizeof(coro__fiber_t), regs_fiber_body);
    ASSERT_NOT_NULL(s.co_f);
    fiber_regs_state = &s;
    run_regs_main_side(&s);
    coro__fiber_free(s.co_f);
    coro__fiber_fini_thread(&main_f);
    coro__stack_pool_release();
#endif
}

/* ---- FPU control state --------------------------------------------------- */

/* The control state that belongs to a context: rounding mode, and on
 * x86-64 the whole x87 control word (precision control included) and the
 * MXCSR control bits (not the sticky flags); on aarch64 FPCR. */
typedef struct fp_ctl {
    unsigned x87;  /* x86-64: x87 control word */
    unsigned sse;  /* x86-64: MXCSR without the 6 flag bits; aarch64: FPCR */
} fp_ctl_t;

static fp_ctl_t fp_read(void)
{
    fp_ctl_t c = { 0, 0 };
#if defined(__x86_64__)
    unsigned short cw;
    unsigned mxcsr;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    c.x87 = cw;
    c.sse = mxcsr & ~0x3Fu;
#elif defined(__aarch64__)
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    c.sse = (unsigned)fpcr;
#endif
    return c;
}

/* Flip a control bit that fesetround does not touch: x87 precision control
 * to 53 bits and MXCSR flush-to-zero; aarch64 FPCR.FZ. */
static void fp_set_extra(void)
{
#if defined(__x86_64__)
    unsigned short cw;
    unsigned mxcsr;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    cw = (unsigned short)((cw & ~0x300u) | 0x200u);
    __asm__ volatile("fldcw %0" : : "m"(cw));
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    mxcsr |= 1u << 15;
    __asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
#elif defined(__aarch64__)
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    fpcr |= 1ul << 24;
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#endif
}

/* Two quotients rounded by the FP unit under the current mode (volatile
 * keeps the compiler from folding them at build time). Round-to-nearest
 * gives 1/3 rounded down and 1/10 rounded up, so the pair tells the three
 * modes apart: upward raises `third`, downward lowers `tenth`. */
typedef struct quotients {
    double third, tenth;
} quotients_t;

/* noinline: GCC does not model the rounding mode (no -frounding-math), so
 * inlined divisions could move across a fesetround or a switch. */
__attribute__((noinline)) static quotients_t quotients(void)
{
    volatile double one = 1.0, three = 3.0, ten = 10.0;
    quotients_t q = { one / three, one / ten };
    return q;
}

static int same_quotients(quotients_t a, quotients_t b)
{
    return a.third == b.third && a.tenth == b.tenth;
}

/* Where the environment lives: with the assembly switch the thread owns
 * it (a context that changes it changes it for all); swapcontext(3)
 * saves and restores it with every context. */
#if defined(CORO_CONTEXT_UCONTEXT)
#define THREAD_OWNS_FPENV 0
#else
#define THREAD_OWNS_FPENV 1
#endif

typedef struct fp_state {
    coro__context_t main_ctx, co_ctx;
    quotients_t co_up;
} fp_state_t;

static coro__context_t *fp_co(void *arg)
{
    fp_state_t *s = arg;
    fesetround(FE_UPWARD);
    s->co_up = quotients();
    coro__context_switch(&s->co_ctx, &s->main_ctx);
    return NULL; /* not reached */
}

/* The bare switch moves registers only: the rounding mode a context sets
 * is the thread's, and the side that resumes runs under it. */
TEST(context_fpu_control_belongs_to_the_thread)
{
    skip_bare_under_tsan();
    int arith = !test_under_valgrind(); /* Valgrind's SSE always rounds to nearest */
    ASSERT_EQ(fesetround(FE_TONEAREST), 0);
    const quotients_t near = quotients();
    raw_stack_t rs;
    raw_stack_new(&rs, 0);
    static fp_state_t s;
    coro__context_make(&s.co_ctx, rs.st.lo, rs.st.size, fp_co, &s);
    coro__context_switch(&s.main_ctx, &s.co_ctx);
    if (arith)
        ASSERT(s.co_up.third > near.third);
    if (THREAD_OWNS_FPENV) {
        ASSERT_EQ(fegetround(), FE_UPWARD);
        if (arith)
            ASSERT(same_quotients(quotients(), s.co_up));
    } else {
        ASSERT_EQ(fegetround(), FE_TONEAREST);
        if (arith)
            ASSERT(same_quotients(quotients(), near));
    }
    ASSERT_EQ(fesetround(FE_TONEAREST), 0);
    raw_stack_free(&rs);
    coro__stack_pool_release();
}

/* ---- a fiber that owns its environment ----------------------------------- */

typedef struct fpenv_hdr {
    coro__fiber_t fiber;
    coro__fiber_t *next;   /* where it switches to */
    int round_at_start;
    int round_seen;        /* fegetround() each time it is back */
    int ctl_ok;            /* its whole control state survived (own only) */
    fp_ctl_t ctl;
    quotients_t q_set, q_seen;
    int rounds, stop;
} fpenv_hdr_t;

/* Owns its environment: sets upward rounding and the extra control bits,
 * then checks at each return that they are still there. */
static coro__fiber_t *fpenv_owner_body(coro__fiber_t *f)
{
    fpenv_hdr_t *h = (fpenv_hdr_t *)(void *)f;
    h->round_at_start = fegetround();
    fesetround(FE_UPWARD);
    fp_set_extra();
    h->ctl = fp_read();
    h->q_set = quotients();
    while (!h->stop) {
        coro__fiber_switch(f, h->next);
        h->round_seen = fegetround();
        fp_ctl_t now = fp_read();
        h->ctl_ok = now.x87 == h->ctl.x87 && now.sse == h->ctl.sse;
        h->q_seen = quotients();
        h->rounds++;
    }
    return h->next;
}

/* Does not own it: rounds toward zero once, then only looks. */
static coro__fiber_t *fpenv_plain_body(coro__fiber_t *f)
{
    fpenv_hdr_t *h = (fpenv_hdr_t *)(void *)f;
    h->round_at_start = fegetround();
    fesetround(FE_TOWARDZERO);
    while (!h->stop) {
        coro__fiber_switch(f, h->next);
        h->round_seen = fegetround();
        h->rounds++;
    }
    return h->next;
}

TEST(fiber_own_fpenv_keeps_its_environment)
{
    /* Valgrind does not model x87 precision control or MXCSR.FTZ, and its
     * SSE arithmetic always rounds to nearest: there only the rounding
     * mode as stored is checked. */
    int extra = !test_under_valgrind();
    int arith = !test_under_valgrind();
    coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    size_t size = coro__stack_size_for(0);
    ASSERT_EQ(fesetround(FE_TONEAREST), 0);
    const fp_ctl_t near_ctl = fp_read();
    const quotients_t near = quotients();

    /* The owner starts with the environment in force where it was made. */
    ASSERT_EQ(fesetround(FE_DOWNWARD), 0);
    fpenv_hdr_t *own = (fpenv_hdr_t *)(void *)coro__fiber_new(size, sizeof *own, fpenv_owner_body);
    ASSERT_NOT_NULL(own);
    coro__fiber_own_fpenv(&own->fiber);
    ASSERT_EQ(fesetround(FE_TONEAREST), 0);
    fpenv_hdr_t *plain = (fpenv_hdr_t *)(void *)coro__fiber_new(size, sizeof *plain, fpenv_plain_body);
    ASSERT_NOT_NULL(plain);
    own->next = &plain->fiber; /* owner -> plain -> main */
    plain->next = &main_f;
    own->rounds = plain->rounds = own->stop = plain->stop = 0;

    coro__fiber_switch(&main_f, &own->fiber);
    ASSERT_EQ(own->round_at_start, FE_DOWNWARD);
    if (arith)
        ASSERT(own->q_set.third > near.third);
    if (extra)
        ASSERT_NE(own->ctl.sse, near_ctl.sse);
    /* The owner's upward rounding did not reach the plain fiber... */
    ASSERT_EQ(plain->round_at_start, FE_TONEAREST);
    /* ...whose toward-zero rounding is the thread's (asm backend), or
     * stays its own (ucontext). */
    ASSERT_EQ(fegetround(), THREAD_OWNS_FPENV ? FE_TOWARDZERO : FE_TONEAREST);
    ASSERT_EQ(fesetround(FE_TONEAREST), 0);

    for (int i = 0; i < 100; i++) {
        coro__fiber_switch(&main_f, &own->fiber);
        ASSERT_EQ(own->round_seen, FE_UPWARD);
        if (extra)
            ASSERT_EQ(own->ctl_ok, 1);
        if (arith)
            ASSERT(same_quotients(own->q_seen, own->q_set));
        ASSERT_EQ(plain->round_seen, THREAD_OWNS_FPENV ? FE_TONEAREST : FE_TOWARDZERO);
        ASSERT_EQ(fegetround(), FE_TONEAREST);
        if (extra) {
            ASSERT_EQ(fp_read().x87, near_ctl.x87);
            ASSERT_EQ(fp_read().sse, near_ctl.sse);
        }
        if (arith)
            ASSERT(same_quotients(quotients(), near));
    }
    ASSERT_EQ(own->rounds, 100);
    ASSERT_EQ(plain->rounds, 100);

    /* The owner ends: its environment goes with it, the thread's stays. */
    own->stop = 1;
    own->next = &main_f;
    coro__fiber_switch(&main_f, &own->fiber);
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    if (extra)
        ASSERT_EQ(fp_read().sse, near_ctl.sse);
    plain->stop = 1;
    coro__fiber_switch(&main_f, &plain->fiber);
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    coro__fiber_free(&own->fiber);
    coro__fiber_free(&plain->fiber);
    coro__fiber_fini_thread(&main_f);
    ASSERT_EQ(fesetround(FE_TONEAREST), 0);
    coro__stack_pool_release();
}

/* ---- stack alignment and bounds at entry -------------------------------- */

/* test_ctx_entry_probe(arg): a context entry that records the stack pointer
 * exactly as the entry function receives it, then jumps to
 * test_ctx_entry_body(arg) without touching the stack. */
uintptr_t test_ctx_entry_sp;
coro__context_t *test_ctx_entry_probe(void *arg);
coro__context_t *test_ctx_entry_body(void *arg);

#if defined(__x86_64__)
__asm__(".text\n"
        ".globl test_ctx_entry_probe\n"
        ".type test_ctx_entry_probe, @function\n"
        "test_ctx_entry_probe:\n"
        "    movq %rsp, test_ctx_entry_sp(%rip)\n"
        "    jmp test_ctx_entry_body@PLT\n"
        ".size test_ctx_entry_probe, .-test_ctx_entry_probe\n");
/* As after a `call`: sp + 8 is a multiple of 16. */
#define ENTRY_SP_MOD16 8
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl test_ctx_entry_probe\n"
        ".type test_ctx_entry_probe, %function\n"
        "test_ctx_entry_probe:\n"
        "    mov x9, sp\n"
        "    adrp x10, test_ctx_entry_sp\n"
        "    str x9, [x10, :lo12:test_ctx_entry_sp]\n"
        "    b test_ctx_entry_body\n"
        ".size test_ctx_entry_probe, .-test_ctx_entry_probe\n");
#define ENTRY_SP_MOD16 0
#endif

typedef struct align_state {
    coro__context_t main_ctx, co_ctx;
    void *arg_seen;
    char formatted[64];
} align_state_t;

coro__context_t *test_ctx_entry_body(void *arg)
{
    align_state_t *s = arg;
    s->arg_seen = arg;
    /* Variadic calls with doubles save vector registers with aligned
     * stores in glibc: a misaligned stack would crash here. */
    snprintf(s->formatted, sizeof s->formatted, "%.3f %.1f", 3.14159, 2.5);
    /* Returning ends the context with a switch to main_ctx. */
    return &s->main_ctx;
}

TEST(context_entry_stack_aligned_and_inside)
{
#ifndef ENTRY_SP_MOD16
    TEST_SKIP("no stack-pointer probe for this CPU");
#else
    skip_bare_under_tsan();
    raw_stack_t rs;
    raw_stack_new(&rs, 0);
    /* Misaligned bottoms and tops: the context must align by itself. */
    static const size_t lo_skew[] = { 0, 1, 8, 15 };
    static const size_t top_skew[] = { 0, 1, 7, 8, 12, 15 };
    for (size_t i = 0; i < sizeof lo_skew / sizeof *lo_skew; i++) {
        for (size_t j = 0; j < sizeof top_skew / sizeof *top_skew; j++) {
            char *lo = rs.st.lo + 256 + lo_skew[i];
            size_t size = rs.st.size - 256 - lo_skew[i] - top_skew[j];
            static align_state_t s;
            memset(&s, 0, sizeof s);
            test_ctx_entry_sp = 0;
            coro__context_make(&s.co_ctx, lo, size, test_ctx_entry_probe, &s);
            coro__context_switch(&s.main_ctx, &s.co_ctx);
            uintptr_t sp = test_ctx_entry_sp;
            ASSERT_PTR_EQ(s.arg_seen, &s);
            ASSERT_STR_EQ(s.formatted, "3.142 2.5");
            ASSERT_EQ(sp % 16, ENTRY_SP_MOD16);
            ASSERT_GT(sp, (uintptr_t)lo);
            ASSERT_LE(sp, (uintptr_t)(lo + size));
            /* Near the top, not somewhere down the stack. */
            ASSERT_LT((uintptr_t)(lo + size) - sp, 4096);
        }
    }
    raw_stack_free(&rs);
    coro__stack_pool_release();
#endif
}

/* ---- returning from a context's function ------------------------------ */

/* A context's function that returns ends the context with a switch to the
 * context it returned: here first to a brand-new context (which starts),
 * whose function in turn returns to main. */
typedef struct ret_state {
    coro__context_t main_ctx, a_ctx, b_ctx;
    char order[8];
    int n;
    int locals_ok;
} ret_state_t;

static coro__context_t *ret_b(void *arg)
{
    ret_state_t *s = arg;
    s->order[s->n++] = 'b';
    return &s->main_ctx;
}

static coro__context_t *ret_a(void *arg)
{
    ret_state_t *s = arg;
    volatile long local = 0x5eed;
    s->order[s->n++] = 'a';
    /* One ordinary round trip to main first. */
    coro__context_switch(&s->a_ctx, &s->main_ctx);
    s->locals_ok = local == 0x5eed;
    s->order[s->n++] = 'A';
    return &s->b_ctx;
}

TEST(context_return_switches_to_the_returned_context)
{
    skip_bare_under_tsan();
    raw_stack_t ra, rb;
    raw_stack_new(&ra, 0);
    raw_stack_new(&rb, 0);
    for (int round = 0; round < 100; round++) {
        static ret_state_t s;
        memset(&s, 0, sizeof s);
        /* Stacks and contexts are reused every round: a finished context's
         * stack is free for the next one. */
        coro__context_make(&s.a_ctx, ra.st.lo, ra.st.size, ret_a, &s);
        coro__context_make(&s.b_ctx, rb.st.lo, rb.st.size, ret_b, &s);
        coro__context_switch(&s.main_ctx, &s.a_ctx);
        ASSERT_STR_EQ(s.order, "a");
        coro__context_switch(&s.main_ctx, &s.a_ctx);
        ASSERT_STR_EQ(s.order, "aAb");
        ASSERT_EQ(s.locals_ok, 1);
    }
    raw_stack_free(&ra);
    raw_stack_free(&rb);
    coro__stack_pool_release();
}

/* ---- fibers ------------------------------------------------------------- */

typedef struct fiber_test_hdr {
    coro__fiber_t fiber; /* first, as coro__fiber_new requires */
    coro__fiber_t *back; /* who to switch to */
    long runs;
    coro__fiber_t *running_seen;
    int done;
    char payload[200];
} fiber_test_hdr_t;

static coro__fiber_t *fiber_test_body(coro__fiber_t *f)
{
    fiber_test_hdr_t *h = (fiber_test_hdr_t *)(void *)f;
    for (int i = 0; i < 3; i++) {
        h->runs++;
        h->running_seen = coro__fiber_running;
        coro__fiber_switch(f, h->back);
    }
    h->done = 1;
    return h->back;
}

TEST(fiber_switch_return_free)
{
    coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    ASSERT_PTR_EQ(coro__fiber_running, &main_f);
    size_t size = coro__stack_size_for(0);

    enum { N = 10 };
    fiber_test_hdr_t *h[N];
    for (int i = 0; i < N; i++) {
        coro__fiber_t *f = coro__fiber_new(size, sizeof(fiber_test_hdr_t), fiber_test_body);
        ASSERT_NOT_NULL(f);
        h[i] = (fiber_test_hdr_t *)(void *)f;
        /* The header is 64-byte aligned, near the top of the stack
         * (within a few cache lines) and the stack below it. */
        ASSERT_EQ((uintptr_t)f % 64, 0);
        ASSERT_PTR_EQ(f->stack.lo + coro__fiber_stack_bytes(f), f);
        ASSERT_LE((char *)f + sizeof(fiber_test_hdr_t), f->stack.lo + f->stack.size);
        ASSERT_GT((char *)f + 1024 + sizeof(fiber_test_hdr_t), f->stack.lo + f->stack.size);
        ASSERT_EQ(f->stack.size, size);
        ASSERT_PTR_EQ(f->body, fiber_test_body);
        h[i]->back = &main_f;
        h[i]->runs = 0;
        h[i]->done = 0;
        memset(h[i]->payload, 'x', sizeof h[i]->payload);
    }
    /* Interleave them: each runs three times, then returns. */
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++) {
            coro__fiber_switch(&main_f, &h[i]->fiber);
            ASSERT_PTR_EQ(coro__fiber_running, &main_f);
            if (round < 3) {
                ASSERT_EQ(h[i]->runs, round + 1);
                ASSERT_PTR_EQ(h[i]->running_seen, &h[i]->fiber);
                ASSERT_EQ(h[i]->done, 0);
            } else {
                ASSERT_EQ(h[i]->done, 1);
            }
            ASSERT_EQ(h[i]->payload[100], 'x');
        }
    }
    for (int i = 0; i < N; i++)
        coro__fiber_free(&h[i]->fiber);
    coro__fiber_fini_thread(&main_f);
    ASSERT_NULL(coro__fiber_running);
    coro__stack_pool_release();
}

/* coro__fiber_new does not clear the header, but the fiber's own fields
 * are set even on a reused, dirty stack. */
static coro__fiber_t *unused_body(coro__fiber_t *f)
{
    return f;
}

TEST(fiber_new_on_a_dirty_stack_sets_its_fields)
{
    /* The header must hold the fiber (over 900 bytes with ucontext). */
    enum { HDR = sizeof(coro__fiber_t) + 256 };
    size_t size = coro__stack_size_for(0);
    coro__fiber_t *f = coro__fiber_new(size, HDR, unused_body);
    ASSERT_NOT_NULL(f);
    char *lo = f->stack.lo, *top = f->stack.lo + f->stack.size;
    /* Dirty everything but the fiber itself, which free reads. */
    memset(lo, 0xff, (size_t)((char *)f - lo));
    memset((char *)f + sizeof *f, 0xff, (size_t)(top - ((char *)f + sizeof *f)));
    f->id = 99;
    coro__fiber_free(f);
    for (int i = 0; i < 8; i++) {
        /* The pool hands the same stack back (last freed, first out). */
        coro__fiber_t *g = coro__fiber_new(size, HDR, unused_body);
        ASSERT_NOT_NULL(g);
        ASSERT_PTR_EQ(g->stack.lo, lo);
        ASSERT_EQ(g->stack.size, size);
        ASSERT_EQ(g->id, 0);
        ASSERT_NULL(g->name);
        ASSERT_PTR_EQ(g->body, unused_body);
        ASSERT_LE((char *)g + HDR, top);
        ASSERT_PTR_EQ(g->stack.lo + coro__fiber_stack_bytes(g), g);
        memset(lo, 0xff, coro__fiber_stack_bytes(g));
        memset((char *)g + sizeof *g, 0xff, (size_t)(top - ((char *)g + sizeof *g)));
        g->name = strdup("dirty");
        coro__fiber_free(g);
    }
    coro__stack_pool_release();
}

/* A fiber that ends by returning to another fiber (not the one that
 * started it), which frees it: the usual shape of a scheduler. */
static coro__fiber_t *handoff_target;
static int handoff_ran;

static coro__fiber_t *handoff_body(coro__fiber_t *f)
{
    (void)f;
    handoff_ran++;
    return handoff_target;
}

static coro__fiber_t *reaper_main;
static coro__fiber_t *reaper_victim;

static coro__fiber_t *reaper_body(coro__fiber_t *f)
{
    /* Runs once the victim has returned: free it from here. */
    coro__fiber_free(reaper_victim);
    reaper_victim = NULL;
    (void)f;
    return reaper_main;
}

TEST(fiber_returns_to_a_third_fiber_that_frees_it)
{
    coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    size_t size = coro__stack_size_for(0);
    for (int i = 0; i < 1000; i++) {
        reaper_main = &main_f;
        coro__fiber_t *reaper = coro__fiber_new(size, sizeof(coro__fiber_t), reaper_body);
        reaper_victim = coro__fiber_new(size, sizeof(coro__fiber_t), handoff_body);
        ASSERT_NOT_NULL(reaper);
        ASSERT_NOT_NULL(reaper_victim);
        handoff_target = reaper;
        coro__fiber_switch(&main_f, reaper_victim);
        ASSERT_PTR_EQ(coro__fiber_running, &main_f);
        ASSERT_NULL(reaper_victim);
        ASSERT_EQ(handoff_ran, i + 1);
        coro__fiber_free(reaper);
    }
    coro__fiber_fini_thread(&main_f);
    coro__stack_pool_release();
}

/* ---- values the compiler keeps in registers across an inline switch ---- */

/* coro__fiber_switch is an inline asm statement: the compiler keeps live
 * values in every register its clobber list leaves out. The other side
 * fills every caller-saved register (all general ones, all vector ones,
 * on aarch64 the whole of v8-v15, whose upper halves the AAPCS64 does not
 * preserve) with garbage before it switches back; the switching side keeps
 * more integer, double and 128-bit vector values alive than there are
 * callee-saved registers, and checks them all. */
static void scramble_caller_saved(void)
{
#if defined(__x86_64__)
    __asm__ volatile("movabsq $0xdeadbeefcafe5a5a, %%rax\n\t"
                     "movq %%rax, %%rcx\n\t"
                     "movq %%rax, %%rdx\n\t"
                     "movq %%rax, %%rsi\n\t"
                     "movq %%rax, %%rdi\n\t"
                     "movq %%rax, %%r8\n\t"
                     "movq %%rax, %%r9\n\t"
                     "movq %%rax, %%r10\n\t"
                     "movq %%rax, %%r11\n\t"
                     "movq %%rax, %%xmm0\n\t"
                     "pshufd $0x44, %%xmm0, %%xmm0\n\t"
                     "movdqa %%xmm0, %%xmm1\n\t"
                     "movdqa %%xmm0, %%xmm2\n\t"
                     "movdqa %%xmm0, %%xmm3\n\t"
                     "movdqa %%xmm0, %%xmm4\n\t"
                     "movdqa %%xmm0, %%xmm5\n\t"
                     "movdqa %%xmm0, %%xmm6\n\t"
                     "movdqa %%xmm0, %%xmm7\n\t"
                     "movdqa %%xmm0, %%xmm8\n\t"
                     "movdqa %%xmm0, %%xmm9\n\t"
                     "movdqa %%xmm0, %%xmm10\n\t"
                     "movdqa %%xmm0, %%xmm11\n\t"
                     "movdqa %%xmm0, %%xmm12\n\t"
                     "movdqa %%xmm0, %%xmm13\n\t"
                     "movdqa %%xmm0, %%xmm14\n\t"
                     "movdqa %%xmm0, %%xmm15\n\t"
                     :
                     :
                     : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
                       "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                       "xmm15", "cc");
#elif defined(__aarch64__)
    __asm__ volatile("movz x9, #0x5a5a\n\t"
                     "movk x9, #0xcafe, lsl #16\n\t"
                     "movk x9, #0xbeef, lsl #32\n\t"
                     "movk x9, #0xdead, lsl #48\n\t"
                     "mov x0, x9\n\t mov x1, x9\n\t mov x2, x9\n\t mov x3, x9\n\t"
                     "mov x4, x9\n\t mov x5, x9\n\t mov x6, x9\n\t mov x7, x9\n\t"
                     "mov x8, x9\n\t mov x10, x9\n\t mov x11, x9\n\t mov x12, x9\n\t"
                     "mov x13, x9\n\t mov x14, x9\n\t mov x15, x9\n\t"
                     "dup v0.2d, x9\n\t"
                     "mov v1.16b, v0.16b\n\t mov v2.16b, v0.16b\n\t mov v3.16b, v0.16b\n\t"
                     "mov v4.16b, v0.16b\n\t mov v5.16b, v0.16b\n\t mov v6.16b, v0.16b\n\t"
                     "mov v7.16b, v0.16b\n\t mov v8.16b, v0.16b\n\t mov v9.16b, v0.16b\n\t"
                     "mov v10.16b, v0.16b\n\t mov v11.16b, v0.16b\n\t mov v12.16b, v0.16b\n\t"
                     "mov v13.16b, v0.16b\n\t mov v14.16b, v0.16b\n\t mov v15.16b, v0.16b\n\t"
                     "mov v16.16b, v0.16b\n\t mov v17.16b, v0.16b\n\t mov v18.16b, v0.16b\n\t"
                     "mov v19.16b, v0.16b\n\t mov v20.16b, v0.16b\n\t mov v21.16b, v0.16b\n\t"
                     "mov v22.16b, v0.16b\n\t mov v23.16b, v0.16b\n\t mov v24.16b, v0.16b\n\t"
                     "mov v25.16b, v0.16b\n\t mov v26.16b, v0.16b\n\t mov v27.16b, v0.16b\n\t"
                     "mov v28.16b, v0.16b\n\t mov v29.16b, v0.16b\n\t mov v30.16b, v0.16b\n\t"
                     "mov v31.16b, v0.16b\n\t"
                     :
                     :
                     : "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10",
                       "x11", "x12", "x13", "x14", "x15", "v0", "v1", "v2", "v3", "v4",
                       "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14",
                       "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23",
                       "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31", "cc");
#endif
}

typedef uint64_t v2u64 __attribute__((vector_size(16)));

static coro__fiber_t *live_a, *live_b;
static volatile uint64_t live_seed = 0x0123456789abcdefull;

static coro__fiber_t *live_b_body(coro__fiber_t *f)
{
    for (;;) {
        scramble_caller_saved();
        coro__fiber_switch(f, live_a);
    }
    return NULL; /* not reached */
}

#define LIVE_ROUNDS 500

TEST(fiber_switch_keeps_live_values)
{
    coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    live_a = &main_f;
    live_b = coro__fiber_new(coro__stack_size_for(0), sizeof(coro__fiber_t), live_b_body);
    ASSERT_NOT_NULL(live_b);

    uint64_t s = live_seed;
    uint64_t x0 = s ^ 1, x1 = s ^ 2, x2 = s ^ 3, x3 = s ^ 4, x4 = s ^ 5, x5 = s ^ 6;
    uint64_t x6 = s ^ 7, x7 = s ^ 8, x8 = s ^ 9, x9 = s ^ 10, x10 = s ^ 11, x11 = s ^ 12;
    double d0 = (double)(s >> 40), d1 = d0 * 0.5, d2 = d0 * 0.25, d3 = d0 * 0.125;
    v2u64 v0 = { s, ~s }, v1 = { s + 1, ~s + 1 }, v2 = { s + 2, ~s + 2 }, v3 = { s + 3, ~s + 3 };
    for (uint64_t i = 0; i < LIVE_ROUNDS; i++) {
        coro__fiber_switch(&main_f, live_b);
        x0 += 1; x1 += 2; x2 += 3; x3 += 4; x4 += 5; x5 += 6;
        x6 += 7; x7 += 8; x8 += 9; x9 += 10; x10 += 11; x11 += 12;
        d0 += 1.0; d1 += 2.0; d2 += 3.0; d3 += 4.0;
        v0 += (v2u64){ 1, 1 };
        v1 += (v2u64){ 2, 2 };
        v2 += (v2u64){ 3, 3 };
        v3 += (v2u64){ 4, 4 };
    }
    const uint64_t n = LIVE_ROUNDS;
    s = live_seed;
    uint64_t got[12] = { x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11 };
    for (uint64_t k = 0; k < 12; k++)
        ASSERT_EQ(got[k], (s ^ (k + 1)) + n * (k + 1));
    double d = (double)(s >> 40);
    ASSERT(d0 == d + 1.0 * n);
    ASSERT(d1 == d * 0.5 + 2.0 * n);
    ASSERT(d2 == d * 0.25 + 3.0 * n);
    ASSERT(d3 == d * 0.125 + 4.0 * n);
    v2u64 vs[4] = { v0, v1, v2, v3 };
    for (uint64_t k = 0; k < 4; k++) {
        if (vs[k][0] != s + k + (k + 1) * n || vs[k][1] != ~s + k + (k + 1) * n)
            test_fail(__FILE__, __LINE__,
                      "vector %llu kept across the switch is {%#llx, %#llx}, "
                      "expected {%#llx, %#llx}", (unsigned long long)k,
                      (unsigned long long)vs[k][0], (unsigned long long)vs[k][1],
                      (unsigned long long)(s + k + (k + 1) * n),
                      (unsigned long long)(~s + k + (k + 1) * n));
    }
    coro__fiber_free(live_b);
    coro__fiber_fini_thread(&main_f);
    coro__stack_pool_release();
}

/* A fiber's stack really is used, deeply: recursion to most of its depth. */
static int deep(int n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    pad[511] = (char)n;
    if (n == 0)
        return pad[0] + pad[511];
    return deep(n - 1) + pad[0] - pad[511] + 1;
}

static coro__fiber_t *deep_back;
static int deep_result;

static coro__fiber_t *deep_body(coro__fiber_t *f)
{
    (void)f;
    /* 64 KiB stack; about 600 bytes per frame (more with ASan's
     * redzones), 64 frames is about 40 KiB. */
    deep_result = deep(64);
    return deep_back;
}

TEST(fiber_uses_most_of_its_stack)
{
    coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    deep_back = &main_f;
    coro__fiber_t *f = coro__fiber_new(coro__stack_size_for(64 * 1024), sizeof *f, deep_body);
    ASSERT_NOT_NULL(f);
    coro__fiber_switch(&main_f, f);
    ASSERT_EQ(deep_result, 64);
    coro__fiber_free(f);
    coro__fiber_fini_thread(&main_f);
    coro__stack_pool_release();
}
