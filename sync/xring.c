/* sync/xring.c: the lock-free bounded ring of sync/xring.h.
 *
 * A push that finds its slot still full (stamp behind its position) and a
 * pop that finds its slot still empty report "full" and "empty" at once,
 * even when the other side has claimed that slot and is about to hand it
 * over: they never wait for another thread, which may be a preempted
 * plain thread. The channel above calls that a wait, and the other side,
 * once its stamp is stored, looks for waiters to wake (sync/chan_shared.c),
 * so nothing is missed. */
#include "sync/xring.h"
#include "coro/fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STAMP_SIZE sizeof(uint64_t)

int coro__xring_init(coro__xring_t *r, size_t cap, size_t elem_size)
{
    size_t stride = (STAMP_SIZE + elem_size + 7) & ~(size_t)7;
    if (cap == 0 || cap > ((uint64_t)1 << 40) || stride < elem_size) {
        errno = EINVAL;
        return -1;
    }
    if (cap > SIZE_MAX / stride) {
        errno = ENOMEM;
        return -1;
    }
    r->slots = coro__malloc(cap * stride);
    if (!r->slots)
        return -1;
    r->cap = cap;
    r->elem_size = elem_size;
    r->stride = stride;
    uint64_t mark = 1;
    while (mark <= cap)
        mark <<= 1;
    r->mark = mark;
    r->one_lap = mark << 1;
    for (size_t i = 0; i < cap; i++)
        *(uint64_t *)(void *)(r->slots + i * stride) = i; /* lap 0: free for pos i */
    r->tail = 0;
    r->head = 0;
    return 0;
}

void coro__xring_fini(coro__xring_t *r)
{
    free(r->slots);
    r->slots = NULL;
}

int coro__xring_close(coro__xring_t *r)
{
    uint64_t old = __atomic_fetch_or(&r->tail, r->mark, __ATOMIC_SEQ_CST);
    return (old & r->mark) == 0;
}

size_t coro__xring_len(const coro__xring_t *r)
{
    for (;;) {
        uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST) & ~r->mark;
        uint64_t head = __atomic_load_n(&r->head, __ATOMIC_SEQ_CST);
        if ((__atomic_load_n(&r->tail, __ATOMIC_SEQ_CST) & ~r->mark) != tail)
            continue; /* moved meanwhile: the pair would not match */
        uint64_t hi = head & (r->mark - 1), ti = tail & (r->mark - 1);
        if (hi < ti)
            return (size_t)(ti - hi);
        if (hi > ti)
            return (size_t)(r->cap - hi + ti);
        return tail == head ? 0 : r->cap;
    }
}

int coro__xring_has_room(const coro__xring_t *r)
{
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    if (tail & r->mark)
        return 0;
    return (int64_t)(__atomic_load_n(coro__xring_stamp(r, tail), __ATOMIC_ACQUIRE) - tail) >= 0;
}

int coro__xring_has_room_for(const coro__xring_t *r, size_t n)
{
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    if (tail & r->mark)
        return 0;
    if (n > r->cap)
        n = r->cap;
    /* The position n - 1 after tail (laps: index, then the wrap). */
    uint64_t index = (tail & (r->mark - 1)) + (n - 1), pos = tail + (n - 1);
    if (index >= r->cap)
        pos = (tail & ~(r->one_lap - 1)) + r->one_lap + (index - r->cap);
    return (int64_t)(__atomic_load_n(coro__xring_stamp(r, pos), __ATOMIC_ACQUIRE) - pos) >= 0;
}

int coro__xring_has_item(const coro__xring_t *r)
{
    uint64_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    return (int64_t)(__atomic_load_n(coro__xring_stamp(r, head), __ATOMIC_ACQUIRE) - (head + 1)) >= 0;
}

int coro__xring_drained(const coro__xring_t *r)
{
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    return (tail & r->mark) && (tail & ~r->mark) == __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
}
