/* sync/chan_shared.c: shared channels, usable from every scheduler of a
 * run, from other schedulers and from plain threads (coro_chan_new_shared).
 *
 * The same two FIFOs of waiters as a scheduler's own channel (sync/chan.c),
 * behind a spinlock (coro/spin.h), with waiters that another thread
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
 * A buffered shared channel keeps its items in a lock-free ring instead
 * (see "buffered channels" below). Select with shared cases is in
 * sync/chan_shared_select.c.
 *
 * Memory: a channel freed while waiters are still linked stays allocated
 * until the last of them has unlinked, and a ring call or a select that
 * waited until it returns (refs); its handle is dead at once (the magic
 * is overwritten), so a later call aborts with a message.
 *
 * Deadlock detection in a run (sched/run.c) counts a wait on a shared
 * channel as a plain wait, unless something outside the run may complete
 * it: then it is an external wait, never called deadlocked. "Outside" is a
 * channel made outside a coroutine of a run (by main() before the run,
 * say), or ever used by a plain thread, a lone scheduler or another run. */
#include "sync/chan_shared_int.h"
#include "sched/sched.h"
#include "coro/fault.h"
#include "sched/wait.h"
#include "coro/fence.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

char coro__chan_shared_home;

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

/* Note who uses the channel (any thread, no lock: outsiders only ever
 * goes from 0 to 1). */
void coro__xchan_note_user(coro_chan_t *ch)
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

void coro__xchan_ref_drop(coro_chan_t *ch)
{
    coro__xchan_lock(ch);
    int last = unref(ch);
    coro__xchan_unlock(ch);
    if (last)
        destroy(ch);
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
int coro__xchan_any_unclaimed(const coro_list_t *q)
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
static void claim_all(coro_chan_t *ch, coro_list_t *q, int result, coro_list_t *claimed)
{
    xnode_t *w;
    while ((w = claim_first(ch, q)) != NULL) {
        fire(w, result);
        coro_list_push_back(claimed, &w->node);
    }
}

static void deliver_all(coro_list_t *claimed)
{
    coro_list_t *n;
    while ((n = coro_list_first(claimed)) != NULL) {
        xnode_t *w = coro_container_of(n, xnode_t, node);
        coro_list_remove(n);
        coro__xwait_deliver(w->x); /* w may be gone after this */
    }
}

/* Send elem now, under the lock, if it can go: to a claimed receiver
 * (returned, to be delivered after unlocking) or into the ring. 1 if
 * sent. */
int coro__xchan_try_send_locked(coro_chan_t *ch, const void *elem, xnode_t **to_deliver)
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
int coro__xchan_try_recv_locked(coro_chan_t *ch, void *elem, xnode_t **to_deliver)
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
void coro__xchan_link_node(coro_chan_t *ch, coro_list_t *q, xnode_t *me)
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
void coro__xchan_leave(coro_chan_t *ch, xnode_t *me)
{
    coro__xchan_lock(ch);
    int last = 0;
    if (me->linked) {
        coro_list_remove(&me->node);
        me->linked = 0;
        if (me->count)
            __atomic_store_n(me->count, *me->count - 1, __ATOMIC_RELAXED);
        last = unref(ch);
    }
    coro__xchan_unlock(ch);
    if (last)
        destroy(ch);
}

unsigned coro__xchan_park_flags(const coro_chan_t *ch)
{
    return ch->sh->outsiders ? CORO__PARK_EXTERNAL : 0;
}

/* Called with the lock held, nothing ready: wait on q for a peer. */
static int wait_one(coro_chan_t *ch, coro_list_t *q, void *elem, const char *what)
{
    coro__xwait_t x;
    if (coro__xwait_init(&x) != 0) {
        coro__xchan_unlock(ch);
        return -1;
    }
    xnode_t me = { .x = &x, .elem = elem, .index = 0 };
    coro__xchan_link_node(ch, q, &me);
    unsigned flags = coro__xchan_park_flags(ch);
    coro__xchan_unlock(ch);
    int r = coro__xwait_park(&x, flags, what, ch);
    int e = errno;
    if (r != 0)
        coro__xchan_leave(ch, &me); /* else a peer completed the wait through me */
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
int coro__xchan_ring_ready(const coro_chan_t *ch, int op)
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
    return coro__xchan_ring_ready(ch, CORO_RECV);
}

/* After a push (wake a receiver) or a pop (wake a sender): the fence
 * pairs with ring_wait's. */
static void poke(coro_chan_t *ch, coro_list_t *q, int *count)
{
    coro__fence_light();
    if (!__atomic_load_n(count, __ATOMIC_RELAXED))
        return;
    coro__xchan_lock(ch);
    xnode_t *w = claim_first(ch, q);
    if (w)
        fire(w, CHAN_RETRY);
    coro__xchan_unlock(ch);
    if (w)
        coro__xwait_deliver(w->x); /* w may be gone after this */
}

void coro__xchan_poke_receivers(coro_chan_t *ch)
{
    poke(ch, &ch->recvq, &ch->sh->nrecv);
}

void coro__xchan_poke_senders(coro_chan_t *ch)
{
    poke(ch, &ch->sendq, &ch->sh->nsend);
}

/* Wait until a send (op CORO_SEND) or receive may be worth another try:
 * 0 (look again), or -1 with errno (cancelled, deadline, EMFILE, EPIPE
 * freed meanwhile). The first wait of a call takes a reference for the
 * call (*held), dropped when it returns (ring_done): a close wakes it to
 * look again, and another thread may free the channel meanwhile. */
static int ring_wait(coro_chan_t *ch, int op, const char *what, int *held)
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
    coro__xchan_lock(ch);
    coro__xchan_link_node(ch, op == CORO_SEND ? &ch->sendq : &ch->recvq, &me);
    if (!*held) {
        ch->sh->refs++;
        *held = 1;
    }
    unsigned flags = coro__xchan_park_flags(ch);
    coro__xchan_unlock(ch);
    coro__fence_heavy();
    int r = 0, e = 0;
    if (coro__xchan_ring_ready(ch, op)) {
        /* The last look found it: take the wait back, unless a poke has
         * claimed it meanwhile (then the node is off its queue). */
        if (coro__xwait_withdraw(&x))
            coro__xchan_leave(ch, &me);
    } else {
        r = coro__xwait_park(&x, flags, what, ch);
        e = errno;
        if (r != 0)
            coro__xchan_leave(ch, &me);
    }
    coro__xwait_fini(&x);
    if (r == 0 && x.result == EPIPE) {
        r = -1; /* freed: woken with EPIPE, not to look again */
        e = EPIPE;
    }
    if (r != 0) {
        errno = e;
        return -1;
    }
    return 0;
}

