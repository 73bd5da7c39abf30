/* test/test_stack.c: the stack allocator (coro/stack.h): sizes, usable
 * range, guards that fault, the per-size pool (LIFO hot list, high-water
 * mark, pages and slabs going back to the system), the release of freed
 * stacks in batches (pages really gone after a release, one madvise per
 * run of adjacent slots, guards inside a run still faulting, empty slabs
 * unmapped without a madvise, pending stacks reused warm), the mapping count of a
 * hundred thousand stacks, and failures injected at every allocation point
 * giving ENOMEM with no mapping left behind (and no heap leak: the Valgrind
 * and LeakSanitizer runs check that; glibc's mallinfo cannot, its tcache
 * counts freed chunks as in use). Each test runs in a fresh process, so the
 * pool starts empty and the guard kind is still undecided. */
#include "test/test.h"

#include "coro/coro.h"
#include "coro/fault.h"
#include "coro/stack.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Pages of [lo, lo + size) resident in memory now. */
static size_t resident_pages(const char *lo, size_t size)
{
    size_t n = size / page();
    unsigned char *vec = malloc(n);
    ASSERT_NOT_NULL(vec);
    ASSERT_EQ(mincore((void *)lo, size, vec), 0);
    size_t r = 0;
    for (size_t i = 0; i < n; i++)
        r += vec[i] & 1;
    free(vec);
    return r;
}

/* The mapping count is back where it was. Checked natively only: under
 * Valgrind and the sanitizers their own allocators' mappings come and go
 * in the same address space, and qemu-user shows its emulated brk heap as
 * an anonymous mapping. */
#define ASSERT_MAPPINGS_BACK(maps0)                                      \
    do {                                                                 \
        if (!test_under_valgrind() && !test_under_sanitizer() &&         \
            !test_under_emulator())                                      \
            ASSERT_EQ(test_count_mappings(), maps0);                     \
    } while (0)

/* Touch every page of a stack so that it is resident. */
static void touch(const coro__stack_t *st, unsigned char v)
{
    memset(st->lo, v, st->size);
}

static int is_mprotect(void)
{
    return strcmp(coro__stack_guard_kind(), "mprotect") == 0;
}

/* ---- sizes -------------------------------------------------------------- */

TEST(stack_size_for_rounds_and_checks_limits)
{
    size_t ps = page();
    ASSERT_EQ(coro__stack_size_for(0), CORO_STACK_DEFAULT);
    ASSERT_EQ(coro__stack_size_for(CORO_STACK_MIN), CORO_STACK_MIN);
    ASSERT_EQ(coro__stack_size_for(CORO_STACK_MIN + 1), CORO_STACK_MIN + ps);
    ASSERT_EQ(coro__stack_size_for(CORO_STACK_DEFAULT - 1), CORO_STACK_DEFAULT);
    ASSERT_EQ(coro__stack_size_for(100000), (100000 + ps - 1) / ps * ps);
    ASSERT_EQ(coro__stack_size_for(CORO_STACK_MAX), CORO_STACK_MAX);
    for (size_t req = CORO_STACK_MIN; req < CORO_STACK_MIN + 3 * ps; req += 123) {
        size_t got = coro__stack_size_for(req);
        ASSERT_EQ(got % ps, 0);
        ASSERT_GE(got, req);
        ASSERT_LT(got - req, ps);
    }
    ASSERT_RET_ERRNO(coro__stack_size_for(1), 0, EINVAL);
    ASSERT_RET_ERRNO(coro__stack_size_for(CORO_STACK_MIN - 1), 0, EINVAL);
    ASSERT_RET_ERRNO(coro__stack_size_for(CORO_STACK_MAX + 1), 0, EINVAL);
    ASSERT_RET_ERRNO(coro__stack_size_for(SIZE_MAX), 0, EINVAL);
    ASSERT_RET_ERRNO(coro__stack_size_for(SIZE_MAX - ps + 2), 0, EINVAL);

    size_t g = coro__stack_guard_size();
    ASSERT_GE(g, ps);
    ASSERT_EQ(g % ps, 0);
}

/* ---- usable range ------------------------------------------------------- */

