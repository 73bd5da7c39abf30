/* sync/chan_shared_int.h: a shared channel's parts, for the two files
 * that work on them: sync/chan_shared.c (making, the locked hand-offs,
 * the lock-free ring, close, free) and sync/chan_shared_select.c (select
 * with shared cases). */
#ifndef CORO_SYNC_CHAN_SHARED_INT_H
#define CORO_SYNC_CHAN_SHARED_INT_H

#include "sync/chan_int.h"
#include "coro/spin.h"
#include "sync/xring.h"

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

static inline void coro__xchan_lock(coro_chan_t *ch)
{
    coro__spin_lock(&ch->sh->lock);
}

static inline void coro__xchan_unlock(coro_chan_t *ch)
{
    coro__spin_unlock(&ch->sh->lock);
}

/* Note who uses the channel (any thread, no lock). */
void coro__xchan_note_user(coro_chan_t *ch);
/* Is there a waiter in q nobody has claimed yet? (Under the lock; a hint.) */
int coro__xchan_any_unclaimed(const coro_list_t *q);
/* Under the lock: send or receive now if a peer or the (unbuffered
 * channel's) ring allows; 1 done, with *to_deliver a claimed peer to
 * wake after unlocking. */
int coro__xchan_try_send_locked(coro_chan_t *ch, const void *elem, xnode_t **to_deliver);
int coro__xchan_try_recv_locked(coro_chan_t *ch, void *elem, xnode_t **to_deliver);
/* Under the lock: link a waiter's node on q (it holds a reference). */
void coro__xchan_link_node(coro_chan_t *ch, coro_list_t *q, xnode_t *me);
/* A waiter leaves (takes the lock): unlink its node if nobody has. Not
 * for the node a peer completed the wait through. */
void coro__xchan_leave(coro_chan_t *ch, xnode_t *me);
/* Drop a reference taken for a call that waited (takes the lock; may
 * free the channel). */
void coro__xchan_ref_drop(coro_chan_t *ch);
/* coro__park's flags for a wait on ch. */
unsigned coro__xchan_park_flags(const coro_chan_t *ch);
/* A ring channel: can a send (op CORO_SEND) or receive go ahead (or fail
 * at once, closed)? */
int coro__xchan_ring_ready(const coro_chan_t *ch, int op);
/* A ring channel, after a push (wake a receiver to look again) or a pop
 * (a sender); the busy side of coro/fence.h's handshake. */
void coro__xchan_poke_receivers(coro_chan_t *ch);
void coro__xchan_poke_senders(coro_chan_t *ch);

#endif /* CORO_SYNC_CHAN_SHARED_INT_H */
