/* sleep_timeout.c: sleeping, and deadlines ("timeout scopes").
 *
 * WHAT IT SHOWS
 *   1. coro_sleep(ns) parks the calling coroutine for a duration; the
 *      thread is free to run other coroutines meanwhile.
 *   2. coro_sleep_until(when) parks until an absolute time on the monotonic
 *      clock (coro_now()). A periodic ticker written with it does not drift:
 *      each tick is scheduled from the previous *deadline*, not from
 *      whenever the previous sleep happened to end.
 *   3. A deadline scope. Each coroutine carries one deadline, and every
 *      checkpoint (every blocking call) honours it, however deep in the
 *      call stack it happens:
 *          int64_t saved = coro_timeout(50 * CORO_MS);
 *          ... any blocking calls: ETIMEDOUT once 50 ms have passed ...
 *          coro_set_deadline(saved);
 *      This is Python's `async with asyncio.timeout(0.05):` or a Go
 *      context.WithTimeout, without threading a context argument through
 *      every function. Forgetting the restore leaves the deadline in force:
 *      after it passes, *every* checkpoint fails, even coro_sleep(0).
 *   4. Nested scopes. coro_timeout() only ever tightens:
 *      deadline = min(current, now + ns). An inner scope shorter than the
 *      outer one wins; an inner scope longer than the outer one changes
 *      nothing, because an inner function cannot extend the time its
 *      caller granted. Each scope restores what it saved, innermost first.
 *
 * WHY IT MATTERS
 *   Timeouts belong to the caller, who knows how long it can wait, not to
 *   each blocking call deep inside a library. One deadline per coroutine
 *   bounds a whole sequence of calls (connect + write + read) in one place.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - Sleeps end at or a little after their time, never before.
 *   - The ticker's lateness stays small and does not grow tick by tick.
 *   - The 1 s sleep inside a 50 ms scope ends after about 50 ms with
 *     ETIMEDOUT ("Connection timed out" is how strerror spells it).
 *   - In the nested scopes, the shorter deadline is the one that fires.
 *
 * Times are checked with generous upper bounds, so the program passes
 * under Valgrind and on a loaded machine, but a sleep that ends early or a
 * deadline that does not fire is reported and makes it exit non-zero. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "sleep_timeout: unexpected: " __VA_ARGS__);     \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* Late by more than this and something is wrong even under Valgrind. */
#define SLACK (400 * CORO_MS)

static double ms(int64_t ns)
{
    return (double)ns / 1e6;
}

/* Expect a call to have failed with `want`; report otherwise. */
static void expect_errno(const char *what, int rc, int want)
{
    if (rc == -1 && errno == want)
        return;
    if (rc == -1)
        fprintf(stderr, "sleep_timeout: unexpected: %s failed with %s, expected %s\n", what,
                strerror(errno), strerror(want));
    else
        fprintf(stderr, "sleep_timeout: unexpected: %s returned %d, expected -1/%s\n", what,
                rc, strerror(want));
    failures++;
}

static void plain_sleep(void)
{
    printf("1. coro_sleep(20 ms)\n");
    int64_t t0 = coro_now();
    if (coro_sleep(20 * CORO_MS) != 0) {
        fprintf(stderr, "sleep_timeout: coro_sleep: %s\n", strerror(errno));
        failures++;
        return;
    }
    int64_t took = coro_now() - t0;
    printf("   slept %.2f ms\n", ms(took));
    CHECK(took >= 20 * CORO_MS && took < 20 * CORO_MS + SLACK, "slept %.2f ms", ms(took));
}

static void ticker(void)
{
    printf("2. a 10 ms ticker with coro_sleep_until (absolute times: no drift)\n");
    int64_t start = coro_now(), next = start;
    for (int tick = 1; tick <= 5; tick++) {
        next += 10 * CORO_MS; /* from the last deadline, not from "now" */
        if (coro_sleep_until(next) != 0) {
            fprintf(stderr, "sleep_timeout: coro_sleep_until: %s\n", strerror(errno));
            failures++;
            return;
        }
        int64_t now = coro_now();
        printf("   tick %d at +%6.2f ms (%4lld us after its deadline)\n", tick,
               ms(now - start), (long long)((now - next) / CORO_US));
        CHECK(now >= next && now - next < SLACK, "tick %d woke %lld ns after its time", tick,
              (long long)(now - next));
    }
}

