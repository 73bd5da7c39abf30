/* test/test_xring.c: the lock-free ring under buffered shared channels
 * (sync/xring.c): exact capacity at every size, FIFO across many laps,
 * the close mark, and several threads pushing and popping at once with
 * every item arriving exactly once. */
#include "test/test_sched.h"
#include "sync/xring.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

TEST(xring_capacity_is_exact_and_fifo_over_many_laps)
{
    size_t caps[] = { 1, 2, 3, 7, 64, 100, 1023 };
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        size_t cap = caps[k];
        coro__xring_t r;
        ASSERT_EQ(coro__xring_init(&r, cap, sizeof(long)), 0);
        long next_in = 0, next_out = 0, v;
        /* Fill to the brim, drain, and do it again with partial fills,
         * so the positions go round many laps. */
        for (int lap = 0; lap < 20; lap++) {
            ASSERT_EQ(coro__xring_has_item(&r), 0);
            size_t fill = lap % 2 ? cap : (size_t)lap % cap + 1;
            for (size_t i = 0; i < fill; i++) {
                ASSERT_EQ(coro__xring_has_room(&r), 1);
                ASSERT_EQ(coro__xring_push(&r, &next_in), 1);
                next_in++;
            }
            ASSERT_EQ(coro__xring_len(&r), fill);
            if (fill == cap) {
                ASSERT_EQ(coro__xring_has_room(&r), 0);
                ASSERT_EQ(coro__xring_push(&r, &next_in), 0); /* full: refused */
            }
            ASSERT_EQ(coro__xring_has_item(&r), 1);
            for (size_t i = 0; i < fill; i++) {
                ASSERT_EQ(coro__xring_pop(&r, &v), 1);
                ASSERT_EQ(v, next_out);
                next_out++;
            }
            ASSERT_EQ(coro__xring_pop(&r, &v), 0);
            ASSERT_EQ(coro__xring_len(&r), 0);
        }
        coro__xring_fini(&r);
    }
}

TEST(xring_items_of_odd_sizes_arrive_intact)
{
    /* 1, 13 and 100 bytes: slots are rounded up, items are not. */
    size_t sizes[] = { 1, 13, 100 };
    for (size_t k = 0; k < 3; k++) {
        coro__xring_t r;
        size_t sz = sizes[k];
        ASSERT_EQ(coro__xring_init(&r, 5, sz), 0);
        unsigned char in[100], out[100];
        for (int round = 0; round < 12; round++) {
            memset(in, round + 1, sz);
            ASSERT_EQ(coro__xring_push(&r, in), 1);
            memset(out, 0, sizeof out);
            ASSERT_EQ(coro__xring_pop(&r, out), 1);
            ASSERT_EQ(memcmp(in, out, sz), 0);
            ASSERT_EQ(out[sz < 100 ? sz : 99], sz < 100 ? 0 : round + 1); /* no overrun */
        }
        coro__xring_fini(&r);
    }
}

TEST(xring_close_refuses_pushes_and_keeps_what_is_in)
{
    coro__xring_t r;
    ASSERT_EQ(coro__xring_init(&r, 4, sizeof(int)), 0);
    int a = 1, b = 2, v = 0;
    ASSERT_EQ(coro__xring_push(&r, &a), 1);
    ASSERT_EQ(coro__xring_push(&r, &b), 1);
    ASSERT_EQ(coro__xring_closed(&r), 0);
    ASSERT_EQ(coro__xring_close(&r), 1);
    ASSERT_EQ(coro__xring_close(&r), 0); /* once */
    ASSERT_EQ(coro__xring_closed(&r), 1);
    ASSERT_EQ(coro__xring_push(&r, &a), -1);
    ASSERT_EQ(coro__xring_has_room(&r), 0);
    ASSERT_EQ(coro__xring_drained(&r), 0);
    ASSERT_EQ(coro__xring_len(&r), 2);
    ASSERT_EQ(coro__xring_pop(&r, &v), 1);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(coro__xring_pop(&r, &v), 1);
    ASSERT_EQ(v, 2);
    ASSERT_EQ(coro__xring_pop(&r, &v), 0);
    ASSERT_EQ(coro__xring_drained(&r), 1);
    coro__xring_fini(&r);
}

TEST(xring_bad_sizes_are_einval)
{
    coro__xring_t r;
    errno = 0;
    ASSERT_EQ(coro__xring_init(&r, 0, 8), -1);
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_EQ(coro__xring_init(&r, 4, SIZE_MAX - 3), -1);
    ASSERT_EQ(errno, EINVAL);
}

/* ---- threads at once --------------------------------------------------------- */

enum { MT_THREADS = 3 };
static long MT_ITEMS; /* per pusher */

typedef struct mt {
    coro__xring_t r;
    int pushers_left;
    long seen[MT_THREADS];       /* per pusher: items popped (summed over poppers) */
    unsigned char *got;          /* per item: times popped */
    int order_broken;
} mt_t;

static void *mt_pusher(void *arg)
{
    mt_t *m = ((void **)arg)[0];
    long id = (long)(intptr_t)((void **)arg)[1];
    for (long i = 0; i < MT_ITEMS; i++) {
        long v = id * MT_ITEMS + i;
        while (coro__xring_push(&m->r, &v) == 0)
            sched_yield();
    }
    if (__atomic_sub_fetch(&m->pushers_left, 1, __ATOMIC_ACQ_REL) == 0)
        coro__xring_close(&m->r);
    return NULL;
}

static void *mt_popper(void *arg)
{
    mt_t *m = arg;
    long last[MT_THREADS];
    for (int i = 0; i < MT_THREADS; i++)
        last[i] = -1;
    long v;
    for (;;) {
        if (coro__xring_pop(&m->r, &v)) {
            long id = v / MT_ITEMS, i = v % MT_ITEMS;
            /* One pusher's items come out in its order, to any popper. */
            if (i <= last[id])
                __atomic_store_n(&m->order_broken, 1, __ATOMIC_RELAXED);
            last[id] = i;
            __atomic_fetch_add(&m->got[v], 1, __ATOMIC_RELAXED);
            continue;
        }
        if (coro__xring_drained(&m->r))
            return NULL;
        sched_yield();
    }
}

TEST(xring_threads_push_and_pop_every_item_exactly_once)
{
    MT_ITEMS = ts_count(100000, 5000);
    mt_t m = { .pushers_left = MT_THREADS };
    ASSERT_EQ(coro__xring_init(&m.r, 7, sizeof(long)), 0);
    m.got = calloc((size_t)MT_THREADS * MT_ITEMS, 1);
    ASSERT_NOT_NULL(m.got);
    pthread_t push[MT_THREADS], pop[2];
    void *args[MT_THREADS][2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&pop[i], NULL, mt_popper, &m), 0);
    for (long i = 0; i < MT_THREADS; i++) {
        args[i][0] = &m;
        args[i][1] = (void *)(intptr_t)i;
        ASSERT_EQ(pthread_create(&push[i], NULL, mt_pusher, args[i]), 0);
    }
    for (int i = 0; i < MT_THREADS; i++)
        pthread_join(push[i], NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(pop[i], NULL);
    long missing = 0, twice = 0;
    for (long i = 0; i < (long)MT_THREADS * MT_ITEMS; i++) {
        missing += m.got[i] == 0;
        twice += m.got[i] > 1;
    }
    ASSERT_EQ(missing, 0);
    ASSERT_EQ(twice, 0);
    ASSERT_EQ(m.order_broken, 0);
    free(m.got);
    coro__xring_fini(&m.r);
}
