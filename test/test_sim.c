/* test/test_sim.c: deterministic simulation (coro_main_opts with a sim):
 * virtual time (an hour of sleeps in well under a second, a deadline
 * firing exactly at its limit, the clock still while anyone is ready),
 * seeded order (40 coroutines of sleeps and yields interleave identically
 * under one seed and differently under others; coro_sim_trace agrees),
 * CORO_SIM_SEED overriding the seed, the replay line of a failed run, of
 * a deadlock (-1/EDEADLK) and of an abort, a chosen seed printed, bad configurations, and
 * the escapes refused (a real descriptor's wait, a signal wait, a name
 * lookup, another thread: EPERM) or made deterministic (a blocking job
 * runs inline). */
#include "test/test_sched.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run_sim(coro_fn fn, void *arg, uint64_t seed)
{
    coro_sim_t sim = { .seed = seed };
    coro_main_opts_t o = { .sim = &sim };
    return coro_main_opts(fn, arg, &o);
}

/* ---- virtual time --------------------------------------------------------- */

typedef struct hour {
    int64_t start, end;
} hour_t;

static int hour_sleeper(void *arg)
{
    (void)arg;
    for (int i = 0; i < 60; i++)
        if (coro_sleep(CORO_SEC) != 0)
            return 1;
    return 0;
}

static int hour_main(void *arg)
{
    hour_t *h = arg;
    h->start = coro_now();
    /* 60 coroutines of 60 one-second sleeps each, and the main one
     * sleeping an hour in one go. */
    coro_t *c[60];
    for (int i = 0; i < 60; i++)
        ASSERT_NOT_NULL(c[i] = coro_spawn(hour_sleeper, NULL));
    ASSERT_EQ(coro_sleep(3600 * CORO_SEC), 0);
    ASSERT_EQ(coro_now() - h->start, 3600 * CORO_SEC);
    for (int i = 0; i < 60; i++) {
        int st = -1;
        ASSERT_EQ(coro_join(c[i], &st), 0);
        ASSERT_EQ(st, 0);
    }
    h->end = coro_now();
    return 0;
}

TEST(sim_an_hour_of_sleeps_takes_no_time)
{
    hour_t h = { 0, 0 };
    double w0 = wall_seconds();
    ASSERT_EQ(run_sim(hour_main, &h, 7), 0);
    double wall = wall_seconds() - w0;
    /* Exactly an hour of virtual time; the sleepers' 60 s ended long
     * before, so the joins took none. */
    ASSERT_EQ(h.end - h.start, 3600 * CORO_SEC);
    ASSERT(wall < (test_under_valgrind() ? 10.0 : 1.0));
    /* The clock starts at the same value in every run. */
    hour_t again = { 0, 0 };
    ASSERT_EQ(run_sim(hour_main, &again, 8), 0);
    ASSERT_EQ(again.start, h.start);
}

static int deadline_main(void *arg)
{
    (void)arg;
    int64_t t0 = coro_now();
    coro_set_deadline(t0 + 10 * CORO_MS);
    ASSERT_ERRNO(coro_sleep(50 * CORO_MS), ETIMEDOUT);
    ASSERT_EQ(coro_now() - t0, 10 * CORO_MS); /* exactly at its limit */
    coro_set_deadline(CORO_NEVER);
    /* Busy work and yields do not move the clock: only blocking does. */
    int64_t t1 = coro_now();
    volatile uint64_t x = 0;
    for (int i = 0; i < 1000000; i++)
        x += (uint64_t)i;
    ASSERT_GT(x, 0);
    coro_yield();
    ASSERT_EQ(coro_now(), t1);
    /* A timeout scope and a zero sleep. */
    ASSERT_EQ(coro_sleep(0), 0);
    ASSERT_EQ(coro_now(), t1);
    int64_t old = coro_timeout(250 * CORO_US);
    ASSERT_ERRNO(coro_sleep(CORO_SEC), ETIMEDOUT);
    coro_set_deadline(old);
    ASSERT_EQ(coro_now() - t1, 250 * CORO_US);
    return 0;
}

TEST(sim_deadline_fires_exactly_at_its_limit)
{
    ASSERT_EQ(run_sim(deadline_main, NULL, 3), 0);
}

/* ---- seeded order --------------------------------------------------------- */

#define MIX_N 40
#define MIX_ROUNDS 6

typedef struct mix_run {
    char log[MIX_N * MIX_ROUNDS * 2];
    int n;
    uint64_t trace, seed;
    int64_t elapsed;
} mix_run_t;