static void one_scope(void)
{
    printf("3. a 50 ms deadline scope around a 1 s sleep\n");
    int64_t t0 = coro_now();
    int64_t saved = coro_timeout(50 * CORO_MS);
    printf("   deadline set: %.2f ms from now (the old one, %s, is saved)\n",
           ms(coro_deadline() - t0), saved == CORO_NEVER ? "CORO_NEVER" : "a time");
    int rc = coro_sleep(CORO_SEC);
    int err = errno;
    int64_t took = coro_now() - t0;
    printf("   coro_sleep(1 s) -> %d (%s) after %.2f ms\n", rc, rc ? strerror(err) : "ok",
           ms(took));
    errno = err;
    expect_errno("coro_sleep(1 s) in a 50 ms scope", rc, ETIMEDOUT);
    CHECK(took >= 50 * CORO_MS && took < 50 * CORO_MS + SLACK, "timed out after %.2f ms",
          ms(took));

    /* The deadline has passed and is still set: every checkpoint fails. */
    rc = coro_sleep(0);
    printf("   not restored yet: coro_sleep(0) -> %d (%s)\n", rc,
           rc ? strerror(errno) : "ok");
    expect_errno("coro_sleep(0) past the deadline", rc, ETIMEDOUT);

    coro_set_deadline(saved);
    printf("   coro_set_deadline(saved): deadline is %s again\n",
           coro_deadline() == CORO_NEVER ? "CORO_NEVER" : "NOT CORO_NEVER");
    CHECK(coro_deadline() == CORO_NEVER, "the deadline was not restored");
    rc = coro_sleep(CORO_MS);
    printf("   restored: coro_sleep(1 ms) -> %d\n", rc);
    if (rc != 0) {
        fprintf(stderr, "sleep_timeout: coro_sleep after restoring: %s\n", strerror(errno));
        failures++;
    }
}

/* Sleep 1 s inside whatever scopes are open; report when and how it ended
 * relative to `t0`. Returns how long it took. */
static int64_t sleep_in_scope(const char *label, int64_t t0)
{
    int64_t t = coro_now();
    int rc = coro_sleep(CORO_SEC);
    int err = errno;
    int64_t now = coro_now();
    printf("   %s: coro_sleep(1 s) -> %s at +%.2f ms\n", label, rc ? strerror(err) : "ok",
           ms(now - t0));
    errno = err;
    expect_errno(label, rc, ETIMEDOUT);
    return now - t;
}

static void nested_scopes(void)
{
    printf("4. nested scopes: outer 100 ms\n");
    int64_t t0 = coro_now();
    int64_t saved_outer = coro_timeout(100 * CORO_MS);
    int64_t outer = coro_deadline();
    printf("   outer deadline at +%.2f ms\n", ms(outer - t0));

    /* An inner scope shorter than the outer one: it wins. */
    int64_t saved_inner = coro_timeout(30 * CORO_MS);
    printf("   inner scope of 30 ms: deadline now at +%.2f ms (tightened)\n",
           ms(coro_deadline() - t0));
    int64_t took = sleep_in_scope("inner 30 ms", t0);
    CHECK(took >= 30 * CORO_MS && took < 30 * CORO_MS + SLACK,
          "inner 30 ms scope fired after %.2f ms", ms(took));
    coro_set_deadline(saved_inner);
    CHECK(coro_deadline() == outer, "restoring the inner scope did not bring back the outer");
    printf("   inner restored: deadline back at +%.2f ms\n", ms(coro_deadline() - t0));

    /* An inner scope longer than the outer one: no effect. Who fired? A
     * scope whose own deadline has not come knows the outer one did, and
     * should pass the error up rather than handle it. */
    int64_t inner_own = coro_now() + 500 * CORO_MS;
    saved_inner = coro_timeout(500 * CORO_MS);
    printf("   inner scope of 500 ms: deadline stays at +%.2f ms (min rule)\n",
           ms(coro_deadline() - t0));
    CHECK(coro_deadline() == outer, "a longer inner scope changed the deadline");
    sleep_in_scope("inner 500 ms", t0);
    int64_t now = coro_now();
    CHECK(now >= outer && now < outer + SLACK, "the outer deadline fired at +%.2f ms",
          ms(now - t0));
    printf("   %s\n", now < inner_own ? "the inner scope's own 500 ms had not run out: "
                                        "the outer deadline fired"
                                      : "the inner scope's own time ran out");
    coro_set_deadline(saved_inner);
    coro_set_deadline(saved_outer);
    CHECK(coro_deadline() == CORO_NEVER, "scopes not restored");
    printf("   both restored: deadline is %s\n",
           coro_deadline() == CORO_NEVER ? "CORO_NEVER" : "NOT CORO_NEVER");
}

static int body(void *arg)
{
    (void)arg;
    plain_sleep();
    ticker();
    one_scope();
    nested_scopes();
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */

    /* Blocking calls need a coroutine to park: outside one they fail. */
    int rc = coro_sleep(CORO_MS);
    printf("0. outside a coroutine: coro_sleep -> %d (%s)\n", rc,
           rc ? strerror(errno) : "ok");
    if (rc != -1 || errno != EPERM) {
        fprintf(stderr, "sleep_timeout: unexpected: coro_sleep outside a coroutine\n");
        return 1;
    }

    rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "sleep_timeout: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
