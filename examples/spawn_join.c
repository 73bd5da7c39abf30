/* spawn_join.c: start a few named coroutines, let them take turns, join
 * them and collect what each returned.
 *
 * WHAT IT SHOWS
 *   coro_spawn_opts() creates a coroutine with a name (the name appears in
 *   dumps, deadlock reports and stack-overflow messages) and puts it on the
 *   run queue. coro_join() waits for it to end, gives back its status (the
 *   int its body returned: 0 means success) and frees it. Every coroutine
 *   you spawn must be joined or detached, as a pthread must be.
 *
 * WHY IT MATTERS
 *   Coroutines on one thread are cooperative. The running one keeps the
 *   CPU until it reaches a switch point: a blocking call (a "checkpoint",
 *   such as coro_join or coro_sleep) or coro_yield(). Between two switch
 *   points no other coroutine of this thread runs, so shared data updated
 *   there needs no lock. The other side of that deal: a coroutine that
 *   computes for a long time without reaching a switch point holds up all
 *   the others (run with CORO_DEBUG=slow:10ms to have such a one named).
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - All three "spawned" lines come before any worker prints: a spawned
 *     coroutine is only ready; it first runs when main blocks (here, in its
 *     first coro_join).
 *   - A worker's "begin"/"end" lines are never split by another worker:
 *     there is no switch point between them.
 *   - At each coro_yield() the next worker in line runs: the run queue is
 *     first in, first out, so the steps go round-robin.
 *   - Joining a worker that has already ended returns at once with its
 *     status; statuses are read in join order, not in the order the
 *     workers ended.
 *
 * The program checks all of the above and exits non-zero if any of it
 * does not hold. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define NWORKERS 3
#define MAX_EVENTS 64

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "spawn_join: unexpected: " __VA_ARGS__);        \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

struct worker {
    const char *name;
    int steps;  /* how many steps it takes */
    int status; /* what its body returns */
};

/* The order things happened in, to check the interleaving afterwards:
 * worker index * 2 + 0 for a "begin", + 1 for an "end". */
static int events[MAX_EVENTS];
static int nevents;
static int started;

static void record(int ev)
{
    if (nevents < MAX_EVENTS)
        events[nevents++] = ev;
}

static struct worker workers[NWORKERS] = {
    { "alpha", 3, 0 },
    { "beta", 2, 0 },
    /* A body reports failure by returning non-zero; the number is yours to
     * define. Here gamma pretends that its work failed with status 2. */
    { "gamma", 3, 2 },
};

static int work(void *arg)
{
    struct worker *w = arg;
    int me = (int)(w - workers);
    coro_t *self = coro_self();
    started++;
    for (int step = 0; step < w->steps; step++) {
        /* From here ... */
        printf("  [%s #%llu] step %d begin\n", coro_name(self),
               (unsigned long long)coro_id(self), step);
        record(me * 2);
        printf("  [%s #%llu] step %d end\n", coro_name(self),
               (unsigned long long)coro_id(self), step);
        record(me * 2 + 1);
        /* ... to here, nothing else ran. Now let the others have a turn. */
        coro_yield();
    }
    printf("  [%s] done, returning status %d\n", w->name, w->status);
    return w->status;
}

/* The order the events should have come in: round-robin over the workers
 * still running, each step's begin directly followed by its end. */
static int check_interleaving(void)
{
    int expect[MAX_EVENTS], n = 0;
    for (int round = 0; round < 8; round++)
        for (int i = 0; i < NWORKERS; i++)
            if (round < workers[i].steps && n + 2 <= MAX_EVENTS) {
                expect[n++] = i * 2;
                expect[n++] = i * 2 + 1;
            }
    if (n != nevents)
        return 0;
    for (int i = 0; i < n; i++)
        if (expect[i] != events[i])
            return 0;
    return 1;
}

static int body(void *arg)
{
    (void)arg;
    coro_t *handles[NWORKERS];

    printf("main (coroutine #%llu \"%s\") spawns %d workers\n",
           (unsigned long long)coro_id(coro_self()), coro_name(coro_self()), NWORKERS);
    for (int i = 0; i < NWORKERS; i++) {
        /* Zero-initialise the options and set what you need; the name is
         * copied, so it may live in a temporary buffer. */
        coro_opts_t opts = { .stack_size = 0, .name = workers[i].name };
        handles[i] = coro_spawn_opts(work, &workers[i], &opts);
        if (!handles[i]) {
            fprintf(stderr, "spawn_join: coro_spawn_opts(%s): %s\n", workers[i].name,
                    strerror(errno));
            /* Don't leave the ones already started behind: stop and reap. */
            for (int j = 0; j < i; j++) {
                coro_cancel(handles[j]);
                if (coro_join(handles[j], NULL) != 0)
                    fprintf(stderr, "spawn_join: coro_join: %s\n", strerror(errno));
            }
            return 1;
        }
        printf("main: spawned %s as #%llu\n", workers[i].name,
               (unsigned long long)coro_id(handles[i]));
    }
    CHECK(started == 0, "%d workers ran before main blocked", started);
    printf("main: none has run yet (started = %d); joining them in order\n", started);

    for (int i = 0; i < NWORKERS; i++) {
        int status = -1;
        /* The handle is freed by a successful join: don't use it after. */
        if (coro_join(handles[i], &status) != 0) {
            fprintf(stderr, "spawn_join: coro_join(%s): %s\n", workers[i].name,
                    strerror(errno));
            failures++;
            continue;
        }
        printf("main: joined %-5s -> status %d%s\n", workers[i].name, status,
               status ? " (it reported a failure)" : "");
        CHECK(status == workers[i].status, "%s: status %d, expected %d", workers[i].name,
              status, workers[i].status);
    }

    CHECK(check_interleaving(), "the steps did not interleave round-robin "
                                "with each begin/end pair together");
    if (!failures)
        printf("main: every begin/end pair ran unsplit, and the steps went round-robin\n");
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "spawn_join: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
