/* test/test_chan_shared.c: shared channels (coro_chan_new_shared) across
 * the schedulers of a run, with plain threads, in selects that mix them
 * with local channels, under cancellation and deadlines, and a
 * randomized many-to-many model where every item must arrive exactly
 * once. */
#include "test/test_sched.h"
#include "sync/chan_int.h"
#include "coro/fault.h"
#include "sched/sched_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

static int run_threads(coro_fn fn, void *arg, int n)
{
    coro_main_opts_t o = { .threads = n };
    return coro_main_opts(fn, arg, &o);
}

/* ---- streaming from scheduler 0 to scheduler 1 ---------------------------- */

typedef struct stream {
    coro_chan_t *ch;
    long n;
} stream_t;

static int stream_main(void *arg)
{
    stream_t *st = arg;
    if (coro_thread_index() == 0) {
        for (long i = 0; i < st->n; i++)
            ASSERT_EQ(coro_chan_send(st->ch, &i), 0);
        ASSERT_EQ(coro_chan_close(st->ch), 0);
        return 0;
    }
    long want = 0, v;
    while (coro_chan_recv(st->ch, &v) == 0) {
        ASSERT_EQ(v, want);
        want++;
    }
    ASSERT_EQ(errno, EPIPE);
    ASSERT_EQ(want, st->n);
    return 0;
}

TEST(chan_shared_streams_in_order_from_scheduler_0_to_1)
{
    size_t caps[] = { 0, 1, 64 };
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        stream_t st = { coro_chan_new_shared(sizeof(long), caps[k]), ts_count(20000, 2000) };
        ASSERT_NOT_NULL(st.ch);
        ASSERT_EQ(coro_chan_cap(st.ch), caps[k]);
        ASSERT_EQ(run_threads(stream_main, &st, 2), 0);
        ASSERT_EQ(coro_chan_len(st.ch), 0);
        coro_chan_free(st.ch);
    }
}

/* ---- round trips across schedulers ---------------------------------------- */

typedef struct pingpong {
    coro_chan_t *ping, *pong;
    int rounds;
} pingpong_t;

static int pingpong_main(void *arg)
{
    pingpong_t *p = arg;
    int v;
    if (coro_thread_index() == 0) {
        for (int i = 0; i < p->rounds; i++) {
            ASSERT_EQ(coro_chan_send(p->ping, &i), 0);
            ASSERT_EQ(coro_chan_recv(p->pong, &v), 0);
            ASSERT_EQ(v, i + 1);
        }
        ASSERT_EQ(coro_chan_close(p->ping), 0);
        return 0;
    }
    while (coro_chan_recv(p->ping, &v) == 0) {
        v++;
        ASSERT_EQ(coro_chan_send(p->pong, &v), 0);
    }
    return 0;
}

TEST(chan_shared_round_trips_between_two_schedulers)
{
    pingpong_t p = { coro_chan_new_shared(sizeof(int), 0), coro_chan_new_shared(sizeof(int), 0),
                     (int)ts_count(5000, 500) };
    ASSERT_NOT_NULL(p.ping);
    ASSERT_NOT_NULL(p.pong);
    ASSERT_EQ(run_threads(pingpong_main, &p, 2), 0);
    coro_chan_free(p.ping);
    coro_chan_free(p.pong);
}

/* ---- a plain thread ---------------------------------------------------------- */

static void *plain_sender(void *arg)
{
    coro_chan_t *ch = arg;
    for (int i = 0; i < 1000; i++)
        if (coro_chan_send(ch, &i) != 0)
            return (void *)1;
    return coro_chan_close(ch) == 0 ? NULL : (void *)2;
}

static int read_1000(void *arg)
{
    coro_chan_t *ch = arg;
    if (coro_thread_index() > 0)
        return 0;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, plain_sender, ch), 0);
    int v, want = 0;
    while (coro_chan_recv(ch, &v) == 0)
        ASSERT_EQ(v, want++);
    ASSERT_EQ(errno, EPIPE);
    ASSERT_EQ(want, 1000);
    void *ret = (void *)-1;
    ASSERT_EQ(pthread_join(th, &ret), 0);
    ASSERT_NULL(ret);
    return 0;
}

static void *plain_receiver(void *arg)
{
    coro_chan_t *ch = arg;
    long sum = 0;
    int v;
    while (coro_chan_recv(ch, &v) == 0)
        sum += v;
    return errno == EPIPE ? (void *)(intptr_t)sum : NULL;
}

