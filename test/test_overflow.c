/* test/test_overflow.c: a coroutine that overflows its stack dies loudly,
 * naming itself, and touches no neighbour (coro/overflow.c and the stack
 * guards of coro/stack.c). Each overflow happens in a forked child. Skipped
 * under Valgrind, which catches the guard faults itself and runs signal
 * handlers its own way. */
#include "test/test.h"

#include "coro.h"
#include "coro/coro.h"
#include "coro/fiber.h"
#include "coro/stack.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void skip_under_valgrind(void)
{
    if (test_under_valgrind())
        TEST_SKIP("Valgrind handles guard-page faults itself (and reports them as its "
                  "own errors), so coro's overflow handler cannot be observed");
}

#define OVERFLOW_STACK ((size_t)64 * 1024)

/* Unbounded recursion the compiler cannot turn into a loop: each frame
 * keeps a volatile array and uses it after the call returns. */
static volatile int never = -1;

__attribute__((noinline)) static int recurse(int depth)
{
    volatile char frame[256];
    frame[0] = (char)depth;
    frame[255] = (char)(depth >> 8);
    if (depth == never)
        return frame[0];
    return recurse(depth + 1) + frame[0] + frame[255];
}

static coro__fiber_t *overflow_body(coro__fiber_t *f)
{
    (void)f;
    recurse(0);
    return NULL; /* not reached */
}

/* Make the thread a fiber, install the reporter, and start a fiber that
 * overflows. Never returns. */
static void overflow_in_fiber(uint64_t id, const char *name)
{
    static coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    coro__fiber_t *f = coro__fiber_new(coro__stack_size_for(OVERFLOW_STACK), sizeof *f,
                                      overflow_body);
    if (!f) {
        perror("coro__fiber_new");
        exit(10);
    }
    f->id = id;
    f->name = name ? strdup(name) : NULL;
    if (coro__overflow_thread_init() != 0) {
        perror("coro__overflow_thread_init");
        exit(11);
    }
    coro__fiber_switch(&main_f, f);
    fprintf(stderr, "the overflowing fiber came back\n");
    exit(12);
}

/* ---- the message -------------------------------------------------------- */

static void named_overflow_child(void *arg)
{
    (void)arg;
    /* Die of the fault itself, not of a sanitizer's report of it. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    overflow_in_fiber(42, "deep-recursion");
}

static void assert_died_of_segv(int status, const char *out)
{
    char how[128];
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV)
        test_fail(__FILE__, __LINE__, "the child should die of SIGSEGV; it ended with %s, "
                  "output:\n%s", test_describe_status(status, how, sizeof how), out);
}

TEST(overflow_dies_naming_the_coroutine)
{
    skip_under_valgrind();
    char out[8192];
    int status;
    ASSERT_EQ(test_run_child(named_overflow_child, NULL, out, sizeof out, &status), 0);
    assert_died_of_segv(status, out);
    ASSERT_CONTAINS(out, "stack overflow in coroutine 42 \"deep-recursion\"");
    /* The rest of the line says how big the stack was and what to do. */
    ASSERT_CONTAINS(out, "raise coro_opts_t.stack_size");
    ASSERT_NOT_CONTAINS(out, "came back");
}

/* ---- under the scheduler -------------------------------------------- */

/* The scheduler's switches do not record the running fiber: the handler
 * asks the scheduler (its hook). Two bystanders that yield around the
 * overflowing coroutine make a wrong answer (the last spawned, the last
 * switched from) name one of them. */
static int bystander(void *arg)
{
    (void)arg;
    for (;;)
        coro_yield();
    return 0;
}

static int deep(void *arg)
{
    uint64_t *id = arg;
    *id = coro_id(coro_self());
    char line[64];
    int n = snprintf(line, sizeof line, "deep is %llu\n", (unsigned long long)*id);
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
    coro_yield();
    coro_yield();
    return recurse(0);
}

static int sched_overflow_main(void *arg)
{
    (void)arg;
    static uint64_t id;
    coro_opts_t small = { .stack_size = OVERFLOW_STACK };
    coro_opts_t named = { .stack_size = OVERFLOW_STACK, .name = "deep-in-sched" };
    coro_opts_t late = { .stack_size = OVERFLOW_STACK, .name = "bystander-b" };
    small.name = "bystander-a";
    if (!coro_spawn_opts(bystander, NULL, &small) || !coro_spawn_opts(deep, &id, &named) ||
        !coro_spawn_opts(bystander, NULL, &late))
        return 1;
    for (;;)
        coro_yield();
}

