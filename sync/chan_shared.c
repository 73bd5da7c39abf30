/* sync/chan_shared.c: shared channels, usable from every scheduler of a
 * run, from other schedulers and from plain threads (coro_chan_new_shared).
 *
 * The same ring and the same two FIFOs of waiters as a scheduler's own
 * channel (sync/chan.c), behind a mutex, with waiters that another thread
 * may complete: each is a node on its owner's stack pointing at the
 * owner's cross-thread wait (coro__xwait_t, sched/wait.h). A peer that
 * finds a waiter first wins the wait's claim (a compare-and-swap: the
 * owner's cancellation or deadline, or a peer on another channel of the
 * same select, may be racing for it), hands the item over under the
 * channel's lock, and wakes the owner after unlocking; a node whose claim
 * is lost is stale and dropped. So, as with a local channel, a hand-off
 * is complete before its waiter is woken, and a waiter that was
 * completed returns 0 even if it was cancelled meanwhile.
 *
 * A select that has a shared case locks every shared channel of its
 * cases in address order (so two selects can never wait for each other's
 * locks), looks for a ready case, and otherwise links one waiter per case:
 * nodes on the shared channels, and on the local ones ordinary waiters
 * carrying the wait's claim word, which local peers must win too.
 *
 * Memory: a channel freed while waiters are still linked stays allocated
 * until the last of them has unlinked (refs); its handle is dead at once
 * (the magic is overwritten), so a later call aborts with a message.
 *
 * Deadlock detection in a run (sched/run.c) counts a wait on a shared
 * channel as a plain wait, unless something outside the run may complete
 * it: then it is an external wait, never called deadlocked. "Outside" is a
 * channel made outside a coroutine of a run (by main() before the run,
 * say), or ever used by a plain thread, a lone scheduler or another run. */
#include "sync/chan_int.h"
#include "sched/sched.h"
#include "coro/fault.h"
#include "sched/wait.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

char coro__chan_shared_home;

struct chan_shared {
    pthread_mutex_t lock;
    /* One for the handle (until coro_chan_free), one per linked waiter. */
    int refs;
    /* The first run that used the channel, and whether anything outside
     * it has (see the top of the file). */
    const void *run;
    int outsiders;
};

/* A waiter in a shared channel's queue. */
typedef struct xnode {
    coro_list_t node;
    coro__xwait_t *x;
    void *elem;     /* what it sends, or where it receives */
    int index;      /* its case (0 for a plain send or receive) */
} xnode_t;

/* Cases whose waiters fit on the stack; more are allocated. */
#define SHARED_STACK_CASES 16

coro_chan_t *coro_chan_new_shared(size_t elem_size, size_t capacity)
{
    coro_chan_t *ch = coro__chan_alloc(elem_size, capacity, CHAN_SHARED_HOME);
    struct chan_shared *sh = ch ? coro__malloc(sizeof *sh) : NULL;
    if (!sh) {
        free(ch);
        return NULL;
    }
    pthread_mutex_init(&sh->lock, NULL);
    sh->refs = 1;
    sh->run = coro__xwait_run();
    sh->outsiders = sh->run == NULL || !coro_self();
    ch->sh = sh;
    return ch;
}

/* ---- locking, users, references -------------------------------------------- */

static void lock(coro_chan_t *ch)
{
    pthread_mutex_lock(&ch->sh->lock);
}

static void unlock(coro_chan_t *ch)
{
    pthread_mutex_unlock(&ch->sh->lock);
}

/* Under the lock: note who uses the channel. */
static void note_user(coro_chan_t *ch)
{
    struct chan_shared *sh = ch->sh;
    if (sh->outsiders)
        return;
    const void *run = coro__xwait_run();
    if (!run || !coro_self() || run != sh->run)
        sh->outsiders = 1;
}

static void destroy(coro_chan_t *ch)
{
    pthread_mutex_destroy(&ch->sh->lock);
    free(ch->sh);
    free(ch);
}

/* Drop a reference taken under the lock (called with it held); returns
 * 1 if the caller must destroy the channel once it has unlocked. */
static int unref(coro_chan_t *ch)
{
    return --ch->sh->refs == 0;
}

/* ---- waiters -------------------------------------------------------------- */

/* The first waiter of q whose claim the caller wins, unlinked; stale
 * ones on the way are dropped. NULL if none. */
static xnode_t *claim_first(coro_list_t *q)
{
    coro_list_t *n;
    while ((n = q->next) != q) {
        xnode_t *w = coro_container_of(n, xnode_t, node);
        coro_list_remove(n);
        if (coro__xwait_claim(w->x))
            return w;
    }
    return NULL;
}

