/* test/test_sched_debug.c: seeing inside: the deadlock detector (EDEADLK,
 * a dump naming every wait, and every blocked coroutine unwound through
 * its ECANCELED path, shields overridden), coro_dump (every coroutine with
 * name, state and what it waits on) and CORO_DEBUG=slow:<time> (names a
 * coroutine that blocks the loop). */
#include "test/test_sched.h"

/* ---- deadlock ------------------------------------------------------------ */

typedef struct dl {
    int unwound;        /* ECANCELED paths that ran to their end */
    int main_join_ret, main_join_err;
    coro_t *sleeper;
    uint64_t sleeper_id;
} dl_t;

static dl_t *dl;

static int dl_forever(void *arg)
{
    int shield = arg != NULL;
    if (shield)
        coro_shield(1);
    ASSERT_ERRNO(coro_sleep_until(CORO_NEVER), ECANCELED);
    ASSERT_EQ(coro_cancelled(), 1);
    /* The deadlock's cancellation overrides the shield: every later
     * checkpoint fails too, so the unwinding cannot block again. */
    ASSERT_ERRNO(coro_sleep(0), ECANCELED);
    dl->unwound++;
    return 0;
}

static int dl_group_waiter(void *arg)
{
    (void)arg;
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    ASSERT_NOT_NULL(coro_group_spawn_opts(g, dl_forever, NULL,
                                          &(coro_opts_t){ .name = "group-kid" }));
    ASSERT_ERRNO(coro_group_wait(g), ECANCELED);
    coro_group_free(g);
    dl->unwound++;
    return 0;
}

static int dl_main(void *arg)
{
    (void)arg;
    dl->sleeper = coro_spawn_opts(dl_forever, NULL, &(coro_opts_t){ .name = "sleeper" });
    ASSERT_NOT_NULL(dl->sleeper);
    dl->sleeper_id = coro_id(dl->sleeper);
    coro_t *sh = coro_spawn_opts(dl_forever, (void *)1, &(coro_opts_t){ .name = "shielded" });
    ASSERT_NOT_NULL(sh);
    coro_detach(sh);
    coro_t *gw = coro_spawn_opts(dl_group_waiter, NULL, &(coro_opts_t){ .name = "group-waiter" });
    ASSERT_NOT_NULL(gw);
    coro_detach(gw);
    /* While main's own sleep has a timer armed, this is no deadlock yet. */
    ASSERT_EQ(coro_sleep(2 * CORO_MS), 0);
    /* main waits for "sleeper", which waits forever: nothing can wake
     * anyone. */
    errno = 0;
    dl->main_join_ret = coro_join(dl->sleeper, NULL);
    dl->main_join_err = errno;
    dl->unwound++;
    return 0;
}

TEST(sched_deadlock_reports_and_unwinds)
{
    dl_t d;
    memset(&d, 0, sizeof d);
    dl = &d;
    ts_capture_t cap;
    ts_capture_begin(&cap);
    errno = 0;
    int r = coro_main(dl_main, NULL);
    int e = errno;
    char *out = ts_capture_end(&cap);
    printf("%s", out);
    ASSERT_EQ(r, -1);
    ASSERT_EQ(e, EDEADLK);
    ASSERT_EQ(d.main_join_ret, -1);
    ASSERT_EQ(d.main_join_err, ECANCELED);
    /* main, sleeper, shielded (its shield overridden), group-waiter,
     * group-kid: every one unwound. */
    ASSERT_EQ(d.unwound, 5);

    ASSERT_CONTAINS(out, "deadlock");
    ASSERT_EQ(ts_count_lines_with(out, "deadlock"), 1); /* reported once */
    char line[512], needle[64];
    snprintf(needle, sizeof needle, "join coroutine %llu", (unsigned long long)d.sleeper_id);
    ts_line_with(out, "\"main\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked");
    ASSERT_CONTAINS(line, needle);
    ts_line_with(out, "\"sleeper\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, sleep");
    ts_line_with(out, "\"shielded\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, sleep");
    ts_line_with(out, "\"group-waiter\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, group wait");
    ts_line_with(out, "\"group-kid\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, sleep");
    free(out);
}

static int dl_ok_child(void *arg)
{
    (void)arg;
    return coro_sleep(CORO_MS);
}

static int dl_ok_main(void *arg)
{
    (void)arg;
    coro_t *c = coro_spawn(dl_ok_child, NULL);
    ASSERT_NOT_NULL(c);
    int st = -1;
    ASSERT_EQ(coro_join(c, &st), 0);
    return st + 3;
}

