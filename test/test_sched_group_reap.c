/* test/test_sched_group_reap.c: CORO_GROUP_REAP groups, which free each
 * child as it ends, and coro_stats_t.group_held, which counts the ended
 * children other groups still keep. A REAP child is freed at once (its
 * handle dies and its stack is the next one handed out; nothing is held);
 * wait returns the first failure; FAILFAST | REAP cancels the others on a
 * failure, COLLECT | REAP does not; a live child may be cancelled by its
 * handle; next is EINVAL; wait interrupted, free and cancel with children
 * running keep "no child outlives its group"; 200,000 children cost no
 * memory. */
#include "test/test_sched.h"

/* A child: sleeps until `until` (absolute), or waits for `gate` if set,
 * then returns `status`; if the wait fails it records why and returns
 * `cancel_status`, after a shielded cleanup sleep of cleanup_ns. */
typedef struct rkid {
    int64_t until;
    coro_event_t *gate;
    int status, cancel_status;
    int64_t cleanup_ns;
    int ret, err;
    int finished, cleaned;
    int *ended;          /* counts every child that reached its end */
} rkid_t;

static int rkid_body(void *arg)
{
    rkid_t *k = arg;
    errno = 0;
    k->ret = k->gate ? coro_event_wait(k->gate) : coro_sleep_until(k->until);
    k->err = errno;
    int st = k->status;
    if (k->ret == 0) {
        k->finished = 1;
    } else {
        if (k->cleanup_ns) {
            coro_shield(1);
            ASSERT_EQ(coro_sleep(k->cleanup_ns), 0);
            coro_shield(0);
        }
        k->cleaned = 1;
        st = k->cancel_status;
    }
    if (k->ended)
        (*k->ended)++;
    return st;
}

static coro_stats_t stats(void)
{
    coro_stats_t st;
    coro_stats(&st);
    return st;
}

static int return_arg(void *arg)
{
    return (int)(intptr_t)arg;
}

/* ---- freed at once ---------------------------------------------------------- */

static int freed_main(void *arg)
{
    (void)arg;
    /* Contrast first: a COLLECT group keeps its ended child, whose handle
     * stays valid, and counts it as held. */
    coro_group_t *keep = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(keep);
    coro_t *k1 = coro_group_spawn(keep, return_arg, (void *)(intptr_t)0);
    ASSERT_NOT_NULL(k1);
    coro_yield(); /* k1 runs and ends */
    ASSERT_EQ(stats().live, 1);
    ASSERT_EQ(stats().group_held, 1);
    ASSERT_EQ(coro_cancel(k1), 0); /* still a valid (ended) coroutine */
    coro_t *k2 = coro_group_spawn(keep, return_arg, (void *)(intptr_t)0);
    ASSERT_NOT_NULL(k2);
    ASSERT_NE((uintptr_t)k2 / 4096, (uintptr_t)k1 / 4096); /* k1's stack is still in use */
    ASSERT_EQ(coro_group_wait(keep), 0);
    ASSERT_EQ(stats().group_held, 0);
    coro_group_free(keep);

    for (int flags = CORO_GROUP_REAP; flags <= (CORO_GROUP_REAP | CORO_GROUP_COLLECT); flags++) {
        coro_group_t *g = coro_group_new(flags);
        ASSERT_NOT_NULL(g);
        coro_t *c1 = coro_group_spawn(g, return_arg, (void *)(intptr_t)0);
        ASSERT_NOT_NULL(c1);
        ASSERT_EQ(stats().live, 2);
        coro_yield(); /* c1 runs and ends: freed right after its last switch */
        coro_stats_t st = stats();
        ASSERT_EQ(st.live, 1);
        ASSERT_EQ(st.group_held, 0);
        /* Its handle is dead: recognised as such while its stack waits in
         * the pool (nothing has been spawned since)... */
        ASSERT_ERRNO(coro_cancel(c1), EINVAL);
        ASSERT_ERRNO(coro_join(c1, NULL), EINVAL);
        /* ...and that stack is the very next one handed out: the pool got
         * it back. (The header sits a few cache lines lower on each use,
         * but within the stack's top page.) This is why an ended REAP
         * child's handle must not be used: it points into c2 now. */
        coro_t *c2 = coro_group_spawn(g, return_arg, (void *)(intptr_t)0);
        ASSERT_NOT_NULL(c2);
        ASSERT_EQ((uintptr_t)c2 / 4096, (uintptr_t)c1 / 4096);
        ASSERT_EQ(coro_group_wait(g), 0);
        ASSERT_EQ(stats().live, 1);
        ASSERT_EQ(stats().group_held, 0);

        /* Many at once: none is held after any of them ends. */
        int ended = 0;
        rkid_t k[50];
        int64_t now = coro_now();
        for (int i = 0; i < 50; i++) {
            k[i] = (rkid_t){ .until = now + (i % 5) * CORO_MS, .ended = &ended };
            ASSERT_NOT_NULL(coro_group_spawn(g, rkid_body, &k[i]));
        }
        while (ended < 50) {
            ASSERT_EQ(stats().group_held, 0);
            ASSERT_EQ(stats().live, 1 + 50 - (uint64_t)ended);
            ASSERT_EQ(coro_sleep(CORO_MS), 0);
        }
        ASSERT_EQ(coro_group_wait(g), 0);
        coro_group_free(g);
    }
    return 0;
}

