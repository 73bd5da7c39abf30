/* task_group.c: structured concurrency with task groups.
 *
 * WHAT IT SHOWS
 *   A group owns the coroutines spawned into it, and no child outlives its
 *   group: coro_group_wait() returns only once every child has ended, also
 *   when the waiter itself is cancelled or times out. Two policies:
 *
 *   1. CORO_GROUP_COLLECT ("gather"): let every child finish, whatever the
 *      others do. coro_group_next() hands back the children one at a time
 *      in the order they end, with their statuses (asyncio.as_completed,
 *      gather(return_exceptions=True)). coro_group_wait() then reports the
 *      first non-zero status.
 *   2. CORO_GROUP_FAILFAST: the first child to fail (non-zero status)
 *      cancels its siblings, and coro_group_wait() returns that first
 *      failure (asyncio.TaskGroup, Go's errgroup.WithContext). There is no
 *      point fetching the rest of a page when one part of it failed.
 *   3. A deadline around coro_group_wait(): when it passes, the wait
 *      cancels the children, waits for them to unwind, and only then
 *      returns -1/ETIMEDOUT. A timeout never leaves orphans running.
 *
 * WHY IT MATTERS
 *   With bare spawn/join it is easy to lose a coroutine: an early return
 *   or an error path forgets to join one, and it keeps running (and
 *   holding resources) after its caller has moved on. A group makes the
 *   lifetime of concurrent work a block of code, like a function call.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - In part 1 the children are spawned in the order a, b, c, d but end
 *     (and are reported) in the order of their sleeps: b, d, c, a; c's
 *     failure does not stop the others.
 *   - In part 2 the slow children are interrupted with ECANCELED about
 *     20 ms in, when "auth" fails, not after their full second.
 *   - In part 3 the wait gives up after 30 ms with ETIMEDOUT, and both
 *     children have already ended by the time it returns.
 *   Children print when they end; all of it is checked, and the program
 *   exits non-zero if anything differs. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "task_group: unexpected: " __VA_ARGS__);        \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

#define SLACK (400 * CORO_MS)

static double ms(int64_t ns)
{
    return (double)ns / 1e6;
}

/* One child's job: sleep (stands for I/O), then return `status`. */
struct job {
    const char *name;
    int64_t sleep_ms;
    int status;      /* what it returns if not interrupted */
    int interrupted; /* errno if its sleep failed, else 0 */
    int ended;       /* set as it returns */
};

static int64_t t_start;

static int run_job(void *arg)
{
    struct job *j = arg;
    int rc = coro_sleep(j->sleep_ms * CORO_MS);
    j->ended = 1;
    if (rc != 0) {
        j->interrupted = errno;
        printf("    %-7s interrupted at +%6.2f ms: %s\n", j->name, ms(coro_now() - t_start),
               strerror(errno));
        return errno;
    }
    printf("    %-7s ends at +%6.2f ms with status %d\n", j->name, ms(coro_now() - t_start),
           j->status);
    return j->status;
}

