/* bounded_concurrency.c: at most N jobs at once, with a semaphore.
 *
 * WHAT IT SHOWS
 *   Ten jobs are started together, but a counting semaphore with 3
 *   permits lets only three run their "work" (a sleep standing for a
 *   request to some service) at any time:
 *       coro_sem_t slots = CORO_SEM_INIT(3);
 *       coro_sem_acquire(&slots);     // parks while 3 jobs hold a permit
 *       ... the work ...
 *       coro_sem_release(&slots);     // hands the permit to the next waiter
 *   The others wait in coro_sem_acquire(), in FIFO order: a release hands
 *   its permit straight to the longest waiter, so no job can overtake one
 *   that came before it, and none starves.
 *
 * WHY IT MATTERS
 *   Coroutines are cheap, so it is tempting to start one per item and let
 *   them all loose. The thing they talk to is not: a database with a pool
 *   of 3 connections, an API with a rate limit, a disk. A semaphore keeps
 *   the fan-out bounded where it matters, without changing how each job
 *   is written (Go's buffered-channel semaphore, asyncio.Semaphore,
 *   errgroup.SetLimit).
 *
 *   The acquire is a checkpoint like any other blocking call: a job that
 *   is cancelled or out of time while it waits for a slot gets ECANCELED
 *   or ETIMEDOUT and must not release a permit it never got. Here every
 *   acquire succeeds; the code still checks.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - Three jobs start at once; after that, a job starts each time a
 *     running one finishes and releases its permit, never before.
 *   - The jobs start in the order they queued (0, 1, 2, ... 9).
 *   - The number running never passes 3, and reaches 3.
 *   - The whole batch takes a little over a third of the total work time:
 *     not the longest job alone (unbounded) and not the sum (one at a
 *     time).
 *   All of it is checked; the program exits non-zero if anything differs. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define JOBS 10
#define LIMIT 3
/* How long each job works, in ms: different, so that permits free up one
 * at a time. */
static const int work_ms[JOBS] = { 12, 6, 9, 15, 6, 9, 12, 6, 9, 6 };

static int failures;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "bounded_concurrency: unexpected: " __VA_ARGS__); \
            fputc('\n', stderr);                                              \
            failures++;                                                       \
        }                                                                     \
    } while (0)

struct pool {
    coro_sem_t slots;
    int running;      /* jobs between acquire and release now */
    int max_running;  /* the most seen at once */
    int started[JOBS]; /* job ids in the order they got a permit */
    int nstarted;
    int64_t t0;
};

struct job {
    struct pool *pool;
    int id;
};

static double ms_since(int64_t t0)
{
    return (double)(coro_now() - t0) / 1e6;
}

static int run_job(void *arg)
{
    struct job *j = arg;
    struct pool *p = j->pool;
    if (coro_sem_acquire(&p->slots) != 0) {
        /* No permit was taken: nothing to release. */
        fprintf(stderr, "bounded_concurrency: job %d: coro_sem_acquire: %s\n", j->id,
                strerror(errno));
        return 1;
    }
    p->running++;
    if (p->running > p->max_running)
        p->max_running = p->running;
    p->started[p->nstarted++] = j->id;
    printf("  +%5.1f ms  job %d starts   (%d running)\n", ms_since(p->t0), j->id, p->running);

    int rc = coro_sleep(work_ms[j->id] * CORO_MS); /* the work */
    int err = errno;

    p->running--;
    printf("  +%5.1f ms  job %d finishes (%d running)\n", ms_since(p->t0), j->id, p->running);
    /* Release on every path once the permit is held, error or not. */
    if (coro_sem_release(&p->slots) != 0) {
        fprintf(stderr, "bounded_concurrency: coro_sem_release: %s\n", strerror(errno));
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "bounded_concurrency: job %d: coro_sleep: %s\n", j->id, strerror(err));
        return 1;
    }
    return 0;
}

static int body(void *arg)
{
    (void)arg;
    struct pool p = { .slots = CORO_SEM_INIT(LIMIT) };
    struct job jobs[JOBS];
    int total_ms = 0;
    for (int i = 0; i < JOBS; i++)
        total_ms += work_ms[i];
    printf("%d jobs of 6 to 15 ms each (%d ms of work in all), at most %d at once\n", JOBS,
           total_ms, LIMIT);

    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    if (!g) {
        fprintf(stderr, "bounded_concurrency: coro_group_new: %s\n", strerror(errno));
        return 1;
    }
    p.t0 = coro_now();
    for (int i = 0; i < JOBS; i++) {
        jobs[i] = (struct job){ &p, i };
        if (!coro_group_spawn(g, run_job, &jobs[i])) {
            fprintf(stderr, "bounded_concurrency: coro_group_spawn: %s\n", strerror(errno));
            failures++;
            break; /* the ones spawned still run; the group waits for them */
        }
    }
    int rc = coro_group_wait(g);
    int64_t took = coro_now() - p.t0;
    if (rc != 0) {
        fprintf(stderr, "bounded_concurrency: coro_group_wait -> %d%s%s\n", rc,
                rc == -1 ? ": " : "", rc == -1 ? strerror(errno) : "");
        failures++;
    }
    coro_group_free(g);

    printf("all done in %.1f ms (%d ms of work / %d at a time = %.1f ms at best); "
           "at most %d ran at once; %ld permits free again\n",
           (double)took / 1e6, total_ms, LIMIT, (double)total_ms / LIMIT, p.max_running,
           coro_sem_value(&p.slots));
    CHECK(p.nstarted == JOBS, "%d of %d jobs started", p.nstarted, JOBS);
    CHECK(p.max_running == LIMIT, "at most %d ran at once, expected exactly %d",
          p.max_running, LIMIT);
    CHECK(coro_sem_value(&p.slots) == LIMIT, "%ld permits left, expected %d",
          coro_sem_value(&p.slots), LIMIT);
    for (int i = 0; i < p.nstarted; i++)
        CHECK(p.started[i] == i, "start #%d was job %d (FIFO order broken)", i, p.started[i]);
    /* Three at a time cannot beat total / 3; one at a time would take the
     * total. (The upper bound is generous, for Valgrind.) */
    CHECK(took * LIMIT >= (int64_t)total_ms * CORO_MS &&
              took < (int64_t)total_ms * CORO_MS / 2 + 400 * CORO_MS,
          "took %.1f ms", (double)took / 1e6);
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "bounded_concurrency: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