static int by_lo(const void *a, const void *b)
{
    const coro__stack_t *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

TEST(stack_whole_range_writable_and_disjoint)
{
    const size_t sizes[] = { CORO_STACK_MIN, 0, 200 * 1024, 1024 * 1024 };
    enum { PER = 5, NS = sizeof sizes / sizeof *sizes };
    coro__stack_t st[NS * PER];
    for (size_t i = 0; i < NS * PER; i++) {
        size_t sz = coro__stack_size_for(sizes[i % NS]);
        ASSERT_EQ(coro__stack_alloc(&st[i], sz), 0);
        ASSERT_EQ(st[i].size, sz);
        ASSERT_EQ((uintptr_t)st[i].lo % page(), 0);
        /* Every byte can be written and reads back. */
        memset(st[i].lo, (int)(i + 1), st[i].size);
    }
    for (size_t i = 0; i < NS * PER; i++) {
        unsigned char want = (unsigned char)(i + 1);
        const unsigned char *p = (const unsigned char *)st[i].lo;
        ASSERT_EQ(p[0], want);
        ASSERT_EQ(p[st[i].size / 2], want);
        ASSERT_EQ(p[st[i].size - 1], want);
        for (size_t off = 0; off < st[i].size; off += 512)
            if (p[off] != want)
                test_fail(__FILE__, __LINE__, "stack %zu byte %zu is %u, not %u: "
                          "another stack overlaps it", i, off, p[off], want);
    }
    /* No two stacks overlap, and a guard's worth of space separates them. */
    coro__stack_t sorted[NS * PER];
    memcpy(sorted, st, sizeof st);
    qsort(sorted, NS * PER, sizeof *sorted, by_lo);
    for (size_t i = 1; i < NS * PER; i++)
        ASSERT_GE(sorted[i].lo - (sorted[i - 1].lo + sorted[i - 1].size),
                  (long long)coro__stack_guard_size());
    for (size_t i = 0; i < NS * PER; i++)
        coro__stack_free(&st[i]);
    coro__stack_pool_release();
}

/* ---- guards ------------------------------------------------------------- */

static void write_byte(void *addr)
{
    /* The default action, not a sanitizer's report: die of the signal. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    *(volatile char *)addr = 1;
    printf("wrote %p without a fault\n", addr);
}

/* Writing at addr kills a child process with SIGSEGV. */
#define ASSERT_WRITE_FAULTS(addr) assert_write_faults(addr, #addr, __FILE__, __LINE__)
static void assert_write_faults(void *addr, const char *expr, const char *file, int line)
{
    char out[4096], how[128];
    int status;
    if (test_run_child(write_byte, addr, out, sizeof out, &status) != 0)
        test_fail(file, line, "test_run_child: %s", strerror(errno));
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV)
        test_fail(file, line, "writing %s (%p) should die of SIGSEGV; the child ended "
                  "with %s, output:\n%s", expr, addr,
                  test_describe_status(status, how, sizeof how), out);
}

static void check_guards(void)
{
    size_t sz = coro__stack_size_for(0), g = coro__stack_guard_size();
    coro__stack_t a, b;
    ASSERT_EQ(coro__stack_alloc(&a, sz), 0);
    ASSERT_EQ(coro__stack_alloc(&b, sz), 0);
    /* The bytes just inside are fine... */
    a.lo[0] = 1;
    a.lo[a.size - 1] = 1;
    /* ...the guard below, first and last byte, is not. */
    ASSERT_WRITE_FAULTS(a.lo - 1);
    ASSERT_WRITE_FAULTS(a.lo - g);
    ASSERT_WRITE_FAULTS(b.lo - 1);
    ASSERT_WRITE_FAULTS(b.lo - g / 2);

    /* A slot whose pages went back to the system and came back into use
     * keeps its guard. */
    unsigned old = coro__stack_pool_set_hot(0);
    coro__stack_free(&a);
    coro__stack_trim();
    ASSERT_EQ(resident_pages(a.lo, a.size), 0);
    coro__stack_t c;
    ASSERT_EQ(coro__stack_alloc(&c, sz), 0);
    ASSERT_PTR_EQ(c.lo, a.lo);
    c.lo[0] = 1;
    ASSERT_WRITE_FAULTS(c.lo - 1);
    coro__stack_pool_set_hot(old);
    coro__stack_free(&b);
    coro__stack_free(&c);
    coro__stack_pool_release();
}

TEST(stack_guard_below_lo_faults)
{
    check_guards();
}

TEST(stack_guard_below_lo_faults_mprotect)
{
    ASSERT_EQ(setenv("CORO_STACK_GUARD", "mprotect", 1), 0);
    check_guards();
    ASSERT_STR_EQ(coro__stack_guard_kind(), "mprotect");
}

/* ---- the pool ----------------------------------------------------------- */

TEST(stack_pool_hands_back_freed_stacks_lifo)
{
    size_t sz = coro__stack_size_for(0);
    coro__stack_t a, b, c, x;
    ASSERT_EQ(coro__stack_alloc(&a, sz), 0);
    ASSERT_EQ(coro__stack_alloc(&b, sz), 0);
    ASSERT_EQ(coro__stack_alloc(&c, sz), 0);
    coro__stack_free(&a);
    coro__stack_free(&b);
    coro__stack_free(&c);
    /* Hottest first: the last freed is the first handed out. */
    ASSERT_EQ(coro__stack_alloc(&x, sz), 0);
    ASSERT_PTR_EQ(x.lo, c.lo);
    ASSERT_EQ(x.size, sz);
    coro__stack_t y, z, w;
    ASSERT_EQ(coro__stack_alloc(&y, sz), 0);
    ASSERT_PTR_EQ(y.lo, b.lo);
    ASSERT_EQ(coro__stack_alloc(&z, sz), 0);
    ASSERT_PTR_EQ(z.lo, a.lo);
    /* The pool is empty again: a new stack, none of the three. */
    ASSERT_EQ(coro__stack_alloc(&w, sz), 0);
    ASSERT(w.lo != a.lo && w.lo != b.lo && w.lo != c.lo);
    /* A freed and re-taken stack is whole and usable. */
    touch(&x, 0xab);
    touch(&y, 0xcd);
    ASSERT_EQ((unsigned char)x.lo[x.size - 1], 0xab);
    coro__stack_free(&x);
    coro__stack_free(&y);
    coro__stack_free(&z);
    coro__stack_free(&w);
    coro__stack_pool_release();
}

TEST(stack_pool_keeps_sizes_apart)
{
    size_t small = coro__stack_size_for(CORO_STACK_MIN), dflt = coro__stack_size_for(0);
    coro__stack_t s, d, s2;
    ASSERT_EQ(coro__stack_alloc(&s, small), 0);
    coro__stack_free(&s);
    /* A freed small stack is not handed out for a bigger request... */
    ASSERT_EQ(coro__stack_alloc(&d, dflt), 0);
    ASSERT(d.lo != s.lo);
    ASSERT_EQ(d.size, dflt);
    touch(&d, 1);
    /* ...but for the same size it is. */
    ASSERT_EQ(coro__stack_alloc(&s2, small), 0);
    ASSERT_PTR_EQ(s2.lo, s.lo);
    ASSERT_EQ(s2.size, small);
    coro__stack_free(&d);
    coro__stack_free(&s2);
    coro__stack_pool_release();
}

TEST(stack_pool_set_hot_returns_old_value)
{
    ASSERT_EQ(coro__stack_pool_set_hot(5), CORO_STACK_POOL_HOT);
    ASSERT_EQ(coro__stack_pool_set_hot(0), 5);
    ASSERT_EQ(coro__stack_pool_set_hot(CORO_STACK_POOL_HOT), 0);
}

/* Past the high-water mark a freed stack's pages go back to the system; the
 * hot ones stay as they were. */
TEST(stack_pool_high_water_mark)
{
    size_t sz = coro__stack_size_for(64 * 1024), np = sz / page();
    coro__stack_pool_set_hot(2);
    enum { N = 5 };
    coro__stack_t st[N];
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(coro__stack_alloc(&st[i], sz), 0);
        touch(&st[i], (unsigned char)(0x10 + i));
        ASSERT_EQ(resident_pages(st[i].lo, sz), np);
    }
    for (int i = 0; i < N; i++)
        coro__stack_free(&st[i]);
    /* The first two freed went onto the hot list; the other three were
     * over the mark: they wait, pages kept, for the next release... */
    for (int i = 2; i < N; i++)
        ASSERT_EQ(resident_pages(st[i].lo, sz), np);
    coro__stack_trim();
    /* ...after which their pages are gone, and read back as zeroes. */
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(resident_pages(st[i].lo, sz), np);
        ASSERT_EQ((unsigned char)st[i].lo[0], 0x10 + i);
    }
    for (int i = 2; i < N; i++) {
        ASSERT_EQ(resident_pages(st[i].lo, sz), 0);
        ASSERT(test_is_mapped(st[i].lo));
        ASSERT_EQ(st[i].lo[0], 0);
        ASSERT_EQ(st[i].lo[sz - 1], 0);
    }
    /* The hot ones come back first, last freed first. */
    coro__stack_t x;
    ASSERT_EQ(coro__stack_alloc(&x, sz), 0);
    ASSERT_PTR_EQ(x.lo, st[1].lo);
    coro__stack_free(&x);
    coro__stack_pool_set_hot(CORO_STACK_POOL_HOT);
    coro__stack_pool_release();
}

