/* bench/switch_pingpong.h: the ping-pong benchmarks of bench/bench_switch.c,
 * written once and included once per switch (no include guard):
 *
 *   PP(name)               prefixes this copy's names (raw_..., bare_...)
 *   PP_CTX                 the context type
 *   PP_MAKE(c, lo, n, f, a)  prepares a context to run f(a)
 *   PP_SWITCH(from, to)    the inline switch
 *
 * Each copy defines PP(pingpong_run)(r, who): two contexts switching
 * straight to each other from one loop each, and PP(call_run)(r, two, who):
 * the same switch behind a real function call, from one body (two = 0)
 * or from two different bodies (two = 1). Both report ns per one-way
 * switch. The stacks come from raw_stacks() in bench/bench_switch.c. */

typedef struct PP(pp) {
    PP_CTX main_ctx, ping_ctx, pong_ctx;
    int64_t rounds;
    bench_clock_t clock;
    bench_run_t *r;
} PP(pp_t);

/* Each round is two switches: ping -> pong -> ping. */
static PP_CTX *PP(ping)(void *arg)
{
    PP(pp_t) *p = arg;
    bench_start(&p->clock);
    for (int64_t i = p->rounds; i > 0; i--)
        PP_SWITCH(&p->ping_ctx, &p->pong_ctx);
    bench_stop(&p->clock, p->r, 2 * p->rounds);
    return &p->main_ctx;
}

/* Never returns: abandoned, suspended, after ping's last round. */
static PP_CTX *PP(pong)(void *arg)
{
    PP(pp_t) *p = arg;
    for (;;)
        PP_SWITCH(&p->pong_ctx, &p->ping_ctx);
    return NULL;
}

static int PP(pingpong_run)(bench_run_t *r, const char *who)
{
    static PP(pp_t) p; /* not on the thread's stack: plain, like a scheduler's */
    char *ping_stack, *pong_stack;
    size_t pong_size;
    if (raw_stacks(&ping_stack, &pong_stack, &pong_size, who) != 0)
        return -1;
    p.rounds = r->n / 2;
    p.r = r;
    PP_MAKE(&p.ping_ctx, ping_stack, RAW_STACK, PP(ping), &p);
    PP_MAKE(&p.pong_ctx, pong_stack, pong_size, PP(pong), &p);
    PP_SWITCH(&p.main_ctx, &p.ping_ctx);
    free(ping_stack);
    free(pong_stack);
    return 0;
}

/* The switch behind a real call: never inlined, never cloned per caller,
 * and not a tail call (the empty asm after the switch), so each use is a
 * call, the switch, and a ret. */
#if defined(__clang__)
__attribute__((noinline))
#else
__attribute__((noinline, noipa))
#endif
static void PP(switch_call)(PP_CTX *from, PP_CTX *to)
{
    PP_SWITCH(from, to);
    __asm__ volatile("" ::: "memory");
}

typedef struct PP(side) {
    PP(pp_t) *p;
    PP_CTX *self, *other;
    int timed; /* the side that starts first, times, and ends the run */
} PP(side_t);

/* The one body of the one-site variant: both sides call switch_call from
 * here. The untimed side is abandoned, suspended, after the last round. */
static PP_CTX *PP(call_one_site)(void *arg)
{
    PP(side_t) *sd = arg;
    PP(pp_t) *p = sd->p;
    if (sd->timed)
        bench_start(&p->clock);
    for (int64_t i = p->rounds; i > 0; i--)
        PP(switch_call)(sd->self, sd->other);
    if (sd->timed)
        bench_stop(&p->clock, p->r, 2 * p->rounds);
    return &p->main_ctx;
}

/* The two-site variant: the timed side is call_one_site, the other this
 * second body (a call site of its own). */
static PP_CTX *PP(call_other_site)(void *arg)
{
    PP(side_t) *sd = arg;
    for (;;) {
        PP(switch_call)(sd->self, sd->other);
        __asm__ volatile("" ::: "memory"); /* different code: not merged */
    }
    return NULL;
}

static int PP(call_run)(bench_run_t *r, int two_sites, const char *who)
{
    static PP(pp_t) p;
    char *a_stack, *b_stack;
    size_t b_size;
    if (raw_stacks(&a_stack, &b_stack, &b_size, who) != 0)
        return -1;
    p.rounds = r->n / 2;
    p.r = r;
    PP(side_t) a = { &p, &p.ping_ctx, &p.pong_ctx, 1 };
    PP(side_t) b = { &p, &p.pong_ctx, &p.ping_ctx, 0 };
    PP_MAKE(&p.ping_ctx, a_stack, RAW_STACK, PP(call_one_site), &a);
    PP_MAKE(&p.pong_ctx, b_stack, b_size, two_sites ? PP(call_other_site) : PP(call_one_site),
            &b);
    PP_SWITCH(&p.main_ctx, &p.ping_ctx);
    free(a_stack);
    free(b_stack);
    return 0;
}
