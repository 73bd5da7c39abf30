/* sync/xring.h: a bounded ring that several threads push to and pop from
 * without a lock: the item store of a buffered shared channel
 * (sync/chan_shared.c).
 *
 * The idea is Dmitry Vyukov's bounded MPMC queue: each slot carries a
 * stamp that says whose turn it is, so a pusher and a popper meet only at
 * the slot they hand over, never on one shared counter, and a stream
 * between two threads moves cache lines of items rather than bouncing a
 * lock. Positions count laps: pos = lap * one_lap + index with index <
 * cap and one_lap a power of two above cap, so no division is needed and
 * any capacity is exact. A slot at index i is free for the pusher at pos
 * when its stamp == pos, and full for the popper at pos when its stamp ==
 * pos + 1; the popper sets it to pos + one_lap, the next lap's free turn.
 *
 * Closing sets a mark bit in the push position, so a push either happens
 * before the close (and its item will be popped) or fails: a send can
 * never succeed into a channel its receivers have already seen closed
 * and empty. */
#ifndef CORO_SYNC_XRING_H
#define CORO_SYNC_XRING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct coro__xring {
    /* Read-only after init. */
    size_t cap, elem_size, stride;
    uint64_t one_lap, mark;
    unsigned char *slots; /* cap * stride: a uint64_t stamp, then the item */
    /* Each alone on its cache line (the padding, not an alignment, which
     * malloc would not honour): pushers write one, poppers the other, and
     * neither evicts the read-only fields above. */
    char pad_tail[64];
    uint64_t tail; /* the next push's position, | mark once closed */
    char pad_head[64];
    uint64_t head; /* the next pop's position */
    char pad_end[64];
} coro__xring_t;

/* Set r up for cap (>= 1) items of elem_size bytes. 0, or -1 with
 * errno ENOMEM (or EINVAL for a size that cannot be represented). */
int coro__xring_init(coro__xring_t *r, size_t cap, size_t elem_size);
void coro__xring_fini(coro__xring_t *r);

/* Push and pop are inline: they are most of a shared channel's call. */

/* The stamp of pos's slot (the item follows it). */
static inline uint64_t *coro__xring_stamp(const coro__xring_t *r, uint64_t pos)
{
    return (uint64_t *)(void *)(r->slots + (size_t)(pos & (r->mark - 1)) * r->stride);
}

/* The position after pos: the next index, or index 0 of the next lap. */
static inline uint64_t coro__xring_next(const coro__xring_t *r, uint64_t pos)
{
    if ((pos & (r->mark - 1)) + 1 < r->cap)
        return pos + 1;
    return (pos & ~(r->one_lap - 1)) + r->one_lap;
}

/* 1 pushed, 0 full, -1 closed. */
static inline int coro__xring_push(coro__xring_t *r, const void *elem)
{
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
    for (;;) {
        if (tail & r->mark)
            return -1;
        uint64_t *stamp = coro__xring_stamp(r, tail);
        int64_t diff = (int64_t)(__atomic_load_n(stamp, __ATOMIC_ACQUIRE) - tail);
        if (diff < 0)
            return 0; /* last lap's item is still there (or being popped) */
        if (diff == 0 && __atomic_compare_exchange_n(&r->tail, &tail, coro__xring_next(r, tail), 1,
                                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            memcpy(stamp + 1, elem, r->elem_size);
            __atomic_store_n(stamp, tail + 1, __ATOMIC_RELEASE);
            return 1;
        }
        if (diff > 0) /* another pusher took this slot: look again */
            tail = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
        /* else the failed exchange has reloaded tail */
    }
}

/* 1 popped, 0 empty (closed or not: see coro__xring_drained). */
static inline int coro__xring_pop(coro__xring_t *r, void *elem)
{
    uint64_t head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
    for (;;) {
        uint64_t *stamp = coro__xring_stamp(r, head);
        int64_t diff = (int64_t)(__atomic_load_n(stamp, __ATOMIC_ACQUIRE) - (head + 1));
        if (diff < 0)
            return 0; /* not pushed yet (or still being pushed) */
        if (diff == 0 && __atomic_compare_exchange_n(&r->head, &head, coro__xring_next(r, head), 1,
                                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            memcpy(elem, stamp + 1, r->elem_size);
            __atomic_store_n(stamp, head + r->one_lap, __ATOMIC_RELEASE);
            return 1;
        }
        if (diff > 0)
            head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
    }
}

/* Mark r closed: every later push fails. 1 if this call closed it, 0 if
 * it was closed already. */
int coro__xring_close(coro__xring_t *r);

static inline int coro__xring_closed(const coro__xring_t *r)
{
    return (__atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) & r->mark) != 0;
}

/* Closed, and every item pushed before the close popped: no pop will
 * ever succeed again. (coro__xring_pop's 0 alone may be a push still in
 * flight.) */
int coro__xring_drained(const coro__xring_t *r);

/* Items in r now (a snapshot: others may be pushing and popping). */
size_t coro__xring_len(const coro__xring_t *r);

/* Could a push or a pop go ahead now? Hints for a waiter's last look
 * before it sleeps, and for select: cheap reads, no side effects. */
int coro__xring_has_room(const coro__xring_t *r);
int coro__xring_has_item(const coro__xring_t *r);
/* Is there room for n items (at most cap) in a row after the last push?
 * (Its last slot is free; the ones before it, freed in order, are too,
 * unless a popper is still finishing one.) */
int coro__xring_has_room_for(const coro__xring_t *r, size_t n);

#endif /* CORO_SYNC_XRING_H */
