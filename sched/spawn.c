/* sched/spawn.c: a coroutine's life: spawn, the entry trampoline that owns
 * its start and its end, join, detach, and freeing. */
#include "sched/sched_int.h"
#include "coro/fault.h"

#include <errno.h>
#include <stdlib.h>

int coro__valid(const coro__sched_t *s, const coro_t *c)
{
    return s && c && c->magic == CORO_MAGIC_LIVE && c->sched == s;
}

/* Why c is not a valid handle for the caller's scheduler s: EPERM for a
 * live coroutine of another scheduler (or any handle outside a
 * scheduler), EINVAL otherwise. */
static int invalid_errno(const coro__sched_t *s, const coro_t *c)
{
    if (!s)
        return EPERM;
    return c && c->magic == CORO_MAGIC_LIVE && c->sched != s ? EPERM : EINVAL;
}

/* The rest of an end, for a coroutine with end_more set: its own FP
 * environment, a join from another scheduler, a group, being detached or
 * the main coroutine. */
static __attribute__((noinline)) void end_more(coro__sched_t *s, coro_t *self, int status)
{
    if (self->fiber.own_fpenv)
        s->fpenv_live--;
    if (self->remote_joiner != NULL)
        coro__remote_joined_end(s, self);
    int reap = self->detached || self->is_main;
    if (self->group)
        reap = coro__group_child_done(self);
    if (self->is_main)
        s->main_status = status;
    if (reap) {
        /* Freed once we are off its stack: by the next end, spawn or the
         * scheduler's context. The one before is off its stack now. */
        if (s->reap)
            coro__reap(s);
        /* Dead to every handle and list from now on; only its stack waits
         * (coro__free_coro's unlinks are then no-ops). */
        coro_list_remove(&self->all_node);
        coro_list_remove(&self->group_node);
        self->magic = CORO_MAGIC_DEAD;
        s->reap = self;
    }
}

/* The current coroutine's body has returned with `status`: record it, tell
 * whoever waits, and name the fiber to switch to. Nothing can "fall off"
 * the end of a coroutine's stack: the trampoline owns the exit, and the
 * entry routine makes the last switch. */
static coro__fiber_t *coro_exit(coro__sched_t *s, coro_t *self, int status)
{
    self->status = status;
    self->state = CORO_DONE;
    s->live--;
    /* A joiner whose wait has ended otherwise (cancelled, not yet run)
     * clears self->joiner when it runs. */
    coro__waiter_t *w = self->joiner;
    if (w && coro__can_wake_linked(w))
        coro__wake(w, 0);
    if (__builtin_expect(self->end_more, 0))
        end_more(s, self, status);
    return coro__exit_next(s);
}

static coro__fiber_t *trampoline(coro__fiber_t *f)
{
    coro_t *self = (coro_t *)f;
    coro__sched_t *s = self->sched;
    return coro_exit(s, self, self->fn(self->arg));
}

/* coro__spawn's body; inline, so that coro_spawn's copy (no options)
 * keeps none of the options' tests. */
static inline __attribute__((always_inline)) coro_t *
spawn(coro__sched_t *s, coro_fn fn, void *arg, const coro_opts_t *opts)
{
    if (!fn || (opts && (opts->flags & ~CORO_OWN_FPENV))) {
        errno = EINVAL;
        return NULL;
    }
    /* The last ended coroutine's stack goes back to the pool first: a
     * loop of spawns of detached coroutines reuses one warm stack. */
    if (s->reap)
        coro__reap(s);
    size_t size = s->default_stack;
    if (opts && opts->stack_size && !(size = coro__stack_size_for(opts->stack_size)))
        return NULL;
    /* One heap slot per live coroutine, so parking never allocates. */
    if (s->live >= s->heap_cap && coro__timer_reserve(s, s->live + 1) != 0)
        return NULL;
    char *name = NULL;
    if (opts && opts->name && !(name = coro__strdup(opts->name)))
        return NULL;
    coro__fiber_t *f = coro__fiber_new(size, sizeof(coro_t), trampoline);
    if (!f) {
        free(name);
        errno = ENOMEM;
        return NULL;
    }
    coro_t *c = (coro_t *)f;
    f->id = coro__new_id();
    f->name = name;
    /* Every field that is read before it is written, explicitly: the
     * header is not zeroed. Not the wait's (wait, wait_what, wait_obj,
     * wait_num, wait_since: set by every park, read only while PARKED),
     * nor the timer's time and wake_at (set whenever timer_index is). */
    c->magic = CORO_MAGIC_LIVE;
    c->cancelled = c->shielded = c->killed = c->attn = 0;
    c->detached = c->is_main = c->group_held = c->end_more = 0;
    c->fn = fn;
    c->arg = arg;
    c->status = 0;
    c->sched = s;
    c->deadline = CORO_NEVER;
    c->timer_index = 0;
    c->group = NULL;
    c->remote_joiner = NULL;
    c->joiner = NULL;
    coro_list_init(&c->group_node);
    if (opts && (opts->flags & CORO_OWN_FPENV)) {
        coro__fiber_own_fpenv(f);
        c->end_more = 1;
        /* The pass ends now: its fast paths do not carry the environment
         * (see fpenv_live). */
        s->fpenv_live++;
        coro__pass_set(s, 0);
    }
    coro_list_push_back(&s->all, &c->all_node);
    s->live++;
    s->spawned++;
    coro__runq_push(s, c);
    return c;
}