TEST(sched_group_reap_frees_ended_children_at_once)
{
    ASSERT_EQ(coro_main(freed_main, NULL), 0);
}

/* ---- the first failure ------------------------------------------------------ */

static int failure_main(void *arg)
{
    (void)arg;
    /* COLLECT | REAP: everyone finishes; the first non-zero status in
     * completion order is the result (4, though 3 was spawned first). */
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT | CORO_GROUP_REAP);
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(coro_group_wait(g), 0); /* empty */
    rkid_t k[4] = {
        { .until = 15 * CORO_MS, .status = 3 },
        { .until = 5 * CORO_MS, .status = 0 },
        { .until = 10 * CORO_MS, .status = 4 },
        { .until = 1 * CORO_MS, .status = 0 },
    };
    for (int i = 0; i < 4; i++)
        ASSERT_NOT_NULL(coro_group_spawn(g, rkid_body, &k[i]));
    int64_t base = coro_now() + ts_bound(2 * CORO_MS);
    for (int i = 0; i < 4; i++)
        k[i].until += base;
    ASSERT_EQ(coro_group_wait(g), 4);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(k[i].finished, 1);
    /* The group remembers its first failure, as any group does. */
    ASSERT_EQ(coro_group_wait(g), 4);
    coro_group_free(g);

    /* FAILFAST | REAP: the first failure cancels the others, which unwind
     * (one "fails" while unwinding: not the first, not the result). */
    g = coro_group_new(CORO_GROUP_FAILFAST | CORO_GROUP_REAP);
    ASSERT_NOT_NULL(g);
    rkid_t f[4] = {
        { .until = 2 * CORO_MS, .status = 0 },
        { .until = 6 * CORO_MS, .status = 7 },
        { .until = 10 * CORO_SEC, .cancel_status = 99, .cleanup_ns = 2 * CORO_MS },
        { .until = 10 * CORO_SEC, .cancel_status = 0 },
    };
    for (int i = 0; i < 4; i++)
        ASSERT_NOT_NULL(coro_group_spawn(g, rkid_body, &f[i]));
    int64_t now = coro_now();
    for (int i = 0; i < 4; i++)
        f[i].until += now;
    int64_t t0 = coro_now();
    ASSERT_EQ(coro_group_wait(g), 7);
    ASSERT_LT(coro_now() - t0, ts_bound(500 * CORO_MS));
    ASSERT_EQ(f[0].finished, 1);
    ASSERT_EQ(f[1].finished, 1);
    for (int i = 2; i < 4; i++) {
        ASSERT_EQ(f[i].ret, -1);
        ASSERT_EQ(f[i].err, ECANCELED);
        ASSERT_EQ(f[i].cleaned, 1); /* the wait returned after their cleanup */
    }
    ASSERT_EQ(stats().live, 1);
    ASSERT_EQ(stats().group_held, 0);
    coro_group_free(g);
    return 0;
}