/* With no hot list and a batch of one, a freed stack's pages go back at
 * once, and a slab with nothing in use is unmapped. */
TEST(stack_pool_hot_zero_returns_pages_and_unmaps_slab)
{
    size_t sz = coro__stack_size_for(0), np = sz / page();
    ASSERT_EQ(coro__stack_pool_set_hot(0), CORO_STACK_POOL_HOT);
    ASSERT_EQ(coro__stack_pool_set_batch(1), CORO_STACK_POOL_BATCH);
    long maps0 = test_count_mappings();
    coro__stack_t a, b;
    ASSERT_EQ(coro__stack_alloc(&a, sz), 0);
    ASSERT_EQ(coro__stack_alloc(&b, sz), 0);
    ASSERT_PTR_EQ(a.slab, b.slab); /* one slab holds both */
    touch(&a, 0x5a);
    touch(&b, 0xa5);
    ASSERT_GT(test_count_mappings(), maps0);

    coro__stack_free(&a);
    /* b keeps the slab mapped; a's pages are gone and read as zeroes. */
    ASSERT(test_is_mapped(a.lo));
    ASSERT_EQ(resident_pages(a.lo, sz), 0);
    ASSERT_EQ(resident_pages(b.lo, sz), np);
    ASSERT_EQ(a.lo[0], 0);
    ASSERT_EQ(a.lo[sz / 2], 0);
    ASSERT_EQ((unsigned char)b.lo[sz / 2], 0xa5);

    coro__stack_free(&b);
    /* Nothing in use: the whole slab is gone. */
    ASSERT(!test_is_mapped(a.lo));
    ASSERT(!test_is_mapped(b.lo));
    ASSERT(!test_is_mapped(b.lo - coro__stack_guard_size()));
    ASSERT_MAPPINGS_BACK(maps0);

    /* And it comes back on demand. */
    ASSERT_EQ(coro__stack_alloc(&a, sz), 0);
    touch(&a, 1);
    coro__stack_free(&a);
    ASSERT_MAPPINGS_BACK(maps0);
    coro__stack_pool_set_hot(CORO_STACK_POOL_HOT);
    coro__stack_pool_set_batch(CORO_STACK_POOL_BATCH);
    coro__stack_pool_release();
}

/* coro__stack_pool_release gives back every pooled stack: unmapped with its
 * slab, or (when the slab still holds a stack in use) its pages returned;
 * a stack in use is left alone. */
