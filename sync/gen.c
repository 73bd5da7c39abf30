/* sync/gen.c: generators. fn runs as a coroutine of its own ("generator")
 * and hands values out one at a time; each coro_gen_next runs it until its
 * next coro_gen_yield or its return.
 *
 * The hand-off is direct: next wakes the producer and parks; yield copies
 * the value straight into the consumer's buffer and hands back the same
 * way. One value costs two switches; the woken partner queues behind the
 * coroutines already ready, so a generator loop never starves them.
 *
 * Who touches what:
 *   g->cw   the consumer's waiter (on its stack) while a coroutine is
 *           inside coro_gen_next and has not been handed its outcome; it
 *           makes another caller fail with EBUSY. Cleared by whoever ends
 *           the call: the producer when it hands a value or ENOENT (the
 *           consumer then returns without touching g), coro_gen_free
 *           (likewise), or the consumer itself when its wait ended
 *           otherwise (cancel, deadline). cw->data is the consumer's
 *           buffer; coro_gen_free sets it to NULL to tell a consumer that
 *           g is going away.
 *   g->pw   the producer's waiter while it is parked waiting for a next
 *           (before its first value, or in coro_gen_yield).
 *
 * Cancellation never loses a value: if the consumer stops waiting (cancel,
 * deadline) while the producer runs, the producer's yield finds nobody to
 * hand to (coro__can_wake is false, or cw is NULL), keeps the value in
 * g->pending and parks; the next coro_gen_next returns it without waking
 * the producer, and only the call after that resumes fn.
 *
 * Beyond sync/sync.h:
 *   - coro_gen_next from fn itself on its own generator: EDEADLK.
 *   - coro_gen_free before any value was asked for: fn is never called.
 *     Free wakes a consumer still parked in next with ENOENT. Called from
 *     fn itself, it makes fn's later yields fail and g is freed when fn
 *     returns. Called after coro_main has returned, it only frees memory.
 *   - An unfreed generator's producer stays parked: free every generator
 *     before the last other coroutine ends, or coro_main reports a
 *     deadlock (as for any coroutine left waiting). */
#include "sync/sync.h"
#include "coro/fault.h"
#include "sched/sched.h"
#include "sched/wait.h"
#include "sync/elem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct coro_gen {
    coro_gen_fn fn;
    void *arg;
    size_t elem_size;
    coro_t *producer;
    uint64_t home;        /* the producer's scheduler's serial: an address
                             could be a later scheduler's */
    coro__waiter_t *cw;   /* consumer inside next, not yet answered */
    coro__waiter_t *pw;   /* producer parked waiting for a next */
    int status;           /* fn's return, once finished */
    unsigned char started;     /* a next has asked for a value */
    unsigned char finished;    /* fn has returned (or was never called) */
    unsigned char freeing;     /* coro_gen_free has begun: yields fail */
    unsigned char free_on_exit; /* freed by fn itself: the wrapper frees g */
    unsigned char has_pending; /* pending holds a value nobody took yet */
    unsigned char pending[];   /* elem_size bytes */
};

/* Keep gen_switch one function: a clone per caller would undo the point. */
#if defined(__clang__)
#define GEN_ONE_COPY __attribute__((noinline))
#else
#define GEN_ONE_COPY __attribute__((noinline, noipa))
#endif

/* Wake `wake` (if not NULL) to run next, then park the caller: as the
 * consumer (buf is where the value goes) or as the producer waiting for the
 * next coro_gen_next (buf NULL). Both sides park here, through the one
 * coro__park call below, and coro_gen_next and coro_gen_yield reach it by a
 * tail call: a coroutine resumed by a hand-off then returns through the
 * same two frames the other side entered, so the CPU's return predictor
 * misses only the final return into user code (once per hand-off, as for
 * any two coroutine bodies switching to each other). */