TEST(sched_group_reap_wait_returns_first_failure_failfast_cancels)
{
    ASSERT_EQ(coro_main(failure_main, NULL), 0);
}

/* ---- cancelling one child by its handle, next ---------------------------- */

static int handle_main(void *arg)
{
    (void)arg;
    /* COLLECT | REAP: cancelling one live child ends only that one; its
     * status counts as any child's. */
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT | CORO_GROUP_REAP);
    ASSERT_NOT_NULL(g);
    int ended = 0;
    rkid_t k[3];
    coro_t *h[3];
    coro_event_t go;
    coro_event_init(&go);
    for (int i = 0; i < 3; i++) {
        k[i] = (rkid_t){ .until = coro_now() + 10 * CORO_SEC, .gate = i == 0 ? NULL : &go,
                         .cancel_status = 9, .ended = &ended };
        h[i] = coro_group_spawn(g, rkid_body, &k[i]);
        ASSERT_NOT_NULL(h[i]);
    }
    /* Next needs kept children: a REAP group has none. */
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), EINVAL);
    /* Join and detach refuse a group child, as ever. */
    ASSERT_ERRNO(coro_join(h[0], NULL), EINVAL);
    coro_detach(h[0]); /* ignored */
    coro_yield(); /* they park */
    ASSERT_EQ(coro_id(h[0]) > 0, 1);
    ASSERT_EQ(coro_cancel(h[0]), 0); /* live: allowed */
    ASSERT_EQ(coro_cancel(h[0]), 0); /* still live (not yet run): idempotent */
    coro_yield();                    /* h[0] unwinds and is freed */
    ASSERT_EQ(ended, 1);
    ASSERT_EQ(k[0].err, ECANCELED);
    ASSERT_EQ(stats().live, 3);
    ASSERT_EQ(coro_event_set(&go), 0); /* the other two finish */
    ASSERT_EQ(coro_group_wait(g), 9);
    ASSERT_EQ(k[1].finished, 1);
    ASSERT_EQ(k[2].finished, 1);
    coro_group_free(g);

    /* FAILFAST | REAP: a cancelled child that returns non-zero is the
     * first failure and cancels its siblings. */
    g = coro_group_new(CORO_GROUP_REAP);
    ASSERT_NOT_NULL(g);
    ended = 0;
    for (int i = 0; i < 3; i++) {
        k[i] = (rkid_t){ .until = coro_now() + 10 * CORO_SEC, .cancel_status = i == 1 ? 5 : 0,
                         .ended = &ended };
        h[i] = coro_group_spawn(g, rkid_body, &k[i]);
        ASSERT_NOT_NULL(h[i]);
    }
    coro_yield();
    ASSERT_EQ(coro_cancel(h[1]), 0);
    int64_t t0 = coro_now();
    ASSERT_EQ(coro_group_wait(g), 5);
    ASSERT_LT(coro_now() - t0, ts_bound(500 * CORO_MS));
    ASSERT_EQ(ended, 3);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(k[i].err, ECANCELED);
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), EINVAL);
    coro_group_free(g);
    return 0;
}

/* A child that cancels itself by its own handle (always safe: it runs). */
static int self_cancel(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_cancel(coro_self()), 0);
    return coro_sleep(CORO_SEC) == -1 && errno == ECANCELED ? 3 : 0;
}

static int self_main(void *arg)
{
    (void)arg;
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT | CORO_GROUP_REAP);
    ASSERT_NOT_NULL(g);
    ASSERT_NOT_NULL(coro_group_spawn(g, self_cancel, NULL));
    ASSERT_EQ(coro_group_wait(g), 3);
    ASSERT_EQ(coro_cancelled(), 0);
    coro_group_free(g);
    return 0;
}

TEST(sched_group_reap_cancel_by_handle_next_einval)
{
    ASSERT_EQ(coro_main(handle_main, NULL), 0);
    ASSERT_EQ(coro_main(self_main, NULL), 0);
}

