/* test/test_sched_memory.c: memory under load. 100k spawn/exit cycles (a
 * million in `make test-scale`) keep the mapping count and RSS flat; 100k
 * coroutines parked at once, and (natively) 50k without timers (a million
 * in `make test-scale`), cost at most a few KiB each; 100k torn down give
 * their stacks back (RSS down to the warm pool's, then to nothing after
 * coro_main), and the loop releases pending stacks before it sleeps; a failing malloc or
 * mmap (fault injection) or a real address-space limit gives ENOMEM from
 * coro_spawn / coro_main, without leaks, and the scheduler keeps working. */
#include "test/test_sched.h"
#include "coro/fault.h"
#include "coro/stack.h"

#include <sys/mman.h>
#include <sys/resource.h>

/* ---- spawn/exit churn ----------------------------------------------------- */

static int churn_body(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    /* Touch some stack so a stack that is not recycled costs real memory. */
    volatile char buf[3000];
    memset((char *)buf, (int)(v & 0x7f), sizeof buf);
    if (v & 1)
        coro_yield();
    return buf[v % sizeof buf] + 1;
}

typedef struct churn {
    long cycles;
    long maps_warm, maps_end;
    long rss_warm, rss_end;
} churn_t;

static int churn_main(void *arg)
{
    churn_t *ch = arg;
    /* Rounds of small batches and a large one (which overflows the stack
     * pool's warm list, so stacks also go cold and are refaulted, and
     * slabs are returned and remapped). */
    enum { NB = 10 };
    static const int batch[NB] = { 500, 500, 500, 500, 500, 500, 500, 500, 500, 1500 };
    /* ThreadSanitizer creates and destroys a fiber in about a millisecond:
     * tenth-size batches there. */
    const int div = CORO_TSAN ? 10 : 1;
    const long round = (500 * 9 + 1500) / div;
    long rounds = (ch->cycles + round - 1) / round;
    if (rounds < 4)
        rounds = 4;
    long warm = rounds / 10 > 3 ? rounds / 10 : 3;
    static coro_t *h[1500], *late[1500];
    static const char *names[3] = { NULL, "churn", "a-much-longer-coroutine-name-to-copy" };
    long done = 0;
    for (long r = 0; r < rounds; r++) {
        for (int b = 0; b < NB; b++) {
            int n = batch[b] / div;
            int nj = 0, nl = 0;
            /* A third joined, a third detached while running, a third
             * detached once ended (which frees it there and then). */
            for (int i = 0; i < n; i++) {
                uintptr_t v = (uintptr_t)(done + i);
                coro_opts_t o = { .stack_size = 0, .name = names[v % 3] };
                coro_t *c = coro_spawn_opts(churn_body, (void *)v, &o);
                ASSERT_NOT_NULL(c);
                switch ((v / 2) % 3) {
                case 0: h[nj++] = c; break;
                case 1: coro_detach(c); break;
                default: late[nl++] = c; break;
                }
            }
            for (int i = 0; i < nj; i++) {
                int st = 0;
                ASSERT_EQ(coro_join(h[i], &st), 0);
                ASSERT_GE(st, 1);
            }
            coro_yield(); /* the "late" ones have ended by now */
            for (int i = 0; i < nl; i++)
                coro_detach(late[i]);
            /* Let the detached ones end. */
            while (1) {
                coro_stats_t s;
                coro_stats(&s);
                if (s.live == 1)
                    break;
                coro_yield();
            }
            done += n;
        }
        if (r == warm - 1) {
            ch->maps_warm = test_count_mappings();
            ch->rss_warm = ts_rss_kib();
        }
    }
    ch->maps_end = test_count_mappings();
    ch->rss_end = ts_rss_kib();
    coro_stats_t s;
    coro_stats(&s);
    ASSERT_EQ(s.spawned, (uint64_t)done + 1);
    ASSERT_EQ(s.live, 1);
    ch->cycles = done;
    return 0;
}