TEST(stack_pool_release_returns_pooled_stacks)
{
    size_t sz = coro__stack_size_for(0), np = sz / page();
    long maps0 = test_count_mappings();
    enum { N = 8 };
    coro__stack_t st[N];
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(coro__stack_alloc(&st[i], sz), 0);
        touch(&st[i], (unsigned char)i);
    }
    /* All pooled, nothing in use: release unmaps everything. */
    for (int i = 0; i < N; i++)
        coro__stack_free(&st[i]);
    ASSERT(test_is_mapped(st[0].lo));
    coro__stack_pool_release();
    for (int i = 0; i < N; i++)
        ASSERT(!test_is_mapped(st[i].lo));
    ASSERT_MAPPINGS_BACK(maps0);

    /* One stays in use. */
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(coro__stack_alloc(&st[i], sz), 0);
        touch(&st[i], (unsigned char)(i + 1));
    }
    for (int i = 1; i < N; i++)
        coro__stack_free(&st[i]);
    coro__stack_pool_release();
    ASSERT(test_is_mapped(st[0].lo));
    ASSERT_EQ(resident_pages(st[0].lo, sz), np);
    ASSERT_EQ(st[0].lo[sz - 1], 1);
    for (int i = 1; i < N; i++) {
        if (test_is_mapped(st[i].lo) && resident_pages(st[i].lo, sz) != 0)
            test_fail(__FILE__, __LINE__,
                      "stack %d was pooled, but after coro__stack_pool_release it is "
                      "still mapped with %zu of %zu pages resident", i,
                      resident_pages(st[i].lo, sz), np);
    }
    /* The in-use stack still works, and can be freed afterwards. */
    touch(&st[0], 0x77);
    coro__stack_free(&st[0]);
    coro__stack_pool_release();
    ASSERT(!test_is_mapped(st[0].lo));
    ASSERT_MAPPINGS_BACK(maps0);
}

/* ---- release in batches ------------------------------------------------- */

static coro__stack_stats_t stats(void)
{
    coro__stack_stats_t s;
    coro__stack_stats(&s);
    return s;
}

/* No hot list and a batch that never fills: every freed stack stays
 * pending until coro__stack_trim. Returns nothing; undone by unbatch(). */
static void batch_only(void)
{
    coro__stack_pool_set_hot(0);
    coro__stack_pool_set_batch(1000000);
}

static void unbatch(void)
{
    coro__stack_pool_set_hot(CORO_STACK_POOL_HOT);
    coro__stack_pool_set_batch(CORO_STACK_POOL_BATCH);
}

/* n stacks of size sz from one fresh slab, in slot order, all touched. */
static void take_adjacent(coro__stack_t *st, int n, size_t sz)
{
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(coro__stack_alloc(&st[i], sz), 0);
        ASSERT_PTR_EQ(st[i].slab, st[0].slab);
        ASSERT_EQ(st[i].slot, st[0].slot + (uint32_t)i);
        touch(&st[i], (unsigned char)(0x40 + i));
    }
}

TEST(stack_pool_set_batch_returns_old_value)
{
    ASSERT_EQ(coro__stack_pool_set_batch(7), CORO_STACK_POOL_BATCH);
    ASSERT_EQ(coro__stack_pool_set_batch(0), 7); /* 0 means 1 */
    ASSERT_EQ(coro__stack_pool_set_batch(CORO_STACK_POOL_BATCH), 1);
}

/* A freed stack past the hot list keeps its pages until the release; then
 * they are gone (not resident, read back as zeroes) and the slot is
 * mapped still. */
TEST(stack_release_pending_gives_pages_back)
{
    size_t sz = coro__stack_size_for(0), np = sz / page();
    batch_only();
    enum { N = 8 };
    coro__stack_t st[N + 1];
    take_adjacent(st, N + 1, sz); /* st[N] keeps the slab mapped */
    for (int i = 0; i < N; i++)
        coro__stack_free(&st[i]);
    coro__stack_stats_t s0 = stats();
    ASSERT_EQ(s0.pending, N);
    ASSERT_EQ(s0.hot, 0);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(resident_pages(st[i].lo, sz), np);
        ASSERT_EQ((unsigned char)st[i].lo[sz / 2], 0x40 + i);
    }
    coro__stack_trim();
    coro__stack_stats_t s1 = stats();
    ASSERT_EQ(s1.pending, 0);
    ASSERT_EQ(s1.released - s0.released, N);
    ASSERT_EQ(s1.releases - s0.releases, 1);
    for (int i = 0; i < N; i++) {
        ASSERT(test_is_mapped(st[i].lo));
        ASSERT_EQ(resident_pages(st[i].lo, sz), 0);
        ASSERT_EQ(st[i].lo[0], 0);
        ASSERT_EQ(st[i].lo[sz - 1], 0);
    }
    /* The stack in use is untouched. */
    ASSERT_EQ(resident_pages(st[N].lo, sz), np);
    ASSERT_EQ((unsigned char)st[N].lo[0], 0x40 + N);
    /* A trim with nothing pending makes no release. */
    coro__stack_trim();
    ASSERT_EQ(stats().releases, s1.releases);
    coro__stack_free(&st[N]);
    unbatch();
    coro__stack_pool_release();
}

/* Pending slots next to each other go back with one madvise per run: four
 * runs here (0-5, 8, 10, 12-14), whatever order they were freed in. */
TEST(stack_release_coalesces_adjacent_slots)
{
    size_t sz = coro__stack_size_for(0);
    batch_only();
    enum { N = 16 };
    coro__stack_t st[N];
    take_adjacent(st, N, sz);
    static const int freed[] = { 13, 2, 0, 8, 5, 14, 1, 10, 4, 12, 3 };
    enum { NF = sizeof freed / sizeof freed[0] };
    for (int k = 0; k < NF; k++)
        coro__stack_free(&st[freed[k]]);
    coro__stack_stats_t s0 = stats();
    coro__stack_trim();
    coro__stack_stats_t s1 = stats();
    ASSERT_EQ(s1.release_calls - s0.release_calls, 4);
    ASSERT_EQ(s1.released - s0.released, NF);
    ASSERT_EQ(s1.slabs_unmapped, s0.slabs_unmapped);
    /* Freed ones are empty, the others (6, 7, 9, 11, 15) intact. */
    for (int i = 0; i < N; i++) {
        int was_freed = 0;
        for (int k = 0; k < NF; k++)
            was_freed |= freed[k] == i;
        if (was_freed) {
            ASSERT_EQ(resident_pages(st[i].lo, sz), 0);
        } else {
            ASSERT_EQ(resident_pages(st[i].lo, sz), sz / page());
            ASSERT_EQ((unsigned char)st[i].lo[sz - 1], 0x40 + i);
        }
    }
    /* One long run: 6, 7, 9, 11 join the freed ones: 0-14 is one run. */
    for (int i = 0; i < N; i++)
        if (i == 6 || i == 7 || i == 9 || i == 11)
            coro__stack_free(&st[i]);
    /* (Those four are pending now, the rest cold: only the four go back,
     * in three runs: 6-7, 9, 11.) */
    s0 = stats();
    coro__stack_trim();
    s1 = stats();
    ASSERT_EQ(s1.release_calls - s0.release_calls, 3);
    ASSERT_EQ(s1.released - s0.released, 4);
    coro__stack_free(&st[15]);
    unbatch();
    coro__stack_pool_release();
}

