/* sched/run.c: a run of several schedulers, one per thread: coro_main_opts
 * with threads >= 2.
 *
 * Thread per core, no migration: each scheduler is the plain one of
 * sched/sched.c, with its own coroutines, timers, poller and stacks; the
 * caller's thread is index 0 and threads 1..n-1 are started here. Every
 * scheduler is made before any runs fn, so coro_spawn_on never meets one
 * that does not exist yet. The schedulers talk only through their post
 * queues (sched/post.c): a coroutine asks another scheduler for something
 * (sched/remote.c) by posting a message that runs there.
 *
 * WHEN A RUN ENDS, AND WHEN IT IS DEADLOCKED. A lone scheduler ends when
 * its last coroutine does, and is deadlocked when nothing is ready, no
 * timer is armed and nothing waits on the poller. In a run neither can be
 * judged alone: a scheduler with no coroutine may still be given one
 * (coro_spawn_on), and a coroutine parked in a cross-scheduler join may
 * be woken by another thread. So a scheduler that finds nothing of its
 * own to do is "quiet" (coro__run_idle, under the run's lock) and sleeps
 * in its poller until a post comes (a post is the only way one scheduler
 * gives another work). When the last scheduler goes quiet and every post
 * queue is empty, nothing can ever change again: with no coroutine left anywhere the run has ended; otherwise it
 * is deadlocked, and every scheduler's coroutines are dumped (each under
 * its scheduler's index) and then cancelled, shields overridden, as a
 * lone scheduler's are. A scheduler that takes posts goes busy again
 * before it takes them off its queue, so empty queues never hide a post
 * whose work is still to be done (and a poster is busy when it posts). Posts from other threads
 * (the blocking pool) do not count: a coroutine waiting for one is a
 * poller waiter, and its scheduler is never quiet. */
#include "sched/sched_int.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct coro__run {
    int n;
    coro_fn fn;
    void *arg;
    coro_main_opts_t opts;
    /* The schedulers, by index: all set before any runs fn. */
    coro__sched_t **scheds;
    /* What each scheduler's run returned, and its errno. */
    int *status;
    int *err;
    pthread_mutex_t lock;
    pthread_cond_t made;
    /* Start: schedulers made (or failed) so far; the first failure. */
    int arrived;
    int make_errno;
    /* Under lock: schedulers quiet now; the verdicts. */
    int quiet;
    int ended;
    uint64_t verdicts; /* deadlock verdicts so far */
};

typedef struct member {
    coro__run_t *run;
    int index;
} member_t;

/* ---- quiet, busy, verdicts ----------------------------------------------- */

static void wake_others(coro__run_t *r, const coro__sched_t *self)
{
    for (int i = 0; i < r->n; i++)
        if (r->scheds[i] != self)
            coro__poller_notify(r->scheds[i]->poller);
}

static void dump_run(coro__run_t *r, size_t live)
{
    dprintf(STDERR_FILENO,
            "coro: deadlock: all %zu coroutines of the %d schedulers of the run are blocked "
            "and nothing can wake them\n", live, r->n);
    for (int i = 0; i < r->n; i++) {
        char head[64];
        snprintf(head, sizeof head, "coro: scheduler %d of %d:", i, r->n);
        coro__dump_to(r->scheds[i], STDERR_FILENO, head);
    }
}