/* `native` spawn/exit cycles natively (fewer under the tools): the mapping
 * count and RSS after a warm-up stay where they were. */
static void churn_check(long native)
{
    churn_t ch = { 0 };
    /* ThreadSanitizer makes every fiber switch and creation costly. */
    ch.cycles = CORO_TSAN ? 2000 : test_under_valgrind() ? 7000
              : test_under_sanitizer() ? 100000 : native;
    long maps0 = test_count_mappings();
    int64_t t0 = test_now_ns();
    ASSERT_EQ(coro_main(churn_main, &ch), 0);
    printf("%ld cycles in %lld ms; maps %ld -> %ld, RSS %ld -> %ld KiB (after warm-up -> end)\n",
           ch.cycles, (long long)ts_ms(test_now_ns() - t0), ch.maps_warm, ch.maps_end,
           ch.rss_warm, ch.rss_end);
    ASSERT_GE(ch.cycles, ts_slow() ? 1000 : native);
    if (!ts_slow()) {
        ASSERT_GT(ch.maps_warm, 0);
        ASSERT_LE(ch.maps_end, ch.maps_warm + 8);
        ASSERT_LE(ch.rss_end, ch.rss_warm + 2048);
    }
    /* Everything went back when coro_main returned (the tools' own
     * allocators map memory of their own). */
    if (!ts_slow())
        ASSERT_LE(test_count_mappings(), maps0 + 2);
}

TEST(sched_churn_spawn_exit_flat_memory)
{
    churn_check(100000);
}

TEST_SCALE(sched_churn_million_spawn_exit_flat_memory)
{
    if (ts_slow())
        TEST_SKIP("a million cycles natively only (sched_churn_spawn_exit_flat_memory "
                  "runs a smaller count under the tools)");
    churn_check(1000000);
}

/* ---- many parked at once --------------------------------------------------- */

static int parked_body(void *arg)
{
    int64_t ns = *(const int64_t *)arg;
    if (coro_sleep(ns) == 0)
        return 1;
    return errno == ECANCELED ? 2 : 3;
}

typedef struct many {
    long n;
    int64_t sleep_ns;
    long rss_before, rss_parked;
    long maps_parked;
} many_t;

static int many_main(void *arg)
{
    many_t *m = arg;
    coro_t **h = malloc((size_t)m->n * sizeof *h);
    ASSERT_NOT_NULL(h);
    memset(h, 0, (size_t)m->n * sizeof *h); /* counted before, not in the delta */
    m->rss_before = ts_rss_kib();
    for (long i = 0; i < m->n; i++) {
        h[i] = coro_spawn(parked_body, &m->sleep_ns);
        if (!h[i])
            test_fail(__FILE__, __LINE__, "spawn #%ld failed: %s", i, strerror(errno));
    }
    coro_yield(); /* every one of them runs and parks */
    m->rss_parked = ts_rss_kib();
    m->maps_parked = test_count_mappings();
    coro_stats_t s;
    coro_stats(&s);
    ASSERT_EQ(s.live, (uint64_t)m->n + 1);
    ASSERT_EQ(s.timers, m->sleep_ns == CORO_NEVER ? 0 : (uint64_t)m->n);
    for (long i = 0; i < m->n; i++)
        ASSERT_EQ(coro_cancel(h[i]), 0);
    for (long i = 0; i < m->n; i++) {
        int st = 0;
        ASSERT_EQ(coro_join(h[i], &st), 0);
        ASSERT_EQ(st, 2);
    }
    free(h);
    coro_stats(&s);
    ASSERT_EQ(s.live, 1);
    ASSERT_EQ(s.timers, 0);
    return 0;
}

/* 1 if stacks are guarded with mprotect (an older kernel, or an emulator
 * that ignores guard regions): then every stack splits its slab's mapping
 * twice, and a process tops out near vm.max_map_count / 2 stacks. The first
 * stack decides, so make one. */
