/* deadlock.c: what the runtime does when nothing can ever happen again.
 *
 * WHAT IT SHOWS
 *   Two deliberate deadlocks, each in its own coro_main run:
 *     1. "left" joins "right" while "right" joins "left": a cycle of
 *        waits. (main returns meanwhile; coro_main keeps running until
 *        every coroutine has ended, which here is never.)
 *     2. main joins "sleeper", which sleeps until CORO_NEVER: a wait for a
 *        time that never comes, so no timer is armed for it.
 *   In both, every coroutine is parked, none is ready, no timer is armed
 *   and no descriptor, signal or blocking job is awaited: nothing can wake
 *   anyone, ever. The scheduler notices (it has nothing to wait for),
 *   writes a dump of every coroutine to stderr (id, name, state, what it
 *   waits on and for how long), then cancels them all, overriding any
 *   shields, so that each unwinds through its normal error path (the
 *   parked calls fail with ECANCELED) and releases what it holds.
 *   coro_main() then returns -1 with errno EDEADLK.
 *
 * WHY IT MATTERS
 *   A threaded program that deadlocks just hangs, and you attach a
 *   debugger to find out why. A single-threaded scheduler knows every
 *   coroutine and every source of wake-ups, so it can prove a deadlock and
 *   say who waits on what, like Go's "all goroutines are asleep -
 *   deadlock!". Everything is still cleaned up: run this under Valgrind
 *   and no memory is lost.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - The dumps (on stderr) name each coroutine and its wait: "join
 *     coroutine 3" and "join coroutine 2" for the cycle, "sleep" for the
 *     sleeper, with no "wakes in" time because there is none.
 *   - After each dump the blocked calls return ECANCELED, in every
 *     coroutine, and the coroutines return.
 *   - coro_main returns -1/EDEADLK: that is the expected outcome here, so
 *     this program exits 0 when it gets exactly that, and non-zero if the
 *     deadlock goes unnoticed or is reported differently.
 *   - The same thread can run coro_main again after it returns. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures;

/* ---- 1. a cycle of joins ------------------------------------------------ */

struct pair {
    coro_t *left, *right;
    int left_err, right_err;
};

static int join_other(void *arg)
{
    struct pair *p = arg;
    int is_left = coro_self() == p->left;
    coro_t *other = is_left ? p->right : p->left;
    const char *me = coro_name(coro_self());
    printf("  %s: joining %s\n", me, coro_name(other));
    if (coro_join(other, NULL) != 0) {
        int err = errno;
        printf("  %s: coro_join failed: %s\n", me, strerror(err));
        *(is_left ? &p->left_err : &p->right_err) = err;
        return 1;
    }
    printf("  %s: coro_join returned 0: no deadlock?\n", me);
    return 0;
}

static int cycle(void *arg)
{
    struct pair *p = arg;
    coro_opts_t lo = { .name = "left" }, ro = { .name = "right" };
    p->left = coro_spawn_opts(join_other, p, &lo);
    if (!p->left) {
        fprintf(stderr, "deadlock: coro_spawn_opts(left): %s\n", strerror(errno));
        return 1;
    }
    /* Neither has run yet, so both handles are set before either uses
     * them. */
    p->right = coro_spawn_opts(join_other, p, &ro);
    if (!p->right) {
        fprintf(stderr, "deadlock: coro_spawn_opts(right): %s\n", strerror(errno));
        coro_cancel(p->left);
        return 1;
    }
    /* Each handle is joined by the other coroutine (a coroutine has at most
     * one joiner: main joining left as well would fail with EINVAL), so
     * main is done. coro_main goes on running until the others end. */
    printf("  main: left and right will join each other; main returns\n");
    return 0;
}

/* ---- 2. a sleep that never ends ---------------------------------------- */

static int sleep_forever(void *arg)
{
    int *err = arg;
    printf("  sleeper: coro_sleep_until(CORO_NEVER)\n");
    if (coro_sleep_until(CORO_NEVER) != 0) {
        *err = errno;
        printf("  sleeper: woken: %s\n", strerror(errno));
        return 1;
    }
    printf("  sleeper: the sleep ended: no deadlock?\n");
    return 0;
}

static int forever(void *arg)
{
    coro_opts_t o = { .name = "sleeper" };
    coro_t *c = coro_spawn_opts(sleep_forever, arg, &o);
    if (!c) {
        fprintf(stderr, "deadlock: coro_spawn_opts(sleeper): %s\n", strerror(errno));
        return 1;
    }
    printf("  main: joining sleeper\n");
    if (coro_join(c, NULL) != 0) {
        printf("  main: coro_join failed: %s\n", strerror(errno));
        return errno == ECANCELED ? 0 : 1;
    }
    printf("  main: coro_join returned 0: no deadlock?\n");
    return 1;
}

/* ---- running them ------------------------------------------------------- */

/* Run fn under coro_main and expect -1/EDEADLK. */
static void expect_deadlock(const char *what, coro_fn fn, void *arg)
{
    int rc = coro_main(fn, arg);
    int err = errno;
    if (rc == -1 && err == EDEADLK) {
        printf("  coro_main -> -1 (%s), as expected for %s\n", strerror(err), what);
        return;
    }
    if (rc == -1)
        fprintf(stderr, "deadlock: unexpected: coro_main failed with %s\n", strerror(err));
    else
        fprintf(stderr, "deadlock: unexpected: coro_main returned %d, no deadlock reported\n",
                rc);
    failures++;
}

int main(void)
{
    /* The dump goes straight to stderr; line-buffer stdout so the two
     * streams appear in the order they happened. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("1. two coroutines joining each other (dump on stderr)\n");
    struct pair p = { NULL, NULL, 0, 0 };
    expect_deadlock("a join cycle", cycle, &p);
    if (p.left_err != ECANCELED || p.right_err != ECANCELED) {
        fprintf(stderr, "deadlock: unexpected: left saw \"%s\", right saw \"%s\"\n",
                strerror(p.left_err), strerror(p.right_err));
        failures++;
    }

    printf("2. main joins a coroutine that sleeps until CORO_NEVER (dump on stderr)\n");
    int sleeper_err = 0;
    expect_deadlock("an endless sleep", forever, &sleeper_err);
    if (sleeper_err != ECANCELED) {
        fprintf(stderr, "deadlock: unexpected: the sleeper saw \"%s\"\n",
                strerror(sleeper_err));
        failures++;
    }
    return failures ? 1 : 0;
}
