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
 *     40, 80 ms, at a random point: that is the jitter (seeded, so the
 *     runs repeat).
 *   - Run 2 ends with ETIMEDOUT ("Connection timed out") at about 100 ms,
 *     inside a wait or an attempt, not after its 10th attempt.
 *   - After each run the deadline is restored (CORO_NEVER again).
 *   All of it is checked; the program exits non-zero if anything differs. */
#include <coro.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int failures;

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
    int succeed_on; /* the attempt that succeeds */
    int attempts;   /* attempts made so far */
};

/* One request: takes ATTEMPT_MS (a checkpoint, like real I/O), then fails
 * with EAGAIN until attempt number succeed_on. */
static int flaky_call(struct flaky *f)
{
    f->attempts++;
    if (coro_sleep(ATTEMPT_MS * CORO_MS) != 0)
        return -1; /* ETIMEDOUT or ECANCELED: the caller's, pass it on */
    if (f->attempts < f->succeed_on) {
        errno = EAGAIN;
        return -1;
    }
    return 0;
}

/* ---- the retry loop ----------------------------------------------------------- */

/* A small deterministic PRNG (xorshift64), so that runs repeat. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Call f until it succeeds, backing off between attempts, for at most
 * `budget` ns in all. Returns 0, or -1 with errno: ETIMEDOUT (out of time),
 * ECANCELED, or the operation's own non-transient error. */
static int retry(struct flaky *f, int64_t budget)
{
    int64_t t0 = coro_now();
    int64_t saved = coro_timeout(budget);
    int64_t backoff = BASE_MS * CORO_MS;
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
        int64_t wait = half + (int64_t)(rng() % (uint64_t)half);
        printf("; backing off %.2f ms\n", ms(wait));
        rc = coro_sleep(wait);
        if (rc != 0) {
            err = errno;
            printf("   backoff at +%6.2f ms: %s\n", ms(coro_now() - t0), strerror(err));
            errno = err;
            break;
        }
        backoff = backoff * 2 > CAP_MS * CORO_MS ? CAP_MS * CORO_MS : backoff * 2;
    }
    int err = errno;
    coro_set_deadline(saved); /* on every path */
    errno = err;
    return rc;
}

/* ---- the two runs ------------------------------------------------------------- */

static void run(const char *title, int succeed_on, int64_t budget, int want_errno)
{
    printf("%s\n", title);
    struct flaky f = { succeed_on, 0 };
    int64_t t0 = coro_now();
    int rc = retry(&f, budget);
    int err = errno;
    int64_t took = coro_now() - t0;
    printf("   -> %s after %d attempts, %.2f ms; deadline restored: %s\n",
           rc == 0 ? "success" : strerror(err), f.attempts, ms(took),
           coro_deadline() == CORO_NEVER ? "yes" : "NO");
    CHECK(coro_deadline() == CORO_NEVER, "the deadline was not restored");
    if (want_errno == 0) {
        CHECK(rc == 0, "expected success, got %s", strerror(err));
        CHECK(f.attempts == succeed_on, "%d attempts, expected %d", f.attempts, succeed_on);
        CHECK(took < budget, "took %.2f ms, over the budget", ms(took));
    } else {
        CHECK(rc == -1 && err == want_errno, "expected %s, got %s", strerror(want_errno),
              rc == 0 ? "success" : strerror(err));
        CHECK(f.attempts < succeed_on, "%d attempts: the operation got to succeed",
              f.attempts);
        CHECK(took >= budget && took < budget + SLACK, "gave up after %.2f ms, budget %.2f ms",
              ms(took), ms(budget));
    }
}

static int body(void *arg)
{
    (void)arg;
    run("1. succeeds on attempt 4, budget 200 ms", 4, 200 * CORO_MS, 0);
    run("2. would succeed on attempt 10, budget 100 ms", 10, 100 * CORO_MS, ETIMEDOUT);
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "retry_backoff: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