static int write_to_plain(void *arg)
{
    coro_chan_t *ch = arg;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, plain_receiver, ch), 0);
    for (int i = 1; i <= 500; i++)
        ASSERT_EQ(coro_chan_send(ch, &i), 0);
    ASSERT_EQ(coro_chan_close(ch), 0);
    void *ret = NULL;
    ASSERT_EQ(pthread_join(th, &ret), 0);
    ASSERT_EQ((intptr_t)ret, 500 * 501 / 2);
    return 0;
}

TEST(chan_shared_plain_thread_sends_1000_items_to_a_coroutine)
{
    for (size_t cap = 0; cap <= 8; cap += 8) {
        /* A lone scheduler, and scheduler 0 of a run. */
        coro_chan_t *ch = coro_chan_new_shared(sizeof(int), cap);
        ASSERT_NOT_NULL(ch);
        ASSERT_EQ(coro_main(read_1000, ch), 0);
        coro_chan_free(ch);
        ASSERT_NOT_NULL(ch = coro_chan_new_shared(sizeof(int), cap));
        ASSERT_EQ(run_threads(read_1000, ch, 2), 0);
        coro_chan_free(ch);
        /* And the other way. */
        ASSERT_NOT_NULL(ch = coro_chan_new_shared(sizeof(int), cap));
        ASSERT_EQ(coro_main(write_to_plain, ch), 0);
        coro_chan_free(ch);
    }
}

TEST(chan_shared_try_calls_len_and_errors_from_a_plain_thread)
{
    ASSERT_NULL(coro_chan_new_shared(0, 1));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(coro_chan_new_shared(8, ((size_t)1 << 40) + 1));
    ASSERT_EQ(errno, EINVAL);
    coro_chan_t *ch = coro_chan_new_shared(sizeof(int), 2);
    ASSERT_NOT_NULL(ch);
    int v = 5;
    ASSERT_EQ(coro_chan_try_send(ch, &v), 0);
    v = 6;
    ASSERT_EQ(coro_chan_try_send(ch, &v), 0);
    ASSERT_ERRNO(coro_chan_try_send(ch, &v), EAGAIN);
    ASSERT_EQ(coro_chan_len(ch), 2);
    ASSERT_EQ(coro_chan_try_recv(ch, &v), 0);
    ASSERT_EQ(v, 5);
    ASSERT_EQ(coro_chan_close(ch), 0);
    ASSERT_ERRNO(coro_chan_close(ch), EPIPE);
    ASSERT_ERRNO(coro_chan_send(ch, &v), EPIPE);
    ASSERT_EQ(coro_chan_recv(ch, &v), 0); /* buffered items stay receivable */
    ASSERT_EQ(v, 6);
    ASSERT_ERRNO(coro_chan_recv(ch, &v), EPIPE);
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EPIPE);
    coro_chan_free(ch);
}

/* ---- deadlines, cancellation, close and free across threads --------------- */

static int recv_until_cancelled(void *arg)
{
    coro_chan_t *ch = arg;
    int v;
    return coro_chan_recv(ch, &v) == -1 && errno == ECANCELED ? 0 : 1;
}

static int recv_until_closed(void *arg)
{
    coro_chan_t *ch = arg;
    int v;
    return coro_chan_recv(ch, &v) == -1 && errno == EPIPE ? 0 : 1;
}

static int deadline_cancel_close(void *arg)
{
    coro_chan_t *ch = arg;
    if (coro_thread_index() != 0)
        return 0;
    int v;
    int64_t old = coro_timeout(2 * CORO_MS);
    ASSERT_ERRNO(coro_chan_recv(ch, &v), ETIMEDOUT);
    coro_set_deadline(old);
    /* Parked on scheduler 1, cancelled from here. */
    coro_t *c = coro_spawn_on(1, recv_until_cancelled, ch);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_cancel(c), 0);
    int st = -1;
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 0);
    /* Parked on scheduler 1, woken by a close here. */
    c = coro_spawn_on(1, recv_until_closed, ch);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_sleep(CORO_MS), 0);
    ASSERT_EQ(coro_chan_close(ch), 0);
    ASSERT_EQ(coro_join(c, &st), 0);
    ASSERT_EQ(st, 0);
    return 0;
}