static int guards_split_mappings(void)
{
    coro__stack_t st;
    if (coro__stack_alloc(&st, coro__stack_size_for(0)) == 0)
        coro__stack_free(&st);
    coro__stack_pool_release();
    return strcmp(coro__stack_guard_kind(), "mprotect") == 0;
}

TEST(sched_many_parked_then_cancelled)
{
    /* Valgrind is slow; ThreadSanitizer allows only 8128 live fibers;
     * mprotect guards allow about 32k stacks. */
    long n = test_under_valgrind() || CORO_TSAN ? 2000 : guards_split_mappings() ? 20000 : 100000;
    many_t m = { .n = ts_count(n, n < 20000 ? n : 20000), .sleep_ns = 10 * CORO_SEC };
    int64_t t0 = test_now_ns();
    ASSERT_EQ(coro_main(many_main, &m), 0);
    printf("%ld parked: %lld ms, RSS +%ld KiB, %ld mappings\n", m.n,
           (long long)ts_ms(test_now_ns() - t0), m.rss_parked - m.rss_before, m.maps_parked);
    if (!ts_slow() && !guards_split_mappings()) {
        /* A default kernel allows 65530 mappings: stacks must share them. */
        ASSERT_LT(m.maps_parked, 10000);
        ASSERT_LE((m.rss_parked - m.rss_before) * 1024 / m.n, 8192);
    }
}

/* n coroutines parked at once without a timer, on the default settings:
 * a few KiB each, and stacks share mappings (fewer than max_maps). */
static void parked_without_timers(long n, long max_maps)
{
    if (ts_slow())
        TEST_SKIP("%ld coroutines natively only", n);
    if (guards_split_mappings())
        TEST_SKIP("mprotect guards (no MADV_GUARD_INSTALL here) allow about 32k stacks; "
                  "stack_mprotect_guards_run_out_with_enomem covers that limit");
    /* Parked without a timer (CORO_NEVER; main keeps running, so this is
     * no deadlock): the timer heap at scale is the 100k test's job, and
     * on a VM with slow page walks a million heap updates cost seconds. */
    many_t m = { .n = n, .sleep_ns = CORO_NEVER };
    int64_t t0 = test_now_ns();
    ASSERT_EQ(coro_main(many_main, &m), 0);
    long per = (m.rss_parked - m.rss_before) * 1024 / m.n;
    printf("%ld parked: %lld ms, %ld bytes RSS per coroutine, %ld mappings\n", n,
           (long long)ts_ms(test_now_ns() - t0), per, m.maps_parked);
    ASSERT_LE(per, 8192);
    ASSERT_LT(m.maps_parked, max_maps);
}

TEST(sched_50k_parked_default_settings)
{
    /* About 200 MiB. */
    parked_without_timers(50000, 10000);
}

TEST_SCALE(sched_million_parked_default_settings)
{
    /* About 4 GiB, and 20-60 s on a 2-core VM. */
    parked_without_timers(1000000, 60000);
}

/* ---- stacks go back after a teardown --------------------------------------- */

/* Let the loop sleep in its poller, which it does after releasing the
 * pending stacks. A sleep of a millisecond may find its timer already due
 * under Valgrind (the loop then runs on without sleeping): try again,
 * longer, a few times. */
static void idle_until_nothing_pending(void)
{
    coro__stack_stats_t s;
    int64_t ns = CORO_MS;
    for (int k = 0; k < 8; k++, ns *= 2) {
        ASSERT_EQ(coro_sleep(ns), 0);
        coro__stack_stats(&s);
        if (s.pending == 0)
            return;
    }
}

/* A coroutine as a server's handler is: a 4 KiB buffer on its stack (two
 * pages with its header and frames), then parked until cancelled. */
typedef struct teardown {
    long n;
    coro_event_t never;
    long parked;
    long rss_before, rss_parked, rss_joined, rss_idle;
    coro__stack_stats_t joined, idle;
    char *first_lo;   /* the page of a stack's buffer that ends pending */
} teardown_t;