/* The batch threshold: the stack that makes CORO_STACK_POOL_BATCH (here 4)
 * pending releases all of them, in one run when they are adjacent. */
TEST(stack_release_when_batch_fills)
{
    size_t sz = coro__stack_size_for(0);
    coro__stack_pool_set_hot(0);
    coro__stack_pool_set_batch(4);
    coro__stack_t st[6];
    take_adjacent(st, 6, sz);
    coro__stack_stats_t s0 = stats();
    for (int i = 0; i < 3; i++)
        coro__stack_free(&st[i]);
    ASSERT_EQ(stats().pending, 3);
    ASSERT_EQ(stats().releases, s0.releases);
    ASSERT_EQ(resident_pages(st[0].lo, sz), sz / page());
    coro__stack_free(&st[3]);
    coro__stack_stats_t s1 = stats();
    ASSERT_EQ(s1.pending, 0);
    ASSERT_EQ(s1.releases - s0.releases, 1);
    ASSERT_EQ(s1.release_calls - s0.release_calls, 1);
    ASSERT_EQ(s1.released - s0.released, 4);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(resident_pages(st[i].lo, sz), 0);
    coro__stack_free(&st[4]);
    coro__stack_free(&st[5]);
    unbatch();
    coro__stack_pool_release();
}

/* The guards inside a released run (madvise from the first stack to the
 * end of the last covers them) still fault, and still do once the slots
 * are in use again. */
static void check_guards_after_run_release(void)
{
    size_t sz = coro__stack_size_for(0), g = coro__stack_guard_size();
    batch_only();
    enum { N = 5 };
    coro__stack_t st[N];
    take_adjacent(st, N, sz);
    for (int i = 0; i < N - 1; i++)
        coro__stack_free(&st[i]);
    coro__stack_stats_t s0 = stats();
    coro__stack_trim();
    ASSERT_EQ(stats().release_calls - s0.release_calls, 1); /* one run over 3 guards */
    for (int i = 1; i < N; i++) {
        ASSERT_WRITE_FAULTS(st[i].lo - 1);
        ASSERT_WRITE_FAULTS(st[i].lo - g);
    }
    /* In use again (cold slots, zeroed): usable, and guarded. */
    coro__stack_t again[N - 1];
    for (int i = 0; i < N - 1; i++) {
        ASSERT_EQ(coro__stack_alloc(&again[i], sz), 0);
        ASSERT_PTR_EQ(again[i].slab, st[0].slab);
        touch(&again[i], 0x33);
    }
    for (int i = 0; i < N - 1; i++)
        ASSERT_WRITE_FAULTS(again[i].lo - 1);
    ASSERT_WRITE_FAULTS(st[N - 1].lo - g / 2);
    for (int i = 0; i < N - 1; i++)
        coro__stack_free(&again[i]);
    coro__stack_free(&st[N - 1]);
    unbatch();
    coro__stack_pool_release();
}

TEST(stack_guards_fault_after_run_release)
{
    check_guards_after_run_release();
}

TEST(stack_guards_fault_after_run_release_mprotect)
{
    ASSERT_EQ(setenv("CORO_STACK_GUARD", "mprotect", 1), 0);
    check_guards_after_run_release();
    ASSERT_STR_EQ(coro__stack_guard_kind(), "mprotect");
}

/* A slab left with nothing in use or hot goes with one munmap, its pending
 * stacks with it: no madvise first. */
TEST(stack_empty_slab_unmapped_without_madvise)
{
    size_t sz = coro__stack_size_for(0);
    batch_only();
    long maps0 = test_count_mappings();
    enum { N = 6 };
    coro__stack_t st[N];
    take_adjacent(st, N, sz);
    coro__stack_stats_t s0 = stats();
    ASSERT_EQ(s0.slabs, 1);
    for (int i = 0; i < N - 1; i++)
        coro__stack_free(&st[i]);
    ASSERT_EQ(stats().pending, N - 1);
    ASSERT(test_is_mapped(st[0].lo));
    coro__stack_free(&st[N - 1]); /* the last one in use */
    coro__stack_stats_t s1 = stats();
    ASSERT_EQ(s1.pending, 0);
    ASSERT_EQ(s1.slabs, 0);
    ASSERT_EQ(s1.slabs_unmapped - s0.slabs_unmapped, 1);
    ASSERT_EQ(s1.release_calls, s0.release_calls); /* no madvise */
    ASSERT_EQ(s1.released, s0.released);
    for (int i = 0; i < N; i++)
        ASSERT(!test_is_mapped(st[i].lo));
    ASSERT_MAPPINGS_BACK(maps0);
    /* A hot stack keeps its slab: with a hot list, the same frees leave it
     * mapped, and coro__stack_pool_release unmaps it, again without a
     * madvise. */
    coro__stack_pool_set_hot(1);
    take_adjacent(st, N, sz);
    for (int i = 0; i < N; i++)
        coro__stack_free(&st[i]);
    s0 = stats();
    ASSERT_EQ(s0.hot, 1);
    ASSERT_EQ(s0.pending, N - 1);
    ASSERT(test_is_mapped(st[0].lo));
    coro__stack_pool_release();
    s1 = stats();
    ASSERT_EQ(s1.hot + s1.pending + s1.slabs, 0);
    ASSERT_EQ(s1.release_calls, s0.release_calls);
    ASSERT_EQ(s1.slabs_unmapped - s0.slabs_unmapped, 1);
    ASSERT_MAPPINGS_BACK(maps0);
    unbatch();
}