TEST(chan_shared_deadline_cancel_and_close_across_schedulers)
{
    coro_chan_t *ch = coro_chan_new_shared(sizeof(int), 0);
    ASSERT_NOT_NULL(ch);
    ASSERT_EQ(run_threads(deadline_cancel_close, ch, 2), 0);
    coro_chan_free(ch);
}

static void *free_later(void *arg)
{
    /* Once the coroutine waits in its receive. */
    struct timespec ts = { 0, 200 * 1000 };
    while (coro__chan_shared_waiting(arg) == 0)
        nanosleep(&ts, NULL);
    coro_chan_free(arg);
    return NULL;
}

static int free_while_waiting(void *arg)
{
    size_t cap = *(size_t *)arg;
    coro_chan_t *ch = coro_chan_new_shared(sizeof(int), cap);
    ASSERT_NOT_NULL(ch);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, free_later, ch), 0);
    int v;
    /* Freed by the thread meanwhile: EPIPE, and the receive touches the
     * channel no more (ASan would see it: the memory is gone). */
    ASSERT_ERRNO(coro_chan_recv(ch, &v), EPIPE);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    return 0;
}

static int free_while_selecting(void *arg)
{
    size_t cap = *(size_t *)arg;
    coro_chan_t *ch = coro_chan_new_shared(sizeof(int), cap);
    coro_chan_t *local = coro_chan_new(sizeof(int), 1);
    ASSERT_NOT_NULL(ch);
    ASSERT_NOT_NULL(local);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, free_later, ch), 0);
    int a = 0, b = 0;
    coro_case_t cases[] = { { ch, CORO_RECV, &a, 0 }, { local, CORO_RECV, &b, 0 } };
    ASSERT_EQ(coro_select(cases, 2), 0); /* the freed case, with EPIPE */
    ASSERT_EQ(cases[0].err, EPIPE);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    coro_chan_free(local);
    return 0;
}

TEST(chan_shared_freed_by_a_thread_while_a_coroutine_waits)
{
    size_t caps[] = { 0, 4 };
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(coro_main(free_while_waiting, &caps[i]), 0);
        ASSERT_EQ(coro_main(free_while_selecting, &caps[i]), 0);
    }
}

/* ---- select mixing local and shared channels ------------------------------ */

typedef struct mixed {
    coro_chan_t *shared;
    int n;
} mixed_t;

static int local_feeder(void *arg)
{
    coro_chan_t *local = arg;
    for (int i = 0; i < 1000; i++)
        if (coro_chan_send(local, &i) != 0)
            return 1;
    return coro_chan_close(local);
}

static int mixed_main(void *arg)
{
    mixed_t *m = arg;
    if (coro_thread_index() == 1) {
        for (int i = 0; i < m->n; i++)
            ASSERT_EQ(coro_chan_send(m->shared, &i), 0);
        ASSERT_EQ(coro_chan_close(m->shared), 0);
        return 0;
    }
    coro_chan_t *local = coro_chan_new(sizeof(int), 0);
    ASSERT_NOT_NULL(local);
    coro_t *f = coro_spawn(local_feeder, local);
    ASSERT_NOT_NULL(f);
    int a, b, next_a = 0, next_b = 0, open = 2;
    coro_case_t cases[2] = {
        { .ch = m->shared, .op = CORO_RECV, .elem = &a },
        { .ch = local, .op = CORO_RECV, .elem = &b },
    };
    while (open > 0) {
        int i = coro_select(cases, 2);
        ASSERT_GE(i, 0);
        if (cases[i].err == EPIPE) {
            cases[i].ch = NULL;
            open--;
        } else if (i == 0) {
            ASSERT_EQ(a, next_a++);
        } else {
            ASSERT_EQ(b, next_b++);
        }
    }
    ASSERT_EQ(next_a, m->n);
    ASSERT_EQ(next_b, 1000);
    ASSERT_EQ(coro_join(f, NULL), 0);
    coro_chan_free(local);
    return 0;
}

TEST(chan_shared_select_mixes_shared_and_local_channels)
{
    mixed_t m = { coro_chan_new_shared(sizeof(int), 0), (int)ts_count(5000, 500) };
    ASSERT_NOT_NULL(m.shared);
    ASSERT_EQ(run_threads(mixed_main, &m, 2), 0);
    coro_chan_free(m.shared);
}

/* ---- a deadlock on a shared channel within a run ---------------------------- */

