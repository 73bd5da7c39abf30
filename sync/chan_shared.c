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
#include "coro/fence.h"
#include "coro/spin.h"
#include "sync/xring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

char coro__chan_shared_home;

struct chan_shared {
    /* Read by every call. A buffered channel's items, lock-free (NULL for
     * an unbuffered one, whose calls all take the lock). */
    coro__xring_t *ring;
    /* The first run that used the channel, and whether anything outside
     * it has (see the top of the file; atomic, set once). */
    const void *run;
    int outsiders;
    /* Waiters linked in recvq and sendq: changed under the lock, read
     * without it by a ring's push or pop looking for someone to wake. */
    int nrecv, nsend;
    char pad[64]; /* the lock's line is written by every locked call */
    coro__spin_t lock; /* a few dozen instructions per section: coro/spin.h */
    /* One for the handle (until coro_chan_free), one per linked waiter. */
    int refs;
};

/* A ring channel's wake-up: "look again" (the waiter was not handed
 * anything; see ring_send). */
#define CHAN_RETRY (-1)

/* A waiter in a shared channel's queue. */
typedef struct xnode {
    coro_list_t node;
    coro__xwait_t *x;
    void *elem;     /* what it sends, or where it receives */
    int index;      /* its case (0 for a plain send or receive) */
    int linked;     /* under the lock: still in its queue (holding a ref) */
    int *count;     /* its queue's count (nrecv or nsend) */
} xnode_t;

/* Cases whose waiters fit on the stack; more are allocated. */
#define SHARED_STACK_CASES 16

coro_chan_t *coro_chan_new_shared(size_t elem_size, size_t capacity)
{
    /* The channel's own ring stays empty: a buffered shared channel keeps
     * its items in sh->ring. */
    coro_chan_t *ch = coro__chan_alloc(elem_size, 0, CHAN_SHARED_HOME);
    struct chan_shared *sh = ch ? coro__calloc(1, sizeof *sh) : NULL;
    coro__xring_t *ring = sh && capacity ? coro__malloc(sizeof *ring) : NULL;
    if (!sh || (capacity && (!ring || coro__xring_init(ring, capacity, elem_size) != 0))) {
        int e = errno;
        free(ring);
        free(sh);
        free(ch);
        errno = e;
        return NULL;
    }
    if (ring)
        coro__fence_setup(); /* before any thread can use the ring */
    ch->cap = capacity;
    sh->ring = ring;
    sh->lock = (coro__spin_t)CORO__SPIN_INIT;
    sh->refs = 1;
    sh->run = coro__xwait_run();
    sh->outsiders = sh->run == NULL || !coro_self();
    ch->sh = sh;
    return ch;
}

/* ---- locking, users, references -------------------------------------------- */

static void lock(coro_chan_t *ch)
{
    coro__spin_lock(&ch->sh->lock);
}

static void unlock(coro_chan_t *ch)
{
    coro__spin_unlock(&ch->sh->lock);
}

/* Note who uses the channel (any thread, no lock: outsiders only ever
 * goes from 0 to 1). */
static void note_user(coro_chan_t *ch)
{
    struct chan_shared *sh = ch->sh;
    if (__atomic_load_n(&sh->outsiders, __ATOMIC_RELAXED))
        return;
    const void *run = coro__xwait_run();
    if (!run || !coro_self() || run != sh->run)
        __atomic_store_n(&sh->outsiders, 1, __ATOMIC_RELAXED);
}