/* A pending stack is handed out again before a cold or untouched slot, as
 * it is: its pages and contents kept (no fault, no madvise), its handle
 * (Valgrind id, header colour) the one it was freed with. */
TEST(stack_pending_stack_reused_warm)
{
    size_t sz = coro__stack_size_for(0), np = sz / page();
    batch_only();
    coro__stack_t a, b, keep, x, y;
    ASSERT_EQ(coro__stack_alloc(&a, sz), 0);
    ASSERT_EQ(coro__stack_alloc(&b, sz), 0);
    ASSERT_EQ(coro__stack_alloc(&keep, sz), 0);
    touch(&a, 0x5a);
    touch(&b, 0xa5);
    a.colour = 3;
    b.colour = 6;
    coro__stack_free(&a);
    coro__stack_free(&b);
    coro__stack_stats_t s0 = stats();
    ASSERT_EQ(s0.pending, 2);
    /* The highest pending slot first: b, then a. */
    ASSERT_EQ(coro__stack_alloc(&x, sz), 0);
    ASSERT_EQ(coro__stack_alloc(&y, sz), 0);
    ASSERT_PTR_EQ(x.lo, b.lo);
    ASSERT_PTR_EQ(y.lo, a.lo);
    ASSERT_EQ(x.colour, 6);
    ASSERT_EQ(y.colour, 3);
    ASSERT_EQ(x.vg_id, b.vg_id);
    ASSERT_EQ(y.vg_id, a.vg_id);
    ASSERT_EQ(resident_pages(y.lo, sz), np);
    ASSERT_EQ((unsigned char)y.lo[0], 0x5a);
    ASSERT_EQ((unsigned char)x.lo[sz / 2], 0xa5);
    coro__stack_stats_t s1 = stats();
    ASSERT_EQ(s1.pending, 0);
    ASSERT_EQ(s1.release_calls, s0.release_calls);
    /* Nothing pending, no hot list: the next one is a fresh slot. */
    coro__stack_t z;
    ASSERT_EQ(coro__stack_alloc(&z, sz), 0);
    ASSERT(z.lo != a.lo && z.lo != b.lo && z.lo != keep.lo);
    ASSERT_EQ(z.colour, CORO_STACK_FRESH);
    coro__stack_free(&x);
    coro__stack_free(&y);
    coro__stack_free(&z);
    coro__stack_free(&keep);
    unbatch();
    coro__stack_pool_release();
}

/* Pending stacks of several sizes: coro__stack_trim releases every class. */
TEST(stack_trim_releases_every_size)
{
    const size_t sizes[] = { CORO_STACK_MIN, 0, 256 * 1024 };
    enum { NS = sizeof sizes / sizeof *sizes };
    batch_only();
    long maps0 = test_count_mappings();
    coro__stack_t st[NS][3];
    for (int k = 0; k < NS; k++)
        take_adjacent(st[k], 3, coro__stack_size_for(sizes[k]));
    for (int k = 0; k < NS; k++)
        for (int i = 0; i < 2; i++)
            coro__stack_free(&st[k][i]);
    ASSERT_EQ(stats().pending, 2 * NS);
    coro__stack_stats_t s0 = stats();
    coro__stack_trim();
    coro__stack_stats_t s1 = stats();
    ASSERT_EQ(s1.pending, 0);
    ASSERT_EQ(s1.release_calls - s0.release_calls, NS); /* one run per size */
    for (int k = 0; k < NS; k++)
        for (int i = 0; i < 2; i++)
            ASSERT_EQ(resident_pages(st[k][i].lo, st[k][i].size), 0);
    /* The last stack of each slab: the slab goes with it. */
    for (int k = 0; k < NS; k++)
        coro__stack_free(&st[k][2]);
    s1 = stats();
    ASSERT_EQ(s1.pending + s1.hot + s1.slabs, 0);
    ASSERT_EQ(s1.slabs_unmapped - s0.slabs_unmapped, NS);
    ASSERT_MAPPINGS_BACK(maps0);
    coro__stack_pool_release();
    unbatch();
}

/* ---- many stacks, few mappings ------------------------------------------ */

