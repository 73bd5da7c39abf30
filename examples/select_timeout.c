/* select_timeout.c: waiting on several channels at once, with a timeout,
 * and Go's `default:` case.
 *
 * WHAT IT SHOWS
 *   1. A receive loop over two channels, `data` and `quit`:
 *          coro_case_t cases[] = {
 *              { data, CORO_RECV, &value, 0 },
 *              { quit, CORO_RECV, &dummy, 0 },
 *          };
 *          int64_t saved = coro_timeout(20 * CORO_MS);
 *          int i = coro_select(cases, 2);       // index of the case taken
 *          coro_set_deadline(saved);
 *      coro_select() parks until one case can complete, completes it and
 *      returns its index. The per-iteration deadline makes it give up with
 *      ETIMEDOUT after 20 ms of silence, like a `case <-time.After(...)`.
 *      The quit channel is never sent on: it is *closed*, and a closed
 *      channel is always ready (its case completes with err = EPIPE), so a
 *      close reaches every loop that selects on it, however many there are.
 *   2. coro_try_select(): the same, without blocking. When no case is
 *      ready it fails at once with EAGAIN: the `default:` of Go's select.
 *      The classic use is a lossy send: offer an event to a bounded
 *      channel, and drop it (counting the drop) if the channel is full,
 *      rather than stall the sender behind a slow reader.
 *
 * WHY IT MATTERS
 *   Real loops wait for more than one thing: work or shutdown, a reply or
 *   a timeout. Select makes that one wait, with no polling. Scoping the
 *   timeout per iteration with coro_timeout() (instead of a timer channel)
 *   uses the one deadline mechanism every blocking call already honours,
 *   and coro_timeout() only tightens, so an outer deadline set by this
 *   loop's caller still wins (a real loop would then pass that ETIMEDOUT
 *   up instead of treating it as "quiet for a while").
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - Values 1, 2, 3 arrive 5 ms apart; then the sender goes quiet for
 *     50 ms and the loop reports two 20 ms timeouts before value 4.
 *   - The loop ends on the quit case, with err EPIPE, once quit is closed.
 *   - try_select on an empty channel returns -1/EAGAIN at once.
 *   - Of 10 events offered to a channel of capacity 3 that nobody reads, 3
 *     are queued and 7 dropped.
 *   All of it is checked; the program exits non-zero if anything differs
 *   (the timeout count within a margin, for slow machines). */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "select_timeout: unexpected: " __VA_ARGS__);    \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

#define TIMEOUT_MS 20

static int64_t t0;

static double since_start(void)
{
    return (double)(coro_now() - t0) / 1e6;
}

struct chans {
    coro_chan_t *data, *quit;
};

/* ---- 1. select with a timeout ------------------------------------------- */

