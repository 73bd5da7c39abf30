/* sched/remote.c: a coroutine of one scheduler of a run acting on another
 * scheduler: coro_spawn_on, and coro_join, coro_cancel and coro_detach of
 * another scheduler's coroutine.
 *
 * A coroutine's state belongs to its own scheduler's thread, so nothing
 * here touches it from the caller's thread: each operation is a message
 * (a "remote call") posted to the coroutine's scheduler, which does the
 * work there and, when the caller waits for an answer, posts the message
 * back. At any moment the message belongs to exactly one thread: the one
 * whose queue it is in or that is running it (the queue's mutex hands it
 * over), so its fields need no atomics.
 *
 * The caller parks on a waiter while its call is away. If it stops
 * waiting first (a cancellation or deadline ends a join; a deadlock's
 * unwind ends any wait), the answer still comes back, and is then
 * "orphaned": undone as the operation requires (a coroutine spawned for
 * nobody is detached; a join that nobody collects leaves the coroutine
 * joinable).
 *
 * A cross-scheduler join, step by step (c runs on scheduler B, the
 * joiner on A):
 *   A: JOIN to B, park;
 *   B: c becomes "being joined" by the call (c->remote_joiner); when c
 *      has ended (now or later) the call goes back to A with its status;
 *   A: the joiner wakes with the status and sends FREE back to B, which
 *      frees c; or, if the joiner left meanwhile, KEEP: c stays ended and
 *      joinable.
 * A joiner that leaves before c ends also sends WITHDRAW (a message of
 * its own, naming the call by number), so c is joinable again at once;
 * B answers it only if it still holds the call (otherwise the call is
 * already on its way back, and may even have been freed). */
#include "sched/sched_int.h"
#include "coro/fault.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct coro__remote_call {
    coro__post_t post;       /* first: the post is the call */
    coro__sched_t *from, *to;
    /* A join held by c on the target: on to->remote_held, and a number
     * no other call of the process has (for WITHDRAW, which must not
     * touch a call that may have been freed). */
    coro_list_t held;
    uint64_t id;
    /* The caller's waiter while it waits for the answer; NULL once it
     * has stopped waiting. */
    coro__waiter_t *waiter;
    int replied;
    /* What the call is about, and the answer. */
    coro_t *c;
    coro_fn fn;
    void *arg;
    /* coro_spawn_on_opts: the options, the name copied (the caller may be
     * gone by the time the target reads them: a deadlock's unwind). */
    coro_opts_t opts;
    int has_opts;
    int status;
    int err;
    /* What an orphaned answer does (on the caller's scheduler). */
    void (*orphaned)(struct coro__remote_call *rc);
    /* coro_dump's descriptor; coro_stats' answer. */
    int fd;
    coro_stats_t stats;
} remote_call_t;

static uint64_t call_ids;

static remote_call_t *call_new(coro__sched_t *from, coro__sched_t *to, coro_t *c)
{
    remote_call_t *rc = coro__calloc(1, sizeof *rc);
    if (rc) {
        rc->from = from;
        rc->to = to;
        rc->c = c;
        coro_list_init(&rc->held);
        rc->id = __atomic_add_fetch(&call_ids, 1, __ATOMIC_RELAXED);
    }
    return rc;
}

static void send_to(remote_call_t *rc, coro__sched_t *to, void (*fn)(coro__post_t *))
{
    rc->post.fn = fn;
    coro__run_post(to, &rc->post);
}

static void free_call(coro__post_t *m)
{
    free(m);
}

/* On the caller's scheduler: the answer is back. */
static void answered(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    rc->replied = 1;
    if (!rc->waiter)
        rc->orphaned(rc);
    else if (coro__can_wake(rc->waiter))
        coro__wake(rc->waiter, 0);
    /* else: the caller was woken for another reason and has not run yet;
     * it sees replied and orphans the answer itself. */
}

/* On the target: send the call back to its caller. */
static void answer(remote_call_t *rc)
{
    send_to(rc, rc->from, answered);
}

/* Post rc to its target (at_target runs there) and wait for the answer.
 * 0 once it is back. -1 with errno when the wait ended first: then, if
 * the answer was already back, it has been orphaned (rc may be gone) and
 * *away is 0; otherwise *away is 1 and the answer will be orphaned when
 * it comes. */
