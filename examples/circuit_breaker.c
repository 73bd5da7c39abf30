/* circuit_breaker.c: a circuit breaker around a flaky service.
 *
 * WHAT IT SHOWS
 *   A client calls a service every 5 ms for 200 ms. The service is healthy
 *   (answers in 1 ms), then goes down from +40 ms to +130 ms: it hangs
 *   instead of answering, and the client's per-call deadline of 10 ms
 *   (coro_timeout) turns each hang into ETIMEDOUT. A breaker sits between
 *   the two, with three states:
 *
 *      CLOSED --K=3 failures in a row--> OPEN --30 ms cool-down--> HALF-OPEN
 *        ^                                 ^                          |
 *        |                                 +------ trial fails -------+
 *        +------------------------ trial succeeds --------------------+
 *
 *   - CLOSED: calls go through; a success resets the failure count.
 *   - OPEN: calls fail at once with EAGAIN, without touching the service.
 *   - HALF-OPEN: after the cool-down, one trial call goes through (others
 *     are still refused while it runs). Its success closes the breaker;
 *     its failure opens it for another cool-down.
 *
 * WHY IT MATTERS
 *   A dead dependency is worse when it is slow: every call waits its full
 *   timeout, callers pile up behind it, and the retries keep the service
 *   from recovering. The breaker notices the pattern, fails fast (in
 *   nanoseconds instead of a 10 ms timeout) and only probes now and then.
 *   The per-call deadline is what turns "hangs" into a failure the breaker
 *   can count at all: without it the first call would simply never
 *   return.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - The state transitions, with times: closed -> open after the third
 *     timeout; open -> half-open after each cool-down; a trial that fails
 *     while the service is still down (open again); and the trial after
 *     +130 ms that succeeds (closed).
 *   - The timeline, one character per call: '.' success, 'T' timed out,
 *     '-' refused by the open breaker without calling the service.
 *   - While the service was down it was called only K times plus one
 *     trial per cool-down; every other call failed fast.
 *   The transitions and counts are checked; the program exits non-zero if
 *   the breaker misbehaves. (The exact number of calls depends on timing,
 *   so that is not checked.) */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "circuit_breaker: unexpected: " __VA_ARGS__);   \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

#define RUN_MS 200
#define INTERVAL_MS 5
#define DOWN_FROM_MS 40
#define DOWN_UNTIL_MS 130
#define CALL_TIMEOUT_MS 10
#define THRESHOLD 3
#define COOLDOWN_MS 30

static int64_t t0;

static double since_start(void)
{
    return (double)(coro_now() - t0) / 1e6;
}

/* ---- the service ----------------------------------------------------------- */

struct service {
    int calls;           /* calls that reached it */
    int calls_while_down;
};

static int service_is_down(void)
{
    int64_t t = coro_now() - t0;
    return t >= DOWN_FROM_MS * CORO_MS && t < DOWN_UNTIL_MS * CORO_MS;
}

/* Answers in 1 ms, or, while down, hangs for a second. */
static int service_call(struct service *s)
{
    s->calls++;
    if (service_is_down()) {
        s->calls_while_down++;
        return coro_sleep(CORO_SEC) == 0 ? 0 : -1;
    }
    return coro_sleep(CORO_MS);
}

/* The client's call: the service, under a per-call deadline. */
static int call_with_timeout(struct service *s)
{
    int64_t saved = coro_timeout(CALL_TIMEOUT_MS * CORO_MS);
    int rc = service_call(s);
    int err = errno;
    coro_set_deadline(saved);
    errno = err;
    return rc;
}

/* ---- the breaker ----------------------------------------------------------- */

enum state { CLOSED, OPEN, HALF_OPEN };
static const char *const state_names[] = { "closed", "open", "half-open" };

#define MAX_TRANSITIONS 32

struct breaker {
    enum state state;
    int failures;        /* consecutive failures while closed */
    int64_t opened_at;   /* when it last opened */
    int trial_running;   /* half-open: the one trial call is in flight */
    int refused;         /* calls failed fast */
    enum state from[MAX_TRANSITIONS], to[MAX_TRANSITIONS];
    int ntransitions;
};

static void transition(struct breaker *b, enum state to, const char *why)
{
    printf("  +%6.2f ms  %s -> %s (%s)\n", since_start(), state_names[b->state],
           state_names[to], why);
    if (b->ntransitions < MAX_TRANSITIONS) {
        b->from[b->ntransitions] = b->state;
        b->to[b->ntransitions] = to;
    }
    b->ntransitions++;
    b->state = to;
    if (to == OPEN)
        b->opened_at = coro_now();
    if (to == CLOSED)
        b->failures = 0;
}

