/* retry_backoff.c: retrying with exponential backoff and jitter, under an
 * overall deadline.
 *
 * WHAT IT SHOWS
 *   A flaky operation (it stands for a request to an overloaded service)
 *   fails with EAGAIN until its Nth attempt. The retry loop waits between
 *   attempts, doubling the wait each time up to a cap (exponential
 *   backoff), and picks each wait at random between half of it and all of
 *   it ("equal jitter"). The whole loop, attempts and waits alike, runs
 *   inside one deadline scope:
 *       int64_t saved = coro_timeout(budget);
 *       for (;;) { attempt; on EAGAIN coro_sleep(backoff); ... }
 *       coro_set_deadline(saved);
 *   Every blocking call in the scope honours the deadline: the attempt
 *   itself (its I/O is a checkpoint) and the sleeps between attempts. So
 *   the loop needs no arithmetic of its own on "how much time is left":
 *   once the budget is spent, whatever it is blocked in fails with
 *   ETIMEDOUT, and the loop gives up. Two runs:
 *     1. the operation succeeds on its 4th attempt, well within 200 ms;
 *     2. it would succeed only on its 10th, but the budget is 100 ms: the
 *        loop runs out of time and reports ETIMEDOUT.
 *
 * WHY IT MATTERS
 *   Retrying at once, or at a fixed interval, hammers a service that is
 *   already failing, and when many clients fail together they retry
 *   together, in waves. Backoff spaces the retries out; jitter spreads the
 *   clients apart (see "Exponential Backoff And Jitter" on the AWS
 *   Architecture Blog). The deadline bounds what the caller waits in
 *   total, which is what the caller actually cares about, instead of a
 *   retry count that means a different time for every backoff policy.
 *
 *   Only transient errors are retried (EAGAIN here). ETIMEDOUT and
 *   ECANCELED come from the caller's own deadline or cancellation: retrying
 *   them would be wrong, so they end the loop at once.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - The waits roughly double: each lies in [b/2, b) for b = 5, 10, 20,
 *     40, 80 ms, at a random point: that is the jitter (coro_random).
 *   - Run 2 ends with ETIMEDOUT ("Connection timed out") at about 100 ms,
 *     inside a wait or an attempt, not after its 10th attempt.
 *   - After each run the deadline is restored (CORO_NEVER again).
 *   All of it is checked; the program exits non-zero if anything differs.
 *
 * TESTING IT IN SIMULATED TIME: `retry_backoff --sim [SEED]`
 *   Runs the same loop in a deterministic simulation (coro_main_opts with
 *   a coro_sim_t): the clock is virtual, so the checks are exact (run 2
 *   gives up at exactly 100 ms), and two runs of minutes each take
 *   milliseconds of wall time:
 *     3. a service that is down for a stretch the seed picks (3-9 minutes)
 *        is retried with 1 s doubling to 2 min under a 15-minute budget,
 *        and gets through once it is back;
 *     4. the same outage under a 2-minute budget ends in ETIMEDOUT at
 *        exactly 2 minutes.
 *   The jitter comes from coro_random(), which a simulation draws from its
 *   seed: the same seed prints the same run, byte for byte (test/
 *   check_examples_sim.sh compares two). A failing run prints the seed that
 *   replays it (CORO_SIM_SEED=<n>). */
#include <coro.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;
static int simulated; /* --sim: virtual time, exact checks */

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "retry_backoff: unexpected: " __VA_ARGS__);     \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

#define SLACK (400 * CORO_MS)
#define ATTEMPT_MS 2     /* how long one attempt takes */
#define BASE_MS 5        /* the first backoff */
#define CAP_MS 80        /* the longest backoff */

static double ms(int64_t ns)
{
    return (double)ns / 1e6;
}

/* ---- the flaky operation ---------------------------------------------------- */

struct flaky {
    int succeed_on;     /* the attempt that succeeds (0: see back_at) */
    int64_t back_at;    /* or: down until this time */
    int attempts;       /* attempts made so far */
};

/* One request: takes ATTEMPT_MS (a checkpoint, like real I/O), then fails
 * with EAGAIN until attempt number succeed_on (or until back_at). */
static int flaky_call(struct flaky *f)
{
    f->attempts++;
    if (coro_sleep(ATTEMPT_MS * CORO_MS) != 0)
        return -1; /* ETIMEDOUT or ECANCELED: the caller's, pass it on */
    if (f->succeed_on ? f->attempts < f->succeed_on : coro_now() < f->back_at) {
        errno = EAGAIN;
        return -1;
    }
    return 0;
}

/* ---- the retry loop ----------------------------------------------------------- */

/* Call f until it succeeds, backing off from `base` (doubling up to
 * `cap`) between attempts, for at most `budget` ns in all. Returns 0, or
 * -1 with errno: ETIMEDOUT (out of time), ECANCELED, or the operation's
 * own non-transient error. */