/* ---- no child outlives its group ----------------------------------------- */

typedef struct reap_waiter {
    int flags;
    int by_deadline;
    int ended;
    int ret, err, ended_at_return;
    rkid_t k[3];
} reap_waiter_t;

static int reap_waiter_body(void *arg)
{
    reap_waiter_t *w = arg;
    coro_group_t *g = coro_group_new(w->flags);
    ASSERT_NOT_NULL(g);
    for (int i = 0; i < 3; i++) {
        w->k[i] = (rkid_t){ .until = coro_now() + 10 * CORO_SEC,
                            .cleanup_ns = (i + 1) * CORO_MS, .ended = &w->ended };
        ASSERT_NOT_NULL(coro_group_spawn(g, rkid_body, &w->k[i]));
    }
    if (w->by_deadline)
        coro_timeout(5 * CORO_MS);
    errno = 0;
    w->ret = coro_group_wait(g);
    w->err = errno;
    w->ended_at_return = w->ended;
    coro_set_deadline(CORO_NEVER);
    coro_group_free(g);
    return 0;
}

static int reap_waiter_main(void *arg)
{
    reap_waiter_t *w = arg;
    coro_t *c = coro_spawn(reap_waiter_body, w);
    ASSERT_NOT_NULL(c);
    if (!w->by_deadline) {
        ASSERT_EQ(coro_sleep(2 * CORO_MS), 0);
        ASSERT_EQ(coro_cancel(c), 0);
    }
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(stats().live, 1);
    return 0;
}

/* coro_group_free with children running (some parked with a blocking
 * cleanup, some never started): it cancels them and returns after every
 * one has ended; each was freed as it ended. */
static int free_running_main(void *arg)
{
    int flags = (int)(intptr_t)arg;
    coro_group_t *g = coro_group_new(flags);
    ASSERT_NOT_NULL(g);
    int ended = 0;
    rkid_t k[6];
    for (int i = 0; i < 6; i++)
        k[i] = (rkid_t){ .until = coro_now() + 10 * CORO_SEC,
                         .cleanup_ns = i == 0 ? 2 * CORO_MS : 0, .ended = &ended };
    for (int i = 0; i < 4; i++)
        ASSERT_NOT_NULL(coro_group_spawn(g, rkid_body, &k[i]));
    coro_yield(); /* the first four park */
    for (int i = 4; i < 6; i++)
        ASSERT_NOT_NULL(coro_group_spawn(g, rkid_body, &k[i])); /* never started */
    ASSERT_EQ(stats().live, 7);
    int64_t t0 = coro_now();
    coro_group_free(g);
    int64_t took = coro_now() - t0;
    ASSERT_EQ(ended, 6);
    for (int i = 0; i < 6; i++) {
        ASSERT_EQ(k[i].err, ECANCELED);
        ASSERT_EQ(k[i].cleaned, 1);
    }
    ASSERT_GE(took, 2 * CORO_MS);
    ASSERT_LT(took, ts_bound(500 * CORO_MS));
    coro_stats_t st = stats();
    ASSERT_EQ(st.live, 1);
    ASSERT_EQ(st.group_held, 0);

    /* coro_group_cancel, then wait: the same, through the waiter. */
    g = coro_group_new(flags);
    ASSERT_NOT_NULL(g);
    ended = 0;
    for (int i = 0; i < 3; i++) {
        k[i] = (rkid_t){ .until = coro_now() + 10 * CORO_SEC, .cancel_status = 20 + i,
                         .ended = &ended };
        ASSERT_NOT_NULL(coro_group_spawn(g, rkid_body, &k[i]));
    }
    coro_yield();
    coro_group_cancel(g);
    coro_group_cancel(g);
    ASSERT_EQ(coro_group_wait(g), 20);
    ASSERT_EQ(coro_cancelled(), 0);
    ASSERT_EQ(ended, 3);
    coro_group_free(g);
    return 0;
}