static coro_chan_t *deadlock_ch;

static int shared_deadlock(void *arg)
{
    (void)arg;
    coro_chan_t **chp = &deadlock_ch;
    if (coro_thread_index() == 0)
        __atomic_store_n(chp, coro_chan_new_shared(sizeof(int), 0), __ATOMIC_RELEASE);
    coro_chan_t *c;
    while (!(c = __atomic_load_n(chp, __ATOMIC_ACQUIRE)))
        coro_yield();
    int v;
    int r = coro_chan_recv(c, &v); /* both wait; nobody sends */
    ASSERT_EQ(r, -1);
    ASSERT_EQ(errno, ECANCELED);
    return 0;
}

TEST(chan_shared_deadlock_within_a_run_is_edeadlk)
{
    ts_capture_t cap;
    ts_capture_begin(&cap);
    int r = run_threads(shared_deadlock, NULL, 2);
    int e = errno;
    char *out = ts_capture_end(&cap);
    ASSERT_EQ(r, -1);
    ASSERT_EQ(e, EDEADLK);
    ASSERT(strstr(out, "chan recv") != NULL);
    free(out);
    coro_chan_free(deadlock_ch);
    deadlock_ch = NULL;
}

/* ---- many to many, with deadlines and a plain thread: nothing lost ----------- */

enum { MODEL_PRODUCERS = 3, MODEL_ITEMS = 3000 };

typedef struct model {
    coro_chan_t *ch;
    long sum;          /* of everything received */
    long count;
    int producers_left;
} model_t;

static int model_producer(void *arg)
{
    model_t *m = arg;
    for (long i = 1; i <= MODEL_ITEMS; i++) {
        while (coro_chan_send(m->ch, &i) != 0)
            ASSERT_EQ(errno, ETIMEDOUT); /* only our own deadline below */
        if (i % 97 == 0)
            coro_yield();
    }
    if (__atomic_sub_fetch(&m->producers_left, 1, __ATOMIC_ACQ_REL) == 0)
        ASSERT_EQ(coro_chan_close(m->ch), 0);
    return 0;
}

static int model_consumer(void *arg)
{
    model_t *m = arg;
    long v, sum = 0, count = 0;
    for (;;) {
        /* Short deadlines: some receives give up, racing with senders
         * that are handing them an item. None may be lost. */
        int64_t old = coro_timeout((int64_t)(coro_random() % 50) * CORO_US);
        int r = coro_chan_recv(m->ch, &v);
        coro_set_deadline(old);
        if (r == 0) {
            sum += v;
            count++;
        } else if (errno == EPIPE) {
            break;
        } else {
            ASSERT_EQ(errno, ETIMEDOUT);
        }
    }
    __atomic_fetch_add(&m->sum, sum, __ATOMIC_RELAXED);
    __atomic_fetch_add(&m->count, count, __ATOMIC_RELAXED);
    return 0;
}

static void *model_plain_producer(void *arg)
{
    model_t *m = arg;
    for (long i = 1; i <= MODEL_ITEMS; i++)
        if (coro_chan_send(m->ch, &i) != 0)
            return (void *)1;
    if (__atomic_sub_fetch(&m->producers_left, 1, __ATOMIC_ACQ_REL) == 0)
        coro_chan_close(m->ch);
    return NULL;
}

static int model_main(void *arg)
{
    model_t *m = arg;
    coro_t *h[4];
    int k = 0;
    /* Each scheduler: a producer and two consumers (scheduler 0: one
     * producer, plus the plain thread's). */
    ASSERT_NOT_NULL(h[k++] = coro_spawn(model_producer, m));
    ASSERT_NOT_NULL(h[k++] = coro_spawn(model_consumer, m));
    ASSERT_NOT_NULL(h[k++] = coro_spawn(model_consumer, m));
    pthread_t th;
    if (coro_thread_index() == 0)
        ASSERT_EQ(pthread_create(&th, NULL, model_plain_producer, m), 0);
    for (int i = 0; i < k; i++)
        ASSERT_EQ(coro_join(h[i], NULL), 0);
    if (coro_thread_index() == 0) {
        void *ret = (void *)1;
        ASSERT_EQ(pthread_join(th, &ret), 0);
        ASSERT_NULL(ret);
    }
    return 0;
}