TEST(stack_100k_default_stacks_few_mappings)
{
    size_t n = 100000;
    size_t sz = coro__stack_size_for(0);
    coro__stack_t *st = calloc(n, sizeof *st);
    ASSERT_NOT_NULL(st);
    long maps0 = test_count_mappings();
    ASSERT_GT(maps0, 0);

    ASSERT_EQ(coro__stack_alloc(&st[0], sz), 0);
    int mprot = is_mprotect();
    /* mprotect guards: two mappings per stack, stay under vm.max_map_count.
     * Valgrind: it looks up registered stacks in a list, slow at 100k. */
    if (mprot || test_under_valgrind())
        n = 10000;
    for (size_t i = 1; i < n; i++)
        if (coro__stack_alloc(&st[i], sz) != 0)
            test_fail(__FILE__, __LINE__, "stack %zu of %zu: %s", i, n, strerror(errno));
    long maps1 = test_count_mappings();
    printf("%zu stacks (%s guards): %ld -> %ld mappings\n", n, coro__stack_guard_kind(),
           maps0, maps1);
    if (mprot) {
        /* Each guard splits its slab: two mappings per stack. */
        ASSERT_GE(maps1 - maps0, (long)n);
    } else {
        /* Guard regions do not split the slabs: a few hundred mappings. */
        ASSERT_LT(maps1 - maps0, (long)(n / 100));
    }

    /* All distinct, none overlapping. */
    qsort(st, n, sizeof *st, by_lo);
    for (size_t i = 1; i < n; i++)
        ASSERT_GE(st[i].lo - (st[i - 1].lo + st[i - 1].size),
                  (long long)coro__stack_guard_size());
    /* Each is usable at both ends. */
    for (size_t i = 0; i < n; i += 97) {
        st[i].lo[0] = 1;
        st[i].lo[sz - 1] = 1;
    }

    for (size_t i = 0; i < n; i++)
        coro__stack_free(&st[i]);
    coro__stack_pool_release();
    ASSERT_MAPPINGS_BACK(maps0);
    free(st);
}

/* With mprotect guards, running out of mappings is ENOMEM, not a crash,
 * and everything comes back afterwards. */
TEST(stack_mprotect_guards_run_out_with_enomem)
{
    if (test_under_valgrind())
        TEST_SKIP("tens of thousands of mappings exceed Valgrind's segment table");
    if (test_under_sanitizer())
        TEST_SKIP("at vm.max_map_count the sanitizer runtime's own mmap/munmap fail");
    if (test_under_emulator())
        TEST_SKIP("at vm.max_map_count the emulator's own mappings fail "
                  "(qemu then shows an empty /proc/self/maps)");
    ASSERT_EQ(setenv("CORO_STACK_GUARD", "mprotect", 1), 0);
    size_t sz = coro__stack_size_for(CORO_STACK_MIN);
    size_t cap = 200000, n = 0;
    coro__stack_t *st = calloc(cap, sizeof *st);
    ASSERT_NOT_NULL(st);
    long maps0 = test_count_mappings();
    for (;;) {
        ASSERT_LT(n, cap);
        errno = 0;
        if (coro__stack_alloc(&st[n], sz) != 0)
            break;
        n++;
    }
    ASSERT_EQ(errno, ENOMEM);
    ASSERT_STR_EQ(coro__stack_guard_kind(), "mprotect");
    long maps1 = test_count_mappings();
    printf("%zu stacks before ENOMEM; %ld -> %ld mappings\n", n, maps0, maps1);
    ASSERT_GT(n, 1000);
    ASSERT_GE(maps1 - maps0, (long)n);
    /* Freeing one makes room for one again. */
    coro__stack_free(&st[--n]);
    ASSERT_EQ(coro__stack_alloc(&st[n++], sz), 0);
    for (size_t i = 0; i < n; i++)
        coro__stack_free(&st[i]);
    coro__stack_pool_release();
    ASSERT_MAPPINGS_BACK(maps0);
    free(st);
}

/* ---- injected failures -------------------------------------------------- */

TEST(stack_fault_mmap_gives_enomem_without_leaks)
{
    size_t sz = coro__stack_size_for(0);
    long maps0 = test_count_mappings();
    coro__stack_t a;

    /* The first slab cannot be mapped. */
    coro__fault_arm(CORO_FAULT_MMAP, 1);
    ASSERT_ERRNO(coro__stack_alloc(&a, sz), ENOMEM);
    ASSERT_MAPPINGS_BACK(maps0);
    /* The failure was one-shot. */
    ASSERT_EQ(coro__stack_alloc(&a, sz), 0);
    coro__stack_free(&a);
    coro__stack_pool_release();
    ASSERT_MAPPINGS_BACK(maps0);

    /* The second slab fails: every stack of the first one is handed out,
     * then ENOMEM, then (disarmed) a second slab. */
    enum { CAP = 100000 };
    coro__stack_t *st = calloc(CAP, sizeof *st);
    ASSERT_NOT_NULL(st);
    maps0 = test_count_mappings();
    coro__fault_arm(CORO_FAULT_MMAP, 2);
    size_t n = 0;
    for (;;) {
        ASSERT_LT(n, CAP);
        errno = 0;
        if (coro__stack_alloc(&st[n], sz) != 0)
            break;
        ASSERT_PTR_EQ(st[n].slab, st[0].slab);
        n++;
    }
    ASSERT_EQ(errno, ENOMEM);
    ASSERT_GT(n, 1);
    ASSERT_EQ(coro__stack_alloc(&st[n], sz), 0);
    ASSERT(st[n].slab != st[0].slab);
    n++;
    for (size_t i = 0; i < n; i++)
        coro__stack_free(&st[i]);
    coro__stack_pool_release();
    ASSERT_MAPPINGS_BACK(maps0);
    free(st);
}

