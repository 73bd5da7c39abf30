/* coro/stack.c: the stack allocator (see coro/stack.h for the layout and
 * the guard trade-off): size classes, slabs, guards, the hot list.
 *
 * Per thread, per stack size, a "size class" holds:
 *   - a hot list: freed stacks kept as they are (pages still committed), so
 *     spawn/exit churn reuses warm memory without a system call. The list
 *     is threaded through the stacks themselves (a small record at the top
 *     of each free stack).
 *   - slabs: mappings carved into slots of guard + stack. A slot is in use
 *     (or hot), pending, cold or untouched (coro/stack_int.h).
 * Freeing past the hot list's high-water mark makes the stack pending:
 * coro/stack_release.c gives pending stacks back in batches, a run of
 * adjacent slots per madvise, instead of one madvise (and one TLB flush)
 * per stack. Taking a stack prefers, in order: the hot list, a pending
 * stack (still warm: no fault, and one madvise saved), a cold slot, an
 * untouched one, a new slab. A slab with nothing in use or hot is unmapped
 * at once, with whatever is pending in it. */
#include "coro/stack_int.h"
#include "coro/compat.h"
#include "coro/coro.h"
#include "coro/fault.h"
#include "coro/sanitize.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if CORO_HAVE_GUARD_REGION && !defined(MADV_GUARD_INSTALL)
#define MADV_GUARD_INSTALL 102 /* Linux 6.13+, include/uapi/asm-generic/mman-common.h */
#endif
/* FreeBSD removed the flag (it was never implemented there); macOS
 * ignores it. Their anonymous mappings commit pages on first touch anyway. */
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

/* Guard bytes below each stack. One page catches a plain overflow; more
 * also catches a frame with large locals that steps over a single page.
 * Guards cost address space only (no memory), so be generous. */
#define GUARD_BYTES ((size_t)16 * 1024)
/* Address space per slab: large enough that a million default stacks need
 * only a few thousand mappings. */
#define SLAB_BYTES ((size_t)32 * 1024 * 1024)
uint32_t coro__stack_slab_slots(size_t size)
{
    size_t n = SLAB_BYTES / (coro__stack_guard_size() + size);
    return n < 1 ? 1 : n > SLAB_MAX_SLOTS ? SLAB_MAX_SLOTS : (uint32_t)n;
}

static __thread size_class_t *tls_classes;
/* The class asked for last: nearly every spawn uses the same size. */
static __thread size_class_t *tls_last;
static unsigned pool_hot_max = CORO_STACK_POOL_HOT;
__thread coro__stack_stats_t coro__stack_tls_stats;

/* How guards are made: decided once per process by the first slab. */
enum { GUARD_UNKNOWN, GUARD_REGION, GUARD_MPROTECT };
static int guard_mode = GUARD_UNKNOWN;
static size_t page_size_cache;

/* Process-wide settings, read by every thread that runs a scheduler:
 * written once, with relaxed atomics (racing first writers agree). */
static size_t page_size(void)
{
    size_t ps = __atomic_load_n(&page_size_cache, __ATOMIC_RELAXED);
    if (!ps) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096;
        __atomic_store_n(&page_size_cache, ps, __ATOMIC_RELAXED);
    }
    return ps;
}

static size_t round_pages(size_t n)
{
    size_t ps = page_size();
    return (n + ps - 1) & ~(ps - 1);
}

size_t coro__stack_guard_size(void)
{
    return round_pages(GUARD_BYTES);
}

size_t coro__stack_size_for(size_t requested)
{
    if (requested == 0)
        requested = CORO_STACK_DEFAULT;
    if (requested < CORO_STACK_MIN || requested > CORO_STACK_MAX) {
        errno = EINVAL;
        return 0;
    }
    return round_pages(requested);
}

unsigned coro__stack_pool_set_hot(unsigned max_hot)
{
    unsigned old = pool_hot_max;
    pool_hot_max = max_hot;
    return old;
}

static int get_guard_mode(void)
{
    return __atomic_load_n(&guard_mode, __ATOMIC_RELAXED);
}

static void set_guard_mode(int mode)
{
    __atomic_store_n(&guard_mode, mode, __ATOMIC_RELAXED);
}

const char *coro__stack_guard_kind(void)
{
    return get_guard_mode() == GUARD_MPROTECT ? "mprotect" : "guard-region";
}

/* Does the kernel refuse to read [g, g+1)? write(2) from a guard must
 * fail with EFAULT. This catches an emulator (qemu-user 7.2) that answers
 * MADV_GUARD_INSTALL with 0 but ignores it. */