/* Sends 1, 2, 3 five ms apart, is quiet for 50 ms, sends 4, closes quit. */
static int sender(void *arg)
{
    struct chans *c = arg;
    static const int gaps_ms[] = { 5, 5, 5, 50 };
    for (int v = 1; v <= 4; v++) {
        if (coro_sleep(gaps_ms[v - 1] * CORO_MS) != 0 || coro_chan_send(c->data, &v) != 0) {
            fprintf(stderr, "select_timeout: sender: %s\n", strerror(errno));
            if (coro_chan_close(c->quit) != 0) /* let the loop end */
                fprintf(stderr, "select_timeout: coro_chan_close: %s\n", strerror(errno));
            return 1;
        }
    }
    if (coro_chan_close(c->quit) != 0) {
        fprintf(stderr, "select_timeout: coro_chan_close: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

static void receive_loop(void)
{
    printf("1. select over data and quit, %d ms timeout per iteration\n", TIMEOUT_MS);
    struct chans c;
    c.data = coro_chan_new(sizeof(int), 0);
    c.quit = coro_chan_new(1, 0); /* never sent on: only closed */
    if (!c.data || !c.quit) {
        fprintf(stderr, "select_timeout: coro_chan_new: %s\n", strerror(errno));
        failures++;
        goto out;
    }
    t0 = coro_now();
    coro_opts_t o = { .name = "sender" };
    coro_t *s = coro_spawn_opts(sender, &c, &o);
    if (!s) {
        fprintf(stderr, "select_timeout: coro_spawn_opts: %s\n", strerror(errno));
        failures++;
        goto out;
    }

    int got[8], ngot = 0, timeouts = 0, quit_err = 0;
    for (;;) {
        int value;
        char dummy;
        coro_case_t cases[] = {
            { c.data, CORO_RECV, &value, 0 },
            { c.quit, CORO_RECV, &dummy, 0 },
        };
        int64_t saved = coro_timeout(TIMEOUT_MS * CORO_MS);
        int i = coro_select(cases, 2);
        int err = errno;
        coro_set_deadline(saved);

        if (i == -1 && err == ETIMEDOUT) {
            timeouts++;
            printf("   +%6.2f ms  nothing for %d ms: timeout\n", since_start(), TIMEOUT_MS);
            continue;
        }
        if (i == -1) {
            fprintf(stderr, "select_timeout: coro_select: %s\n", strerror(err));
            failures++;
            break;
        }
        if (i == 1) {
            quit_err = cases[1].err;
            printf("   +%6.2f ms  quit case taken, err %s: quit is closed; leaving\n",
                   since_start(), quit_err ? strerror(quit_err) : "0");
            break;
        }
        if (cases[0].err != 0) { /* data closed: not in this program */
            fprintf(stderr, "select_timeout: data case: %s\n", strerror(cases[0].err));
            failures++;
            break;
        }
        printf("   +%6.2f ms  data case taken: %d\n", since_start(), value);
        if (ngot < 8)
            got[ngot++] = value;
    }
    int status = -1;
    if (coro_join(s, &status) != 0) {
        fprintf(stderr, "select_timeout: coro_join: %s\n", strerror(errno));
        failures++;
    }
    CHECK(status == 0, "the sender failed");
    CHECK(ngot == 4 && got[0] == 1 && got[1] == 2 && got[2] == 3 && got[3] == 4,
          "received %d values, expected 1 2 3 4", ngot);
    CHECK(quit_err == EPIPE, "the quit case had err \"%s\", expected EPIPE",
          strerror(quit_err));
    /* 50 ms of silence / 20 ms: 2 timeouts; allow one either way. */
    CHECK(timeouts >= 1 && timeouts <= 3, "%d timeouts, expected about 2", timeouts);
out:
    if (c.data)
        coro_chan_free(c.data);
    if (c.quit)
        coro_chan_free(c.quit);
}

/* ---- 2. try_select as `default:` ------------------------------------------ */

static void default_case(void)
{
    printf("2. coro_try_select: Go's default case\n");
    coro_chan_t *events = coro_chan_new(sizeof(int), 3);
    if (!events) {
        fprintf(stderr, "select_timeout: coro_chan_new: %s\n", strerror(errno));
        failures++;
        return;
    }

    /* Nothing to receive: instead of parking, fail at once. */
    int v;
    coro_case_t rcase[] = { { events, CORO_RECV, &v, 0 } };
    int64_t t = coro_now();
    int i = coro_try_select(rcase, 1);
    int err = errno;
    printf("   try_select(recv on an empty channel) -> %d (%s) in %.0f us\n", i,
           i == -1 ? strerror(err) : "a case?", (double)(coro_now() - t) / 1e3);
    CHECK(i == -1 && err == EAGAIN, "try_select on an empty channel returned %d (%s)", i,
          strerror(err));

    /* A lossy send: queue the event if there is room, else drop it. */
    int queued = 0, dropped = 0;
    for (int ev = 0; ev < 10; ev++) {
        coro_case_t scase[] = { { events, CORO_SEND, &ev, 0 } };
        i = coro_try_select(scase, 1);
        if (i == 0) {
            queued++;
        } else if (errno == EAGAIN) { /* default: */
            dropped++;
        } else {
            fprintf(stderr, "select_timeout: coro_try_select: %s\n", strerror(errno));
            failures++;
            break;
        }
    }
    printf("   10 events offered to a channel of capacity %zu that nobody reads: "
           "%d queued, %d dropped (len %zu)\n",
           coro_chan_cap(events), queued, dropped, coro_chan_len(events));
    CHECK(queued == 3 && dropped == 7, "%d queued, %d dropped; expected 3 and 7", queued,
          dropped);

    /* The queued ones are the first three, in order. */
    for (int want = 0; want < 3; want++) {
        if (coro_chan_try_recv(events, &v) != 0) {
            fprintf(stderr, "select_timeout: coro_chan_try_recv: %s\n", strerror(errno));
            failures++;
            break;
        }
        CHECK(v == want, "queued event %d, expected %d", v, want);
    }
    coro_chan_free(events);
}

static int body(void *arg)
{
    (void)arg;
    receive_loop();
    default_case();
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "select_timeout: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