static int call(remote_call_t *rc, void (*at_target)(coro__post_t *), unsigned flags,
                const char *what, int *away)
{
    coro__waiter_t w;
    coro_list_init(&w.node);
    rc->waiter = &w;
    /* rc is the target's from the send until it comes back: read first. */
    coro_t *c = rc->c;
    int64_t num = c ? (int64_t)c->fiber.id : (int64_t)rc->to->run_index;
    send_to(rc, rc->to, at_target);
    if (coro__park(&w, flags, CORO_NEVER, what, c, num) == 0) {
        rc->waiter = NULL;
        return 0;
    }
    int e = errno;
    rc->waiter = NULL;
    *away = !rc->replied;
    if (rc->replied)
        rc->orphaned(rc);
    errno = e;
    return -1;
}

/* ---- spawn_on ------------------------------------------------------------ */

static void spawn_at_target(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    rc->c = coro__spawn(rc->to, rc->fn, rc->arg, rc->has_opts ? &rc->opts : NULL);
    rc->err = rc->c ? 0 : errno;
    free((char *)(uintptr_t)rc->opts.name); /* coro__spawn made its own copy */
    rc->opts.name = NULL;
    answer(rc);
}

static void detach_at_target(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    if (coro__valid(rc->to, rc->c))
        coro__detach_local(rc->to, rc->c);
    free(rc);
}

/* A coroutine was spawned for a caller that is gone: nobody will join it. */
static void spawn_orphaned(remote_call_t *rc)
{
    if (rc->c)
        send_to(rc, rc->to, detach_at_target);
    else
        free(rc);
}

coro_t *coro_spawn_on(int index, coro_fn fn, void *arg)
{
    return coro_spawn_on_opts(index, fn, arg, NULL);
}

coro_t *coro_spawn_on_opts(int index, coro_fn fn, void *arg, const coro_opts_t *opts)
{
    coro__sched_t *s = coro__tls;
    if (!s || !s->current) {
        errno = EPERM;
        return NULL;
    }
    coro__sched_t *to = coro__run_sched(s, index);
    if (!to || !fn) {
        errno = EINVAL;
        return NULL;
    }
    if (to == s)
        return coro__spawn(s, fn, arg, opts);
    remote_call_t *rc = call_new(s, to, NULL);
    if (!rc)
        return NULL;
    rc->fn = fn;
    rc->arg = arg;
    if (opts) {
        rc->opts = *opts;
        rc->has_opts = 1;
        if (opts->name && !(rc->opts.name = coro__strdup(opts->name))) {
            free(rc);
            return NULL;
        }
    }
    rc->orphaned = spawn_orphaned;
    /* Not a checkpoint, as coro_spawn is not: only a deadlock's unwind
     * ends the wait early. */
    int away;
    if (call(rc, spawn_at_target, CORO__PARK_UNINTERRUPTIBLE, "spawn on scheduler", &away) != 0)
        return NULL;
    coro_t *c = rc->c;
    int e = rc->err;
    free(rc);
    if (!c)
        errno = e;
    return c;
}

/* ---- join ------------------------------------------------------------------ */

static void join_at_target(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    coro_t *c = rc->c;
    if (!coro__valid(rc->to, c) || !coro__joinable(c)) {
        rc->err = EINVAL;
        answer(rc);
        return;
    }
    c->remote_joiner = rc;
    c->end_more = 1;
    if (c->state == CORO_DONE) {
        coro__remote_joined_end(rc->to, c);
        return;
    }
    /* Until c ends (coro_exit calls coro__remote_joined_end). */
    coro_list_push_back(&rc->to->remote_held, &rc->held);
}

void coro__remote_joined_end(coro__sched_t *s, coro_t *c)
{
    (void)s;
    remote_call_t *rc = c->remote_joiner;
    coro_list_remove(&rc->held);
    rc->status = c->status;
    rc->err = 0;
    answer(rc);
}

static void free_at_target(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    rc->c->remote_joiner = NULL;
    coro__free_coro(rc->to, rc->c);
    free(rc);
}

static void keep_at_target(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    rc->c->remote_joiner = NULL;
    free(rc);
}

static void join_orphaned(remote_call_t *rc)
{
    if (rc->err)
        free(rc); /* refused, or withdrawn: c was never held for it */
    else
        send_to(rc, rc->to, keep_at_target); /* c was held: let it go */
}

/* A joiner that stopped waiting asks for its call back before c ends. */
typedef struct withdraw {
    coro__post_t post;
    uint64_t id;
} withdraw_t;