TEST(sched_deadlock_then_fresh_scheduler_works)
{
    dl_t d;
    memset(&d, 0, sizeof d);
    dl = &d;
    ts_capture_t cap;
    ts_capture_begin(&cap);
    int r = coro_main(dl_group_waiter, NULL);
    int e = errno;
    char *out = ts_capture_end(&cap);
    ASSERT_EQ(r, -1);
    ASSERT_EQ(e, EDEADLK);
    ASSERT_EQ(d.unwound, 2);
    ASSERT_CONTAINS(out, "\"main\" [parked, group wait");
    free(out);
    ASSERT_EQ(coro_main(dl_ok_main, NULL), 3);
}

/* ---- coro_dump ------------------------------------------------------------ */

static int d_sleeper(void *arg)
{
    (void)arg;
    return coro_sleep(10 * CORO_SEC) == -1 && errno == ECANCELED ? 0 : 1;
}

static int d_joiner(void *arg)
{
    int st = -1;
    ASSERT_EQ(coro_join(arg, &st), 0);
    return st;
}

static int d_finished(void *arg)
{
    (void)arg;
    return 5;
}

static int d_deadlined(void *arg)
{
    (void)arg;
    coro_timeout(10 * CORO_SEC);
    ASSERT_ERRNO(coro_sleep_until(CORO_NEVER), ECANCELED);
    return 0;
}

static int d_shielded(void *arg)
{
    (void)arg;
    coro_shield(1);
    ASSERT_EQ(coro_sleep(20 * CORO_MS), 0);
    return 0;
}

#define BULK 100

static int dump_main(void *arg)
{
    (void)arg;
    coro_t *sl = coro_spawn_opts(d_sleeper, NULL, &(coro_opts_t){ .name = "sleeper" });
    coro_t *jn = coro_spawn_opts(d_joiner, sl, &(coro_opts_t){ .name = "joiner" });
    coro_t *fin = coro_spawn_opts(d_finished, NULL, &(coro_opts_t){ .name = "finished" });
    coro_t *dd = coro_spawn_opts(d_deadlined, NULL, &(coro_opts_t){ .name = "deadlined" });
    coro_t *sh = coro_spawn_opts(d_shielded, NULL, &(coro_opts_t){ .name = "shielded" });
    ASSERT_NOT_NULL(sl);
    ASSERT_NOT_NULL(jn);
    ASSERT_NOT_NULL(fin);
    ASSERT_NOT_NULL(dd);
    ASSERT_NOT_NULL(sh);
    coro_t *bulk[BULK];
    for (int i = 0; i < BULK; i++) {
        char name[32];
        snprintf(name, sizeof name, "bulk-%03d", i);
        bulk[i] = coro_spawn_opts(d_sleeper, NULL, &(coro_opts_t){ .name = name });
        ASSERT_NOT_NULL(bulk[i]);
    }
    coro_yield(); /* all of them run once */
    ASSERT_EQ(coro_cancel(sh), 0); /* shielded: stays parked, marked cancelled */
    coro_t *rd = coro_spawn_opts(d_finished, NULL, &(coro_opts_t){ .name = "ready-one" });
    ASSERT_NOT_NULL(rd);

    int p[2];
    ASSERT_EQ(pipe(p), 0);
    coro_dump(p[1]);
    close(p[1]);
    char *out = ts_read_all(p[0]);
    close(p[0]);
    printf("%.*s", 2000, out);

    char line[512], needle[64];
    ts_line_with(out, "\"main\"", line, sizeof line);
    ASSERT_CONTAINS(line, "running");
    ASSERT_CONTAINS(line, "current");
    snprintf(needle, sizeof needle, "coroutine %llu \"main\"", (unsigned long long)coro_id(coro_self()));
    ASSERT_CONTAINS(line, needle);

    ts_line_with(out, "\"sleeper\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, sleep");
    ASSERT_CONTAINS(line, "wakes in");
    snprintf(needle, sizeof needle, "coroutine %llu \"sleeper\"", (unsigned long long)coro_id(sl));
    ASSERT_CONTAINS(line, needle);

    ts_line_with(out, "\"joiner\"", line, sizeof line);
    snprintf(needle, sizeof needle, "parked, join coroutine %llu", (unsigned long long)coro_id(sl));
    ASSERT_CONTAINS(line, needle);

    ts_line_with(out, "\"finished\"", line, sizeof line);
    ASSERT_CONTAINS(line, "done");
    ASSERT_CONTAINS(line, "status 5");

    ts_line_with(out, "\"deadlined\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, sleep");
    ASSERT_CONTAINS(line, "deadline in");

    ts_line_with(out, "\"shielded\"", line, sizeof line);
    ASSERT_CONTAINS(line, "parked, sleep");
    ASSERT_CONTAINS(line, "cancelled");

    ts_line_with(out, "\"ready-one\"", line, sizeof line);
    ASSERT_CONTAINS(line, "ready");

    /* Every coroutine once: main + 5 + ready-one + the bulk. */
    for (int i = 0; i < BULK; i++) {
        char name[32];
        snprintf(name, sizeof name, "\"bulk-%03d\" [parked, sleep", i);
        ASSERT_EQ(ts_count_lines_with(out, name), 1);
    }
    ASSERT_EQ(ts_count_lines_with(out, "coroutine "), 1 + 5 + 1 + BULK);
    free(out);

    /* Clean up. */
    ASSERT_EQ(coro_cancel(sl), 0);
    ASSERT_EQ(coro_join(jn, NULL), 0);
    ASSERT_EQ(coro_join(fin, NULL), 0);
    ASSERT_EQ(coro_cancel(dd), 0);
    ASSERT_EQ(coro_join(dd, NULL), 0);
    ASSERT_EQ(coro_join(sh, NULL), 0);
    ASSERT_EQ(coro_join(rd, NULL), 0);
    for (int i = 0; i < BULK; i++) {
        ASSERT_EQ(coro_cancel(bulk[i]), 0);
        int st = -1;
        ASSERT_EQ(coro_join(bulk[i], &st), 0);
        ASSERT_EQ(st, 0);
    }
    return 0;
}