/* Is there a waiter in q that nobody has claimed yet? (A hint: its claim
 * may still be lost to its owner before the caller tries.) */
static int any_unclaimed(const coro_list_t *q)
{
    for (const coro_list_t *n = q->next; n != q; n = n->next) {
        const xnode_t *w = coro_container_of(n, xnode_t, node);
        if (!__atomic_load_n(&w->x->claimed, __ATOMIC_ACQUIRE))
            return 1;
    }
    return 0;
}

/* Record the outcome on a claimed waiter (it is woken by deliver). */
static void fire(xnode_t *w, int result)
{
    w->x->fired = w->index;
    w->x->result = result;
}

/* Claimed waiters wait on a local list until the lock is released. */
static void claim_all(coro_list_t *q, int result, coro_list_t *todo)
{
    xnode_t *w;
    while ((w = claim_first(q)) != NULL) {
        fire(w, result);
        coro_list_push_back(todo, &w->node);
    }
}

static void deliver_all(coro_list_t *todo)
{
    coro_list_t *n;
    while ((n = coro_list_first(todo)) != NULL) {
        xnode_t *w = coro_container_of(n, xnode_t, node);
        coro_list_remove(n);
        coro__xwait_deliver(w->x); /* w may be gone after this */
    }
}

/* Send elem now, under the lock, if it can go: to a claimed receiver
 * (returned, to be delivered after unlocking) or into the ring. 1 if
 * sent. */
static int try_send_locked(coro_chan_t *ch, const void *elem, xnode_t **to_deliver)
{
    xnode_t *r = claim_first(&ch->recvq);
    if (r) {
        sync_copy_elem(r->elem, elem, ch->elem_size);
        fire(r, 0);
        *to_deliver = r;
        return 1;
    }
    if (ch->len < ch->cap) {
        ring_put(ch, elem);
        return 1;
    }
    return 0;
}

/* Receive into elem now, under the lock, if an item is there: from the
 * ring (refilled from a claimed sender) or from a claimed sender. */
static int try_recv_locked(coro_chan_t *ch, void *elem, xnode_t **to_deliver)
{
    if (ch->len) {
        ring_take(ch, elem);
        xnode_t *s = claim_first(&ch->sendq);
        if (s) {
            ring_put(ch, s->elem);
            fire(s, 0);
            *to_deliver = s;
        }
        return 1;
    }
    xnode_t *s = claim_first(&ch->sendq);
    if (s) {
        sync_copy_elem(elem, s->elem, ch->elem_size);
        fire(s, 0);
        *to_deliver = s;
        return 1;
    }
    return 0;
}

/* Unlink a waiter's node from ch (if a peer has not already) and drop
 * its reference. */
static void release_node(coro_chan_t *ch, xnode_t *me)
{
    lock(ch);
    coro_list_remove(&me->node);
    int last = unref(ch);
    unlock(ch);
    if (last)
        destroy(ch);
}

static unsigned park_flags(const coro_chan_t *ch)
{
    return ch->sh->outsiders ? CORO__PARK_EXTERNAL : 0;
}

/* Called with the lock held, nothing ready: wait on q for a peer. */
static int wait_one(coro_chan_t *ch, coro_list_t *q, void *elem, const char *what)
{
    coro__xwait_t x;
    if (coro__xwait_init(&x) != 0) {
        unlock(ch);
        return -1;
    }
    xnode_t me = { .x = &x, .elem = elem, .index = 0 };
    coro_list_push_back(q, &me.node);
    ch->sh->refs++;
    unsigned flags = park_flags(ch);
    unlock(ch);
    int r = coro__xwait_park(&x, flags, what, ch);
    int e = errno;
    release_node(ch, &me);
    coro__xwait_fini(&x);
    if (r != 0) {
        errno = e;
        return -1;
    }
    if (x.result) {
        errno = x.result; /* closed (or freed) while waiting */
        return -1;
    }
    return 0;
}

/* ---- send, receive, close, free ------------------------------------------- */

int coro__chan_shared_send(coro_chan_t *ch, const void *elem, int block)
{
    if (block && coro_self() && coro__checkpoint() != 0)
        return -1;
    lock(ch);
    note_user(ch);
    if (ch->closed) {
        unlock(ch);
        errno = EPIPE;
        return -1;
    }
    xnode_t *r = NULL;
    if (try_send_locked(ch, elem, &r)) {
        unlock(ch);
        if (r)
            coro__xwait_deliver(r->x);
        return 0;
    }
    if (!block) {
        unlock(ch);
        errno = EAGAIN;
        return -1;
    }
    return wait_one(ch, &ch->sendq, (void *)(uintptr_t)elem, "chan send");
}