coro_t *coro__spawn(coro__sched_t *s, coro_fn fn, void *arg, const coro_opts_t *opts)
{
    return spawn(s, fn, arg, opts);
}

void coro__free_coro(coro__sched_t *s, coro_t *c)
{
    /* The header goes with the stack: its nodes need not point at
     * themselves after. Only a coroutine with end_more can be in a group
     * (held by it, or in its lists). */
    if (c->end_more) {
        if (c->group_held)
            s->group_held--;
        coro_list_unlink(&c->group_node);
    }
    coro_list_unlink(&c->all_node);
    c->magic = CORO_MAGIC_DEAD;
    coro__fiber_free(&c->fiber);
}

coro_t *coro_spawn_opts(coro_fn fn, void *arg, const coro_opts_t *opts)
{
    coro__sched_t *s = coro__tls;
    if (!s) {
        errno = EPERM;
        return NULL;
    }
    return coro__spawn(s, fn, arg, opts);
}

coro_t *coro_spawn(coro_fn fn, void *arg)
{
    coro__sched_t *s = coro__tls;
    if (!s) {
        errno = EPERM;
        return NULL;
    }
    return spawn(s, fn, arg, NULL);
}

/* coro_join and coro__join: flags is a constant in each copy. */
static inline __attribute__((always_inline)) int join(coro_t *c, int *status, unsigned flags)
{
    coro__sched_t *s = coro__tls;
    coro_t *self = s ? s->current : NULL;
    if (!self) {
        errno = EPERM;
        return -1;
    }
    if (c == self) {
        errno = EDEADLK;
        return -1;
    }
    if (!coro__valid(s, c)) {
        /* Another scheduler's coroutine, in the caller's run: joined
         * there (sched/remote.c). */
        if (c && c->magic == CORO_MAGIC_LIVE && coro__same_run(s, c->sched))
            return coro__remote_join(s, c, status, flags);
        errno = invalid_errno(s, c);
        return -1;
    }
    if (!coro__joinable(c)) {
        errno = EINVAL;
        return -1;
    }
    if (c->state == CORO_DONE) {
        if (!(flags & CORO__PARK_UNINTERRUPTIBLE) && coro__checkpoint() != 0)
            return -1;
    } else {
        coro__waiter_t w;
        coro_list_init(&w.node);
        c->joiner = &w;
        /* coro__park checks the caller's checkpoint first. */
        if (coro__park(&w, flags, CORO_NEVER, "join coroutine", c, (int64_t)c->fiber.id) != 0) {
            c->joiner = NULL;
            return -1; /* c keeps running (or has ended) and stays joinable */
        }
    }
    if (status)
        *status = c->status;
    coro__free_coro(s, c);
    return 0;
}

int coro_join(coro_t *c, int *status)
{
    return join(c, status, 0);
}

int coro__join(coro_t *c, int *status, unsigned flags)
{
    if (flags & CORO__PARK_UNINTERRUPTIBLE)
        return join(c, status, CORO__PARK_UNINTERRUPTIBLE);
    return join(c, status, 0);
}

void coro_detach(coro_t *c)
{
    coro__sched_t *s = coro__tls;
    if (!coro__valid(s, c)) {
        if (c && c->magic == CORO_MAGIC_LIVE && coro__same_run(s, c->sched))
            coro__remote_detach(s, c);
        return;
    }
    coro__detach_local(s, c);
}

void coro__detach_local(coro__sched_t *s, coro_t *c)
{
    if (!coro__joinable(c))
        return;
    if (c->state == CORO_DONE) {
        coro__free_coro(s, c);
        return;
    }
    c->detached = 1;
    c->end_more = 1;
}

coro_t *coro_self(void)
{
    coro__sched_t *s = coro__tls;
    return s ? s->current : NULL;
}

uint64_t coro_id(const coro_t *c)
{
    return c ? c->fiber.id : 0;
}

const char *coro_name(const coro_t *c)
{
    return c && c->fiber.name ? c->fiber.name : "";
}
