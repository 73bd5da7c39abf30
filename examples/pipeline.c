/* pipeline.c: a fan-out / fan-in pipeline, shut down by closing channels.
 *
 * WHAT IT SHOWS
 *   Three stages connected by channels:
 *
 *     source ---jobs---> worker 0 --\
 *     (reads a           worker 1 ---+--results--> collector
 *      generator)        worker 2 ---+             (main)
 *                        worker 3 --/
 *
 *   - The source pulls the numbers 1..20 from a generator (coro_gen_next)
 *     and sends them on `jobs`. When the generator is exhausted (ENOENT)
 *     it closes `jobs`.
 *   - Four workers share `jobs` (fan-out): each receives a number, works
 *     on it (a sleep of a few ms stands for real work) and sends its
 *     square on `results`. A worker stops when its receive fails with
 *     EPIPE, which happens only once `jobs` is closed *and drained*, so no
 *     job is lost to the shutdown.
 *   - All four send on the one `results` channel (fan-in), so no single
 *     worker may close it: the first to finish would cut off the others.
 *     A wait group counts the workers; a small "closer" coroutine waits
 *     for it to reach zero and only then closes `results`.
 *   - The collector receives until EPIPE and checks the sum.
 *   The rule at every stage: close your output when your input is closed
 *   and drained. The close then travels down the pipeline by itself, and
 *   every stage ends, in order, with nobody killing anybody.
 *
 * WHY IT MATTERS
 *   This is Go's "pipelines and cancellation" pattern. A close is a
 *   broadcast that cannot be missed or lost: every present and future
 *   receiver sees it, after the items already sent. Shutting a pipeline
 *   down by closing its entrance drains it cleanly; leaving out the wait
 *   group (closing `results` when one worker ends) loses items or makes
 *   the other workers' sends fail with EPIPE.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - The jobs spread over the four workers (work times differ, so the
 *     split is uneven), and results arrive out of order.
 *   - The stages end in order: source, the workers, the closer, and only
 *     then the collector sees EPIPE.
 *   - The collector gets exactly 20 results summing to 1^2 + ... + 20^2 =
 *     2870. All of it is checked; the program exits non-zero otherwise. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define COUNT 20
#define WORKERS 4

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "pipeline: unexpected: " __VA_ARGS__);          \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

struct pipe_state {
    coro_gen_t *numbers;   /* 1..COUNT */
    coro_chan_t *jobs;     /* source -> workers */
    coro_chan_t *results;  /* workers -> collector */
    coro_wg_t workers;     /* workers still running */
    int done_by[WORKERS];  /* jobs each worker did */
    int ended[WORKERS + 2]; /* end order: worker ids, then WORKERS (source), WORKERS+1 (closer) */
    int nended;
};

struct worker_arg {
    struct pipe_state *ps;
    int id;
};

/* ---- stage 0: a generator of the numbers 1..COUNT ------------------------ */

static int numbers(coro_gen_t *g, void *arg)
{
    int n = *(const int *)arg;
    for (int i = 1; i <= n; i++)
        if (coro_gen_yield(g, &i) != 0)
            return 1; /* ECANCELED: the generator is being freed */
    return 0;
}

/* ---- stage 1: source ------------------------------------------------------ */