static int teardown_body(void *arg)
{
    teardown_t *t = arg;
    volatile char buf[4096];
    memset((char *)buf, 0x5c, sizeof buf);
    t->parked++;
    int rc = coro_event_wait(&t->never);
    return rc == -1 && errno == ECANCELED ? (int)buf[100] : -1;
}

static int teardown_main(void *arg)
{
    teardown_t *t = arg;
    coro_event_init(&t->never);
    coro_t **h = calloc((size_t)t->n, sizeof *h);
    ASSERT_NOT_NULL(h);
    memset(h, 0, (size_t)t->n * sizeof *h); /* counted before, not in the delta */
    t->rss_before = ts_rss_kib();
    for (long i = 0; i < t->n; i++) {
        h[i] = coro_spawn(teardown_body, t);
        if (!h[i])
            test_fail(__FILE__, __LINE__, "spawn #%ld failed: %s", i, strerror(errno));
    }
    coro_yield(); /* every one of them runs and parks */
    ASSERT_EQ(t->parked, t->n);
    t->rss_parked = ts_rss_kib();
    for (long i = 0; i < t->n; i++) {
        int st = 0;
        ASSERT_EQ(coro_cancel(h[i]), 0);
        ASSERT_EQ(coro_join(h[i], &st), 0);
        ASSERT_EQ(st, 0x5c);
    }
    free(h);
    t->rss_joined = ts_rss_kib();
    coro__stack_stats(&t->joined);
    idle_until_nothing_pending();
    t->rss_idle = ts_rss_kib();
    coro__stack_stats(&t->idle);
    return 0;
}

/* 100k coroutines started and torn down: past the warm pool, their stacks
 * go back (whole slabs unmapped as they empty, the rest released in runs),
 * so RSS falls back to the pool's size, and to where it started once
 * coro_main has returned. */
TEST(sched_teardown_100k_gives_stacks_back)
{
    /* TSan keeps most of a megabyte and a few ms of work per coroutine
     * (its fiber state): past the warm pool, but not by much. */
    long n = test_under_valgrind() ? 3000 : CORO_TSAN ? 1500 : guards_split_mappings() ? 20000 : 100000;
    teardown_t t = { .n = ts_count(n, n < 20000 ? n : 20000) };
    long maps0 = test_count_mappings();
    int64_t t0 = test_now_ns();
    ASSERT_EQ(coro_main(teardown_main, &t), 0);
    long rss_after = ts_rss_kib();
    coro__stack_stats_t end;
    coro__stack_stats(&end);
    printf("%ld coroutines, %lld ms; RSS KiB: %ld before, %ld parked, %ld joined, %ld idle, "
           "%ld after coro_main; %llu slabs unmapped, %llu stacks released in %llu madvise "
           "calls\n", t.n, (long long)ts_ms(test_now_ns() - t0), t.rss_before, t.rss_parked,
           t.rss_joined, t.rss_idle, rss_after, (unsigned long long)end.slabs_unmapped,
           (unsigned long long)end.released, (unsigned long long)end.release_calls);
    /* Joined: the hot list is full, less than a batch waits, and nearly
     * all the rest went back with whole slabs (a slab has at most 1024
     * slots), not a madvise (the slab holding both hot and pending stacks
     * adds its pending ones to the next slab's, which can fill a batch). */
    ASSERT_EQ(t.joined.hot, CORO_STACK_POOL_HOT);
    ASSERT_LT(t.joined.pending, CORO_STACK_POOL_BATCH);
    ASSERT_GE(t.joined.slabs_unmapped, (uint64_t)(t.n - CORO_STACK_POOL_HOT) / 1024);
    ASSERT_LE(t.joined.released, t.n / 10 > CORO_STACK_POOL_BATCH ? (uint64_t)t.n / 10
                                                                   : CORO_STACK_POOL_BATCH);
    /* Idle: nothing pending, released in one go if there was any. */
    ASSERT_EQ(t.idle.pending, 0);
    ASSERT_EQ(t.idle.releases - t.joined.releases, t.joined.pending ? 1 : 0);
    ASSERT_EQ(t.idle.released - t.joined.released, t.joined.pending);
    /* After coro_main: nothing pooled, nothing mapped. */
    ASSERT_EQ(end.hot + end.pending + end.slabs, 0);
    if (!ts_slow() && !test_under_emulator()) {
        /* Two pages per coroutine while parked; afterwards the pool's
         * (1024 stacks of about two pages) and what waits (under a batch),
         * then nothing. */
        long pool_kib = (CORO_STACK_POOL_HOT + CORO_STACK_POOL_BATCH) * 12;
        ASSERT_GE(t.rss_parked - t.rss_before, t.n * 6);
        ASSERT_LE(t.rss_joined - t.rss_before, pool_kib + 4096);
        ASSERT_LE(t.rss_idle - t.rss_before, CORO_STACK_POOL_HOT * 12 + 4096);
        ASSERT_LE(rss_after - t.rss_before, 4096);
        ASSERT_LE(test_count_mappings(), maps0 + 2);
    }
}