TEST(sched_dump_lists_every_coroutine)
{
    ASSERT_EQ(coro_main(dump_main, NULL), 0);
}

/* ---- CORO_DEBUG=slow ------------------------------------------------------ */

static int64_t hog_ns = 30 * CORO_MS;

static int hog(void *arg)
{
    (void)arg;
    int64_t t0 = coro_now();
    while (coro_now() - t0 < hog_ns)
        ; /* blocks the loop: no checkpoint */
    return 0;
}

static int nice_one(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(coro_sleep(CORO_MS / 2), 0);
    return 0;
}

static int slow_main(void *arg)
{
    (void)arg;
    coro_t *n = coro_spawn_opts(nice_one, NULL, &(coro_opts_t){ .name = "nice-one" });
    coro_t *h = coro_spawn_opts(hog, NULL, &(coro_opts_t){ .name = "the-hog" });
    ASSERT_NOT_NULL(n);
    ASSERT_NOT_NULL(h);
    ASSERT_EQ(coro_join(h, NULL), 0);
    ASSERT_EQ(coro_join(n, NULL), 0);
    return 0;
}

TEST(sched_debug_slow_names_blocking_coroutine)
{
    ASSERT_EQ(setenv("CORO_DEBUG", "slow:5ms", 1), 0);
    ts_capture_t cap;
    ts_capture_begin(&cap);
    int r = coro_main(slow_main, NULL);
    char *out = ts_capture_end(&cap);
    printf("%s", out);
    ASSERT_EQ(r, 0);
    char line[512];
    ts_line_with(out, "\"the-hog\"", line, sizeof line);
    ASSERT_CONTAINS(line, "slow");
    ASSERT_CONTAINS(line, "without reaching a checkpoint");
    free(out);

    /* Only the culprit is named. (A threshold well above what a preempted
     * time slice could add to a well-behaved coroutine's few microseconds,
     * so a loaded machine cannot make this flaky.) */
    ASSERT_EQ(setenv("CORO_DEBUG", "slow:25ms", 1), 0);
    hog_ns = 60 * CORO_MS;
    ts_capture_begin(&cap);
    r = coro_main(slow_main, NULL);
    out = ts_capture_end(&cap);
    printf("%s", out);
    ASSERT_EQ(r, 0);
    ts_line_with(out, "\"the-hog\"", line, sizeof line);
    ASSERT_CONTAINS(line, "slow");
    if (!test_under_valgrind())
        ASSERT_NOT_CONTAINS(out, "\"nice-one\"");
    free(out);
    hog_ns = 30 * CORO_MS;

    /* Without the switch: silence. */
    ASSERT_EQ(unsetenv("CORO_DEBUG"), 0);
    ts_capture_begin(&cap);
    r = coro_main(slow_main, NULL);
    out = ts_capture_end(&cap);
    ASSERT_EQ(r, 0);
    ASSERT_NOT_CONTAINS(out, "the-hog");
    free(out);

    /* A malformed value is reported, not ignored silently. */
    ASSERT_EQ(setenv("CORO_DEBUG", "slow:fast", 1), 0);
    ts_capture_begin(&cap);
    r = coro_main(slow_main, NULL);
    out = ts_capture_end(&cap);
    ASSERT_EQ(r, 0);
    ASSERT_CONTAINS(out, "CORO_DEBUG");
    ASSERT_NOT_CONTAINS(out, "the-hog");
    free(out);
    unsetenv("CORO_DEBUG");
}