/* A ring call returns rc: drop the reference its waits held, if any. */
static int ring_done(coro_chan_t *ch, int held, int rc)
{
    if (held) {
        int e = errno;
        coro__xchan_ref_drop(ch);
        errno = e;
    }
    return rc;
}

static int ring_send(coro_chan_t *ch, const void *elem, int block)
{
    int held = 0;
    for (;;) {
        int r = coro__xring_push(ch->sh->ring, elem);
        if (r > 0) {
            coro__xchan_poke_receivers(ch);
            return ring_done(ch, held, 0);
        }
        if (r < 0) {
            errno = EPIPE;
            return ring_done(ch, held, -1);
        }
        if (!block) {
            errno = EAGAIN;
            return -1;
        }
        if (ring_wait(ch, CORO_SEND, "chan send", &held) != 0)
            return ring_done(ch, held, -1);
    }
}

/* A pop that found nothing on a closed ring: 1 if it is drained for
 * good, 0 if a push that came before the close is still storing its
 * item (it lands in a moment: look again). */
static int ring_drained(const coro_chan_t *ch)
{
    if (coro__xring_drained(ch->sh->ring))
        return 1;
    sched_yield(); /* the pusher may be a preempted thread on this CPU */
    return 0;
}

static int ring_recv(coro_chan_t *ch, void *elem, int block)
{
    coro__xring_t *ring = ch->sh->ring;
    int held = 0;
    for (;;) {
        if (coro__xring_pop(ring, elem)) {
            coro__xchan_poke_senders(ch);
            return ring_done(ch, held, 0);
        }
        if (coro__xring_closed(ring)) {
            if (ring_drained(ch)) {
                errno = EPIPE;
                return ring_done(ch, held, -1);
            }
            continue;
        }
        if (!block) {
            errno = EAGAIN;
            return -1;
        }
        if (ring_wait(ch, CORO_RECV, "chan recv", &held) != 0)
            return ring_done(ch, held, -1);
    }
}