#if CORO_HAVE_GUARD_REGION
static int really_guarded(const char *g)
{
    int fds[2];
    if (coro__pipe(fds, 0) != 0)
        return 1; /* cannot tell: trust the kernel's answer */
    ssize_t n = write(fds[1], g, 1);
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    return n < 0 && e == EFAULT;
}
#endif

/* Make slot i's guard inaccessible. The first guard ever installed decides
 * how, for the whole process: MADV_GUARD_INSTALL if the kernel has it (not
 * EINVAL) and it really guards, else mprotect. CORO_STACK_GUARD=mprotect
 * forces the fallback, so the suite can cover it on a kernel with guard
 * regions; so does a system without guard regions (!CORO_HAVE_GUARD_REGION:
 * macOS, the BSDs, COMPAT=fallback). */
static int install_guard(stack_slab_t *sl, uint32_t i)
{
    char *g = coro__slot_base(sl, i);
    size_t gb = coro__stack_guard_size();
    int mode = get_guard_mode();
    if (mode == GUARD_UNKNOWN) {
        mode = GUARD_MPROTECT;
#if CORO_HAVE_GUARD_REGION
        const char *e = getenv("CORO_STACK_GUARD");
        if (!(e && strcmp(e, "mprotect") == 0) &&
            madvise(g, gb, MADV_GUARD_INSTALL) == 0 && really_guarded(g)) {
            set_guard_mode(GUARD_REGION);
            return 0;
        }
#endif
        set_guard_mode(mode);
    }
#if CORO_HAVE_GUARD_REGION
    if (mode == GUARD_REGION) {
        if (madvise(g, gb, MADV_GUARD_INSTALL) == 0)
            return 0;
        return -1;
    }
#endif
    return mprotect(g, gb, PROT_NONE);
}

/* Guards for a run of untouched slots in one system call: Linux's
 * process_madvise(2) with MADV_GUARD_INSTALL and one iovec per guard,
 * applied to the calling process through a pidfd opened for the call
 * (not kept: a forked child must not reach its parent). One call for
 * GUARD_BATCH slots instead of one each: on a paravirtualised guest a
 * system call costs more than the kernel's work for one guard (100k
 * guards measured 1.85 us per madvise against 0.31-0.37 us per guard in
 * batches of 227, on a 6.18 guest; a cold spawn, about 30 us, gains
 * about 1 us). Kernels that do not take guard installs through
 * process_madvise, emulators and tools that do not know the calls answer
 * with an error: then every later guard is installed on its own.
 * The batch stays small so that a program with a few coroutines does not
 * fill a whole slab's page tables with guard markers. */
#define GUARD_BATCH CORO_STACK_GUARD_BATCH
#if CORO_HAVE_GUARD_REGION && defined(SYS_process_madvise) && defined(SYS_pidfd_open)
#define CORO_GUARD_BATCHES 1
enum { BATCH_UNKNOWN, BATCH_WORKS, BATCH_FAILS };
static int guard_batch = BATCH_UNKNOWN;
#else
#define CORO_GUARD_BATCHES 0
#endif

/* Install the guards of slots [a, b) of sl at once: 0, or -1 (the caller
 * then installs them one at a time). */
static int install_guards_batched(stack_slab_t *sl, uint32_t a, uint32_t b)
{
#if CORO_GUARD_BATCHES
    int state = __atomic_load_n(&guard_batch, __ATOMIC_RELAXED);
    if (state == BATCH_FAILS)
        return -1;
    /* Valgrind does not know the calls (and warns of each unknown one). */
    if (coro__stack_under_valgrind()) {
        __atomic_store_n(&guard_batch, BATCH_FAILS, __ATOMIC_RELAXED);
        return -1;
    }
    struct iovec iov[GUARD_BATCH];
    size_t gb = coro__stack_guard_size();
    uint32_t n = b - a;
    for (uint32_t i = 0; i < n; i++) {
        iov[i].iov_base = coro__slot_base(sl, a + i);
        iov[i].iov_len = gb;
    }
    int e = errno;
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    long done = -1;
    if (pidfd >= 0) {
        done = syscall(SYS_process_madvise, pidfd, iov, (size_t)n, MADV_GUARD_INSTALL, 0);
        close(pidfd);
    }
    errno = e;
    /* The first batch of the process is checked as the first guard was
     * (an emulator may answer yes and do nothing). */
    if (done == (long)((size_t)n * gb) &&
        (state == BATCH_WORKS || really_guarded(iov[n - 1].iov_base))) {
        __atomic_store_n(&guard_batch, BATCH_WORKS, __ATOMIC_RELAXED);
        return 0;
    }
    /* Not taken (or only partly: the singles install the rest again,
     * which is harmless). */
    __atomic_store_n(&guard_batch, BATCH_FAILS, __ATOMIC_RELAXED);
    return -1;
#else
    (void)sl;
    (void)a;
    (void)b;
    return -1;
#endif
}