/* Spawn every job into g, named after it. Returns 0 or -1 (reported). */
static int spawn_all(coro_group_t *g, struct job *jobs, int n)
{
    t_start = coro_now();
    for (int i = 0; i < n; i++) {
        coro_opts_t o = { .name = jobs[i].name };
        if (!coro_group_spawn_opts(g, run_job, &jobs[i], &o)) {
            fprintf(stderr, "task_group: coro_group_spawn_opts(%s): %s\n", jobs[i].name,
                    strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void gather(void)
{
    printf("1. CORO_GROUP_COLLECT: let all finish, take results as they come\n");
    struct job jobs[] = {
        { "fetch-a", 60, 0, 0, 0 },
        { "fetch-b", 15, 0, 0, 0 },
        { "fetch-c", 45, 7, 0, 0 }, /* fails with status 7 */
        { "fetch-d", 30, 0, 0, 0 },
    };
    const char *expected_order[] = { "fetch-b", "fetch-d", "fetch-c", "fetch-a" };
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    if (!g) {
        fprintf(stderr, "task_group: coro_group_new: %s\n", strerror(errno));
        failures++;
        return;
    }
    if (spawn_all(g, jobs, 4) != 0)
        failures++;

    int n = 0, status;
    coro_t *c;
    while ((c = coro_group_next(g, &status)) != NULL) {
        /* The handle is valid until the next call on the group. */
        printf("  next: %-7s status %d\n", coro_name(c), status);
        CHECK(n < 4 && strcmp(coro_name(c), expected_order[n]) == 0,
              "completion #%d is %s, expected %s", n + 1, coro_name(c),
              n < 4 ? expected_order[n] : "none");
        n++;
    }
    if (errno != ENOENT) {
        fprintf(stderr, "task_group: coro_group_next: %s\n", strerror(errno));
        failures++;
    }
    printf("  next: none left (%s)\n", strerror(errno));
    CHECK(n == 4, "%d children came back", n);

    int rc = coro_group_wait(g);
    printf("  coro_group_wait -> %d (the first non-zero status)\n", rc);
    CHECK(rc == 7, "coro_group_wait returned %d, expected 7", rc);
    coro_group_free(g);
}

static void fail_fast(void)
{
    printf("2. CORO_GROUP_FAILFAST: the first failure cancels the rest\n");
    struct job jobs[] = {
        { "db", 1000, 0, 0, 0 },
        { "cache", 1000, 0, 0, 0 },
        { "auth", 20, 5, 0, 0 }, /* fails with status 5 */
    };
    coro_group_t *g = coro_group_new(CORO_GROUP_FAILFAST);
    if (!g) {
        fprintf(stderr, "task_group: coro_group_new: %s\n", strerror(errno));
        failures++;
        return;
    }
    if (spawn_all(g, jobs, 3) != 0)
        failures++;
    int rc = coro_group_wait(g);
    int64_t took = coro_now() - t_start;
    printf("  coro_group_wait -> %d after %.2f ms\n", rc, ms(took));
    CHECK(rc == 5, "coro_group_wait returned %d, expected auth's 5", rc);
    CHECK(took >= 20 * CORO_MS && took < 20 * CORO_MS + SLACK, "the wait took %.2f ms",
          ms(took));
    for (int i = 0; i < 2; i++)
        CHECK(jobs[i].ended && jobs[i].interrupted == ECANCELED,
              "%s: ended %d, interrupted by \"%s\"", jobs[i].name, jobs[i].ended,
              strerror(jobs[i].interrupted));
    coro_group_free(g);
}

static void deadline_around_wait(void)
{
    printf("3. a 30 ms deadline around coro_group_wait\n");
    struct job jobs[] = {
        { "slow-1", 1000, 0, 0, 0 },
        { "slow-2", 1000, 0, 0, 0 },
    };
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    if (!g) {
        fprintf(stderr, "task_group: coro_group_new: %s\n", strerror(errno));
        failures++;
        return;
    }
    if (spawn_all(g, jobs, 2) != 0)
        failures++;
    int64_t saved = coro_timeout(30 * CORO_MS);
    int rc = coro_group_wait(g);
    int err = errno;
    coro_set_deadline(saved);
    int64_t took = coro_now() - t_start;
    printf("  coro_group_wait -> %d (%s) after %.2f ms; children ended: %s\n", rc,
           rc == -1 ? strerror(err) : "no error", ms(took),
           jobs[0].ended && jobs[1].ended ? "all" : "NOT ALL");
    CHECK(rc == -1 && err == ETIMEDOUT, "coro_group_wait returned %d (%s)", rc,
          strerror(err));
    CHECK(took >= 30 * CORO_MS && took < 30 * CORO_MS + SLACK, "the wait took %.2f ms",
          ms(took));
    for (int i = 0; i < 2; i++)
        CHECK(jobs[i].ended && jobs[i].interrupted == ECANCELED,
              "%s: ended %d, interrupted by \"%s\"", jobs[i].name, jobs[i].ended,
              strerror(jobs[i].interrupted));
    coro_group_free(g);
}

static int body(void *arg)
{
    (void)arg;
    gather();
    fail_fast();
    deadline_around_wait();
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "task_group: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
