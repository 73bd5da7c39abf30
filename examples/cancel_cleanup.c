/* cancel_cleanup.c: cancelling a coroutine, and cleaning up properly when
 * you are the one cancelled.
 *
 * WHAT IT SHOWS
 *   coro_cancel(c) asks c to stop. It does not kill c on the spot: c is
 *   woken from the checkpoint it is parked in (here, a sleep), which fails
 *   with ECANCELED, and c's own code then unwinds through its ordinary
 *   error paths, closing and freeing what it holds, and returns.
 *   Cancellation is sticky: every later checkpoint of c fails the same way,
 *   so an unwinding coroutine cannot accidentally block again and hang.
 *
 *   But some cleanup has to block: flush a buffer, send a goodbye, wait for
 *   a child to finish. For that the coroutine raises a shield:
 *       int old = coro_shield(1);          // cancellation held back
 *       int64_t saved = coro_timeout(...);  // but bound the cleanup in time
 *       ... blocking cleanup ...
 *       coro_set_deadline(saved);
 *       coro_shield(old);                   // cancellation applies again
 *   Under the shield, checkpoints ignore the cancellation (a second
 *   coro_cancel does not interrupt them either); deadlines still apply,
 *   which is why the cleanup above gets its own time limit, so a stuck peer
 *   cannot hang the shutdown. (trio calls this a shielded cancel scope with
 *   a move_on_after.)
 *
 *   coro_cancelled() tells a coroutine it has been cancelled, shielded or
 *   not, for loops that compute without reaching a checkpoint.
 *
 * WHY IT MATTERS
 *   A cancellation that stops code at an arbitrary instruction leaks locks,
 *   memory and half-written files; one that is merely a request, which the
 *   code may ignore, cannot stop anything reliably. Checkpoint
 *   cancellation sits between: it only ever surfaces as an error return
 *   from a blocking call, which the code must handle anyway.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - The uploader's third chunk is cut short: the cancel wakes it in the
 *     middle of its sleep.
 *   - The 10 ms flush runs to completion under the shield, although main
 *     cancels a second time while it runs.
 *   - After the shield comes down, coro_sleep(0) fails at once with
 *     ECANCELED ("Operation canceled"): the cancellation stuck.
 *   - main's join returns only after the flush: cancel + join is a clean
 *     shutdown, not an abandonment.
 *   - A coroutine cancelled before it has even started still runs (so it
 *     can release what it was handed) and meets ECANCELED at its first
 *     checkpoint. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "cancel_cleanup: unexpected: " __VA_ARGS__);    \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

#define CHUNK_MS 20
#define CANCEL_AT_MS 50
#define FLUSH_MS 10
/* Generous, for Valgrind and loaded machines. */
#define SLACK (400 * CORO_MS)

static double ms(int64_t ns)
{
    return (double)ns / 1e6;
}

/* What the uploader saw, for main to check. */
struct upload {
    int chunks;          /* chunks fully sent */
    int interrupted_by;  /* errno of the checkpoint that was interrupted */
    int64_t flush_ns;    /* how long the shielded flush took */
    int flush_rc;        /* 0 if the flush completed */
    int cancelled_seen;  /* coro_cancelled() during cleanup */
    int sticky_errno;    /* errno of a checkpoint after the shield came down */
};

static int uploader(void *arg)
{
    struct upload *u = arg;
    int64_t t0 = coro_now();

    /* The work: send chunks until something stops us. */
    for (;;) {
        int64_t t = coro_now();
        if (coro_sleep(CHUNK_MS * CORO_MS) != 0) {
            u->interrupted_by = errno;
            printf("  uploader: chunk %d interrupted after %.2f of its %d ms: %s\n",
                   u->chunks + 1, ms(coro_now() - t), CHUNK_MS, strerror(errno));
            break;
        }
        u->chunks++;
        printf("  uploader: chunk %d sent at +%.2f ms\n", u->chunks, ms(coro_now() - t0));
    }

    /* Cleanup. The cancellation is recorded, and sticky. */
    u->cancelled_seen = coro_cancelled();
    printf("  uploader: coro_cancelled() = %d; flushing under a shield\n", u->cancelled_seen);
    int old_shield = coro_shield(1);
    int64_t saved = coro_timeout(200 * CORO_MS); /* a bound for the cleanup */
    int64_t t = coro_now();
    u->flush_rc = coro_sleep(FLUSH_MS * CORO_MS); /* stands for a blocking flush */
    u->flush_ns = coro_now() - t;
    if (u->flush_rc != 0)
        fprintf(stderr, "cancel_cleanup: flush: %s\n", strerror(errno));
    else
        printf("  uploader: flush took %.2f ms, uninterrupted\n", ms(u->flush_ns));
    coro_set_deadline(saved);
    coro_shield(old_shield);

    /* Shield down: the cancellation applies again, at once. */
    int rc = coro_sleep(0);
    u->sticky_errno = rc == -1 ? errno : 0;
    printf("  uploader: shield down; coro_sleep(0) -> %d (%s)\n", rc,
           rc ? strerror(errno) : "ok: NOT cancelled?");

    /* A conventional status for "stopped because cancelled". */
    return ECANCELED;
}