static int source(void *arg)
{
    struct pipe_state *ps = arg;
    int n, rc = 0, sent = 0;
    while (coro_gen_next(ps->numbers, &n) == 0) {
        if (coro_chan_send(ps->jobs, &n) != 0) {
            fprintf(stderr, "pipeline: source: coro_chan_send: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        sent++;
    }
    if (rc == 0 && errno != ENOENT) { /* ENOENT: the generator returned */
        fprintf(stderr, "pipeline: source: coro_gen_next: %s\n", strerror(errno));
        rc = 1;
    }
    /* Input exhausted (or failed): close the output, always. */
    if (coro_chan_close(ps->jobs) != 0) {
        fprintf(stderr, "pipeline: source: coro_chan_close: %s\n", strerror(errno));
        rc = 1;
    }
    printf("  source: generator exhausted after %d numbers; closed jobs\n", sent);
    ps->ended[ps->nended++] = WORKERS;
    return rc;
}

/* ---- stage 2: workers ----------------------------------------------------- */

static int worker(void *arg)
{
    struct worker_arg *wa = arg;
    struct pipe_state *ps = wa->ps;
    int n, rc = 0;
    while (coro_chan_recv(ps->jobs, &n) == 0) {
        /* "Work": 1-4 ms, different per worker and job. */
        if (coro_sleep((1 + (n + wa->id) % 4) * CORO_MS) != 0) {
            fprintf(stderr, "pipeline: worker %d: coro_sleep: %s\n", wa->id, strerror(errno));
            rc = 1;
            break;
        }
        int sq = n * n;
        if (coro_chan_send(ps->results, &sq) != 0) {
            fprintf(stderr, "pipeline: worker %d: coro_chan_send: %s\n", wa->id,
                    strerror(errno));
            rc = 1;
            break;
        }
        ps->done_by[wa->id]++;
    }
    if (rc == 0 && errno != EPIPE) {
        fprintf(stderr, "pipeline: worker %d: coro_chan_recv: %s\n", wa->id, strerror(errno));
        rc = 1;
    }
    printf("  worker %d: jobs closed and drained after %d jobs; done\n", wa->id,
           ps->done_by[wa->id]);
    ps->ended[ps->nended++] = wa->id;
    /* Whatever happened, count this worker out, or the closer waits forever. */
    if (coro_wg_done(&ps->workers) != 0) {
        fprintf(stderr, "pipeline: coro_wg_done: %s\n", strerror(errno));
        rc = 1;
    }
    return rc;
}

/* ---- the closer: results is closed after the last worker ------------------ */

static int closer(void *arg)
{
    struct pipe_state *ps = arg;
    int rc = 0;
    if (coro_wg_wait(&ps->workers) != 0) {
        fprintf(stderr, "pipeline: closer: coro_wg_wait: %s\n", strerror(errno));
        rc = 1; /* close anyway, so the collector does not wait forever */
    }
    if (coro_chan_close(ps->results) != 0) {
        fprintf(stderr, "pipeline: closer: coro_chan_close: %s\n", strerror(errno));
        rc = 1;
    }
    printf("  closer: all workers done; closed results\n");
    ps->ended[ps->nended++] = WORKERS + 1;
    return rc;
}

/* ---- stage 3: the collector (main) ---------------------------------------- */

static int spawn_stages(coro_group_t *g, struct pipe_state *ps, struct worker_arg *wa)
{
    coro_opts_t so = { .name = "source" }, co = { .name = "closer" };
    if (!coro_group_spawn_opts(g, source, ps, &so))
        return -1;
    for (int i = 0; i < WORKERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "worker-%d", i);
        coro_opts_t wo = { .name = name }; /* the name is copied */
        wa[i] = (struct worker_arg){ ps, i };
        /* Count the worker in before it can run (and count itself out). */
        if (coro_wg_add(&ps->workers, 1) != 0)
            return -1;
        if (!coro_group_spawn_opts(g, worker, &wa[i], &wo)) {
            int e = errno;
            if (coro_wg_done(&ps->workers) != 0) /* cannot fail: it was just added */
                fprintf(stderr, "pipeline: coro_wg_done: %s\n", strerror(errno));
            errno = e;
            return -1;
        }
    }
    if (!coro_group_spawn_opts(g, closer, ps, &co))
        return -1;
    return 0;
}

static int body(void *arg)
{
    (void)arg;
    int count = COUNT;
    struct pipe_state ps = { .workers = CORO_WG_INIT };
    struct worker_arg wa[WORKERS];
    coro_group_t *g = NULL;

    ps.numbers = coro_gen_new(numbers, &count, sizeof(int));
    ps.jobs = coro_chan_new(sizeof(int), 0);    /* unbuffered */
    ps.results = coro_chan_new(sizeof(int), 0);
    if (!ps.numbers || !ps.jobs || !ps.results) {
        fprintf(stderr, "pipeline: setting up: %s\n", strerror(errno));
        failures++;
        goto out;
    }
    g = coro_group_new(CORO_GROUP_COLLECT);
    if (!g) {
        fprintf(stderr, "pipeline: coro_group_new: %s\n", strerror(errno));
        failures++;
        goto out;
    }
    printf("numbers 1..%d -> %d workers (square) -> collector\n", COUNT, WORKERS);
    if (spawn_stages(g, &ps, wa) != 0) {
        fprintf(stderr, "pipeline: starting the stages: %s\n", strerror(errno));
        failures++;
        /* Unblock whatever did start; coro_group_free below cancels and
         * waits for it. */
        coro_group_cancel(g);
        goto out;
    }

    long sum = 0;
    int got = 0, sq, order[COUNT];
    while (coro_chan_recv(ps.results, &sq) == 0) {
        sum += sq;
        if (got < COUNT)
            order[got] = sq;
        got++;
    }
    int err = errno;
    CHECK(err == EPIPE, "collector: coro_chan_recv failed with %s", strerror(err));
    printf("  collector: results closed and drained: %d results, sum %ld\n", got, sum);
    printf("  in arrival order:");
    for (int i = 0; i < got && i < COUNT; i++)
        printf(" %d", order[i]);
    printf("\n");

    int rc = coro_group_wait(g);
    CHECK(rc == 0, "coro_group_wait -> %d (%s)", rc, rc == -1 ? strerror(errno) : "a stage failed");

    printf("jobs per worker:");
    int total = 0;
    for (int i = 0; i < WORKERS; i++) {
        printf(" %d", ps.done_by[i]);
        total += ps.done_by[i];
    }
    printf("\n");
    CHECK(got == COUNT && total == COUNT, "%d results, %d jobs done; expected %d", got, total,
          COUNT);
    CHECK(sum == (long)COUNT * (COUNT + 1) * (2 * COUNT + 1) / 6, "sum %ld", sum);
    /* Shutdown order: the source first, the closer last. */
    CHECK(ps.nended == WORKERS + 2 && ps.ended[0] == WORKERS &&
              ps.ended[WORKERS + 1] == WORKERS + 1,
          "the stages ended out of order");

out:
    coro_group_free(g); /* NULL is fine */
    if (ps.results)
        coro_chan_free(ps.results);
    if (ps.jobs)
        coro_chan_free(ps.jobs);
    if (ps.numbers)
        coro_gen_free(ps.numbers);
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "pipeline: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