static void sched_overflow_child(void *arg)
{
    (void)arg;
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    coro_main(sched_overflow_main, NULL);
    fprintf(stderr, "coro_main came back\n");
    exit(12);
}

TEST(overflow_under_the_scheduler_names_the_running_coroutine)
{
    skip_under_valgrind();
    char out[8192];
    int status;
    ASSERT_EQ(test_run_child(sched_overflow_child, NULL, out, sizeof out, &status), 0);
    assert_died_of_segv(status, out);
    unsigned long long id = 0;
    const char *p = strstr(out, "deep is ");
    ASSERT_NOT_NULL(p);
    ASSERT_EQ(sscanf(p, "deep is %llu", &id), 1);
    char want[96];
    snprintf(want, sizeof want, "stack overflow in coroutine %llu \"deep-in-sched\"", id);
    ASSERT_CONTAINS(out, want);
    ASSERT_NOT_CONTAINS(out, "bystander");
}

static void unnamed_overflow_child(void *arg)
{
    (void)arg;
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    overflow_in_fiber(7, NULL);
}

TEST(overflow_of_an_unnamed_coroutine)
{
    skip_under_valgrind();
    char out[8192];
    int status;
    ASSERT_EQ(test_run_child(unnamed_overflow_child, NULL, out, sizeof out, &status), 0);
    assert_died_of_segv(status, out);
    ASSERT_CONTAINS(out, "stack overflow in coroutine 7 \"\"");
}

/* ---- the neighbours ----------------------------------------------------- */

#define NEIGHBOURS_BELOW 4
#define NEIGHBOURS_ABOVE 4
#define NEIGHBOURS (NEIGHBOURS_BELOW + NEIGHBOURS_ABOVE)

static coro__fiber_t *neighbours[NEIGHBOURS];
static coro__fiber_t *victim;

static unsigned char canary(int i, size_t off)
{
    return (unsigned char)(0xA5 ^ (i * 37) ^ (off * 7));
}

static void say(const char *s)
{
    ssize_t w = write(STDERR_FILENO, s, strlen(s));
    (void)w;
}

/* Runs on the alternate stack once coro's handler has reported and given
 * the fault back: checks every byte of every neighbour's stack and the
 * headers, and that the fault was in the victim's guard. */
static void canary_handler(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    for (int i = 0; i < NEIGHBOURS; i++) {
        const coro__fiber_t *n = neighbours[i];
        const unsigned char *p = (const unsigned char *)n->stack.lo;
        size_t bytes = coro__fiber_stack_bytes(n);
        for (size_t off = 0; off < bytes; off++) {
            if (p[off] != canary(i, off)) {
                say("canary smashed in a neighbour's stack\n");
                _exit(5);
            }
        }
        if (n->id != (uint64_t)(100 + i)) {
            say("a neighbour's header was overwritten\n");
            _exit(5);
        }
    }
    const char *a = si->si_addr;
    if (!(a < victim->stack.lo && a >= victim->stack.lo - coro__stack_guard_size())) {
        say("the fault was not in the overflowing coroutine's guard\n");
        _exit(6);
    }
    say("canaries intact\n");
    _exit(3);
}

/* Before the overflow: a pattern over every byte of each neighbour's
 * stack, and a known id in its header. */
static void fill_canaries(void)
{
    for (int i = 0; i < NEIGHBOURS; i++) {
        coro__fiber_t *n = neighbours[i];
        unsigned char *p = (unsigned char *)n->stack.lo;
        size_t bytes = coro__fiber_stack_bytes(n);
        for (size_t off = 0; off < bytes; off++)
            p[off] = canary(i, off);
        n->id = (uint64_t)(100 + i);
    }
}

static coro__fiber_t *checked_overflow_body(coro__fiber_t *f)
{
    /* The layout this test relies on: the last neighbour allocated before
     * the victim sits right below its guard. */
    coro__fiber_t *below = neighbours[NEIGHBOURS_BELOW - 1];
    if (below->stack.lo + below->stack.size + coro__stack_guard_size() != f->stack.lo) {
        say("the neighbour below is not adjacent: the test's premise is wrong\n");
        _exit(14);
    }
    fill_canaries();
    recurse(0);
    return NULL; /* not reached */
}