/* Part 2: cancelled before its first instruction ran. */
static int late_starter(void *arg)
{
    int *saw = arg;
    printf("  late starter: running, coro_cancelled() = %d\n", coro_cancelled());
    if (coro_sleep(CORO_MS) != 0) {
        *saw = errno;
        printf("  late starter: first checkpoint: %s\n", strerror(errno));
        return ECANCELED;
    }
    printf("  late starter: first checkpoint passed: NOT cancelled?\n");
    return 0;
}

static int body(void *arg)
{
    (void)arg;
    struct upload u = { 0 };
    coro_opts_t opts = { .name = "uploader" };

    printf("1. cancel a worker in the middle of a sleep\n");
    coro_t *c = coro_spawn_opts(uploader, &u, &opts);
    if (!c) {
        fprintf(stderr, "cancel_cleanup: coro_spawn_opts: %s\n", strerror(errno));
        return 1;
    }
    if (coro_sleep(CANCEL_AT_MS * CORO_MS) != 0) {
        fprintf(stderr, "cancel_cleanup: coro_sleep: %s\n", strerror(errno));
        failures++;
    }
    printf("  main: coro_cancel(uploader)\n");
    int64_t t_cancel = coro_now();
    if (coro_cancel(c) != 0) {
        fprintf(stderr, "cancel_cleanup: coro_cancel: %s\n", strerror(errno));
        failures++;
    }
    /* Give it time to enter its shielded flush, then cancel again. */
    if (coro_sleep(2 * CORO_MS) != 0) {
        fprintf(stderr, "cancel_cleanup: coro_sleep: %s\n", strerror(errno));
        failures++;
    }
    printf("  main: coro_cancel(uploader) again, during its flush\n");
    if (coro_cancel(c) != 0) {
        fprintf(stderr, "cancel_cleanup: coro_cancel: %s\n", strerror(errno));
        failures++;
    }
    int status = -1;
    if (coro_join(c, &status) != 0) {
        fprintf(stderr, "cancel_cleanup: coro_join: %s\n", strerror(errno));
        return 1;
    }
    int64_t waited = coro_now() - t_cancel;
    printf("  main: joined after %.2f ms: status %d (%s), %d chunks sent\n", ms(waited),
           status, strerror(status), u.chunks);

    CHECK(status == ECANCELED, "status %d", status);
    CHECK(u.interrupted_by == ECANCELED, "the sleep was interrupted by \"%s\"",
          strerror(u.interrupted_by));
    CHECK(u.chunks >= 1, "%d chunks sent", u.chunks);
    CHECK(u.cancelled_seen == 1, "coro_cancelled() was %d in cleanup", u.cancelled_seen);
    CHECK(u.flush_rc == 0 && u.flush_ns >= FLUSH_MS * CORO_MS &&
              u.flush_ns < FLUSH_MS * CORO_MS + SLACK,
          "the shielded flush returned %d after %.2f ms", u.flush_rc, ms(u.flush_ns));
    CHECK(u.sticky_errno == ECANCELED, "after unshielding a checkpoint gave \"%s\"",
          strerror(u.sticky_errno));
    CHECK(waited >= FLUSH_MS * CORO_MS, "join returned %.2f ms after the cancel, before the "
          "flush could have ended", ms(waited));

    printf("2. cancel a coroutine before it has started\n");
    int saw = 0;
    opts.name = "late starter";
    c = coro_spawn_opts(late_starter, &saw, &opts);
    if (!c) {
        fprintf(stderr, "cancel_cleanup: coro_spawn_opts: %s\n", strerror(errno));
        return 1;
    }
    if (coro_cancel(c) != 0) {
        fprintf(stderr, "cancel_cleanup: coro_cancel: %s\n", strerror(errno));
        failures++;
    }
    printf("  main: spawned and cancelled it at once; joining\n");
    if (coro_join(c, &status) != 0) {
        fprintf(stderr, "cancel_cleanup: coro_join: %s\n", strerror(errno));
        return 1;
    }
    printf("  main: joined: status %d\n", status);
    CHECK(saw == ECANCELED && status == ECANCELED, "late starter saw \"%s\", status %d",
          strerror(saw), status);
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "cancel_cleanup: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