static GEN_ONE_COPY int gen_switch(coro_gen_t *g, coro__waiter_t *wake, void *buf)
{
    coro__waiter_t w;
    coro_list_init(&w.node);
    w.coro = NULL; /* coro__can_wake is false until coro__park sets it */
    w.data = buf;
    if (buf) {
        g->cw = &w;
        g->started = 1;
    } else {
        g->pw = &w;
    }
    const char *what = buf ? "gen next" : "gen yield";
    /* Hide what the branches above learnt about buf, so the compiler keeps
     * a single park rather than one per path. */
    __asm__("" : "+r"(buf));
    /* The partner wakes even if our own checkpoint then fails. */
    if (wake && coro__can_wake(wake))
        coro__wake(wake, 0);
    int r = coro__park(&w, 0, CORO_NEVER, what, g, -1);
    if (!buf) {
        g->pw = NULL; /* the producer: g lives until it has ended */
        return r;
    }
    if (r == 0)
        return 0; /* the value is in *buf; the producer cleared g->cw */
    /* ENOENT: fn returned (or g is being freed), and whoever told us
     * cleared g->cw. Otherwise the wait ended on our side (cancel,
     * deadline): leave next, unless coro_gen_free has let go of us (it
     * cleared w.data; g may be gone). */
    int e = errno;
    if (e != ENOENT && w.data && g->cw == &w)
        g->cw = NULL;
    errno = e;
    return -1;
}

/* The producer's body around fn. If the generator is freed before any
 * value was asked for (or before the producer first ran), fn is never
 * called: the producer wakes, sees the cancellation and ends, and
 * coro_gen_status stays -1. */
static int gen_body(void *arg)
{
    coro_gen_t *g = arg;
    int status = -1;
    if (!g->started && gen_switch(g, NULL, NULL) != 0)
        goto out; /* cancelled (freed, or a deadlock unwind) before starting */
    if (!g->freeing)
        status = g->fn(g, g->arg);
out:
    g->status = status;
    g->finished = 1;
    coro__waiter_t *cw = g->cw;
    if (cw && coro__can_wake(cw)) {
        g->cw = NULL;
        coro__wake(cw, ENOENT);
    }
    if (g->free_on_exit)
        free(g);
    return status;
}

coro_gen_t *coro_gen_new(coro_gen_fn fn, void *arg, size_t elem_size)
{
    return coro_gen_new_opts(fn, arg, elem_size, NULL);
}

coro_gen_t *coro_gen_new_opts(coro_gen_fn fn, void *arg, size_t elem_size,
                              const coro_opts_t *opts)
{
    if (!fn || elem_size == 0 || elem_size > SIZE_MAX - sizeof(coro_gen_t)) {
        errno = EINVAL;
        return NULL;
    }
    if (!coro__current()) {
        errno = EPERM;
        return NULL;
    }
    coro_gen_t *g = coro__malloc(sizeof *g + elem_size);
    if (!g)
        return NULL;
    g->fn = fn;
    g->arg = arg;
    g->home = coro__serial();
    g->elem_size = elem_size;
    g->cw = NULL;
    g->pw = NULL;
    g->status = -1;
    g->started = g->finished = g->freeing = g->free_on_exit = g->has_pending = 0;
    coro_opts_t po = { .stack_size = 0, .name = "generator" };
    if (opts) {
        po.stack_size = opts->stack_size;
        po.flags = opts->flags; /* the producer's; unknown bits fail the spawn */
        if (opts->name)
            po.name = opts->name;
    }
    g->producer = coro_spawn_opts(gen_body, g, &po);
    if (!g->producer) {
        int e = errno;
        free(g);
        errno = e;
        return NULL;
    }
    return g;
}

int coro_gen_yield(coro_gen_t *g, const void *elem)
{
    if (!g || !elem) {
        errno = EINVAL;
        return -1;
    }
    if (coro__current() != g->producer) {
        errno = EPERM;
        return -1;
    }
    if (g->freeing) { /* even when fn has shielded itself */
        errno = ECANCELED;
        return -1;
    }
    if (coro__checkpoint() != 0)
        return -1;
    /* A value is still kept from before (this fn's earlier yield failed
     * while waiting, its own deadline say, and it yields again): wait until
     * that one is taken and a next asks for this one, so none is lost. */
    while (__builtin_expect(g->has_pending, 0))
        if (gen_switch(g, NULL, NULL) != 0)
            return -1;
    coro__waiter_t *cw = g->cw;
    if (cw && coro__can_wake(cw)) {
        sync_copy_elem(cw->data, elem, g->elem_size);
        g->cw = NULL;
        /* A failure of the wait that follows (fn's own deadline passed
         * meanwhile, a cancellation) comes after the value was handed. */
        return gen_switch(g, cw, NULL);
    }
    /* Nobody waits (the consumer was cancelled or timed out while fn ran):
     * keep the value for the next coro_gen_next. */
    sync_copy_elem(g->pending, elem, g->elem_size);
    g->has_pending = 1;
    return gen_switch(g, NULL, NULL);
}