static int retry(struct flaky *f, int64_t budget, int64_t base, int64_t cap)
{
    int64_t t0 = coro_now();
    int64_t saved = coro_timeout(budget);
    int64_t backoff = base;
    int rc;
    for (;;) {
        rc = flaky_call(f);
        if (rc == 0) {
            printf("   attempt %d at +%6.2f ms: ok\n", f->attempts, ms(coro_now() - t0));
            break;
        }
        int err = errno;
        printf("   attempt %d at +%6.2f ms: %s", f->attempts, ms(coro_now() - t0),
               strerror(err));
        if (err != EAGAIN) { /* not transient: ours (deadline, cancel) or fatal */
            printf("\n");
            errno = err;
            break;
        }
        /* Equal jitter: somewhere in [backoff/2, backoff). */
        int64_t half = backoff / 2;
        int64_t wait = half + (int64_t)(coro_random() % (uint64_t)half);
        printf("; backing off %.2f ms\n", ms(wait));
        rc = coro_sleep(wait);
        if (rc != 0) {
            err = errno;
            printf("   backoff at +%6.2f ms: %s\n", ms(coro_now() - t0), strerror(err));
            errno = err;
            break;
        }
        backoff = backoff * 2 > cap ? cap : backoff * 2;
    }
    int err = errno;
    coro_set_deadline(saved); /* on every path */
    errno = err;
    return rc;
}

/* ---- the runs ------------------------------------------------------------------ */

static void run(const char *title, struct flaky f, int64_t budget, int64_t base, int64_t cap,
                int want_errno)
{
    printf("%s\n", title);
    int64_t t0 = coro_now();
    if (!f.succeed_on)
        f.back_at += t0;
    int rc = retry(&f, budget, base, cap);
    int err = errno;
    int64_t took = coro_now() - t0;
    printf("   -> %s after %d attempts, %.2f ms; deadline restored: %s\n",
           rc == 0 ? "success" : strerror(err), f.attempts, ms(took),
           coro_deadline() == CORO_NEVER ? "yes" : "NO");
    CHECK(coro_deadline() == CORO_NEVER, "the deadline was not restored");
    if (want_errno == 0) {
        CHECK(rc == 0, "expected success, got %s", strerror(err));
        if (f.succeed_on)
            CHECK(f.attempts == f.succeed_on, "%d attempts, expected %d", f.attempts,
                  f.succeed_on);
        else
            CHECK(coro_now() >= f.back_at, "succeeded before the service was back");
        CHECK(took < budget, "took %.2f ms, over the budget", ms(took));
    } else {
        CHECK(rc == -1 && err == want_errno, "expected %s, got %s", strerror(want_errno),
              rc == 0 ? "success" : strerror(err));
        if (f.succeed_on)
            CHECK(f.attempts < f.succeed_on, "%d attempts: the operation got to succeed",
                  f.attempts);
        /* Virtual time is exact; the real clock gets some slack. */
        CHECK(simulated ? took == budget : took >= budget && took < budget + SLACK,
              "gave up after %.2f ms, budget %.2f ms", ms(took), ms(budget));
    }
}

static int body(void *arg)
{
    (void)arg;
    int64_t base = BASE_MS * CORO_MS, cap = CAP_MS * CORO_MS;
    run("1. succeeds on attempt 4, budget 200 ms", (struct flaky){ .succeed_on = 4 },
        200 * CORO_MS, base, cap, 0);
    run("2. would succeed on attempt 10, budget 100 ms", (struct flaky){ .succeed_on = 10 },
        100 * CORO_MS, base, cap, ETIMEDOUT);
    if (simulated) {
        /* Minutes of outage: the seed picks how long (3-9 minutes). */
        int64_t outage = (3 + (int64_t)(coro_random() % 7)) * 60 * CORO_SEC;
        int64_t minute = 60 * CORO_SEC;
        char title[96];
        snprintf(title, sizeof title, "3. down for %lld min, budget 15 min, backoff 1 s to 2 min",
                 (long long)(outage / minute));
        run(title, (struct flaky){ .back_at = outage }, 15 * minute, CORO_SEC, 2 * minute, 0);
        snprintf(title, sizeof title, "4. down for %lld min, budget 2 min",
                 (long long)(outage / minute));
        run(title, (struct flaky){ .back_at = outage }, 2 * minute, CORO_SEC, 2 * minute,
            ETIMEDOUT);
    }
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc;
    if (argc >= 2 && strcmp(argv[1], "--sim") == 0) {
        simulated = 1;
        coro_sim_t sim = { .seed = argc >= 3 ? strtoull(argv[2], NULL, 10) : 0 };
        coro_main_opts_t o = { .sim = &sim };
        struct timespec w0, w1;
        clock_gettime(CLOCK_MONOTONIC, &w0);
        rc = coro_main_opts(body, NULL, &o);
        clock_gettime(CLOCK_MONOTONIC, &w1);
        double wall = (double)(w1.tv_sec - w0.tv_sec) + (double)(w1.tv_nsec - w0.tv_nsec) / 1e9;
        /* On stderr: wall time differs from run to run, stdout must not. */
        fprintf(stderr, "retry_backoff: simulated run took %.3f s of wall time\n", wall);
    } else {
        rc = coro_main(body, NULL);
    }
    if (rc < 0) {
        fprintf(stderr, "retry_backoff: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