static void destroy(coro_chan_t *ch)
{
    if (ch->sh->ring) {
        coro__xring_fini(ch->sh->ring);
        free(ch->sh->ring);
    }
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
 * ones on the way are dropped. NULL if none. Each node taken off gives
 * up its reference here (the caller's own keeps the channel alive), so
 * the owner of a node completed through it need not lock the channel
 * again to leave (see leave). */
static xnode_t *claim_first(coro_chan_t *ch, coro_list_t *q)
{
    coro_list_t *n;
    while ((n = q->next) != q) {
        xnode_t *w = coro_container_of(n, xnode_t, node);
        coro__xwait_t *x = w->x;
        coro_list_remove(n);
        w->linked = 0;
        if (w->count)
            __atomic_store_n(w->count, *w->count - 1, __ATOMIC_RELAXED);
        ch->sh->refs--;
        if (coro__xwait_claim(x))
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
static void claim_all(coro_chan_t *ch, coro_list_t *q, int result, coro_list_t *todo)
{
    xnode_t *w;
    while ((w = claim_first(ch, q)) != NULL) {
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
    xnode_t *r = claim_first(ch, &ch->recvq);
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
        xnode_t *s = claim_first(ch, &ch->sendq);
        if (s) {
            ring_put(ch, s->elem);
            fire(s, 0);
            *to_deliver = s;
        }
        return 1;
    }
    xnode_t *s = claim_first(ch, &ch->sendq);
    if (s) {
        sync_copy_elem(elem, s->elem, ch->elem_size);
        fire(s, 0);
        *to_deliver = s;
        return 1;
    }
    return 0;
}

/* Link a waiter's node on q (under the lock); it holds a reference. */
static void link_node(coro_chan_t *ch, coro_list_t *q, xnode_t *me)
{
    struct chan_shared *sh = ch->sh;
    me->linked = 1;
    /* Only a ring's push and pop read the counts (an unbuffered
     * channel's peers find waiters under the lock): don't make the
     * line move for nothing. */
    me->count = !sh->ring ? NULL : q == &ch->recvq ? &sh->nrecv : &sh->nsend;
    coro_list_push_back(q, &me->node);
    if (me->count)
        __atomic_store_n(me->count, *me->count + 1, __ATOMIC_RELAXED);
    sh->refs++;
}

/* A waiter leaves ch: unlink its node if nobody has, and drop its
 * reference. Not for a node its wait was completed through: the peer
 * that claimed it unlinked it, and has finished with it by the time the
 * delivery arrives. Every other node takes the lock, even one a peer has
 * already dropped as stale: that peer may be between the unlink and its
 * (failing) claim, still reading the wait on this stack, and holds the
 * lock until it is done. */
static void leave(coro_chan_t *ch, xnode_t *me)
{
    lock(ch);
    int last = 0;
    if (me->linked) {
        coro_list_remove(&me->node);
        me->linked = 0;
        if (me->count)
            __atomic_store_n(me->count, *me->count - 1, __ATOMIC_RELAXED);
        last = unref(ch);
    }
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
    /* The node, then the wait's first fields, on one cache line: the peer
     * that completes the wait writes both, and the owner spins on the
     * wait, so a hand-off moves one line of the waiter's, not two. */
    struct {
        xnode_t me;
        coro__xwait_t x;
    } __attribute__((aligned(64))) w;
    if (coro__xwait_init(&w.x) != 0) {
        unlock(ch);
        return -1;
    }
    w.me = (xnode_t){ .x = &w.x, .elem = elem, .index = 0 };
    link_node(ch, q, &w.me);
    unsigned flags = park_flags(ch);
    unlock(ch);
    int r = coro__xwait_park(&w.x, flags, what, ch);
    int e = errno;
    if (r != 0)
        leave(ch, &w.me); /* else a peer completed the wait through me */
    coro__xwait_fini(&w.x);
    if (r != 0) {
        errno = e;
        return -1;
    }
    if (w.x.result) {
        errno = w.x.result; /* closed (or freed) while waiting */
        return -1;
    }
    return 0;
}

/* ---- buffered channels: the lock-free ring ---------------------------------
 *
 * Items go through sh->ring (sync/xring.h) without the lock; the lock
 * guards only the waiters. A waiter is not handed an item here: it is
 * woken to look again (CHAN_RETRY), as an event count's waiters are.
 * No wake-up is lost: a waiter links itself (its queue's count goes up),
 * then, after a full fence, takes a last look at the ring before it
 * parks; a push or pop, after a full fence, reads the other side's count
 * and wakes one waiter if it is not 0. The fences are asymmetric
 * (coro/fence.h): the waiter's, rare, is a membarrier; the push's and
 * pop's, on every call, a compiler barrier. Either the last look sees the
 * push (or pop), or the push sees the waiter. A woken waiter always looks
 * again, so a wake-up is never wasted on it; the one that may waste one,
 * a select woken here that completes another case, passes it on (see
 * pass_on). */

/* Can a send (op CORO_SEND) or receive on a ring channel go ahead now,
 * or fail at once because it is closed? */
static int ring_ready(const coro_chan_t *ch, int op)
{
    const coro__xring_t *r = ch->sh->ring;
    if (op == CORO_SEND)
        return coro__xring_has_room(r) || coro__xring_closed(r);
    return coro__xring_has_item(r) || coro__xring_closed(r);
}

/* A sender's look while it spins on a full ring: room for a few items,
 * not just one. A full ring has the sender's position right behind the
 * receiver's: sending into each slot as it frees would pass every cache
 * line of slots back and forth between the two cores, item by item. */
#define RING_SEND_BATCH 16

static int ring_can_send(const void *arg)
{
    const coro_chan_t *ch = arg;
    const coro__xring_t *r = ch->sh->ring;
    return coro__xring_has_room_for(r, RING_SEND_BATCH) || coro__xring_closed(r);
}

static int ring_can_recv(const void *ch)
{
    return ring_ready(ch, CORO_RECV);
}

/* After a push (wake a receiver) or a pop (wake a sender): the fence
 * pairs with ring_wait's. */
static void poke(coro_chan_t *ch, coro_list_t *q, int *count)
{
    coro__fence_light();
    if (!__atomic_load_n(count, __ATOMIC_RELAXED))
        return;
    lock(ch);
    xnode_t *w = claim_first(ch, q);
    if (w)
        fire(w, CHAN_RETRY);
    unlock(ch);
    if (w)
        coro__xwait_deliver(w->x); /* w may be gone after this */
}

static void poke_receivers(coro_chan_t *ch)
{
    poke(ch, &ch->recvq, &ch->sh->nrecv);
}

static void poke_senders(coro_chan_t *ch)
{
    poke(ch, &ch->sendq, &ch->sh->nsend);
}

/* Wait until a send (op CORO_SEND) or receive may be worth another try:
 * 0 (look again), or -1 with errno (cancelled, deadline, EMFILE). */
static int ring_wait(coro_chan_t *ch, int op, const char *what)
{
    /* With nothing else to run here, the other side is usually a moment
     * away: watch the ring before linking, so that it need not take the
     * lock to wake anyone. */
    if (coro__xwait_spin(op == CORO_SEND ? ring_can_send : ring_can_recv, ch))
        return 0;
    coro__xwait_t x;
    if (coro__xwait_init(&x) != 0)
        return -1;
    xnode_t me = { .x = &x, .elem = NULL, .index = 0 };
    lock(ch);
    link_node(ch, op == CORO_SEND ? &ch->sendq : &ch->recvq, &me);
    unsigned flags = park_flags(ch);
    unlock(ch);
    coro__fence_heavy();
    int r = 0, e = 0;
    if (ring_ready(ch, op)) {
        /* The last look found it: take the wait back, unless a poke has
         * claimed it meanwhile (then the node is off its queue). */
        if (coro__xwait_withdraw(&x))
            leave(ch, &me);
    } else {
        r = coro__xwait_park(&x, flags, what, ch);
        e = errno;
        if (r != 0)
            leave(ch, &me);
    }
    coro__xwait_fini(&x);
    if (r != 0) {
        errno = e;
        return -1;
    }
    return 0;
}

static int ring_send(coro_chan_t *ch, const void *elem, int block)
{
    for (;;) {
        int r = coro__xring_push(ch->sh->ring, elem);
        if (r > 0) {
            poke_receivers(ch);
            return 0;
        }
        if (r < 0) {
            errno = EPIPE;
            return -1;
        }
        if (!block) {
            errno = EAGAIN;
            return -1;
        }
        if (ring_wait(ch, CORO_SEND, "chan send") != 0)
            return -1;
    }
}

/* A pop that found nothing on a closed ring: 1 if it is drained for
 * good, 0 if a push that came before the close is still storing its
 * item (it lands in a moment: look again). */
static int ring_drained(const coro_chan_t *ch)
{
    if (coro__xring_drained(ch->sh->ring))
        return 1;
    coro__cpu_relax();
    return 0;
}

static int ring_recv(coro_chan_t *ch, void *elem, int block)
{
    coro__xring_t *ring = ch->sh->ring;
    for (;;) {
        if (coro__xring_pop(ring, elem)) {
            poke_senders(ch);
            return 0;
        }
        if (coro__xring_closed(ring)) {
            if (ring_drained(ch)) {
                errno = EPIPE;
                return -1;
            }
            continue;
        }
        if (!block) {
            errno = EAGAIN;
            return -1;
        }
        if (ring_wait(ch, CORO_RECV, "chan recv") != 0)
            return -1;
    }
}

/* ---- send, receive, close, free ------------------------------------------- */

int coro__chan_shared_send(coro_chan_t *ch, const void *elem, int block)
{
    if (block && coro_self() && coro__checkpoint() != 0)
        return -1;
    note_user(ch);
    if (ch->sh->ring)
        return ring_send(ch, elem, block);
    lock(ch);
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
    note_user(ch);
    if (ch->sh->ring)
        return ring_recv(ch, elem, block);
    lock(ch);
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

/* Under the lock: close, and move every waiter to todo with EPIPE (a
 * ring channel's waiters with CHAN_RETRY: they look again and find it
 * closed; its ring was marked closed before the lock was taken). */
static void close_locked(coro_chan_t *ch, coro_list_t *todo)
{
    int result = ch->sh->ring ? CHAN_RETRY : EPIPE;
    ch->closed = 1;
    claim_all(ch, &ch->recvq, result, todo);
    claim_all(ch, &ch->sendq, result, todo);
}

int coro__chan_shared_close(coro_chan_t *ch)
{
    coro_list_t todo;
    coro_list_init(&todo);
    if (ch->sh->ring && !coro__xring_close(ch->sh->ring)) {
        errno = EPIPE;
        return -1;
    }
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
    if (c->sh->ring)
        return coro__xring_len(c->sh->ring);
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
    if (ch->sh->ring)
        coro__xring_close(ch->sh->ring);
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

/* Could the case complete now? (The shared channels are locked; a
 * ring's state may still change under it: case_complete can fail.) */
static int case_ready(coro_case_t *c)
{
    coro_chan_t *ch = c->ch;
    if (!ch->sh)
        return coro__chan_case_ready(c);
    if (ch->sh->ring)
        return ring_ready(ch, c->op);
    if (c->op == CORO_SEND)
        return ch->closed || any_unclaimed(&ch->recvq);
    return ch->closed || any_unclaimed(&ch->sendq);
}

/* What a completed case leaves to do once the locks are released. */
typedef struct after {
    xnode_t *deliver;   /* an unbuffered peer handed an item: wake it */
    coro_chan_t *poke;  /* a ring pushed to (op CORO_SEND) or popped from */
    int op;
} after_t;

static void after_unlock(const after_t *a)
{
    if (a->deliver)
        coro__xwait_deliver(a->deliver->x);
    if (a->poke) {
        if (a->op == CORO_SEND)
            poke_receivers(a->poke);
        else
            poke_senders(a->poke);
    }
}

/* A ring case: push or pop now. 1 done (or failed for good: c->err),
 * 0 if the ring changed since case_ready (look again). */
static int ring_case_complete(coro_case_t *c, after_t *a)
{
    coro_chan_t *ch = c->ch;
    coro__xring_t *ring = ch->sh->ring;
    int r;
    if (c->op == CORO_SEND) {
        r = coro__xring_push(ring, c->elem);
        if (r < 0) {
            c->err = EPIPE;
            return 1;
        }
    } else {
        r = coro__xring_pop(ring, c->elem);
        if (!r && coro__xring_closed(ring) && coro__xring_drained(ring)) {
            c->err = EPIPE;
            return 1;
        }
    }
    if (r > 0) {
        a->poke = ch;
        a->op = c->op;
    }
    return r > 0;
}

/* Complete a ready case (the shared channels locked): 1, or 0 if it
 * cannot complete after all (a shared case's waiter was claimed by
 * someone else meanwhile, a ring was emptied or filled: look again). */
static int case_complete(coro_case_t *c, after_t *a)
{
    coro_chan_t *ch = c->ch;
    if (!ch->sh) {
        coro__chan_case_complete(c);
        return 1;
    }
    if (ch->sh->ring)
        return ring_case_complete(c, a);
    if (c->op == CORO_SEND) {
        if (ch->closed) {
            c->err = EPIPE;
            return 1;
        }
        return try_send_locked(ch, c->elem, &a->deliver);
    }
    if (try_recv_locked(ch, c->elem, &a->deliver))
        return 1;
    if (ch->closed) {
        c->err = EPIPE;
        return 1;
    }
    return 0;
}

/* A select woken by a ring case (CHAN_RETRY) that then completed another
 * case, or none, took a wake-up meant for one waiter of that ring: pass
 * it on to the next, if there is still something to find. */
static void pass_on(coro_case_t *c)
{
    if (!ring_ready(c->ch, c->op))
        return;
    if (c->op == CORO_SEND)
        poke_senders(c->ch);
    else
        poke_receivers(c->ch);
}

/* select_wait's "look again": woken by a ring, or withdrawn after the
 * last look. */
#define SELECT_AGAIN (-2)

/* Per case while the select waits: a node on a shared channel, or an
 * ordinary waiter on a local one. */
typedef union case_waiter {
    xnode_t node;
    coro__waiter_t w;
} case_waiter_t;

/* Wait for one of the cases (the set locked; unlocks it). The case
 * completed, -1 with errno, or SELECT_AGAIN with *woken the ring case
 * whose wake-up this was (-1 if none). */
static int select_wait(coro_case_t *cases, int n, coro_chan_t **set, int k, int *woken)
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
    int rings = 0;
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
        link_node(c->ch, c->op == CORO_SEND ? &c->ch->sendq : &c->ch->recvq, node);
        flags |= park_flags(c->ch);
        rings |= c->ch->sh->ring != NULL;
    }
    unlock_set(set, k);
    /* A ring case's last look (see ring_wait). */
    int ready = 0;
    if (rings) {
        coro__fence_heavy();
        for (int i = 0; i < n && !ready; i++)
            ready = cases[i].ch && cases[i].ch->sh && cases[i].ch->sh->ring &&
                    ring_ready(cases[i].ch, cases[i].op);
    }
    int r, e = 0, withdrawn = 0;
    if (ready) {
        withdrawn = coro__xwait_withdraw(&x);
        r = 0;
    } else {
        r = coro__xwait_park(&x, flags, "select", cases);
        e = errno;
    }
    int idx = -1, err = 0, through = -1; /* the shared node a peer completed */
    if (r == 0 && !withdrawn) {
        coro__waiter_t *f = x.w.fired;
        if (f && f != &x.w) {
            /* A local case, completed on this thread. */
            idx = (int)((case_waiter_t *)(void *)f - ws);
            err = x.w.result;
        } else {
            idx = through = x.fired;
            err = x.result;
        }
    }
    /* Unlink what is left: local waiters directly (this thread's own
     * channels), shared nodes under their channels' locks. */
    for (int i = 0; i < n; i++)
        if (cases[i].ch && !cases[i].ch->sh)
            coro_list_remove(&ws[i].w.node);
    for (int i = 0; i < n; i++)
        if (cases[i].ch && cases[i].ch->sh && i != through)
            leave(cases[i].ch, &ws[i].node);
    coro__xwait_fini(&x);
    if (ws != local)
        free(ws);
    *woken = -1;
    if (r != 0) {
        errno = e;
        return -1;
    }
    if (withdrawn)
        return SELECT_AGAIN;
    if (err == CHAN_RETRY) {
        *woken = idx;
        return SELECT_AGAIN;
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
    int ret, woken = -1; /* a ring case whose wake-up this select took */
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
            after_t a = { NULL, NULL, 0 };
            if (!case_complete(&cases[pick], &a)) {
                unlock_set(set, k); /* it went to someone else: look again */
                continue;
            }
            unlock_set(set, k);
            after_unlock(&a);
            ret = pick;
            break;
        }
        if (!block) {
            unlock_set(set, k);
            errno = EAGAIN;
            ret = -1;
            break;
        }
        int w;
        ret = select_wait(cases, n, set, k, &w); /* unlocks */
        if (ret != SELECT_AGAIN)
            break;
        if (w >= 0)
            woken = w;
    }
    if (woken >= 0 && woken != ret) {
        int e = errno;
        pass_on(&cases[woken]);
        errno = e;
    }
    if (set != stack_set) {
        int e = errno;
        free(set);
        errno = e;
    }
    return ret;
}
