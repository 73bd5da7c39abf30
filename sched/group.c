/* sched/group.c: task groups (structured concurrency). A group owns its
 * children: they cannot be joined or detached one by one, and no child
 * outlives the group: coro_group_wait and coro_group_free return only
 * after every child has ended, also when the waiter itself is cancelled or
 * times out (then the children are cancelled first).
 *
 * An ended child is kept (its stack and all) on the group's done list until
 * coro_group_next hands it out or coro_group_wait/free collect it, and is
 * counted in s->group_held meanwhile. A CORO_GROUP_REAP group keeps
 * nothing: its child is freed when it ends, as a detached coroutine is
 * (its stack a moment later: s->reap), and only its status can still matter (the
 * group's first failure). */
#include "sched/sched_int.h"
#include "coro/fault.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

struct coro_group {
    int flags;
    /* Children still running (coro.group_node). */
    coro_list_t children;
    /* Children that have ended and not yet been handed out by
     * coro_group_next, in completion order. */
    coro_list_t done;
    size_t nlive;
    /* The first non-zero status, in completion order. */
    int has_err;
    int first_err;
    /* Coroutines parked in coro_group_wait / coro_group_next. */
    coro_list_t waiters;
    /* The child coro_group_next returned last: freed at the next call. */
    coro_t *handed_out;
    /* The serial of the scheduler its children run on (0: none yet). */
    uint64_t home;
};

/* The thread boundary (sched/wait.h): 0 when g is the caller's (an unbound
 * g is bound to the caller's scheduler; one whose scheduler has ended is
 * taken over: its children ended and were freed with that scheduler), or
 * -1/EPERM when g belongs to another running scheduler. */
static int group_enter(coro_group_t *g)
{
    uint64_t me = coro__serial();
    if (__builtin_expect(g->home == me, 1))
        return 0;
    if (g->home && coro__sched_serial_alive(g->home)) {
        errno = EPERM;
        return -1;
    }
    if (g->home)
        g->handed_out = NULL; /* freed with its scheduler */
    g->home = me;
    return 0;
}

coro_group_t *coro_group_new(int flags)
{
    if (flags & ~(CORO_GROUP_COLLECT | CORO_GROUP_REAP)) {
        errno = EINVAL;
        return NULL;
    }
    coro_group_t *g = coro__calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->flags = flags;
    coro_list_init(&g->children);
    coro_list_init(&g->done);
    coro_list_init(&g->waiters);
    g->home = coro__serial();
    return g;
}

coro_t *coro_group_spawn_opts(coro_group_t *g, coro_fn fn, void *arg, const coro_opts_t *o)
{
    coro__sched_t *s = coro__tls;
    if (!g) {
        errno = EINVAL;
        return NULL;
    }
    if (!s) {
        errno = EPERM;
        return NULL;
    }
    if (group_enter(g) != 0)
        return NULL;
    coro_t *c = coro__spawn(s, fn, arg, o);
    if (!c)
        return NULL;
    c->group = g;
    c->end_more = 1;
    coro_list_push_back(&g->children, &c->group_node);
    g->nlive++;
    return c;
}

coro_t *coro_group_spawn(coro_group_t *g, coro_fn fn, void *arg)
{
    return coro_group_spawn_opts(g, fn, arg, NULL);
}

void coro_group_cancel(coro_group_t *g)
{
    if (!g || group_enter(g) != 0)
        return;
    for (coro_list_t *n = g->children.next; n != &g->children; n = n->next)
        coro_cancel(coro_container_of(n, coro_t, group_node));
}

int coro__group_child_done(coro_t *c)
{
    coro_group_t *g = c->group;
    int reap = (g->flags & CORO_GROUP_REAP) != 0;
    coro_list_remove(&c->group_node);
    if (!reap) {
        coro_list_push_back(&g->done, &c->group_node);
        c->group_held = 1;
        c->sched->group_held++;
    }
    g->nlive--;
    if (c->status != 0 && !g->has_err) {
        g->has_err = 1;
        g->first_err = c->status;
        if (!(g->flags & CORO_GROUP_COLLECT))
            coro_group_cancel(g);
    }
    coro__wake_all(&g->waiters, 0);
    return reap;
}