TEST(chan_shared_model_many_to_many_with_deadlines_loses_nothing)
{
    for (size_t cap = 0; cap <= 16; cap += 16) {
        model_t m = { coro_chan_new_shared(sizeof(long), cap), 0, 0, MODEL_PRODUCERS };
        ASSERT_NOT_NULL(m.ch);
        ASSERT_EQ(run_threads(model_main, &m, 2), 0);
        long per = (long)MODEL_ITEMS * (MODEL_ITEMS + 1) / 2;
        ASSERT_EQ(m.count, (long)MODEL_PRODUCERS * MODEL_ITEMS);
        ASSERT_EQ(m.sum, MODEL_PRODUCERS * per);
        coro_chan_free(m.ch);
    }
}

/* ---- buffered channels: a close racing with sends loses nothing --------------- */

enum { RACE_SENDERS = 3 };

typedef struct close_race {
    coro_chan_t *ch;
    long sent_sum, got_sum;
    int stop_after; /* the closer closes after this many items have been received */
} close_race_t;

static void *race_sender(void *arg)
{
    close_race_t *cr = arg;
    long sum = 0;
    for (long v = 1;; v++) {
        if (coro_chan_send(cr->ch, &v) != 0) {
            if (errno != EPIPE)
                return (void *)1;
            break;
        }
        sum += v; /* sent: some receiver must get it */
    }
    __atomic_fetch_add(&cr->sent_sum, sum, __ATOMIC_RELAXED);
    return NULL;
}

static int race_receiver(void *arg)
{
    close_race_t *cr = arg;
    long v, sum = 0, n = 0;
    while (coro_chan_recv(cr->ch, &v) == 0) {
        sum += v;
        /* One receiver closes while the senders are at full speed. */
        if (coro_thread_index() == 1 && ++n == cr->stop_after)
            ASSERT_EQ(coro_chan_close(cr->ch), 0);
    }
    ASSERT_EQ(errno, EPIPE);
    __atomic_fetch_add(&cr->got_sum, sum, __ATOMIC_RELAXED);
    return 0;
}

static int race_main(void *arg)
{
    close_race_t *cr = arg;
    pthread_t th[RACE_SENDERS];
    if (coro_thread_index() == 0)
        for (int i = 0; i < RACE_SENDERS; i++)
            ASSERT_EQ(pthread_create(&th[i], NULL, race_sender, cr), 0);
    coro_t *h = coro_spawn(race_receiver, cr);
    ASSERT_NOT_NULL(h);
    ASSERT_EQ(coro_join(h, NULL), 0);
    if (coro_thread_index() == 0) {
        for (int i = 0; i < RACE_SENDERS; i++) {
            void *ret = (void *)1;
            ASSERT_EQ(pthread_join(th[i], &ret), 0);
            ASSERT_NULL(ret);
        }
    }
    return 0;
}

TEST(chan_shared_buffered_close_racing_with_sends_loses_nothing)
{
    /* Every send that returned 0 is received, whatever the close cut. */
    int rounds = (int)ts_count(30, 4);
    for (int round = 0; round < rounds; round++) {
        close_race_t cr = { coro_chan_new_shared(sizeof(long), (size_t)1 + round % 9), 0, 0,
                            1 + (int)(coro_random() % 2000) };
        ASSERT_NOT_NULL(cr.ch);
        ASSERT_EQ(run_threads(race_main, &cr, 2), 0);
        ASSERT(cr.sent_sum > 0);
        ASSERT_EQ(cr.got_sum, cr.sent_sum);
        coro_chan_free(cr.ch);
    }
}

/* ---- a select woken by a ring passes the wake-up on ---------------------------- */

typedef struct pass {
    coro_chan_t *ring;  /* shared, buffered */
    coro_chan_t *local; /* this scheduler's, buffered */
    int select_took;    /* 0 the ring's item, 1 the local one's */
    int select_done, plain_done;
} pass_t;

static int pass_select(void *arg)
{
    pass_t *p = arg;
    long a = 0, b = 0;
    coro_case_t cases[] = { { p->ring, CORO_RECV, &a, 0 }, { p->local, CORO_RECV, &b, 0 } };
    int i = coro_select(cases, 2);
    ASSERT(i == 0 || i == 1);
    ASSERT_EQ(cases[i].err, 0);
    p->select_took = i;
    p->select_done = 1;
    return 0;
}