/* Slot i (the next untouched one) is about to be handed out: make sure
 * it has its guard, installing those of the slots after it in the same
 * call when the kernel allows. */
static int guard_untouched(stack_slab_t *sl, uint32_t i)
{
    if (i < sl->guarded)
        return 0;
    if (coro__fault(CORO_FAULT_GUARD)) {
        errno = ENOMEM;
        return -1;
    }
    /* The process's first guard decides how guards are made (and checks
     * the kernel really guards); after that, guard regions come in
     * batches where the kernel takes them. */
    if (get_guard_mode() == GUARD_REGION) {
        /* To the next multiple of the batch: batches start at the same
         * slots in every slab. */
        uint32_t end = (i / GUARD_BATCH + 1) * GUARD_BATCH;
        if (end > sl->nslots)
            end = sl->nslots;
        if (install_guards_batched(sl, i, end) == 0) {
            sl->guarded = end;
            return 0;
        }
    }
    if (install_guard(sl, i) != 0)
        return -1;
    sl->guarded = i + 1;
    return 0;
}

static size_class_t *class_for(size_t size)
{
    size_class_t *c = tls_last;
    if (c && c->size == size)
        return c;
    for (c = tls_classes; c; c = c->next)
        if (c->size == size)
            return tls_last = c;
    c = coro__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->size = size;
    c->slot_bytes = coro__stack_guard_size() + size;
    c->slots_per_slab = coro__stack_slab_slots(size);
    c->next = tls_classes;
    tls_classes = c;
    return tls_last = c;
}

void coro__stack_partial_add(size_class_t *c, stack_slab_t *sl)
{
    if (sl->in_partial)
        return;
    sl->pprev = NULL;
    sl->pnext = c->partial;
    if (c->partial)
        c->partial->pprev = sl;
    c->partial = sl;
    sl->in_partial = 1;
}

static void partial_remove(size_class_t *c, stack_slab_t *sl)
{
    if (!sl->in_partial)
        return;
    if (sl->pprev)
        sl->pprev->pnext = sl->pnext;
    else
        c->partial = sl->pnext;
    if (sl->pnext)
        sl->pnext->pprev = sl->pprev;
    sl->in_partial = 0;
}