static void neighbours_child_main(void *arg)
{
    (void)arg;
    /* Ours first, so that coro's handler finds it as the previous one and
     * hands it the re-fault. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = canary_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || sigaction(SIGBUS, &sa, NULL) != 0) {
        perror("sigaction");
        exit(13);
    }
    static coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    size_t sz = coro__stack_size_for(OVERFLOW_STACK);
    for (int i = 0; i < NEIGHBOURS_BELOW; i++)
        neighbours[i] = coro__fiber_new(sz, sizeof(coro__fiber_t), overflow_body);
    victim = coro__fiber_new(sz, sizeof(coro__fiber_t), checked_overflow_body);
    for (int i = NEIGHBOURS_BELOW; i < NEIGHBOURS; i++)
        neighbours[i] = coro__fiber_new(sz, sizeof(coro__fiber_t), overflow_body);
    if (!victim) {
        perror("coro__fiber_new");
        exit(10);
    }
    for (int i = 0; i < NEIGHBOURS; i++) {
        if (!neighbours[i]) {
            perror("coro__fiber_new");
            exit(10);
        }
    }
    victim->id = 42;
    victim->name = strdup("deep-recursion");
    if (coro__overflow_thread_init() != 0) {
        perror("coro__overflow_thread_init");
        exit(11);
    }
    coro__fiber_switch(&main_f, victim);
    say("the overflowing fiber came back\n");
    exit(12);
}

TEST(overflow_leaves_neighbours_untouched)
{
    skip_under_valgrind();
    char out[8192], how[128];
    int status;
    ASSERT_EQ(test_run_child(neighbours_child_main, NULL, out, sizeof out, &status), 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 3)
        test_fail(__FILE__, __LINE__, "the child should exit with 3 from the canary "
                  "handler; it ended with %s, output:\n%s",
                  test_describe_status(status, how, sizeof how), out);
    ASSERT_CONTAINS(out, "stack overflow in coroutine 42 \"deep-recursion\"");
    ASSERT_CONTAINS(out, "canaries intact");
    /* coro's report comes first, then the previous handler runs. */
    ASSERT_LT(strstr(out, "stack overflow"), strstr(out, "canaries intact"));
}

/* ---- faults that are not overflows -------------------------------------- */

/* A wild address, far from any guard (volatile: hidden from the
 * compiler's bounds warnings). */
static volatile uintptr_t wild_addr = 16;

static coro__fiber_t *wild_body(coro__fiber_t *f)
{
    (void)f;
    *(volatile char *)wild_addr = 1;
    return NULL;
}

static void wild_child(void *arg)
{
    (void)arg;
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    static coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    coro__fiber_t *f = coro__fiber_new(coro__stack_size_for(0), sizeof *f, wild_body);
    if (!f)
        exit(10);
    f->id = 5;
    f->name = strdup("wild");
    if (coro__overflow_thread_init() != 0)
        exit(11);
    coro__fiber_switch(&main_f, f);
    exit(12);
}

TEST(overflow_other_faults_are_not_reported_as_overflow)
{
    skip_under_valgrind();
    char out[8192];
    int status;
    ASSERT_EQ(test_run_child(wild_child, NULL, out, sizeof out, &status), 0);
    assert_died_of_segv(status, out);
    ASSERT_NOT_CONTAINS(out, "stack overflow");
}

static void raise_child(void *arg)
{
    (void)arg;
    signal(SIGSEGV, SIG_DFL);
    static coro__fiber_t main_f;
    coro__fiber_init_thread(&main_f);
    if (coro__overflow_thread_init() != 0)
        exit(11);
    /* A SIGSEGV sent, not caused: the default action still happens. */
    raise(SIGSEGV);
    exit(12);
}

TEST(overflow_handler_keeps_a_sent_sigsegv_deadly)
{
    skip_under_valgrind();
    char out[8192];
    int status;
    ASSERT_EQ(test_run_child(raise_child, NULL, out, sizeof out, &status), 0);
    assert_died_of_segv(status, out);
    ASSERT_NOT_CONTAINS(out, "stack overflow");
}

TEST(overflow_thread_init_twice_keeps_one_altstack)
{
    ASSERT_EQ(coro__overflow_thread_init(), 0);
    stack_t a, b;
    ASSERT_EQ(sigaltstack(NULL, &a), 0);
    ASSERT_EQ(a.ss_flags & SS_DISABLE, 0);
    ASSERT_GE(a.ss_size, (size_t)MINSIGSTKSZ);
    ASSERT_EQ(coro__overflow_thread_init(), 0);
    ASSERT_EQ(sigaltstack(NULL, &b), 0);
    ASSERT_PTR_EQ(b.ss_sp, a.ss_sp);
    coro__overflow_thread_fini();
}