int coro__chan_shared_recv(coro_chan_t *ch, void *elem, int block)
{
    if (block && coro_self() && coro__checkpoint() != 0)
        return -1;
    lock(ch);
    note_user(ch);
    xnode_t *s = NULL;
    if (try_recv_locked(ch, elem, &s)) {
        unlock(ch);
        if (s)
            coro__xwait_deliver(s->x);
        return 0;
    }
    if (ch->closed || !block) {
        int e = ch->closed ? EPIPE : EAGAIN;
        unlock(ch);
        errno = e;
        return -1;
    }
    return wait_one(ch, &ch->recvq, elem, "chan recv");
}

/* Under the lock: close, and move every waiter to todo with EPIPE. */
static void close_locked(coro_chan_t *ch, coro_list_t *todo)
{
    ch->closed = 1;
    claim_all(&ch->recvq, EPIPE, todo);
    claim_all(&ch->sendq, EPIPE, todo);
}

int coro__chan_shared_close(coro_chan_t *ch)
{
    coro_list_t todo;
    coro_list_init(&todo);
    lock(ch);
    if (ch->closed) {
        unlock(ch);
        errno = EPIPE;
        return -1;
    }
    close_locked(ch, &todo);
    unlock(ch);
    deliver_all(&todo);
    return 0;
}

size_t coro__chan_shared_len(const coro_chan_t *ch)
{
    coro_chan_t *c = (coro_chan_t *)(uintptr_t)ch;
    lock(c);
    size_t n = c->len;
    unlock(c);
    return n;
}

size_t coro__chan_shared_waiting(coro_chan_t *ch)
{
    size_t n = 0;
    lock(ch);
    for (coro_list_t *l = ch->recvq.next; l != &ch->recvq; l = l->next)
        n++;
    for (coro_list_t *l = ch->sendq.next; l != &ch->sendq; l = l->next)
        n++;
    unlock(ch);
    return n;
}

void coro__chan_shared_free(coro_chan_t *ch)
{
    coro_list_t todo;
    coro_list_init(&todo);
    lock(ch);
    if (!ch->closed)
        close_locked(ch, &todo);
    /* volatile: see coro_chan_free in sync/chan.c. */
    *(volatile uint32_t *)&ch->magic = CHAN_MAGIC_DEAD;
    int last = unref(ch);
    unlock(ch);
    deliver_all(&todo);
    if (last)
        destroy(ch);
}

/* ---- select with shared cases ------------------------------------------------ */

/* The shared channels of the cases, each once, in address order. */
static int shared_set(coro_case_t *cases, int n, coro_chan_t **set)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        coro_chan_t *ch = cases[i].ch;
        if (!ch || !ch->sh)
            continue;
        int j = k;
        while (j > 0 && (uintptr_t)set[j - 1] > (uintptr_t)ch)
            j--;
        if (j > 0 && set[j - 1] == ch)
            continue; /* already in */
        memmove(&set[j + 1], &set[j], (size_t)(k - j) * sizeof *set);
        set[j] = ch;
        k++;
    }
    return k;
}

static void lock_set(coro_chan_t **set, int k)
{
    for (int i = 0; i < k; i++)
        lock(set[i]);
}

static void unlock_set(coro_chan_t **set, int k)
{
    for (int i = k - 1; i >= 0; i--)
        unlock(set[i]);
}

/* Could the case complete now (the shared channels locked)? */
static int case_ready(coro_case_t *c)
{
    coro_chan_t *ch = c->ch;
    if (!ch->sh)
        return coro__chan_case_ready(c);
    if (c->op == CORO_SEND)
        return ch->closed || ch->len < ch->cap || any_unclaimed(&ch->recvq);
    return ch->len || ch->closed || any_unclaimed(&ch->sendq);
}

/* Complete a ready case (the shared channels locked): 1, or 0 if a
 * shared case's waiter was claimed by someone else meanwhile (look
 * again). *to_deliver: a waiter to wake after unlocking. */
static int case_complete(coro_case_t *c, xnode_t **to_deliver)
{
    coro_chan_t *ch = c->ch;
    if (!ch->sh) {
        coro__chan_case_complete(c);
        return 1;
    }
    if (c->op == CORO_SEND) {
        if (ch->closed) {
            c->err = EPIPE;
            return 1;
        }
        return try_send_locked(ch, c->elem, to_deliver);
    }
    if (try_recv_locked(ch, c->elem, to_deliver))
        return 1;
    if (ch->closed) {
        c->err = EPIPE;
        return 1;
    }
    return 0;
}