static int pass_plain(void *arg)
{
    pass_t *p = arg;
    long v;
    /* The deadline catches a wake-up lost when the select took the other
     * case: the item would then sit in the ring with this one asleep. */
    int64_t old = coro_timeout(5000 * CORO_MS);
    ASSERT_EQ(coro_chan_recv(p->ring, &v), 0);
    coro_set_deadline(old);
    p->plain_done = 1;
    return 0;
}

static int pass_main(void *arg)
{
    (void)arg;
    int rounds = 40, took_local = 0;
    for (int round = 0; round < rounds; round++) {
        pass_t p = { coro_chan_new_shared(sizeof(long), 4), coro_chan_new(sizeof(long), 1), 0, 0, 0 };
        ASSERT_NOT_NULL(p.ring);
        ASSERT_NOT_NULL(p.local);
        /* The select waits first, so the ring's push wakes it, not the
         * plain receiver behind it. */
        coro_t *s = coro_spawn(pass_select, &p), *r;
        ASSERT_NOT_NULL(s);
        coro_yield();
        ASSERT_NOT_NULL(r = coro_spawn(pass_plain, &p));
        coro_yield();
        ASSERT_EQ(coro__chan_shared_waiting(p.ring), 2);
        /* Without a yield between them: the push claims the select's wait
         * (it is now bound to look again), and the local send, finding
         * its waiter claimed, buffers. When the select runs both cases
         * are ready and it picks one at random. */
        long one = 1;
        ASSERT_EQ(coro_chan_send(p.ring, &one), 0);
        ASSERT_EQ(coro_chan_send(p.local, &one), 0);
        ASSERT_EQ(coro_join(s, NULL), 0);
        if (p.select_took == 0) /* the ring's item: give the plain one its own */
            ASSERT_EQ(coro_chan_send(p.ring, &one), 0);
        else
            took_local++;
        ASSERT_EQ(coro_join(r, NULL), 0);
        ASSERT_EQ(p.plain_done, 1);
        coro_chan_free(p.ring);
        coro_chan_free(p.local);
    }
    ASSERT(took_local > 0); /* the case under test did happen */
    return 0;
}

TEST(chan_shared_select_woken_by_a_ring_passes_the_wake_up_on)
{
    ASSERT_EQ(coro_main(pass_main, NULL), 0);
}

TEST(chan_shared_new_fails_cleanly_at_each_allocation)
{
    /* The channel, its shared part, the ring and its slots: each failing
     * allocation gives NULL/ENOMEM and leaks nothing (Valgrind checks). */
    int failed = 0;
    for (int nth = 1; nth <= 6; nth++) {
        coro__fault_arm(CORO_FAULT_MALLOC, nth);
        errno = 0;
        coro_chan_t *ch = coro_chan_new_shared(sizeof(long), 8);
        coro__fault_arm(CORO_FAULT_MALLOC, 0);
        if (ch) {
            long v = 7, w = 0;
            ASSERT_EQ(coro_chan_try_send(ch, &v), 0);
            ASSERT_EQ(coro_chan_try_recv(ch, &w), 0);
            ASSERT_EQ(w, 7);
            coro_chan_free(ch);
            continue;
        }
        ASSERT_EQ(errno, ENOMEM);
        failed++;
    }
    ASSERT_EQ(failed, 4);
}

/* ---- a waiter whose peer never comes stops spinning -------------------------- */

static int timed_out_waits(void *arg)
{
    coro_chan_t *ch = arg;
    uint64_t before = coro__tls->post_spins;
    long v;
    /* Nothing ever arrives and no post comes: each wait would spin 10 us
     * first; only the first few do. */
    for (int i = 0; i < 50; i++) {
        int64_t old = coro_timeout(CORO_MS / 5);
        ASSERT_EQ(coro_chan_recv(ch, &v), -1);
        ASSERT_EQ(errno, ETIMEDOUT);
        coro_set_deadline(old);
    }
    ASSERT(coro__tls->post_spins - before <= CORO__POST_SPIN_CREDIT);
    return 0;
}

TEST(chan_shared_waiter_without_peer_stops_spinning)
{
    for (size_t cap = 0; cap <= 4; cap += 4) {
        coro_chan_t *ch = coro_chan_new_shared(sizeof(long), cap);
        ASSERT_NOT_NULL(ch);
        ASSERT_EQ(coro_main(timed_out_waits, ch), 0);
        coro_chan_free(ch);
    }
}