static void free_handed_out(coro_group_t *g)
{
    if (g->handed_out) {
        coro__free_coro(g->handed_out->sched, g->handed_out);
        g->handed_out = NULL;
    }
}

static void free_done(coro_group_t *g)
{
    free_handed_out(g);
    coro_list_t *n;
    while ((n = coro_list_first(&g->done)) != NULL) {
        coro_t *c = coro_container_of(n, coro_t, group_node);
        coro__free_coro(c->sched, c);
    }
}

/* Wait until no child runs, whatever happens to the waiter (an
 * uninterruptible wait). Only a deadlock unwind (which cancels every child
 * too) can make the park fail; then yield until the cancelled children
 * have ended. */
static void wait_all_ended(coro_group_t *g)
{
    while (g->nlive > 0) {
        coro__waiter_t w;
        coro_list_push_back(&g->waiters, &w.node);
        if (coro__park(&w, CORO__PARK_UNINTERRUPTIBLE, CORO_NEVER, "group drain", g, -1) != 0)
            coro_yield();
    }
}

int coro_group_wait(coro_group_t *g)
{
    coro_t *self = coro__current();
    if (!self) {
        errno = EPERM;
        return -1;
    }
    if (!g) {
        errno = EINVAL;
        return -1;
    }
    if (group_enter(g) != 0)
        return -1;
    int err = coro__checkpoint() != 0 ? errno : 0;
    while (!err && g->nlive > 0) {
        coro__waiter_t w;
        coro_list_push_back(&g->waiters, &w.node);
        if (coro__park(&w, 0, CORO_NEVER, "group wait", g, -1) != 0)
            err = errno;
    }
    if (err) {
        coro_group_cancel(g);
        wait_all_ended(g);
        free_done(g);
        errno = err;
        return -1;
    }
    free_done(g);
    /* errno 0 tells a child's own -1 from a failure of this call. */
    errno = 0;
    return g->has_err ? g->first_err : 0;
}

coro_t *coro_group_next(coro_group_t *g, int *status)
{
    if (!g || (g->flags & CORO_GROUP_REAP)) {
        errno = EINVAL;
        return NULL;
    }
    if (!coro__current() || group_enter(g) != 0) {
        errno = EPERM;
        return NULL;
    }
    free_handed_out(g);
    if (coro__checkpoint() != 0)
        return NULL;
    while (coro_list_empty(&g->done)) {
        if (g->nlive == 0) {
            errno = ENOENT;
            return NULL;
        }
        coro__waiter_t w;
        coro_list_push_back(&g->waiters, &w.node);
        if (coro__park(&w, 0, CORO_NEVER, "group next", g, -1) != 0)
            return NULL;
    }
    coro_t *c = coro_container_of(g->done.next, coro_t, group_node);
    coro_list_remove(&c->group_node);
    g->handed_out = c;
    if (status)
        *status = c->status;
    return c;
}

void coro_group_free(coro_group_t *g)
{
    if (!g)
        return;
    if (group_enter(g) != 0) {
        fprintf(stderr, "coro: coro_group_free(%p): the group belongs to a scheduler running "
                        "on another thread; not freed\n", (void *)g);
        errno = EPERM;
        return;
    }
    if (g->nlive > 0) {
        coro_t *self = coro__current();
        if (!self) {
            fprintf(stderr, "coro: coro_group_free outside a coroutine with %zu children "
                            "running; the group is not freed\n", g->nlive);
            return;
        }
        coro_group_cancel(g);
        wait_all_ended(g);
    }
    free_done(g);
    free(g);
}