typedef struct mix_arg {
    mix_run_t *run;
    int index;
} mix_arg_t;

/* Mixes sleeps of a few distinct lengths (so several wake at once) and
 * yields, logging who runs when. */
static int mixer(void *arg)
{
    mix_arg_t *a = arg;
    for (int r = 0; r < MIX_ROUNDS; r++) {
        a->run->log[a->run->n++] = (char)('0' + a->index % 75);
        if ((a->index + r) % 3 == 0)
            coro_yield();
        else if (coro_sleep((int64_t)((a->index + r) % 4) * CORO_MS) != 0)
            return 1;
    }
    return 0;
}

static int mix_main(void *arg)
{
    mix_run_t *run = arg;
    int64_t t0 = coro_now();
    mix_arg_t args[MIX_N];
    coro_t *c[MIX_N];
    for (int i = 0; i < MIX_N; i++) {
        args[i] = (mix_arg_t){ run, i };
        ASSERT_NOT_NULL(c[i] = coro_spawn(mixer, &args[i]));
    }
    for (int i = 0; i < MIX_N; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    run->trace = coro_sim_trace();
    run->seed = coro_sim_seed();
    run->elapsed = coro_now() - t0;
    return 0;
}

static void mix_once(uint64_t seed, mix_run_t *run)
{
    memset(run, 0, sizeof *run);
    ASSERT_EQ(run_sim(mix_main, run, seed), 0);
    ASSERT_EQ(run->n, MIX_N * MIX_ROUNDS);
    ASSERT_EQ(run->seed, seed);
}

TEST(sim_same_seed_same_interleaving_other_seed_other)
{
    static mix_run_t a, b, c;
    mix_once(12345, &a);
    mix_once(12345, &b);
    ASSERT_EQ(memcmp(a.log, b.log, sizeof a.log), 0);
    ASSERT_EQ(a.trace, b.trace);
    ASSERT_NE(a.trace, 0);
    ASSERT_EQ(a.elapsed, b.elapsed);
    /* Other seeds: other interleavings (all of eight differing from the
     * first would be a coincidence of 40-way draws; demand most). */
    int differ = 0;
    for (uint64_t s = 1; s <= 8; s++) {
        mix_once(12345 + s, &c);
        if (memcmp(a.log, c.log, sizeof a.log) != 0 && c.trace != a.trace)
            differ++;
        /* Virtual time is the program's, not the order's. */
        ASSERT_EQ(c.elapsed, a.elapsed);
    }
    ASSERT_GE(differ, 7);
    /* Outside a simulation there is neither seed nor trace. */
    ASSERT_EQ(coro_sim_seed(), 0);
    ASSERT_EQ(coro_sim_trace(), 0);
}

static int seed_main(void *arg)
{
    *(uint64_t *)arg = coro_sim_seed();
    return 0;
}

TEST(sim_seed_from_environment_overrides)
{
    uint64_t seen = 0;
    ASSERT_EQ(setenv("CORO_SIM_SEED", "987654321", 1), 0);
    ASSERT_EQ(run_sim(seed_main, &seen, 5), 0);
    ASSERT_EQ(seen, 987654321u);
    /* Not a number: EINVAL, nothing runs. */
    ASSERT_EQ(setenv("CORO_SIM_SEED", "12abc", 1), 0);
    seen = 0;
    ASSERT_ERRNO(run_sim(seed_main, &seen, 5), EINVAL);
    ASSERT_EQ(seen, 0);
    ASSERT_EQ(unsetenv("CORO_SIM_SEED"), 0);
    ASSERT_EQ(run_sim(seed_main, &seen, 5), 0);
    ASSERT_EQ(seen, 5);
}

/* ---- failures say how to replay ------------------------------------------ */

static int fails_main(void *arg)
{
    (void)arg;
    coro_sleep(CORO_MS);
    return 3;
}

static void child_failing_sim(void *arg)
{
    (void)arg;
    int rc = run_sim(fails_main, NULL, 4242);
    printf("status %d\n", rc);
}

static coro_mutex_t dl_a, dl_b;

static int dl_left(void *arg)
{
    (void)arg;
    coro_mutex_lock(&dl_a);
    coro_sleep(CORO_MS);
    if (coro_mutex_lock(&dl_b) == 0)
        coro_mutex_unlock(&dl_b);
    coro_mutex_unlock(&dl_a);
    return 0;
}

static int dl_main(void *arg)
{
    (void)arg;
    coro_mutex_init(&dl_a);
    coro_mutex_init(&dl_b);
    coro_t *l = coro_spawn(dl_left, NULL);
    coro_mutex_lock(&dl_b);
    coro_sleep(CORO_MS);
    if (coro_mutex_lock(&dl_a) == 0)
        coro_mutex_unlock(&dl_a);
    coro_mutex_unlock(&dl_b);
    coro_join(l, NULL);
    return 0;
}

static void child_deadlocked_sim(void *arg)
{
    (void)arg;
    int rc = run_sim(dl_main, NULL, 777);
    printf("rc %d errno %s\n", rc, errno == EDEADLK ? "EDEADLK" : strerror(errno));
}

static void child_chosen_seed(void *arg)
{
    (void)arg;
    uint64_t seen = 0;
    unsetenv("CORO_SIM_SEED");
    int rc = run_sim(seed_main, &seen, 0);
    printf("rc %d seen %llu\n", rc, (unsigned long long)seen);
}

TEST(sim_failure_prints_the_replay_seed)
{
    char out[8192];
    int status;
    ASSERT_EQ(test_run_child(child_failing_sim, NULL, out, sizeof out, &status), 0);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_CONTAINS(out, "status 3");
    ASSERT_CONTAINS(out, "CORO_SIM_SEED=4242");

    /* A deadlock: the usual dump, -1/EDEADLK, and the seed. */
    ASSERT_EQ(test_run_child(child_deadlocked_sim, NULL, out, sizeof out, &status), 0);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_CONTAINS(out, "deadlock");
    ASSERT_CONTAINS(out, "rc -1 errno EDEADLK");
    ASSERT_CONTAINS(out, "CORO_SIM_SEED=777");

    /* Seed 0: one is chosen, printed, and is the run's. */
    ASSERT_EQ(test_run_child(child_chosen_seed, NULL, out, sizeof out, &status), 0);
    ASSERT_CONTAINS(out, "rc 0 seen ");
    const char *p = strstr(out, "CORO_SIM_SEED=");
    ASSERT_NOT_NULL(p);
    unsigned long long printed = strtoull(p + strlen("CORO_SIM_SEED="), NULL, 10);
    const char *q = strstr(out, "seen ");
    ASSERT_NOT_NULL(q);
    ASSERT_NE(printed, 0);
    ASSERT_EQ(printed, strtoull(q + 5, NULL, 10));
    /* A run that succeeds with a given seed prints nothing. */
}

TEST(sim_bad_configuration_einval)
{
    coro_sim_t bad[] = {
        { .fault_rate = -0.1 },
        { .fault_rate = 1.5 },
        { .latency_min = -1 },
        { .latency_min = 5, .latency_max = 4 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        coro_main_opts_t o = { .sim = &bad[i] };
        uint64_t seen = 0;
        ASSERT_ERRNO(coro_main_opts(seed_main, &seen, &o), EINVAL);
        ASSERT_EQ(seen, 0);
    }
}

/* ---- escapes ---------------------------------------------------------------- */

static int job(void *arg)
{
    return *(int *)arg * 2;
}

static int escapes_main(void *arg)
{
    (void)arg;
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    char c;
    /* A real descriptor's readiness is not the seed's: refused. */
    ASSERT_ERRNO(coro_read(fds[0], &c, 1), EPERM);
    ASSERT_ERRNO(coro_wait_fd(fds[0], CORO_READ), EPERM);
    close(fds[0]);
    close(fds[1]);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    ASSERT_ERRNO(coro_signal_wait(&set), EPERM);
    struct addrinfo *res = NULL;
    ASSERT_ERRNO(coro_getaddrinfo("example.invalid", "80", NULL, &res), EPERM);
    /* A blocking job runs inline, at no virtual cost. */
    int64_t t0 = coro_now();
    int in = 21, st = 0;
    ASSERT_EQ(coro_run_blocking(job, &in, &st), 0);
    ASSERT_EQ(st, 42);
    ASSERT_EQ(coro_now(), t0);
    return 0;
}

TEST(sim_escapes_are_refused_or_inline)
{
    ASSERT_EQ(run_sim(escapes_main, NULL, 11), 0);
}

/* ---- coro_random ------------------------------------------------------------ */

static int random_main(void *arg)
{
    uint64_t *out = arg;
    for (int i = 0; i < 8; i++)
        out[i] = coro_random();
    out[8] = coro_sim_trace();
    return 0;
}

TEST(sim_coro_random_follows_the_seed)
{
    uint64_t a[9], b[9], c[9];
    ASSERT_EQ(run_sim(random_main, a, 77), 0);
    ASSERT_EQ(run_sim(random_main, b, 77), 0);
    ASSERT_EQ(run_sim(random_main, c, 78), 0);
    ASSERT_EQ(memcmp(a, b, sizeof a), 0); /* the draws and the trace */
    ASSERT_NE(memcmp(a, c, 8 * sizeof a[0]), 0);
    ASSERT_NE(a[8], c[8]);
    /* Outside a simulation: still random, and not the simulation's. */
    uint64_t x = coro_random(), y = coro_random();
    ASSERT_NE(x, y);
    ASSERT_NE(x, a[0]);
}

/* ---- an abort names the seed ------------------------------------------------ */

static int aborts_main(void *arg)
{
    (void)arg;
    coro_sleep(5 * CORO_MS);
    abort();
}

static void child_aborting_sim(void *arg)
{
    (void)arg;
    run_sim(aborts_main, NULL, 31337);
}

TEST(sim_abort_prints_the_replay_seed)
{
    char out[4096];
    int status;
    ASSERT_EQ(test_run_child(child_aborting_sim, NULL, out, sizeof out, &status), 0);
    ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    ASSERT_CONTAINS(out, "CORO_SIM_SEED=31337");
    /* After a simulation, SIGABRT's action is what it was. */
    struct sigaction before, after;
    ASSERT_EQ(sigaction(SIGABRT, NULL, &before), 0);
    uint64_t seen = 0;
    ASSERT_EQ(run_sim(seed_main, &seen, 1), 0);
    ASSERT_EQ(sigaction(SIGABRT, NULL, &after), 0);
    ASSERT(before.sa_handler == after.sa_handler);
}

/* ---- another thread cannot cross in ----------------------------------------- */

#include <pthread.h>

typedef struct crossing {
    coro_chan_t *ch;
    int rc, err;
} crossing_t;

static void *crossing_thread(void *arg)
{
    crossing_t *x = arg;
    int v = 1;
    errno = 0;
    x->rc = coro_chan_try_send(x->ch, &v);
    x->err = errno;
    return NULL;
}

static int crossing_main(void *arg)
{
    crossing_t *x = arg;
    ASSERT_NOT_NULL(x->ch = coro_chan_new(sizeof(int), 4));
    int v = 0;
    ASSERT_EQ(coro_chan_try_send(x->ch, &v), 0); /* the simulation's now */
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, crossing_thread, x), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(coro_chan_len(x->ch), 1); /* nothing got in */
    coro_chan_free(x->ch);
    return 0;
}

TEST(sim_another_thread_is_refused)
{
    crossing_t x = { NULL, 0, 0 };
    ASSERT_EQ(run_sim(crossing_main, &x, 9), 0);
    ASSERT_EQ(x.rc, -1);
    ASSERT_EQ(x.err, EPERM);
}

/* ---- a select's choice follows the seed -------------------------------------- */

typedef struct picks {
    char seq[64];
} picks_t;

static int picks_main(void *arg)
{
    picks_t *p = arg;
    coro_chan_t *a = coro_chan_new(sizeof(int), 1), *b = coro_chan_new(sizeof(int), 1);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    int one = 1, got = 0;
    for (int i = 0; i < 64; i++) {
        /* Both cases ready every time. */
        if (coro_chan_len(a) == 0)
            ASSERT_EQ(coro_chan_try_send(a, &one), 0);
        if (coro_chan_len(b) == 0)
            ASSERT_EQ(coro_chan_try_send(b, &one), 0);
        coro_case_t cs[2] = { { a, CORO_RECV, &got, 0 }, { b, CORO_RECV, &got, 0 } };
        int k = coro_select(cs, 2);
        ASSERT(k == 0 || k == 1);
        p->seq[i] = (char)('0' + k);
    }
    coro_chan_free(a);
    coro_chan_free(b);
    return 0;
}

TEST(sim_select_choice_follows_the_seed)
{
    picks_t x, y, z;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    memset(&z, 0, sizeof z);
    ASSERT_EQ(run_sim(picks_main, &x, 500), 0);
    ASSERT_EQ(run_sim(picks_main, &y, 500), 0);
    ASSERT_EQ(run_sim(picks_main, &z, 501), 0);
    ASSERT_EQ(memcmp(x.seq, y.seq, sizeof x.seq), 0);
    ASSERT_NE(memcmp(x.seq, z.seq, sizeof x.seq), 0);
    /* Both cases are taken (a fair draw, not a fixed order). */
    ASSERT(memchr(x.seq, '0', sizeof x.seq) && memchr(x.seq, '1', sizeof x.seq));
}