static stack_slab_t *slab_new(size_class_t *c)
{
    stack_slab_t *sl = coro__malloc(sizeof *sl + c->slots_per_slab * sizeof(uint32_t));
    if (!sl)
        return NULL;
    memset(sl, 0, sizeof *sl);
    sl->cls = c;
    sl->nslots = c->slots_per_slab;
    sl->bytes = (size_t)sl->nslots * c->slot_bytes;
    if (coro__fault(CORO_FAULT_MMAP)) {
        errno = ENOMEM;
        sl->base = MAP_FAILED;
    } else {
        /* MAP_NORESERVE: address space only; pages are committed when a
         * coroutine first touches them. */
        sl->base = mmap(NULL, sl->bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (sl->base == MAP_FAILED) {
        free(sl);
        errno = ENOMEM;
        return NULL;
    }
    sl->prev = NULL;
    sl->next = c->slabs;
    if (c->slabs)
        c->slabs->prev = sl;
    c->slabs = sl;
    coro__stack_partial_add(c, sl);
    coro__stack_tls_stats.slabs++;
    return sl;
}

void coro__stack_slab_unmap(size_class_t *c, stack_slab_t *sl)
{
    coro__stack_drop_pending(c, sl);
    partial_remove(c, sl);
    if (sl->prev)
        sl->prev->next = sl->next;
    else
        c->slabs = sl->next;
    if (sl->next)
        sl->next->prev = sl->prev;
    /* No madvise first: unmapping frees the pages and the guards. */
    munmap(sl->base, sl->bytes);
    free(sl);
    coro__stack_tls_stats.slabs--;
    coro__stack_tls_stats.slabs_unmapped++;
}

int coro__stack_under_valgrind(void)
{
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        v = RUNNING_ON_VALGRIND ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}

/* A slot leaves the slab for use: describe it and register it. */
static void fill(coro__stack_t *st, stack_slab_t *sl, uint32_t slot)
{
    st->lo = coro__slot_base(sl, slot) + coro__stack_guard_size();
    st->size = sl->cls->size;
    st->slab = sl;
    st->slot = slot;
    st->vg_id = VALGRIND_STACK_REGISTER(st->lo, st->lo + st->size);
    st->colour = CORO_STACK_FRESH;
}

/* Where coro__stack_take describes a stack that has no record to point
 * at (a pending or a new slot). */
static __thread coro__stack_t tls_taken;

/* coro__stack_take past the hot list: a pending stack, a cold or
 * untouched slot, a new slab. */
static __attribute__((noinline)) const coro__stack_t *take_cold(size_class_t *c)
{
    coro__stack_t *st = &tls_taken;
    if (c->dirty) {
        coro__stack_unpend(c, st);
        return st;
    }
    stack_slab_t *sl = c->partial;
    if (!sl && !(sl = slab_new(c)))
        return NULL;
    uint32_t slot;
    if (sl->ncold > 0) {
        slot = sl->cold[--sl->ncold];
    } else {
        slot = sl->bump;
        if (guard_untouched(sl, slot) != 0) {
            int e = errno;
            if (sl->used == 0 && sl->ncold == 0 && sl->bump == 0)
                coro__stack_slab_unmap(c, sl);
            errno = e == EINVAL ? EINVAL : ENOMEM;
            return NULL;
        }
        sl->bump++;
    }
    if (sl->ncold == 0 && sl->bump == sl->nslots)
        partial_remove(c, sl);
    sl->used++;
    fill(st, sl, slot);
    return st;
}

const coro__stack_t *coro__stack_take(size_t size)
{
    size_class_t *c = tls_last;
    if (__builtin_expect(!c || c->size != size, 0) && !(c = class_for(size)))
        return NULL;
    hot_stack_t *h = c->hot;
    if (__builtin_expect(!h, 0))
        return take_cold(c);
    c->hot = h->next;
    c->nhot--;
    coro__stack_tls_stats.hot--;
    return &h->st;
}

int coro__stack_alloc(coro__stack_t *st, size_t size)
{
    const coro__stack_t *t = coro__stack_take(size);
    if (!t)
        return -1;
    *st = *t;
    return 0;
}

/* A stack leaves the hot list (or never joins it): it waits for release,
 * unless nothing else of its slab is in use or hot, in which case the slab
 * goes now. */
static void unhot(size_class_t *c, const coro__stack_t *st)
{
    stack_slab_t *sl = st->slab;
    if (--sl->used == 0) {
        VALGRIND_STACK_DEREGISTER(st->vg_id);
        coro__stack_slab_unmap(c, sl);
        return;
    }
    coro__stack_pend(c, st);
}

void coro__stack_free(const coro__stack_t *st)
{
    /* st may lie in the stack it describes, below the record (see
     * CORO_STACK_RECORD_BYTES): writing the record leaves it intact. */
    /* The handle carries its size, so the usual class is found without
     * touching the slab. */
    size_class_t *c = tls_last;
    if (!c || c->size != st->size)
        c = st->slab->cls;
    if (c->nhot < pool_hot_max) {
        hot_stack_t *h = (hot_stack_t *)(void *)(st->lo + st->size - sizeof(hot_stack_t));
        h->st = *st;
        h->next = c->hot;
        c->hot = h;
        c->nhot++;
        coro__stack_tls_stats.hot++;
        return;
    }
    unhot(c, st);
}

void coro__stack_pool_release(void)
{
    size_class_t *c, *next, *kept = NULL;
    for (c = tls_classes; c; c = next) {
        next = c->next;
        /* Hot stacks join the pending ones (their slabs unmapped as they
         * empty), then whatever is left pending in slabs still in use is
         * released in runs. */
        while (c->hot) {
            hot_stack_t *h = c->hot;
            c->hot = h->next;
            c->nhot--;
            coro__stack_tls_stats.hot--;
            coro__stack_t st = h->st; /* h lives on that stack */
            unhot(c, &st);
        }
        coro__stack_release_pending(c);
        if (c->slabs) { /* stacks still in use: keep the class */
            c->next = kept;
            kept = c;
        } else {
            free(c);
        }
    }
    tls_classes = kept;
    tls_last = NULL;
}

void coro__stack_trim(void)
{
    if (!coro__stack_tls_stats.pending)
        return;
    for (size_class_t *c = tls_classes; c; c = c->next)
        if (c->npending)
            coro__stack_release_pending(c);
}

void coro__stack_stats(coro__stack_stats_t *out)
{
    *out = coro__stack_tls_stats;
}