/* ---- send, receive, close, free ------------------------------------------- */

int coro__chan_shared_send(coro_chan_t *ch, const void *elem, int block)
{
    if (block && coro_self() && coro__checkpoint() != 0)
        return -1;
    coro__xchan_note_user(ch);
    if (ch->sh->ring)
        return ring_send(ch, elem, block);
    coro__xchan_lock(ch);
    if (ch->closed) {
        coro__xchan_unlock(ch);
        errno = EPIPE;
        return -1;
    }
    xnode_t *r = NULL;
    if (coro__xchan_try_send_locked(ch, elem, &r)) {
        coro__xchan_unlock(ch);
        if (r)
            coro__xwait_deliver(r->x);
        return 0;
    }
    if (!block) {
        coro__xchan_unlock(ch);
        errno = EAGAIN;
        return -1;
    }
    return wait_one(ch, &ch->sendq, (void *)(uintptr_t)elem, "chan send");
}

int coro__chan_shared_recv(coro_chan_t *ch, void *elem, int block)
{
    if (block && coro_self() && coro__checkpoint() != 0)
        return -1;
    coro__xchan_note_user(ch);
    if (ch->sh->ring)
        return ring_recv(ch, elem, block);
    coro__xchan_lock(ch);
    xnode_t *s = NULL;
    if (coro__xchan_try_recv_locked(ch, elem, &s)) {
        coro__xchan_unlock(ch);
        if (s)
            coro__xwait_deliver(s->x);
        return 0;
    }
    if (ch->closed || !block) {
        int e = ch->closed ? EPIPE : EAGAIN;
        coro__xchan_unlock(ch);
        errno = e;
        return -1;
    }
    return wait_one(ch, &ch->recvq, elem, "chan recv");
}

/* Under the lock: close, and claim every waiter onto `claimed` with result:
 * EPIPE, or for a close of a ring channel CHAN_RETRY (its waiters look
 * again, take what is left and then find it closed; the ring was marked
 * closed before the lock was taken). */
static void close_locked(coro_chan_t *ch, coro_list_t *claimed, int result)
{
    ch->closed = 1;
    ch->send_fast = 0;
    claim_all(ch, &ch->recvq, result, claimed);
    claim_all(ch, &ch->sendq, result, claimed);
}

int coro__chan_shared_close(coro_chan_t *ch)
{
    coro_list_t claimed;
    coro_list_init(&claimed);
    if (ch->sh->ring && !coro__xring_close(ch->sh->ring)) {
        errno = EPIPE;
        return -1;
    }
    coro__xchan_lock(ch);
    if (ch->closed) {
        coro__xchan_unlock(ch);
        errno = EPIPE;
        return -1;
    }
    close_locked(ch, &claimed, ch->sh->ring ? CHAN_RETRY : EPIPE);
    coro__xchan_unlock(ch);
    deliver_all(&claimed);
    return 0;
}

size_t coro__chan_shared_len(const coro_chan_t *ch)
{
    coro_chan_t *c = (coro_chan_t *)(uintptr_t)ch;
    if (c->sh->ring)
        return coro__xring_len(c->sh->ring);
    coro__xchan_lock(c);
    size_t n = c->len;
    coro__xchan_unlock(c);
    return n;
}

size_t coro__chan_shared_waiting(coro_chan_t *ch)
{
    size_t n = 0;
    coro__xchan_lock(ch);
    for (coro_list_t *l = ch->recvq.next; l != &ch->recvq; l = l->next)
        n++;
    for (coro_list_t *l = ch->sendq.next; l != &ch->sendq; l = l->next)
        n++;
    coro__xchan_unlock(ch);
    return n;
}

void coro__chan_shared_free(coro_chan_t *ch)
{
    coro_list_t claimed;
    coro_list_init(&claimed);
    if (ch->sh->ring)
        coro__xring_close(ch->sh->ring);
    coro__xchan_lock(ch);
    if (!ch->closed)
        close_locked(ch, &claimed, EPIPE); /* freed: nothing to look at again */
    /* volatile: see coro_chan_free in sync/chan.c. */
    *(volatile uint32_t *)&ch->magic = CHAN_MAGIC_DEAD;
    int last = unref(ch);
    coro__xchan_unlock(ch);
    deliver_all(&claimed);
    if (last)
        destroy(ch);
}