/* Stacks freed past the hot list while the loop is busy wait; the loop
 * releases them before it sleeps, pages gone. */
static int idle_body(void *arg)
{
    char **lo = arg;
    /* The frame, not a local array: ASan's use-after-return mode moves
     * arrays to a heap "fake stack", while the frame (return address,
     * saved registers) is always on the coroutine's own stack. */
    char *frame = __builtin_frame_address(0);
    *lo = (char *)((uintptr_t)frame & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1));
    return 0;
}

static int idle_release_main(void *arg)
{
    (void)arg;
    enum { N = 10 };
    char *page[N];
    unsigned old_hot = coro__stack_pool_set_hot(0);
    coro__stack_stats_t s0, s1, s2;
    coro__stack_stats(&s0);
    coro_t *h[N];
    for (int i = 0; i < N; i++)
        ASSERT_NOT_NULL(h[i] = coro_spawn(idle_body, &page[i]));
    for (int i = 0; i < N; i++)
        ASSERT_EQ(coro_join(h[i], NULL), 0);
    coro__stack_stats(&s1);
    ASSERT_EQ(s1.pending - s0.pending, N); /* main's stack keeps the slab */
    ASSERT_EQ(s1.releases, s0.releases);
    unsigned char vec;
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(mincore(page[i], 1, &vec), 0);
        ASSERT_EQ(vec & 1, 1);
    }
    idle_until_nothing_pending();
    coro__stack_stats(&s2);
    ASSERT_EQ(s2.pending, 0);
    ASSERT_EQ(s2.releases - s1.releases, 1);
    ASSERT_EQ(s2.released - s1.released, N);
    ASSERT_EQ(s2.release_calls - s1.release_calls, 1); /* adjacent slots: one run */
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(mincore(page[i], 1, &vec), 0);
        ASSERT_EQ(vec & 1, 0);
    }
    coro__stack_pool_set_hot(old_hot);
    return 0;
}

TEST(sched_idle_loop_releases_pending_stacks)
{
    ASSERT_EQ(coro_main(idle_release_main, NULL), 0);
}

/* ---- fault injection ------------------------------------------------------ */

static int fault_ran;

static int fault_body(void *arg)
{
    (void)arg;
    fault_ran++;
    ASSERT_EQ(coro_sleep(CORO_US), 0);
    return 21;
}

/* The scheduler still spawns, sleeps and joins. */
static void still_works(size_t stack_size)
{
    coro_t *c[10];
    for (int i = 0; i < 10; i++) {
        c[i] = coro_spawn_opts(fault_body, NULL,
                               &(coro_opts_t){ .stack_size = stack_size, .name = "after" });
        ASSERT_NOT_NULL(c[i]);
    }
    for (int i = 0; i < 10; i++) {
        int st = 0;
        ASSERT_EQ(coro_join(c[i], &st), 0);
        ASSERT_EQ(st, 21);
    }
}