TEST(sched_group_reap_free_wait_cancel_with_children_running)
{
    for (int f = CORO_GROUP_REAP; f <= (CORO_GROUP_REAP | CORO_GROUP_COLLECT); f++) {
        ASSERT_EQ(coro_main(free_running_main, (void *)(intptr_t)f), 0);
        for (int by_deadline = 0; by_deadline < 2; by_deadline++) {
            reap_waiter_t w;
            memset(&w, 0, sizeof w);
            w.flags = f;
            w.by_deadline = by_deadline;
            ASSERT_EQ(coro_main(reap_waiter_main, &w), 0);
            ASSERT_EQ(w.ret, -1);
            ASSERT_EQ(w.err, by_deadline ? ETIMEDOUT : ECANCELED);
            ASSERT_EQ(w.ended_at_return, 3); /* cleanups (up to 3 ms) included */
        }
    }
}

/* ---- group_held, exactly --------------------------------------------------- */

static int held_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(stats().group_held, 0);
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    coro_t *h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = coro_group_spawn(g, return_arg, (void *)(intptr_t)i);
        ASSERT_NOT_NULL(h[i]);
    }
    ASSERT_EQ(stats().group_held, 0); /* none has ended yet */
    /* Neither a joined nor a detached coroutine counts. */
    coro_t *j = coro_spawn(return_arg, NULL), *d = coro_spawn(return_arg, NULL);
    ASSERT_NOT_NULL(j);
    ASSERT_NOT_NULL(d);
    coro_yield();
    ASSERT_EQ(stats().group_held, 4);
    ASSERT_EQ(coro_join(j, NULL), 0);
    coro_detach(d);
    ASSERT_EQ(stats().group_held, 4);
    /* The dump says why the ended children are still there. */
    char *dump = ts_dump_text();
    ASSERT_EQ(ts_count_lines_with(dump, "held by its group"), 4);
    free(dump);
    /* The one next hands out stays held until the next call. */
    int st = -1;
    ASSERT_PTR_EQ(coro_group_next(g, &st), h[0]);
    ASSERT_EQ(stats().group_held, 4);
    ASSERT_PTR_EQ(coro_group_next(g, &st), h[1]);
    ASSERT_EQ(stats().group_held, 3);
    /* A REAP group beside it adds nothing. */
    coro_group_t *r = coro_group_new(CORO_GROUP_REAP | CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(r);
    for (int i = 0; i < 5; i++)
        ASSERT_NOT_NULL(coro_group_spawn(r, return_arg, (void *)(intptr_t)1));
    ASSERT_EQ(coro_group_wait(r), 1);
    coro_group_free(r);
    ASSERT_EQ(stats().group_held, 3);
    /* wait collects the rest. */
    ASSERT_EQ(coro_group_wait(g), 1);
    ASSERT_EQ(stats().group_held, 0);

    /* More that end, then free (without a wait) collects them; so does the
     * FAILFAST path that cancels the others. */
    for (int i = 0; i < 3; i++)
        ASSERT_NOT_NULL(coro_group_spawn(g, return_arg, NULL));
    coro_yield();
    ASSERT_EQ(stats().group_held, 3);
    coro_group_free(g);
    ASSERT_EQ(stats().group_held, 0);

    g = coro_group_new(CORO_GROUP_FAILFAST);
    ASSERT_NOT_NULL(g);
    rkid_t k[2] = {
        { .until = coro_now() + 10 * CORO_SEC },
        { .until = coro_now() + 10 * CORO_SEC },
    };
    for (int i = 0; i < 2; i++)
        ASSERT_NOT_NULL(coro_group_spawn(g, rkid_body, &k[i]));
    coro_yield(); /* the two park */
    ASSERT_NOT_NULL(coro_group_spawn(g, return_arg, (void *)(intptr_t)8));
    coro_yield(); /* it fails at once, which cancels the two */
    ASSERT_EQ(stats().group_held, 1);
    coro_yield(); /* the cancelled two unwind */
    ASSERT_EQ(stats().group_held, 3);
    ASSERT_EQ(coro_group_wait(g), 8);
    ASSERT_EQ(stats().group_held, 0);
    coro_group_free(g);
    return 0;
}