/* Per case while the select waits: a node on a shared channel, or an
 * ordinary waiter on a local one. */
typedef union case_waiter {
    xnode_t node;
    coro__waiter_t w;
} case_waiter_t;

static int select_wait(coro_case_t *cases, int n, coro_chan_t **set, int k)
{
    case_waiter_t local[SHARED_STACK_CASES], *ws = local;
    if (n > SHARED_STACK_CASES && !(ws = coro__malloc((size_t)n * sizeof *ws))) {
        unlock_set(set, k);
        return -1;
    }
    coro__xwait_t x;
    if (coro__xwait_init(&x) != 0) {
        unlock_set(set, k);
        if (ws != local)
            free(ws);
        return -1;
    }
    unsigned flags = 0;
    for (int i = 0; i < n; i++) {
        coro_case_t *c = &cases[i];
        if (!c->ch)
            continue;
        if (!c->ch->sh) {
            coro__chan_case_link(c, &ws[i].w, &x.w, &x.claimed);
            continue;
        }
        xnode_t *node = &ws[i].node;
        node->x = &x;
        node->elem = c->elem;
        node->index = i;
        coro_list_push_back(c->op == CORO_SEND ? &c->ch->sendq : &c->ch->recvq, &node->node);
        c->ch->sh->refs++;
        flags |= park_flags(c->ch);
    }
    unlock_set(set, k);
    int r = coro__xwait_park(&x, flags, "select", cases);
    int e = errno;
    /* Unlink what is left: local waiters directly (this thread's own
     * channels), shared nodes under their channels' locks. */
    for (int i = 0; i < n; i++)
        if (cases[i].ch && !cases[i].ch->sh)
            coro_list_remove(&ws[i].w.node);
    for (int i = 0; i < n; i++)
        if (cases[i].ch && cases[i].ch->sh)
            release_node(cases[i].ch, &ws[i].node);
    int idx = -1, err = 0;
    if (r == 0) {
        coro__waiter_t *f = x.w.fired;
        if (f && f != &x.w) {
            /* A local case, completed on this thread. */
            idx = (int)((case_waiter_t *)(void *)f - ws);
            err = x.w.result;
        } else {
            idx = x.fired;
            err = x.result;
        }
    }
    coro__xwait_fini(&x);
    if (ws != local)
        free(ws);
    if (r != 0) {
        errno = e;
        return -1;
    }
    cases[idx].err = err;
    return idx;
}

/* The random choice among ready cases: coro_random (a simulation's seed
 * decides there; it never has shared channels anyway). */
static uint32_t below(uint32_t n)
{
    return (uint32_t)(((coro_random() >> 32) * (uint64_t)n) >> 32);
}

int coro__chan_select_shared(coro_case_t *cases, int n, int block)
{
    int in_coro = coro_self() != NULL;
    for (int i = 0; i < n; i++) {
        if (cases[i].ch && !cases[i].ch->sh && !in_coro) {
            errno = EPERM; /* a plain thread cannot wait on a local channel */
            return -1;
        }
    }
    coro_chan_t *stack_set[SHARED_STACK_CASES], **set = stack_set;
    if (n > SHARED_STACK_CASES && !(set = coro__malloc((size_t)n * sizeof *set)))
        return -1;
    int k = shared_set(cases, n, set);
    int ret;
    for (;;) {
        lock_set(set, k);
        for (int i = 0; i < k; i++)
            note_user(set[i]);
        int pick = -1;
        uint32_t ready = 0;
        for (int i = 0; i < n; i++) {
            if (!cases[i].ch || !case_ready(&cases[i]))
                continue;
            if (++ready == 1 || below(ready) == 0)
                pick = i;
        }
        if (pick >= 0) {
            if (block && in_coro && coro__checkpoint() != 0) {
                unlock_set(set, k);
                ret = -1;
                break;
            }
            xnode_t *d = NULL;
            if (!case_complete(&cases[pick], &d)) {
                unlock_set(set, k); /* its waiter went elsewhere: look again */
                continue;
            }
            unlock_set(set, k);
            if (d)
                coro__xwait_deliver(d->x);
            ret = pick;
            break;
        }
        if (!block) {
            unlock_set(set, k);
            errno = EAGAIN;
            ret = -1;
            break;
        }
        ret = select_wait(cases, n, set, k); /* unlocks */
        break;
    }
    if (set != stack_set) {
        int e = errno;
        free(set);
        errno = e;
    }
    return ret;
}