static int fault_main(void *arg)
{
    (void)arg;
    coro_stats_t a, b;
    coro_stats(&a);

    /* The name's copy fails. */
    fault_ran = 0;
    coro__fault_arm(CORO_FAULT_MALLOC, 1);
    ASSERT_NULL_ERRNO(coro_spawn_opts(fault_body, NULL, &(coro_opts_t){ .name = "victim" }),
                      ENOMEM);
    coro__fault_arm(CORO_FAULT_MALLOC, 0);
    coro_stats(&b);
    ASSERT_EQ(b.spawned, a.spawned);
    ASSERT_EQ(b.live, a.live);
    coro_yield();
    ASSERT_EQ(fault_ran, 0);
    still_works(0);

    /* A fresh slab cannot be mapped: a stack size never used before, so no
     * pooled stack of that size exists. */
    size_t fresh = CORO_STACK_MIN + 7 * 4096;
    coro__fault_arm(CORO_FAULT_MMAP, 1);
    ASSERT_NULL_ERRNO(coro_spawn_opts(fault_body, NULL,
                                      &(coro_opts_t){ .stack_size = fresh, .name = "m" }),
                      ENOMEM);
    coro__fault_arm(CORO_FAULT_MMAP, 0);
    /* The default size still has its pool: unaffected. */
    coro__fault_arm(CORO_FAULT_MMAP, 1);
    coro_t *c = coro_spawn(fault_body, NULL);
    coro__fault_arm(CORO_FAULT_MMAP, 0);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_join(c, NULL), 0);
    still_works(fresh);

    /* A stack's guard cannot be installed. */
    size_t fresh2 = CORO_STACK_MIN + 9 * 4096;
    coro__fault_arm(CORO_FAULT_GUARD, 1);
    ASSERT_NULL_ERRNO(coro_spawn_opts(fault_body, NULL,
                                      &(coro_opts_t){ .stack_size = fresh2 }),
                      ENOMEM);
    coro__fault_arm(CORO_FAULT_GUARD, 0);
    still_works(fresh2);

    /* The n-th allocation of a spawn fails, for every n: ENOMEM or
     * success, never a crash or a leak (Valgrind and LeakSanitizer check). */
    int failures = 0;
    for (int n = 1; n <= 8; n++) {
        size_t sz = CORO_STACK_MIN + (size_t)(11 + n) * 4096; /* fresh each time */
        coro__fault_arm(CORO_FAULT_MALLOC, n);
        errno = 0;
        coro_t *x = coro_spawn_opts(fault_body, NULL,
                                    &(coro_opts_t){ .stack_size = sz, .name = "nth" });
        int e = errno;
        coro__fault_arm(CORO_FAULT_MALLOC, 0);
        if (x) {
            int st = 0;
            ASSERT_EQ(coro_join(x, &st), 0);
            ASSERT_EQ(st, 21);
        } else {
            ASSERT_EQ(e, ENOMEM);
            failures++;
        }
    }
    ASSERT_GE(failures, 2); /* the name, the size class, the slab record... */

    /* In a group: the failed child is not counted. */
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    ASSERT_NOT_NULL(g);
    coro__fault_arm(CORO_FAULT_MALLOC, 1);
    ASSERT_NULL_ERRNO(coro_group_spawn_opts(g, fault_body, NULL, &(coro_opts_t){ .name = "g" }),
                      ENOMEM);
    coro__fault_arm(CORO_FAULT_MALLOC, 0);
    ASSERT_EQ(coro_group_wait(g), 0);
    ASSERT_NULL_ERRNO(coro_group_next(g, NULL), ENOENT);
    coro_group_free(g);

    still_works(0);
    coro_stats(&b);
    ASSERT_EQ(b.live, 1);
    return 0;
}

