/* sync/chan_int.h: a channel's layout and the parts both kinds share:
 * the ring, the handle check. Private to sync/chan.c and
 * sync/chan_shared.c. */
#ifndef CORO_SYNC_CHAN_INT_H
#define CORO_SYNC_CHAN_INT_H

#include "sync/sync.h"
#include "coro/list.h"
#include "coro/sanitize.h"
#include "sync/elem.h"
#include "sched/wait.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHAN_MAGIC_LIVE 0xC4A7F1F0u
#define CHAN_MAGIC_DEAD 0xC4A7DEADu

/* Cases of a select whose waiters fit on the caller's stack; a select of
 * more allocates them (and can fail with ENOMEM). */
#define SELECT_STACK_CASES 32

struct coro_chan {
    /* Parked receivers (ring empty) and senders (ring full), FIFO. First:
     * free() reuses the first bytes of a block for its own links, and the
     * magic below must survive it. */
    coro_list_t recvq, sendq;
    /* CHAN_MAGIC_LIVE from new to free, then CHAN_MAGIC_DEAD. */
    uint32_t magic;
    /* Set by coro_chan_close: no send succeeds any more. */
    int closed;
    /* What the fast paths of sync/chan.c test, one byte each: the element
     * is copied inline (sync_small_elem), and that while not closed. */
    uint8_t small, send_fast;
    /* The scheduler it belongs to (sched/wait.h's thread boundary). */
    void *home;
    size_t elem_size;
    /* Ring capacity in items (0: unbuffered). */
    size_t cap;
    /* The oldest buffered item's slot, and how many are buffered. */
    size_t head, len;
    /* A shared channel's lock and bookkeeping (sync/chan_shared.c); NULL
     * for a scheduler's own channel. A shared channel's home is
     * CHAN_SHARED_HOME, which no scheduler ever is: the blocking calls'
     * one-compare thread check sends it down their cold path. */
    struct chan_shared *sh;
    /* The ring: cap * elem_size bytes. */
    unsigned char ring[];
};

/* ---- checks ------------------------------------------------------------- */

__attribute__((noreturn, noinline, cold, unused))
static void chan_bad(const coro_chan_t *ch, const char *fn, int freed)
{
    fprintf(stderr, "coro: %s(%p): %s\n", fn, (const void *)ch,
            freed ? "the channel has been freed (use after coro_chan_free)"
                  : "not a channel (corrupt handle, or freed and reused)");
    fflush(stderr);
    abort();
}

/* Abort on a freed or bogus handle. Under AddressSanitizer a freed
 * channel's memory is poisoned: ask first, so the message is ours. */
static inline void chan_check(const coro_chan_t *ch, const char *fn)
{
#if CORO_ASAN
    if (__asan_address_is_poisoned(&ch->magic))
        chan_bad(ch, fn, 1);
#endif
    uint32_t m = ch->magic;
    if (__builtin_expect(m != CHAN_MAGIC_LIVE, 0))
        chan_bad(ch, fn, m == CHAN_MAGIC_DEAD);
}

static inline unsigned char *slot(coro_chan_t *ch, size_t i)
{
    return ch->ring + i * ch->elem_size;
}

/* The ring's next free slot and its oldest item's. */
static inline unsigned char *ring_tail_slot(coro_chan_t *ch)
{
    size_t i = ch->head + ch->len;
    if (i >= ch->cap)
        i -= ch->cap;
    return slot(ch, i);
}

static inline unsigned char *ring_head_slot_pop(coro_chan_t *ch)
{
    unsigned char *p = slot(ch, ch->head);
    if (++ch->head == ch->cap)
        ch->head = 0;
    ch->len--;
    return p;
}

static inline void ring_put(coro_chan_t *ch, const void *elem)
{
    sync_copy_elem(ring_tail_slot(ch), elem, ch->elem_size);
    ch->len++;
}

static inline void ring_take(coro_chan_t *ch, void *elem)
{
    sync_copy_elem(elem, ring_head_slot_pop(ch), ch->elem_size);
}

/* The same for an element sync_small_elem says is small (no call). */
static inline void ring_put_small(coro_chan_t *ch, const void *elem)
{
    sync_copy_small(ring_tail_slot(ch), elem, ch->elem_size);
    ch->len++;
}

static inline void ring_take_small(coro_chan_t *ch, void *elem)
{
    sync_copy_small(elem, ring_head_slot_pop(ch), ch->elem_size);
}

coro_chan_t *coro__chan_alloc(size_t elem_size, size_t capacity, void *home);
/* The home of every shared channel. */
extern char coro__chan_shared_home;
#define CHAN_SHARED_HOME ((void *)&coro__chan_shared_home)
/* A freed channel's home (sync/chan.c): no scheduler's. */
#define CHAN_DEAD_HOME ((void *)(&coro__chan_shared_home + 1))

/* Shared channels (sync/chan_shared.c): the calls of sync/sync.h on a
 * channel whose sh is set. select_shared takes a select with at least
 * one shared case (validated), local cases too. */
int coro__chan_shared_send(coro_chan_t *ch, const void *elem, int block);
int coro__chan_shared_recv(coro_chan_t *ch, void *elem, int block);
int coro__chan_shared_close(coro_chan_t *ch);
size_t coro__chan_shared_len(const coro_chan_t *ch);
void coro__chan_shared_free(coro_chan_t *ch);
int coro__chan_select_shared(coro_case_t *cases, int n, int block);
/* For tests: the waiters linked into a shared channel's queues now. */
size_t coro__chan_shared_waiting(coro_chan_t *ch);

/* Local channels' select parts, for a select that mixes both kinds
 * (sync/chan.c): could a local case complete now; complete it; the
 * waiter to link for it into its channel's queue while the select waits
 * on a cross-thread wait (claim: that wait's claim word). */
int coro__chan_case_ready(coro_case_t *c);
void coro__chan_case_complete(coro_case_t *c);
void coro__chan_case_link(coro_case_t *c, coro__waiter_t *w, coro__waiter_t *primary,
                          int *claim);

#endif /* CORO_SYNC_CHAN_INT_H */
