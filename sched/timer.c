/* sched/timer.c: the timer heap. A binary min-heap of parked coroutines
 * ordered by (when, seq): seq grows with every arm, so equal deadlines fire
 * in the order they were armed. Each entry carries its key beside the
 * coroutine pointer, so sifting compares within the array instead of
 * chasing pointers to coroutine headers that each sit on their own page
 * (a cache and TLB miss per comparison). Arming never allocates: spawn
 * keeps the array's capacity at least the number of live coroutines.
 * Disarming an early wake is O(log n) through the index kept in the
 * coroutine. */
#include "sched/sched_int.h"
#include "coro/fault.h"

#include <errno.h>

static inline int before(const coro__timer_t *a, const coro__timer_t *b)
{
    if (a->when != b->when)
        return a->when < b->when;
    return a->seq < b->seq;
}

static inline void place(coro__sched_t *s, size_t i, coro__timer_t t)
{
    s->heap[i] = t;
    t.coro->timer_index = i + 1;
}

static void sift_up(coro__sched_t *s, size_t i, coro__timer_t t)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&t, &s->heap[parent]))
            break;
        place(s, i, s->heap[parent]);
        i = parent;
    }
    place(s, i, t);
}

static void sift_down(coro__sched_t *s, size_t i, coro__timer_t t)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const coro__timer_t *best = &t;
        if (l < s->heap_len && before(&s->heap[l], best)) {
            m = l;
            best = &s->heap[l];
        }
        if (r < s->heap_len && before(&s->heap[r], best))
            m = r;
        if (m == i)
            break;
        place(s, i, s->heap[m]);
        i = m;
    }
    place(s, i, t);
}

int coro__timer_reserve(coro__sched_t *s, size_t n)
{
    if (n <= s->heap_cap)
        return 0;
    size_t cap = s->heap_cap ? s->heap_cap : 64;
    while (cap < n)
        cap *= 2;
    coro__timer_t *h = coro__realloc(s->heap, cap * sizeof *h);
    if (!h)
        return -1;
    s->heap = h;
    s->heap_cap = cap;
    return 0;
}

void coro__timer_arm(coro__sched_t *s, coro_t *c, int64_t when)
{
    coro__timer_t t = { when, s->timer_seq++, c };
    c->timer_when = when;
    /* Capacity is reserved at spawn: one slot per live coroutine. */
    sift_up(s, s->heap_len++, t);
    coro__pass_clamp(s);
}

void coro__timer_disarm(coro__sched_t *s, coro_t *c)
{
    size_t i = c->timer_index;
    if (!i)
        return;
    i--;
    c->timer_index = 0;
    coro__timer_t last = s->heap[--s->heap_len];
    if (i == s->heap_len)
        return;
    if (i > 0 && before(&last, &s->heap[(i - 1) / 2]))
        sift_up(s, i, last);
    else
        sift_down(s, i, last);
}

void coro__timer_expire(coro__sched_t *s, int64_t now)
{
    while (s->heap_len && s->heap[0].when <= now) {
        coro_t *c = s->heap[0].coro;
        int64_t lag = now - s->heap[0].when;
        if (lag > s->max_lag)
            s->max_lag = lag;
        /* The timer was armed for the earlier of the wait's own time (a
         * sleep's end: success) and the deadline (ETIMEDOUT); which one it
         * was does not depend on how late the loop got here (a stalled
         * process could find both passed). Ties go to the wait's own time. */
        coro__wake(c->wait, c->wake_at <= c->deadline ? 0 : ETIMEDOUT);
    }
}