TEST(sched_fault_injection_spawn_enomem)
{
    ASSERT_EQ(coro_main(fault_main, NULL), 0);
}

static int main_ran;

static int fault_main_body(void *arg)
{
    (void)arg;
    main_ran = 1;
    return 4;
}

TEST(sched_fault_injection_coro_main_enomem)
{
    int failures = 0, n;
    for (n = 1; n <= 20; n++) {
        main_ran = 0;
        coro__fault_arm(CORO_FAULT_MALLOC, n);
        errno = 0;
        int r = coro_main(fault_main_body, NULL);
        int e = errno;
        coro__fault_arm(CORO_FAULT_MALLOC, 0);
        if (r == 4) {
            ASSERT_EQ(main_ran, 1);
            break;
        }
        ASSERT_EQ(r, -1);
        ASSERT_EQ(e, ENOMEM);
        ASSERT_EQ(main_ran, 0);
        failures++;
    }
    ASSERT_LE(n, 20);
    ASSERT_GE(failures, 1);
    for (n = 1; n <= 5; n++) {
        coro__fault_arm(CORO_FAULT_MMAP, n);
        errno = 0;
        int r = coro_main(fault_main_body, NULL);
        int e = errno;
        coro__fault_arm(CORO_FAULT_MMAP, 0);
        ASSERT(r == 4 || (r == -1 && e == ENOMEM));
    }
    /* Fine afterwards. */
    ASSERT_EQ(coro_main(fault_main_body, NULL), 4);
}

/* ---- a real limit: address space runs out --------------------------------- */

static int as_body(void *arg)
{
    (void)arg;
    int r = coro_sleep(10 * CORO_SEC);
    return r == -1 && errno == ECANCELED ? 0 : 1;
}

typedef struct as_state {
    long spawned;
    int err;
    int restored;
} as_state_t;

static long vm_size_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmSize:", 7) == 0) {
            kib = strtol(line + 7, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

static int as_main(void *arg)
{
    as_state_t *a = arg;
    enum { MAXC = 100000 };
    coro_t **h = calloc(MAXC, sizeof *h);
    ASSERT_NOT_NULL(h);
    struct rlimit old, lim;
    ASSERT_EQ(getrlimit(RLIMIT_AS, &old), 0);
    long vm = vm_size_kib();
    ASSERT_GT(vm, 0);
    lim = old;
    lim.rlim_cur = (rlim_t)(vm + 96 * 1024) * 1024; /* room for about three slabs */
    ASSERT_EQ(setrlimit(RLIMIT_AS, &lim), 0);
    long n = 0;
    for (; n < MAXC; n++) {
        errno = 0;
        h[n] = coro_spawn(as_body, NULL);
        if (!h[n]) {
            a->err = errno;
            break;
        }
        if (n % 64 == 0)
            coro_yield();
    }
    a->spawned = n;
    a->restored = setrlimit(RLIMIT_AS, &old) == 0;
    for (long i = 0; i < n; i++)
        ASSERT_EQ(coro_cancel(h[i]), 0);
    for (long i = 0; i < n; i++) {
        int st = -1;
        ASSERT_EQ(coro_join(h[i], &st), 0);
        ASSERT_EQ(st, 0);
    }
    free(h);
    still_works(0);
    return 0;
}

TEST(sched_spawn_out_of_address_space_enomem)
{
    if (ts_slow())
        TEST_SKIP("an address-space limit breaks Valgrind and sanitizer runtimes");
    if (test_under_emulator())
        TEST_SKIP("an address-space limit can break qemu-user's own allocations");
    as_state_t a = { 0, 0, 0 };
    ASSERT_EQ(coro_main(as_main, &a), 0);
    printf("%ld coroutines before ENOMEM\n", a.spawned);
    ASSERT_EQ(a.restored, 1);
    ASSERT_GT(a.spawned, 0);
    ASSERT_LT(a.spawned, 100000);
    ASSERT_EQ(a.err, ENOMEM);
}