int coro_gen_next(coro_gen_t *g, void *elem)
{
    if (!g || !elem) {
        errno = EINVAL;
        return -1;
    }
    if (__builtin_expect(g->home != coro__serial(), 0)) {
        /* Another thread's generator (its producer is there), or one whose
         * scheduler has ended: never ours to run. */
        errno = EPERM;
        return -1;
    }
    if (g->cw) { /* someone is inside next already */
        coro_t *self = coro__current();
        errno = !self ? EPERM : self == g->producer ? EDEADLK : EBUSY;
        return -1;
    }
    if (coro__checkpoint() != 0) /* EPERM outside a coroutine */
        return -1;
    /* fn asking its own generator for a value (only possible while the
     * producer is not parked waiting for a next). */
    if (!g->pw && coro__current() == g->producer) {
        errno = EDEADLK;
        return -1;
    }
    if (g->has_pending) {
        g->has_pending = 0;
        sync_copy_elem(elem, g->pending, g->elem_size);
        return 0;
    }
    if (g->finished || g->freeing) {
        errno = ENOENT;
        return -1;
    }
    /* If the producer is not parked waiting for us, it is busy (in a sleep
     * of its own, say, after an earlier next gave up) or has not run yet:
     * its yield finds our waiter. */
    coro__waiter_t *pw = g->pw;
    g->pw = NULL;
    return gen_switch(g, pw, elem);
}

int coro_gen_status(const coro_gen_t *g)
{
    if (!g) {
        errno = EINVAL;
        return -1;
    }
    if (g->home != coro__serial() && coro__sched_serial_alive(g->home)) {
        errno = EPERM;
        return -1;
    }
    return g->finished ? g->status : -1;
}

void coro_gen_free(coro_gen_t *g)
{
    if (!g)
        return;
    if (g->home != coro__serial()) {
        if (coro__sched_serial_alive(g->home)) {
            /* Its producer runs on another thread's scheduler. */
            fprintf(stderr, "coro: coro_gen_free(%p): the generator belongs to a scheduler "
                            "running on another thread; not freed\n", (void *)g);
            errno = EPERM;
            return;
        }
        /* Its scheduler has ended: every coroutine (the producer too) has
         * ended and been freed with it. */
        free(g);
        return;
    }
    coro_t *self = coro__current();
    if (!self) {
        free(g); /* cannot happen: g's scheduler runs on this thread */
        return;
    }
    g->freeing = 1;
    g->has_pending = 0;
    /* Let go of a consumer still inside next: it must never touch g again.
     * One still parked there ends now with ENOENT (no value will come);
     * one already woken (cancel, deadline) but not yet run sees w.data
     * cleared and leaves g alone. */
    coro__waiter_t *cw = g->cw;
    if (cw) {
        g->cw = NULL;
        cw->data = NULL;
        if (coro__can_wake(cw))
            coro__wake(cw, ENOENT);
    }
    if (self == g->producer) {
        /* fn frees its own generator: its later yields fail, and g goes
         * when fn returns (gen_body frees it). Nobody joins the producer. */
        g->free_on_exit = 1;
        coro_detach(self);
        return;
    }
    if (!g->finished) {
        /* Its pending or next yield fails with ECANCELED. A producer parked
         * waiting for a next is woken even if fn shielded itself. */
        coro_cancel(g->producer);
        coro__waiter_t *pw = g->pw;
        if (pw) {
            g->pw = NULL;
            if (coro__can_wake(pw)) /* the cancel above may have woken it */
                coro__wake(pw, ECANCELED);
        }
    }
    /* Wait for fn to return even if the caller is cancelled or past its
     * deadline: the producer still uses g. */
    if (coro__join(g->producer, NULL, CORO__PARK_UNINTERRUPTIBLE) != 0) {
        /* Only when the caller is being killed by a deadlock unwind
         * (which overrides shields): let the producer go on its own and
         * wait for fn to return. */
        coro_detach(g->producer);
        while (!g->finished)
            coro_yield();
    }
    free(g);
}
