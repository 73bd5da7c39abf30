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
 *   so that is not checked.)
 *
 * TESTING IT IN SIMULATED TIME: `circuit_breaker --sim [SEED]`
 *   The same client and breaker run in a deterministic simulation
 *   (coro_main_opts with a coro_sim_t) on a scale of seconds instead of
 *   milliseconds: two hours of calls every 5 s, an outage whose start
 *   (10-40 min) and length (20-80 min) the seed picks, a 10 s per-call
 *   deadline and a 30 s cool-down; it runs in milliseconds of wall time.
 *   The clock is virtual, so the number of calls is checked exactly too.
 *   The same seed prints the same run byte for byte (test/
 *   check_examples_sim.sh compares two); a failing run prints the seed
 *   that replays it (CORO_SIM_SEED=<n>). */
#include <coro.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "circuit_breaker: unexpected: " __VA_ARGS__);   \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

#define THRESHOLD 3

/* The time scale: milliseconds on the real clock, seconds (and a seeded
 * outage) in a simulation. Every duration below is in `unit`s. */
static struct timing {
    int64_t unit;
    const char *unit_name;
    int64_t run, interval, down_from, down_until, call_timeout, cooldown;
} T = { CORO_MS, "ms", 200, 5, 40, 130, 10, 30 };
static int simulated;

static int64_t t0;

static double since_start(void)
{
    return (double)(coro_now() - t0) / (double)T.unit;
}

/* ---- the service ----------------------------------------------------------- */

struct service {
    int calls;           /* calls that reached it */
    int calls_while_down;
};

static int service_is_down(void)
{
    int64_t t = coro_now() - t0;
    return t >= T.down_from * T.unit && t < T.down_until * T.unit;
}

/* Answers in 1 unit, or, while down, hangs for 1000. */
static int service_call(struct service *s)
{
    s->calls++;
    if (service_is_down()) {
        s->calls_while_down++;
        return coro_sleep(1000 * T.unit) == 0 ? 0 : -1;
    }
    return coro_sleep(T.unit);
}

/* The client's call: the service, under a per-call deadline. */
static int call_with_timeout(struct service *s)
{
    int64_t saved = coro_timeout(T.call_timeout * T.unit);
    int rc = service_call(s);
    int err = errno;
    coro_set_deadline(saved);
    errno = err;
    return rc;
}

/* ---- the breaker ----------------------------------------------------------- */

enum state { CLOSED, OPEN, HALF_OPEN };
static const char *const state_names[] = { "closed", "open", "half-open" };

#define MAX_TRANSITIONS 1024

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
    printf("  +%6.2f %s  %s -> %s (%s)\n", since_start(), T.unit_name, state_names[b->state],
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
        if (coro_now() - b->opened_at < T.cooldown * T.unit) {
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

static int body(void *arg);

/* --sim: seconds instead of milliseconds, and an outage the seed places. */
static int sim_body(void *arg)
{
    T = (struct timing){ CORO_SEC, "s", 2 * 3600, 5, 0, 0, 10, 30 };
    T.down_from = (10 + (int64_t)(coro_random() % 31)) * 60;
    T.down_until = T.down_from + (20 + (int64_t)(coro_random() % 61)) * 60;
    return body(arg);
}

static int body(void *arg)
{
    (void)arg;
    struct service s = { 0, 0 };
    struct breaker b = { .state = CLOSED };
    char timeline[2048];
    size_t len = 0;
    int ok = 0, timed_out = 0;

    printf("a call every %lld %s for %lld %s; the service hangs from +%lld to +%lld %s; "
           "per-call deadline %lld %s\n",
           (long long)T.interval, T.unit_name, (long long)T.run, T.unit_name,
           (long long)T.down_from, (long long)T.down_until, T.unit_name,
           (long long)T.call_timeout, T.unit_name);
    printf("  +  0.00 %s  state: closed\n", T.unit_name);
    t0 = coro_now();
    while (coro_now() - t0 < T.run * T.unit) {
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
        if (coro_sleep(T.interval * T.unit) != 0) {
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
    if (simulated) {
        /* Virtual time is exact: every iteration takes its call (1 unit
         * answered, the deadline timed out, nothing refused) plus the
         * interval, so the count of calls follows. */
        int64_t spent = (int64_t)ok * (1 + T.interval) +
                        (int64_t)timed_out * (T.call_timeout + T.interval) +
                        (int64_t)b.refused * T.interval;
        CHECK(spent >= T.run && spent < T.run + T.call_timeout + T.interval,
              "%lld %s accounted for, the run lasted %lld", (long long)spent, T.unit_name,
              (long long)T.run);
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
        rc = coro_main_opts(sim_body, NULL, &o);
        clock_gettime(CLOCK_MONOTONIC, &w1);
        double wall = (double)(w1.tv_sec - w0.tv_sec) + (double)(w1.tv_nsec - w0.tv_nsec) / 1e9;
        /* On stderr: wall time differs from run to run, stdout must not. */
        fprintf(stderr, "circuit_breaker: simulated run took %.3f s of wall time\n", wall);
    } else {
        rc = coro_main(body, NULL);
    }
    if (rc < 0) {
        fprintf(stderr, "circuit_breaker: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