TEST(stack_fault_guard_gives_enomem_without_leaks)
{
    size_t sz = coro__stack_size_for(0), g = coro__stack_guard_size();
    long maps0 = test_count_mappings();
    coro__stack_t a, b, c;

    /* The first stack of a fresh slab: the slab is unmapped again. */
    coro__fault_arm(CORO_FAULT_GUARD, 1);
    ASSERT_ERRNO(coro__stack_alloc(&a, sz), ENOMEM);
    ASSERT_MAPPINGS_BACK(maps0);

    /* A later stack, the first of the next batch of guards (those of a
     * batch are installed together): the slab stays for the stacks in
     * use, and the slot that failed is handed out next, with a working
     * guard. */
    coro__stack_t first[CORO_STACK_GUARD_BATCH];
    for (unsigned i = 0; i < CORO_STACK_GUARD_BATCH; i++) {
        ASSERT_EQ(coro__stack_alloc(&first[i], sz), 0);
        ASSERT_WRITE_FAULTS(first[i].lo - 1);
    }
    a = first[CORO_STACK_GUARD_BATCH - 1];
    coro__fault_arm(CORO_FAULT_GUARD, 1);
    ASSERT_ERRNO(coro__stack_alloc(&b, sz), ENOMEM);
    ASSERT_EQ(coro__stack_alloc(&b, sz), 0);
    ASSERT_PTR_EQ(b.slab, a.slab);
    ASSERT_PTR_EQ(b.lo, a.lo + a.size + g);
    b.lo[0] = 1;
    ASSERT_WRITE_FAULTS(b.lo - 1);
    ASSERT_EQ(coro__stack_alloc(&c, sz), 0);
    ASSERT_PTR_EQ(c.lo, b.lo + b.size + g);
    ASSERT_WRITE_FAULTS(c.lo - 1);

    for (unsigned i = 0; i < CORO_STACK_GUARD_BATCH; i++)
        coro__stack_free(&first[i]);
    coro__stack_free(&b);
    coro__stack_free(&c);
    coro__stack_pool_release();
    ASSERT_MAPPINGS_BACK(maps0);
}

TEST(stack_fault_malloc_gives_enomem_without_leaks)
{
    size_t sz = coro__stack_size_for(0);
    long maps0 = test_count_mappings();
    coro__stack_t a;

    /* The size class's record, then the first slab's record. */
    for (int nth = 1; nth <= 2; nth++) {
        coro__fault_arm(CORO_FAULT_MALLOC, nth);
        ASSERT_ERRNO(coro__stack_alloc(&a, sz), ENOMEM);
        coro__fault_arm(CORO_FAULT_MALLOC, 0);
        ASSERT_MAPPINGS_BACK(maps0);
        coro__stack_pool_release();
    }
    /* Disarmed, it works. */
    ASSERT_EQ(coro__stack_alloc(&a, sz), 0);
    coro__stack_free(&a);
    coro__stack_pool_release();
    ASSERT_MAPPINGS_BACK(maps0);
}

/* ---- threads ------------------------------------------------------------ */

/* Each thread has its own pool: threads allocating at once (the first of
 * them deciding the page size and the guard kind) get disjoint stacks and
 * can each release their pool. ThreadSanitizer checks the shared state. */
#define THREAD_STACKS 200

typedef struct thread_job {
    /* All threads start together, and keep their stacks until the main
     * thread has compared them. */
    pthread_barrier_t *start, *allocated, *checked;
    coro__stack_t st[THREAD_STACKS];
    int failed;
} thread_job_t;

static void *stack_thread(void *arg)
{
    thread_job_t *j = arg;
    pthread_barrier_wait(j->start);
    size_t sz = coro__stack_size_for(0);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < THREAD_STACKS; i++) {
            if (coro__stack_alloc(&j->st[i], sz) != 0) {
                j->failed = 1;
                break;
            }
            j->st[i].lo[0] = (char)i;
            j->st[i].lo[sz - 1] = (char)i;
        }
        if (j->failed || round == 2)
            break;
        for (int i = 0; i < THREAD_STACKS; i++)
            coro__stack_free(&j->st[i]);
    }
    pthread_barrier_wait(j->allocated);
    pthread_barrier_wait(j->checked);
    if (!j->failed) {
        for (int i = 0; i < THREAD_STACKS; i++)
            coro__stack_free(&j->st[i]);
    }
    coro__stack_pool_release();
    return NULL;
}

TEST(stack_pools_are_per_thread)
{
    enum { T = 4 };
    static thread_job_t jobs[T];
    pthread_barrier_t start, allocated, checked;
    pthread_t tid[T];
    ASSERT_EQ(pthread_barrier_init(&start, NULL, T), 0);
    ASSERT_EQ(pthread_barrier_init(&allocated, NULL, T + 1), 0);
    ASSERT_EQ(pthread_barrier_init(&checked, NULL, T + 1), 0);
    for (int t = 0; t < T; t++) {
        jobs[t].start = &start;
        jobs[t].allocated = &allocated;
        jobs[t].checked = &checked;
        ASSERT_EQ(pthread_create(&tid[t], NULL, stack_thread, &jobs[t]), 0);
    }
    /* Every thread now holds its stacks: all distinct, none overlapping. */
    pthread_barrier_wait(&allocated);
    static coro__stack_t all[T * THREAD_STACKS];
    int failed = 0;
    for (int t = 0; t < T; t++) {
        failed |= jobs[t].failed;
        memcpy(&all[t * THREAD_STACKS], jobs[t].st, sizeof jobs[t].st);
    }
    if (!failed) {
        qsort(all, T * THREAD_STACKS, sizeof *all, by_lo);
        for (int i = 1; i < T * THREAD_STACKS; i++)
            if (all[i].lo < all[i - 1].lo + all[i - 1].size + coro__stack_guard_size())
                failed = 2;
    }
    /* Let them free and release before any assertion can exit. */
    pthread_barrier_wait(&checked);
    for (int t = 0; t < T; t++)
        ASSERT_EQ(pthread_join(tid[t], NULL), 0);
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&allocated);
    pthread_barrier_destroy(&checked);
    ASSERT_NE(failed, 1); /* an allocation failed */
    ASSERT_NE(failed, 2); /* two threads' stacks overlap */
}