/* Call the service through the breaker. Returns 0, or -1 with errno:
 * EAGAIN refused (open), or the call's own error. */
static int breaker_call(struct breaker *b, struct service *s)
{
    if (b->state == OPEN) {
        if (coro_now() - b->opened_at < COOLDOWN_MS * CORO_MS) {
            b->refused++;
            errno = EAGAIN;
            return -1;
        }
        transition(b, HALF_OPEN, "cool-down over: let one trial call through");
    }
    if (b->state == HALF_OPEN && b->trial_running) { /* one trial at a time */
        b->refused++;
        errno = EAGAIN;
        return -1;
    }
    int trial = b->state == HALF_OPEN;
    b->trial_running = trial;
    int rc = call_with_timeout(s);
    int err = errno;
    b->trial_running = 0;
    if (rc == 0) {
        if (trial)
            transition(b, CLOSED, "trial call succeeded");
        b->failures = 0;
        return 0;
    }
    if (err != ECANCELED) { /* our own cancellation says nothing about the service */
        if (trial) {
            transition(b, OPEN, "trial call failed");
        } else if (b->state == CLOSED && ++b->failures >= THRESHOLD) {
            char why[64];
            snprintf(why, sizeof why, "%d failures in a row", b->failures);
            transition(b, OPEN, why);
        }
    }
    errno = err;
    return -1;
}

/* ---- the client ------------------------------------------------------------ */

static int body(void *arg)
{
    (void)arg;
    struct service s = { 0, 0 };
    struct breaker b = { .state = CLOSED };
    char timeline[256];
    size_t len = 0;
    int ok = 0, timed_out = 0;

    printf("a call every %d ms for %d ms; the service hangs from +%d to +%d ms; "
           "per-call deadline %d ms\n",
           INTERVAL_MS, RUN_MS, DOWN_FROM_MS, DOWN_UNTIL_MS, CALL_TIMEOUT_MS);
    printf("  +  0.00 ms  state: closed\n");
    t0 = coro_now();
    while (coro_now() - t0 < RUN_MS * CORO_MS) {
        char c;
        if (breaker_call(&b, &s) == 0) {
            ok++;
            c = '.';
        } else if (errno == EAGAIN) {
            c = '-';
        } else if (errno == ETIMEDOUT) {
            timed_out++;
            c = 'T';
        } else {
            fprintf(stderr, "circuit_breaker: call failed: %s\n", strerror(errno));
            failures++;
            break;
        }
        if (len < sizeof timeline - 1)
            timeline[len++] = c;
        if (coro_sleep(INTERVAL_MS * CORO_MS) != 0) {
            fprintf(stderr, "circuit_breaker: coro_sleep: %s\n", strerror(errno));
            failures++;
            break;
        }
    }
    timeline[len] = '\0';
    printf("timeline: %s\n", timeline);
    printf("%zu calls: %d ok, %d timed out, %d refused at once; the service saw %d calls, "
           "%d of them while down\n",
           len, ok, timed_out, b.refused, s.calls, s.calls_while_down);

    /* Every transition follows an edge of the diagram. */
    int trials = 0;
    CHECK(b.ntransitions <= MAX_TRANSITIONS, "%d transitions", b.ntransitions);
    for (int i = 0; i < b.ntransitions && i < MAX_TRANSITIONS; i++) {
        enum state f = b.from[i], t = b.to[i];
        CHECK(i == 0 || f == b.to[i - 1], "transition %d starts from the wrong state", i);
        CHECK((f == CLOSED && t == OPEN) || (f == OPEN && t == HALF_OPEN) ||
                  (f == HALF_OPEN && (t == OPEN || t == CLOSED)),
              "transition %s -> %s", state_names[f], state_names[t]);
        trials += f == HALF_OPEN;
    }
    CHECK(b.ntransitions >= 3 && b.from[0] == CLOSED && b.to[0] == OPEN,
          "the breaker never opened");
    CHECK(b.state == CLOSED, "the breaker ended %s, expected closed", state_names[b.state]);
    CHECK(timed_out == THRESHOLD + trials - 1,
          "%d timeouts: expected %d to open it plus %d failed trials", timed_out, THRESHOLD,
          trials - 1);
    CHECK(s.calls_while_down <= THRESHOLD + trials, "the service was called %d times while down",
          s.calls_while_down);
    CHECK(b.refused > 0, "no call was refused");
    CHECK(s.calls == ok + timed_out, "the service saw %d calls, %d accounted for", s.calls,
          ok + timed_out);
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "circuit_breaker: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