static void withdraw_at_target(coro__post_t *m)
{
    withdraw_t *wd = (withdraw_t *)m;
    coro__sched_t *s = coro__tls;
    /* Only a call still held here is touched: one that was refused, or
     * whose c has ended, is on its way back (and may be freed by now). */
    for (coro_list_t *n = s->remote_held.next; n != &s->remote_held; n = n->next) {
        remote_call_t *rc = coro_container_of(n, remote_call_t, held);
        if (rc->id == wd->id) {
            coro_list_remove(&rc->held);
            rc->c->remote_joiner = NULL;
            rc->err = ECANCELED;
            answer(rc);
            break;
        }
    }
    free(wd);
}

int coro__remote_join(coro__sched_t *s, coro_t *c, int *status, unsigned flags)
{
    if (!(flags & CORO__PARK_UNINTERRUPTIBLE) && coro__checkpoint() != 0)
        return -1;
    remote_call_t *rc = call_new(s, c->sched, c);
    if (!rc)
        return -1;
    rc->orphaned = join_orphaned;
    int away;
    if (call(rc, join_at_target, flags, "join coroutine", &away) != 0) {
        if (away) {
            /* So that c is joinable again before it ends. Without the
             * memory for it, c stays "being joined" until it ends. */
            int e = errno;
            withdraw_t *wd = malloc(sizeof *wd);
            if (wd) {
                wd->id = rc->id;
                wd->post.fn = withdraw_at_target;
                coro__run_post(rc->to, &wd->post);
            }
            errno = e;
        }
        return -1;
    }
    int e = rc->err;
    if (e) {
        free(rc);
        errno = e;
        return -1;
    }
    if (status)
        *status = rc->status;
    send_to(rc, rc->to, free_at_target);
    return 0;
}

/* ---- cancel and detach: no answer ------------------------------------------ */

static void cancel_at_target(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    if (coro__valid(rc->to, rc->c))
        coro__cancel_local(rc->c);
    free_call(m);
}

int coro__remote_cancel(coro__sched_t *s, coro_t *c)
{
    remote_call_t *rc = call_new(s, c->sched, c);
    if (!rc)
        return -1;
    send_to(rc, rc->to, cancel_at_target);
    return 0;
}

void coro__remote_detach(coro__sched_t *s, coro_t *c)
{
    remote_call_t *rc = call_new(s, c->sched, c);
    if (rc)
        send_to(rc, rc->to, detach_at_target);
}

/* ---- dump and stats of the whole run ------------------------------------------ */

static void free_orphan(remote_call_t *rc)
{
    free(rc);
}

static void dump_at_target(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    char head[64];
    snprintf(head, sizeof head, "coro: scheduler %d of %d:", rc->to->run_index,
             coro__thread_count_of(rc->to));
    coro__dump_to(rc->to, rc->fd, head);
    answer(rc);
}

static void stats_at_target(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    coro__stats_of(rc->to, &rc->stats);
    answer(rc);
}

/* A question for scheduler `to`, answered by at_target there: the caller
 * waits, uninterruptibly (only a deadlock's unwind ends it). Returns the
 * answered call (the caller reads it, then frees it), or NULL with errno. */
static remote_call_t *ask(coro__sched_t *s, coro__sched_t *to, int fd,
                          void (*at_target)(coro__post_t *), const char *what)
{
    remote_call_t *rc = call_new(s, to, NULL);
    if (!rc)
        return NULL;
    rc->fd = fd;
    rc->orphaned = free_orphan;
    int away;
    if (call(rc, at_target, CORO__PARK_UNINTERRUPTIBLE, what, &away) != 0)
        return NULL;
    return rc;
}

int coro__remote_dump(coro__sched_t *s, coro__sched_t *to, int fd)
{
    remote_call_t *rc = ask(s, to, fd, dump_at_target, "dump of scheduler");
    free(rc);
    return rc ? 0 : -1;
}

int coro__remote_stats(coro__sched_t *s, coro__sched_t *to, coro_stats_t *out)
{
    remote_call_t *rc = ask(s, to, -1, stats_at_target, "stats of scheduler");
    if (!rc)
        return -1;
    *out = rc->stats;
    free(rc);
    return 0;
}

/* ---- closing another scheduler's descriptor ------------------------------------ */

static void forget_at_target(coro__post_t *m)
{
    remote_call_t *rc = (remote_call_t *)m;
    coro__fd_forget_in(rc->to, rc->fd);
    answer(rc);
}

int coro__remote_fd_forget(coro__sched_t *s, coro__sched_t *to, int fd)
{
    remote_call_t *rc = ask(s, to, fd, forget_at_target, "close on scheduler");
    free(rc);
    return rc ? 0 : -1;
}