TEST(sched_group_held_counts_ended_children_groups_keep)
{
    ASSERT_EQ(coro_main(held_main, NULL), 0);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.group_held, 0); /* outside a scheduler: zeroes */
}

/* ---- 200,000 children, flat memory ------------------------------------------ */

static int short_child(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    /* Touch a few KiB of stack, so a child that is not freed costs real
     * memory (at least a page of its own). */
    volatile char buf[3000];
    memset((char *)buf, (int)(v & 0x7f), sizeof buf);
    if (v & 1)
        coro_yield();
    return buf[v % sizeof buf] == (char)(v & 0x7f) ? 0 : 1;
}

typedef struct many_reap {
    long children;
    long rss0, rss_max, rss_end;   /* KiB */
    int check_rss;
} many_reap_t;

#define REAP_BATCH 100
#define REAP_RSS_LIMIT_KIB (16 * 1024)

static int many_reap_main(void *arg)
{
    many_reap_t *m = arg;
    m->rss0 = m->rss_max = ts_rss_kib();
    coro_group_t *g = coro_group_new(CORO_GROUP_REAP);
    ASSERT_NOT_NULL(g);
    /* Batches of 100 children at once, as a server spawns them: the group
     * is never waited on (that would collect kept children too); the
     * spawner yields until a batch has ended. */
    long spawned = 0;
    for (long b = 0; spawned < m->children; b++) {
        for (int i = 0; i < REAP_BATCH && spawned < m->children; i++, spawned++)
            ASSERT_NOT_NULL(coro_group_spawn(g, short_child, (void *)(uintptr_t)spawned));
        while (stats().live > 1)
            coro_yield();
        if (m->check_rss && b % 16 == 0) {
            long rss = ts_rss_kib();
            if (rss > m->rss_max)
                m->rss_max = rss;
            /* Fail as soon as it grows (a group that kept its children
             * would take gigabytes by the end). */
            if (rss - m->rss0 >= REAP_RSS_LIMIT_KIB)
                test_fail(__FILE__, __LINE__, "RSS grew %ld -> %ld KiB after %ld children",
                          m->rss0, rss, spawned);
        }
    }
    ASSERT_EQ(stats().group_held, 0);
    ASSERT_EQ(coro_group_wait(g), 0);
    coro_group_free(g);
    m->rss_end = ts_rss_kib();
    if (m->rss_end > m->rss_max)
        m->rss_max = m->rss_end;
    coro_stats_t st = stats();
    ASSERT_EQ(st.spawned, (uint64_t)m->children + 1);
    ASSERT_EQ(st.live, 1);
    ASSERT_EQ(st.group_held, 0);
    return 0;
}

TEST(sched_group_reap_200k_children_flat_rss)
{
    /* Natively 200,000 children (about 0.1 s). Valgrind runs it ~50 times
     * slower and its own allocator and shadow memory make this process's
     * RSS meaningless, as do the sanitizers' shadow and quarantine; there
     * the test shrinks to 20,000 (2,000 under ThreadSanitizer, whose fiber
     * creation costs about a millisecond) and checks the counts only. */
    many_reap_t m = { 0 };
    m.check_rss = !ts_slow();
    m.children = CORO_TSAN ? 2000 : ts_slow() ? 20000 : 200000;
    int64_t t0 = test_now_ns();
    ASSERT_EQ(coro_main(many_reap_main, &m), 0);
    if (m.check_rss) {
        printf("%ld children in %lld ms; RSS %ld KiB before, at most %ld, %ld at the end\n",
               m.children, (long long)ts_ms(test_now_ns() - t0), m.rss0, m.rss_max, m.rss_end);
        ASSERT_LT(m.rss_max - m.rss0, REAP_RSS_LIMIT_KIB);
    } else {
        printf("%ld children in %lld ms; RSS not checked (Valgrind or a sanitizer owns the "
               "process's memory)\n", m.children, (long long)ts_ms(test_now_ns() - t0));
    }
}