int coro__run_idle(coro__sched_t *s)
{
    coro__run_t *r = s->run;
    pthread_mutex_lock(&r->lock);
    if (r->ended) {
        pthread_mutex_unlock(&r->lock);
        return 1;
    }
    if (s->verdicts_seen != r->verdicts) {
        /* Another scheduler found the run deadlocked: unwind here too. */
        s->verdicts_seen = r->verdicts;
        pthread_mutex_unlock(&r->lock);
        coro__kill_all(s);
        return -1;
    }
    if (!s->quiet) {
        s->quiet = 1;
        r->quiet++;
    }
    /* Every one quiet with an empty post queue: a quiet scheduler turns
     * busy before it takes its posts, so nothing is on its way. */
    int decide = r->quiet == r->n;
    for (int i = 0; decide && i < r->n; i++)
        decide = r->scheds[i]->verdicts_seen == r->verdicts && /* the last one is applied */
                 !__atomic_load_n(&r->scheds[i]->posts, __ATOMIC_ACQUIRE);
    if (!decide) {
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    /* Every scheduler is quiet and nothing is in flight: none can change
     * now, so their state may be read from here. */
    size_t live = 0;
    for (int i = 0; i < r->n; i++)
        live += r->scheds[i]->live;
    if (live == 0) {
        r->ended = 1;
        wake_others(r, s);
        pthread_mutex_unlock(&r->lock);
        return 1;
    }
    dump_run(r, live);
    r->verdicts++;
    s->verdicts_seen = r->verdicts;
    s->quiet = 0;
    r->quiet--;
    wake_others(r, s);
    pthread_mutex_unlock(&r->lock);
    coro__kill_all(s);
    return -1;
}

void coro__run_busy(coro__sched_t *s)
{
    coro__run_t *r = s->run;
    pthread_mutex_lock(&r->lock);
    if (s->quiet) {
        s->quiet = 0;
        r->quiet--;
    }
    pthread_mutex_unlock(&r->lock);
}

void coro__run_post(coro__sched_t *to, coro__post_t *m)
{
    coro__post_push(to, m);
}

coro__sched_t *coro__run_sched(const coro__sched_t *s, int index)
{
    if (!s->run)
        return index == 0 ? (coro__sched_t *)s : NULL;
    if (index < 0 || index >= s->run->n)
        return NULL;
    return s->run->scheds[index];
}

int coro_thread_index(void)
{
    coro__sched_t *s = coro__tls;
    if (!s)
        return -1;
    return s->run ? s->run_index : 0;
}

int coro__thread_count_of(const coro__sched_t *s)
{
    return s->run ? s->run->n : 1;
}

int coro_thread_count(void)
{
    coro__sched_t *s = coro__tls;
    return s ? coro__thread_count_of(s) : 0;
}

/* ---- starting and ending ------------------------------------------------- */

/* Make this thread's scheduler, wait until every member has made its own
 * (or one failed), then run fn to the end of the run. */
static void member_run(coro__run_t *r, int i)
{
    coro__sched_t *s = coro__sched_new(&r->opts);
    int e = s ? 0 : errno;
    if (s) {
        s->run = r;
        s->run_index = i;
        /* Posts must be able to wake it before anyone can post. */
        if (coro__post_prepare() != 0) {
            e = errno;
            coro__sched_free(s);
            s = NULL;
        }
    }
    pthread_mutex_lock(&r->lock);
    r->scheds[i] = s;
    if (!s && !r->make_errno)
        r->make_errno = e;
    if (++r->arrived == r->n)
        pthread_cond_broadcast(&r->made);
    while (r->arrived < r->n)
        pthread_cond_wait(&r->made, &r->lock);
    int failed = r->make_errno;
    pthread_mutex_unlock(&r->lock);
    if (failed) {
        if (s)
            coro__sched_free(s);
        r->status[i] = -1;
        r->err[i] = failed;
        return;
    }
    errno = 0;
    r->status[i] = coro__sched_run(s, r->fn, r->arg);
    r->err[i] = errno;
}

static void *member_thread(void *arg)
{
    member_t *m = arg;
    member_run(m->run, m->index);
    return NULL;
}

/* The signals the other threads of a run keep unblocked: those the
 * kernel sends to the thread that caused them. Every other signal is
 * blocked there, so a signal sent to the process goes to the caller's
 * thread (scheduler 0) as it did before the run. */
static void block_async_signals(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    int sync[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT };
    for (size_t k = 0; k < sizeof sync / sizeof sync[0]; k++)
        sigdelset(&all, sync[k]);
    pthread_sigmask(SIG_BLOCK, &all, old);
}

static void run_free(coro__run_t *r)
{
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->made);
    free(r->scheds);
    free(r->status);
    free(r->err);
    free(r);
}

int coro__run_main(coro_fn fn, void *arg, const coro_main_opts_t *o)
{
    if (coro__tls) {
        errno = EBUSY;
        return -1;
    }
    int n = o->threads;
    coro__run_t *r = calloc(1, sizeof *r);
    member_t *members = calloc((size_t)n, sizeof *members);
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    if (r) {
        r->scheds = calloc((size_t)n, sizeof *r->scheds);
        r->status = calloc((size_t)n, sizeof *r->status);
        r->err = calloc((size_t)n, sizeof *r->err);
    }
    if (!r || !members || !threads || !r->scheds || !r->status || !r->err) {
        if (r) {
            free(r->scheds);
            free(r->status);
            free(r->err);
        }
        free(r);
        free(members);
        free(threads);
        errno = ENOMEM;
        return -1;
    }
    r->n = n;
    r->fn = fn;
    r->arg = arg;
    r->opts = *o;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->made, NULL);

    sigset_t old;
    block_async_signals(&old);
    int started = 1, e = 0;
    for (int i = 1; i < n; i++) {
        members[i].run = r;
        members[i].index = i;
        if ((e = pthread_create(&threads[i], NULL, member_thread, &members[i])) != 0)
            break;
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < n) {
        /* The members started wait for all n: stand in for the missing
         * ones as failed, so they give up. */
        pthread_mutex_lock(&r->lock);
        if (!r->make_errno)
            r->make_errno = e;
        r->arrived += n - started;
        /* Index 0 has not arrived either: it is this thread, below. */
        pthread_mutex_unlock(&r->lock);
    }
    member_run(r, 0);
    for (int i = 1; i < started; i++)
        pthread_join(threads[i], NULL);

    int ret = 0, ret_errno = 0, deadlocked = 0;
    for (int i = 0; i < n; i++)
        if (r->status[i] == -1 && r->err[i] == EDEADLK)
            deadlocked = 1;
    if (started < n) {
        ret = -1;
        ret_errno = r->make_errno;
    } else if (deadlocked) {
        ret = -1;
        ret_errno = EDEADLK;
    } else {
        for (int i = 0; i < n; i++) {
            if (r->status[i] != 0) {
                ret = r->status[i];
                ret_errno = r->err[i];
                break;
            }
        }
    }
    free(members);
    free(threads);
    run_free(r);
    errno = ret_errno;
    return ret;
}
