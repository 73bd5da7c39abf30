/* test/test_chan.c: channels and select. Rendezvous (the value goes
 * straight into the parked receiver's buffer, no extra switch), buffered
 * FIFO across the full/empty boundary and the ring's wrap, refill from
 * parked senders in order, many-to-many with every item exactly once,
 * close and free semantics (waiters wake with EPIPE and never touch a
 * freed channel), try_ variants, cancellation and deadlines of blocked
 * senders, receivers and selects (the waiter is gone; nothing lost), the
 * hand-off race (chosen, then cancelled before it runs: the call still
 * succeeds), select fairness, stale select waiters, the deadlock dump's
 * names, fault injection, misuse (EINVAL, EPERM, a freed handle aborts). */
#include "test/test_sched.h"
#include "coro/fault.h"
#include "coro/sanitize.h"

#include <signal.h>
#include <sys/wait.h>

/* ---- helpers ---------------------------------------------------------- */

/* A coroutine that receives one long and records the outcome. */
typedef struct rx {
    coro_chan_t *ch;
    long val;
    int ret, err;
    int done;
    int later_err; /* errno of a checkpoint after the call (cancel tests) */
} rx_t;

static int rx_one(void *arg)
{
    rx_t *r = arg;
    errno = 0;
    r->ret = coro_chan_recv(r->ch, &r->val);
    r->err = errno;
    r->done = 1;
    errno = 0;
    coro_sleep(0);
    r->later_err = errno;
    return 0;
}

static int tx_one(void *arg)
{
    rx_t *r = arg;
    errno = 0;
    r->ret = coro_chan_send(r->ch, &r->val);
    r->err = errno;
    r->done = 1;
    errno = 0;
    coro_sleep(0);
    r->later_err = errno;
    return 0;
}

static coro_t *spawn_ok(coro_fn fn, void *arg)
{
    coro_t *c = coro_spawn(fn, arg);
    ASSERT_NOT_NULL(c);
    return c;
}

static uint64_t switches_now(void)
{
    coro_stats_t st;
    coro_stats(&st);
    return st.switches;
}

/* ---- unbuffered rendezvous --------------------------------------------- */

typedef struct big {
    unsigned char bytes[37]; /* an odd size: the memcpy path */
} big_t;

typedef struct rv {
    coro_chan_t *ch;
    size_t size;
    int n;
    unsigned char got[64];
    char log[256];
    int loglen;
    int received;
} rv_t;

static void fill(unsigned char *p, size_t size, int seed)
{
    for (size_t i = 0; i < size; i++)
        p[i] = (unsigned char)(seed * 31 + (int)i * 7 + 1);
}

static int rv_receiver(void *arg)
{
    rv_t *r = arg;
    for (int i = 0; i < r->n; i++) {
        memset(r->got, 0, sizeof r->got);
        r->log[r->loglen++] = 'r';
        ASSERT_EQ(coro_chan_recv(r->ch, r->got), 0);
        unsigned char want[64];
        fill(want, r->size, i);
        ASSERT_EQ(memcmp(r->got, want, r->size), 0);
        r->received++;
        r->log[r->loglen++] = 'R';
    }
    return 0;
}

static int rendezvous_main(void *arg)
{
    (void)arg;
    static const size_t sizes[] = { 1, 2, 4, 8, 16, 3, sizeof(big_t), 64 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        rv_t r;
        memset(&r, 0, sizeof r);
        r.size = sizes[k];
        r.n = 5;
        r.ch = coro_chan_new(r.size, 0);
        ASSERT_NOT_NULL(r.ch);
        ASSERT_EQ(coro_chan_cap(r.ch), 0);
        coro_t *c = spawn_ok(rv_receiver, &r);
        coro_yield(); /* the receiver parks in recv */
        ASSERT_EQ(r.loglen, 1);
        for (int i = 0; i < r.n; i++) {
            unsigned char v[64];
            fill(v, r.size, i);
            /* The receiver is parked: the send completes at once, with the
             * value already in the receiver's own buffer, and no switch. */
            uint64_t sw = switches_now();
            ASSERT_EQ(coro_chan_send(r.ch, v), 0);
            ASSERT_EQ(switches_now(), sw);
            ASSERT_EQ(memcmp(r.got, v, r.size), 0);
            ASSERT_EQ(r.received, i); /* it has not run yet */
            r.log[r.loglen++] = 'S';
            memset(v, 0xEE, sizeof v); /* the sender's buffer is free again */
            coro_yield();
            ASSERT_EQ(r.received, i + 1);
        }
        ASSERT_EQ(coro_join(c, NULL), 0);
        r.log[r.loglen] = '\0';
        ASSERT_STR_EQ(r.log, "rSRrSRrSRrSRrSR");
        ASSERT_EQ(coro_chan_len(r.ch), 0);
        coro_chan_free(r.ch);
    }
    return 0;
}

TEST(chan_unbuffered_rendezvous_order_and_values)
{
    ASSERT_EQ(coro_main(rendezvous_main, NULL), 0);
}

/* A sender that arrives first parks until a receiver takes the value
 * straight from its buffer. */
static int sender_first_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 0);
    ASSERT_NOT_NULL(ch);
    rx_t t = { .ch = ch, .val = 4242 };
    coro_t *c = spawn_ok(tx_one, &t);
    coro_yield();
    ASSERT_EQ(t.done, 0); /* blocked: nobody received */
    ASSERT_EQ(coro_chan_len(ch), 0);
    long v = 0;
    uint64_t sw = switches_now();
    ASSERT_EQ(coro_chan_recv(ch, &v), 0);
    ASSERT_EQ(switches_now(), sw);
    ASSERT_EQ(v, 4242);
    ASSERT_EQ(t.done, 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(t.ret, 0);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_unbuffered_sender_first)
{
    ASSERT_EQ(coro_main(sender_first_main, NULL), 0);
}

/* Ping-pong: two switches per round trip, no more. */
typedef struct pp {
    coro_chan_t *a, *b;
    long n;
} pp_t;

static int pp_echo(void *arg)
{
    pp_t *p = arg;
    long v;
    while (coro_chan_recv(p->a, &v) == 0)
        ASSERT_EQ(coro_chan_send(p->b, &(long){ v * 2 }), 0);
    ASSERT_EQ(errno, EPIPE);
    return 0;
}

static int pingpong_main(void *arg)
{
    (void)arg;
    pp_t p = { coro_chan_new(sizeof(long), 0), coro_chan_new(sizeof(long), 0), 10000 };
    ASSERT_NOT_NULL(p.a);
    ASSERT_NOT_NULL(p.b);
    coro_t *c = spawn_ok(pp_echo, &p);
    uint64_t sw = switches_now();
    for (long i = 0; i < p.n; i++) {
        long v = -1;
        ASSERT_EQ(coro_chan_send(p.a, &i), 0);
        ASSERT_EQ(coro_chan_recv(p.b, &v), 0);
        ASSERT_EQ(v, 2 * i);
    }
    ASSERT_LE(switches_now() - sw, (uint64_t)(2 * p.n + 2));
    ASSERT_EQ(coro_chan_close(p.a), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    coro_chan_free(p.a);
    coro_chan_free(p.b);
    return 0;
}

TEST(chan_unbuffered_ping_pong_two_switches_per_round)
{
    ASSERT_EQ(coro_main(pingpong_main, NULL), 0);
}

/* ---- buffered ------------------------------------------------------------ */

typedef struct bf {
    coro_chan_t *ch;
    long n;
    long next;
} bf_t;

static int bf_producer(void *arg)
{
    bf_t *b = arg;
    for (long i = 0; i < b->n; i++)
        ASSERT_EQ(coro_chan_send(b->ch, &i), 0);
    return 0;
}

static int bf_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 64);
    ASSERT_NOT_NULL(ch);
    ASSERT_EQ(coro_chan_cap(ch), 64);
    ASSERT_EQ(coro_chan_len(ch), 0);
    long v;
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EAGAIN);

    /* Fill to the boundary: 64 fit, the 65th would block. Several rounds,
     * starting at different offsets, so the ring wraps. */
    for (int round = 0; round < 5; round++) {
        for (long i = 0; i < 64; i++) {
            long x = round * 1000 + i;
            ASSERT_EQ(coro_chan_send(ch, &x), 0); /* never blocks */
            ASSERT_EQ(coro_chan_len(ch), (size_t)(i + 1));
        }
        long x = -1;
        ASSERT_ERRNO(coro_chan_try_send(ch, &x), EAGAIN);
        ASSERT_EQ(coro_chan_len(ch), 64);
        for (long i = 0; i < 64; i++) {
            ASSERT_EQ(coro_chan_recv(ch, &v), 0);
            ASSERT_EQ(v, round * 1000 + i);
            ASSERT_EQ(coro_chan_len(ch), (size_t)(63 - i));
        }
        ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EAGAIN);
        /* Shift the ring's head for the next round. */
        for (int k = 0; k <= round * 7; k++) {
            ASSERT_EQ(coro_chan_try_send(ch, &x), 0);
            ASSERT_EQ(coro_chan_try_recv(ch, &v), 0);
            ASSERT_EQ(v, x);
        }
    }

    /* A producer far ahead of a consumer reading in bursts: FIFO order
     * across many wraps, the producer parking whenever the ring is full. */
    bf_t b = { ch, 5000, 0 };
    coro_t *c = spawn_ok(bf_producer, &b);
    uint64_t seed = 12345;
    long expect = 0;
    while (expect < b.n) {
        long burst = (long)(ts_rand(&seed) % 100) + 1;
        for (long k = 0; k < burst && expect < b.n; k++) {
            ASSERT_EQ(coro_chan_recv(ch, &v), 0);
            ASSERT_EQ(v, expect);
            expect++;
        }
        ASSERT_LE(coro_chan_len(ch), 64);
        coro_yield();
    }
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(coro_chan_len(ch), 0);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_buffered_fifo_64_full_empty_boundary)
{
    ASSERT_EQ(coro_main(bf_main, NULL), 0);
}

/* A full ring with senders parked behind it: each receive moves the first
 * parked sender's item into the ring, so items still come out in order,
 * and that sender returns 0. */
static int refill_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 3);
    ASSERT_NOT_NULL(ch);
    for (long i = 0; i < 3; i++)
        ASSERT_EQ(coro_chan_send(ch, &i), 0);
    rx_t s[4];
    coro_t *c[4];
    for (int i = 0; i < 4; i++) {
        s[i] = (rx_t){ .ch = ch, .val = 3 + i };
        c[i] = spawn_ok(tx_one, &s[i]);
    }
    coro_yield();
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(s[i].done, 0);
    ASSERT_EQ(coro_chan_len(ch), 3);
    long v;
    for (long i = 0; i < 7; i++) {
        ASSERT_EQ(coro_chan_recv(ch, &v), 0);
        ASSERT_EQ(v, i);
        /* The ring stays full while senders wait. */
        ASSERT_EQ(coro_chan_len(ch), (size_t)(i < 4 ? 3 : 6 - i));
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(coro_join(c[i], NULL), 0);
        ASSERT_EQ(s[i].ret, 0);
    }
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EAGAIN);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_buffered_refill_from_parked_senders_keeps_order)
{
    ASSERT_EQ(coro_main(refill_main, NULL), 0);
}

/* ---- many to many ------------------------------------------------------- */

#define MM_SENDERS 8
#define MM_RECEIVERS 8
#define MM_PER_SENDER 1500

typedef struct mm {
    coro_chan_t *ch;
    int id;
    struct mm_shared *sh;
} mm_t;

typedef struct mm_shared {
    unsigned char seen[MM_SENDERS * MM_PER_SENDER];
    long received;
    uint64_t sum;
    long last[MM_SENDERS]; /* per sender, the last sequence a receiver saw */
} mm_shared_t;

static int mm_sender(void *arg)
{
    mm_t *m = arg;
    uint64_t seed = (uint64_t)m->id + 1;
    for (long i = 0; i < MM_PER_SENDER; i++) {
        long item = m->id * MM_PER_SENDER + i;
        ASSERT_EQ(coro_chan_send(m->ch, &item), 0);
        if (ts_rand(&seed) % 4 == 0)
            coro_yield();
    }
    return 0;
}

static int mm_receiver(void *arg)
{
    mm_t *m = arg;
    uint64_t seed = (uint64_t)m->id + 100;
    long item;
    while (coro_chan_recv(m->ch, &item) == 0) {
        ASSERT_GE(item, 0);
        ASSERT_LT(item, MM_SENDERS * MM_PER_SENDER);
        ASSERT_EQ(m->sh->seen[item], 0);
        m->sh->seen[item] = 1;
        m->sh->received++;
        m->sh->sum += (uint64_t)item;
        if (ts_rand(&seed) % 3 == 0)
            coro_yield();
    }
    ASSERT_EQ(errno, EPIPE);
    return 0;
}

static int mm_main(void *arg)
{
    size_t cap = *(size_t *)arg;
    static mm_shared_t sh;
    memset(&sh, 0, sizeof sh);
    coro_chan_t *ch = coro_chan_new(sizeof(long), cap);
    ASSERT_NOT_NULL(ch);
    mm_t s[MM_SENDERS], r[MM_RECEIVERS];
    coro_t *cs[MM_SENDERS], *cr[MM_RECEIVERS];
    for (int i = 0; i < MM_RECEIVERS; i++) {
        r[i] = (mm_t){ ch, i, &sh };
        cr[i] = spawn_ok(mm_receiver, &r[i]);
    }
    for (int i = 0; i < MM_SENDERS; i++) {
        s[i] = (mm_t){ ch, i, &sh };
        cs[i] = spawn_ok(mm_sender, &s[i]);
    }
    for (int i = 0; i < MM_SENDERS; i++)
        ASSERT_EQ(coro_join(cs[i], NULL), 0);
    ASSERT_EQ(coro_chan_close(ch), 0);
    for (int i = 0; i < MM_RECEIVERS; i++)
        ASSERT_EQ(coro_join(cr[i], NULL), 0);
    long total = MM_SENDERS * MM_PER_SENDER;
    ASSERT_EQ(sh.received, total);
    ASSERT_EQ(sh.sum, (uint64_t)total * (uint64_t)(total - 1) / 2);
    for (long i = 0; i < total; i++)
        ASSERT_EQ(sh.seen[i], 1);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_many_to_many_unbuffered_every_item_once)
{
    size_t cap = 0;
    ASSERT_EQ(coro_main(mm_main, &cap), 0);
}

TEST(chan_many_to_many_buffered_every_item_once)
{
    size_t cap = 5;
    ASSERT_EQ(coro_main(mm_main, &cap), 0);
}

/* ---- close --------------------------------------------------------------- */

static int close_main(void *arg)
{
    (void)arg;
    /* Parked receivers wake with EPIPE. */
    coro_chan_t *ch = coro_chan_new(sizeof(long), 0);
    ASSERT_NOT_NULL(ch);
    rx_t r[3];
    coro_t *c[3];
    for (int i = 0; i < 3; i++) {
        r[i] = (rx_t){ .ch = ch, .val = -5 };
        c[i] = spawn_ok(rx_one, &r[i]);
    }
    coro_yield();
    ASSERT_EQ(coro_chan_close(ch), 0);
    ASSERT_ERRNO(coro_chan_close(ch), EPIPE); /* twice */
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(coro_join(c[i], NULL), 0);
        ASSERT_EQ(r[i].ret, -1);
        ASSERT_EQ(r[i].err, EPIPE);
        ASSERT_EQ(r[i].val, -5); /* nothing written */
    }
    long v = 1;
    ASSERT_ERRNO(coro_chan_send(ch, &v), EPIPE);
    ASSERT_ERRNO(coro_chan_try_send(ch, &v), EPIPE);
    ASSERT_ERRNO(coro_chan_recv(ch, &v), EPIPE);
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EPIPE);
    coro_chan_free(ch);

    /* Parked senders wake with EPIPE, their items not delivered; buffered
     * items stay receivable, then EPIPE. */
    ch = coro_chan_new(sizeof(long), 2);
    ASSERT_NOT_NULL(ch);
    for (long i = 10; i < 12; i++)
        ASSERT_EQ(coro_chan_send(ch, &i), 0);
    rx_t s[2] = { { .ch = ch, .val = 12 }, { .ch = ch, .val = 13 } };
    coro_t *cs0 = spawn_ok(tx_one, &s[0]);
    coro_t *cs1 = spawn_ok(tx_one, &s[1]);
    coro_yield();
    ASSERT_EQ(s[0].done + s[1].done, 0);
    ASSERT_EQ(coro_chan_close(ch), 0);
    ASSERT_EQ(coro_join(cs0, NULL), 0);
    ASSERT_EQ(coro_join(cs1, NULL), 0);
    ASSERT_EQ(s[0].ret, -1);
    ASSERT_EQ(s[0].err, EPIPE);
    ASSERT_EQ(s[1].ret, -1);
    ASSERT_EQ(s[1].err, EPIPE);
    ASSERT_EQ(coro_chan_len(ch), 2);
    ASSERT_ERRNO(coro_chan_send(ch, &v), EPIPE);
    ASSERT_EQ(coro_chan_recv(ch, &v), 0);
    ASSERT_EQ(v, 10);
    ASSERT_EQ(coro_chan_try_recv(ch, &v), 0);
    ASSERT_EQ(v, 11);
    ASSERT_ERRNO(coro_chan_recv(ch, &v), EPIPE);
    ASSERT_ERRNO(coro_chan_recv(ch, &v), EPIPE);
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EPIPE);
    ASSERT_ERRNO(coro_chan_close(ch), EPIPE);
    coro_chan_free(ch); /* a closed channel frees too */
    return 0;
}

TEST(chan_close_wakes_waiters_drains_then_epipe)
{
    ASSERT_EQ(coro_main(close_main, NULL), 0);
}

/* Free with waiters parked: they wake with EPIPE and never touch the
 * freed memory (Valgrind and ASan would see it). */
static int free_waiters_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 0);
    ASSERT_NOT_NULL(ch);
    rx_t r = { .ch = ch }, s = { .ch = ch, .val = 3 };
    coro_t *cr = spawn_ok(rx_one, &r);
    coro_yield();
    coro_chan_free(ch);
    ASSERT_EQ(coro_join(cr, NULL), 0);
    ASSERT_EQ(r.ret, -1);
    ASSERT_EQ(r.err, EPIPE);

    ch = coro_chan_new(sizeof(long), 1);
    ASSERT_NOT_NULL(ch);
    long v = 1;
    ASSERT_EQ(coro_chan_send(ch, &v), 0);
    s.ch = ch;
    coro_t *cs = spawn_ok(tx_one, &s);
    coro_yield();
    coro_chan_free(ch);
    ASSERT_EQ(coro_join(cs, NULL), 0);
    ASSERT_EQ(s.ret, -1);
    ASSERT_EQ(s.err, EPIPE);
    coro_chan_free(NULL); /* harmless */
    return 0;
}

TEST(chan_free_wakes_waiters_with_epipe)
{
    ASSERT_EQ(coro_main(free_waiters_main, NULL), 0);
}

/* ---- try_, len, cap, arguments ------------------------------------------ */

static int try_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(int), 0);
    ASSERT_NOT_NULL(ch);
    int v = 7;
    ASSERT_ERRNO(coro_chan_try_send(ch, &v), EAGAIN);
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EAGAIN);
    /* With a receiver parked, try_send hands over. */
    coro_chan_t *lc = coro_chan_new(sizeof(long), 0);
    ASSERT_NOT_NULL(lc);
    rx_t r = { .ch = lc };
    coro_t *c = spawn_ok(rx_one, &r);
    coro_yield();
    long lv = 99;
    ASSERT_EQ(coro_chan_try_send(lc, &lv), 0);
    ASSERT_EQ(r.val, 99);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(r.ret, 0);
    /* With a sender parked, try_recv takes from it. */
    r = (rx_t){ .ch = lc, .val = 55 };
    c = spawn_ok(tx_one, &r);
    coro_yield();
    lv = 0;
    ASSERT_EQ(coro_chan_try_recv(lc, &lv), 0);
    ASSERT_EQ(lv, 55);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(r.ret, 0);
    coro_chan_free(lc);
    coro_chan_free(ch);

    /* len and cap. */
    ch = coro_chan_new(sizeof(int), 3);
    ASSERT_NOT_NULL(ch);
    ASSERT_EQ(coro_chan_cap(ch), 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(coro_chan_len(ch), (size_t)i);
        ASSERT_EQ(coro_chan_try_send(ch, &i), 0);
    }
    ASSERT_EQ(coro_chan_len(ch), 3);
    ASSERT_ERRNO(coro_chan_try_send(ch, &v), EAGAIN);
    ASSERT_EQ(coro_chan_try_recv(ch, &v), 0);
    ASSERT_EQ(v, 0);
    ASSERT_EQ(coro_chan_len(ch), 2);
    ASSERT_EQ(coro_chan_cap(ch), 3);

    /* Bad arguments. */
    ASSERT_ERRNO(coro_chan_send(NULL, &v), EINVAL);
    ASSERT_ERRNO(coro_chan_send(ch, NULL), EINVAL);
    ASSERT_ERRNO(coro_chan_recv(NULL, &v), EINVAL);
    ASSERT_ERRNO(coro_chan_recv(ch, NULL), EINVAL);
    ASSERT_ERRNO(coro_chan_try_send(NULL, &v), EINVAL);
    ASSERT_ERRNO(coro_chan_try_recv(ch, NULL), EINVAL);
    ASSERT_ERRNO(coro_chan_close(NULL), EINVAL);
    ASSERT_EQ(coro_chan_len(NULL), 0);
    ASSERT_EQ(coro_chan_cap(NULL), 0);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_try_variants_len_cap_and_einval)
{
    ASSERT_EQ(coro_main(try_main, NULL), 0);
    ASSERT_NULL_ERRNO(coro_chan_new(0, 4), EINVAL);
    ASSERT_NULL_ERRNO(coro_chan_new(8, SIZE_MAX / 4), ENOMEM);
}

TEST(chan_outside_a_coroutine)
{
    coro_chan_t *ch = coro_chan_new(sizeof(int), 1);
    ASSERT_NOT_NULL(ch);
    int v = 1;
    /* try_ works without a scheduler; blocking calls are EPERM. */
    ASSERT_EQ(coro_chan_try_send(ch, &v), 0);
    ASSERT_ERRNO(coro_chan_try_send(ch, &v), EAGAIN);
    ASSERT_ERRNO(coro_chan_send(ch, &v), EPERM);
    ASSERT_EQ(coro_chan_try_recv(ch, &v), 0);
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EAGAIN);
    ASSERT_ERRNO(coro_chan_recv(ch, &v), EPERM);
    coro_case_t cs[1] = { { ch, CORO_RECV, &v, 0 } };
    ASSERT_ERRNO(coro_try_select(cs, 1), EAGAIN);
    ASSERT_ERRNO(coro_select(cs, 1), EPERM);
    ASSERT_EQ(coro_chan_close(ch), 0);
    coro_chan_free(ch);
}

TEST(chan_new_fails_cleanly_on_enomem)
{
    coro__fault_arm(CORO_FAULT_MALLOC, 1);
    ASSERT_NULL_ERRNO(coro_chan_new(sizeof(int), 16), ENOMEM);
    coro__fault_arm(CORO_FAULT_MALLOC, 0);
    coro_chan_t *ch = coro_chan_new(sizeof(int), 16);
    ASSERT_NOT_NULL(ch);
    coro_chan_free(ch);
}

/* ---- cancellation and deadlines ----------------------------------------- */

static int cancel_recv_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 0);
    ASSERT_NOT_NULL(ch);
    rx_t a = { .ch = ch, .val = -1 }, b = { .ch = ch, .val = -1 };
    coro_t *ca = spawn_ok(rx_one, &a);
    coro_t *cb = spawn_ok(rx_one, &b);
    coro_yield(); /* both parked: a first */
    ASSERT_EQ(coro_cancel(ca), 0);
    coro_yield();
    ASSERT_EQ(a.done, 1);
    ASSERT_EQ(a.ret, -1);
    ASSERT_EQ(a.err, ECANCELED);
    ASSERT_EQ(a.later_err, ECANCELED); /* sticky */
    /* a's waiter is gone: the next send pairs with b. */
    long v = 31;
    ASSERT_EQ(coro_chan_send(ch, &v), 0);
    ASSERT_EQ(b.val, 31);
    ASSERT_EQ(a.val, -1);
    ASSERT_EQ(coro_join(ca, NULL), 0);
    ASSERT_EQ(coro_join(cb, NULL), 0);
    ASSERT_EQ(b.ret, 0);
    /* And no waiter is left at all. */
    ASSERT_ERRNO(coro_chan_try_send(ch, &v), EAGAIN);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_cancel_blocked_receiver)
{
    ASSERT_EQ(coro_main(cancel_recv_main, NULL), 0);
}

static int cancel_send_main(void *arg)
{
    size_t cap = *(size_t *)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), cap);
    ASSERT_NOT_NULL(ch);
    long v;
    for (long i = 0; i < (long)cap; i++)
        ASSERT_EQ(coro_chan_send(ch, &i), 0);
    rx_t a = { .ch = ch, .val = 100 }, b = { .ch = ch, .val = 200 };
    coro_t *ca = spawn_ok(tx_one, &a);
    coro_t *cb = spawn_ok(tx_one, &b);
    coro_yield();
    ASSERT_EQ(coro_cancel(ca), 0);
    coro_yield();
    ASSERT_EQ(a.ret, -1);
    ASSERT_EQ(a.err, ECANCELED);
    /* Everything buffered, then b's item; a's never arrives. */
    for (long i = 0; i < (long)cap; i++) {
        ASSERT_EQ(coro_chan_recv(ch, &v), 0);
        ASSERT_EQ(v, i);
    }
    ASSERT_EQ(coro_chan_recv(ch, &v), 0);
    ASSERT_EQ(v, 200);
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EAGAIN);
    ASSERT_EQ(coro_join(ca, NULL), 0);
    ASSERT_EQ(coro_join(cb, NULL), 0);
    ASSERT_EQ(b.ret, 0);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_cancel_blocked_sender_unbuffered)
{
    size_t cap = 0;
    ASSERT_EQ(coro_main(cancel_send_main, &cap), 0);
}

TEST(chan_cancel_blocked_sender_buffered)
{
    size_t cap = 4;
    ASSERT_EQ(coro_main(cancel_send_main, &cap), 0);
}

/* The hand-off race: a send picks receiver W and copies the item, then W
 * is cancelled before it runs. W's recv returns 0 with the item (never
 * lost), and the cancellation shows at its next checkpoint. The same for
 * a parked sender whose item a receive took, and for a sender whose item
 * moved into a ring. */
static int handoff_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 0);
    ASSERT_NOT_NULL(ch);
    rx_t w = { .ch = ch, .val = -1 }, other = { .ch = ch, .val = -1 };
    coro_t *cw = spawn_ok(rx_one, &w);
    coro_t *co = spawn_ok(rx_one, &other);
    coro_yield();
    long v = 77;
    ASSERT_EQ(coro_chan_send(ch, &v), 0); /* picks w, the first */
    ASSERT_EQ(coro_cancel(cw), 0);        /* before w runs */
    ASSERT_EQ(coro_join(cw, NULL), 0);
    ASSERT_EQ(w.ret, 0);
    ASSERT_EQ(w.val, 77);
    ASSERT_EQ(w.later_err, ECANCELED);
    /* Not duplicated: the other receiver is still waiting. */
    ASSERT_EQ(other.done, 0);
    v = 78;
    ASSERT_EQ(coro_chan_send(ch, &v), 0);
    ASSERT_EQ(coro_join(co, NULL), 0);
    ASSERT_EQ(other.ret, 0);
    ASSERT_EQ(other.val, 78);

    /* Sender side, unbuffered. */
    rx_t s = { .ch = ch, .val = 90 };
    coro_t *cs = spawn_ok(tx_one, &s);
    coro_yield();
    ASSERT_EQ(coro_chan_recv(ch, &v), 0);
    ASSERT_EQ(v, 90);
    ASSERT_EQ(coro_cancel(cs), 0);
    ASSERT_EQ(coro_join(cs, NULL), 0);
    ASSERT_EQ(s.ret, 0);
    ASSERT_EQ(s.later_err, ECANCELED);
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EAGAIN);
    coro_chan_free(ch);

    /* Sender side, buffered: its item moved into the ring. */
    ch = coro_chan_new(sizeof(long), 1);
    ASSERT_NOT_NULL(ch);
    v = 1;
    ASSERT_EQ(coro_chan_send(ch, &v), 0);
    s = (rx_t){ .ch = ch, .val = 2 };
    cs = spawn_ok(tx_one, &s);
    coro_yield();
    ASSERT_EQ(coro_chan_recv(ch, &v), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(coro_chan_len(ch), 1); /* s's item is in */
    ASSERT_EQ(coro_cancel(cs), 0);
    ASSERT_EQ(coro_join(cs, NULL), 0);
    ASSERT_EQ(s.ret, 0);
    ASSERT_EQ(coro_chan_recv(ch, &v), 0);
    ASSERT_EQ(v, 2);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_handoff_then_cancel_keeps_the_item)
{
    ASSERT_EQ(coro_main(handoff_main, NULL), 0);
}

/* A checkpoint even when the call could complete at once. */
static int checkpoint_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 2);
    ASSERT_NOT_NULL(ch);
    long v = 5;
    int64_t saved = coro_set_deadline(coro_now() - 1);
    ASSERT_ERRNO(coro_chan_send(ch, &v), ETIMEDOUT);
    ASSERT_EQ(coro_chan_len(ch), 0);
    coro_set_deadline(saved);
    ASSERT_EQ(coro_chan_send(ch, &v), 0);
    saved = coro_set_deadline(coro_now() - 1);
    ASSERT_ERRNO(coro_chan_recv(ch, &v), ETIMEDOUT);
    ASSERT_EQ(coro_chan_len(ch), 1);
    /* try_ calls are not checkpoints. */
    ASSERT_EQ(coro_chan_try_recv(ch, &v), 0);
    ASSERT_EQ(coro_chan_try_send(ch, &v), 0);
    coro_case_t cs[1] = { { ch, CORO_RECV, &v, 0 } };
    ASSERT_ERRNO(coro_select(cs, 1), ETIMEDOUT);
    ASSERT_EQ(coro_chan_len(ch), 1);
    ASSERT_EQ(coro_try_select(cs, 1), 0);
    coro_set_deadline(saved);
    ASSERT_EQ(coro_chan_close(ch), 0);
    coro_t *self = coro_self();
    ASSERT_EQ(coro_cancel(self), 0);
    /* closed and drained is EPIPE, but the checkpoint comes first */
    ASSERT_ERRNO(coro_chan_recv(ch, &v), ECANCELED);
    ASSERT_ERRNO(coro_chan_send(ch, &v), ECANCELED);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_blocking_calls_are_checkpoints_even_when_ready)
{
    ASSERT_EQ(coro_main(checkpoint_main, NULL), 0);
}

static int deadline_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 0);
    ASSERT_NOT_NULL(ch);
    long v = -3;
    int64_t t0 = coro_now();
    int64_t saved = coro_timeout(20 * CORO_MS);
    ASSERT_ERRNO(coro_chan_recv(ch, &v), ETIMEDOUT);
    int64_t took = coro_now() - t0;
    coro_set_deadline(saved);
    ASSERT_EQ(took, 20 * CORO_MS); /* virtual time: exact */
    ASSERT_EQ(v, -3);
    /* The waiter is gone. */
    ASSERT_ERRNO(coro_chan_try_send(ch, &v), EAGAIN);
    saved = coro_timeout(5 * CORO_MS);
    ASSERT_ERRNO(coro_chan_send(ch, &v), ETIMEDOUT);
    coro_set_deadline(saved);
    ASSERT_ERRNO(coro_chan_try_recv(ch, &v), EAGAIN);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_recv_deadline_etimedout)
{
    ASSERT_EQ(ts_main_sim(deadline_main, NULL, 1), 0);
}

/* A deadline and the item it guards arrive in the same loop pass: exactly
 * one outcome, never both and never neither. */
typedef struct race {
    coro_chan_t *ch;
    int64_t deadline;
    long val;
    int ret, err;
} race_t;

static int race_receiver(void *arg)
{
    race_t *r = arg;
    int64_t saved = coro_set_deadline(r->deadline);
    errno = 0;
    r->ret = coro_chan_recv(r->ch, &r->val);
    r->err = errno;
    coro_set_deadline(saved);
    return 0;
}

static int race_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 0);
    ASSERT_NOT_NULL(ch);
    int delivered = 0, timed_out = 0;
    for (int i = 0; i < 40; i++) {
        race_t r = { ch, coro_now() + 2 * CORO_MS, -1, 0, 0 };
        coro_t *c = spawn_ok(race_receiver, &r);
        coro_yield();
        /* Wake around the receiver's deadline: before, same time, after. */
        ASSERT_EQ(coro_sleep_until(r.deadline + (i % 5 - 2) * 20 * CORO_US), 0);
        long v = 1000 + i;
        errno = 0;
        int s = coro_chan_try_send(ch, &v);
        int se = errno;
        ASSERT_EQ(coro_join(c, NULL), 0);
        if (s == 0) {
            ASSERT_EQ(r.ret, 0);
            ASSERT_EQ(r.val, v);
            delivered++;
        } else {
            ASSERT_EQ(se, EAGAIN);
            ASSERT_EQ(r.ret, -1);
            ASSERT_EQ(r.err, ETIMEDOUT);
            ASSERT_EQ(r.val, -1);
            timed_out++;
        }
    }
    ASSERT_EQ(delivered + timed_out, 40);
    coro_chan_free(ch);
    return 0;
}

TEST(chan_deadline_and_item_in_one_pass_exactly_one_outcome)
{
    ASSERT_EQ(coro_main(race_main, NULL), 0);
}

/* ---- select --------------------------------------------------------------- */

static int fair_main(void *arg)
{
    (void)arg;
    coro_chan_t *a = coro_chan_new(sizeof(int), 1), *b = coro_chan_new(sizeof(int), 1);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    int one = 1, two = 2, got;
    ASSERT_EQ(coro_chan_send(a, &one), 0);
    ASSERT_EQ(coro_chan_send(b, &two), 0);
    int count[2] = { 0, 0 };
    const int n = 10000;
    for (int i = 0; i < n; i++) {
        coro_case_t cs[3] = {
            { a, CORO_RECV, &got, -1 },
            { NULL, CORO_SEND, NULL, -1 }, /* ignored */
            { b, CORO_RECV, &got, -1 },
        };
        int k = coro_select(cs, 3);
        ASSERT(k == 0 || k == 2);
        ASSERT_EQ(cs[k].err, 0);
        ASSERT_EQ(cs[1].err, 0);
        ASSERT_EQ(got, k == 0 ? 1 : 2);
        count[k / 2]++;
        /* Refill: both always ready. */
        ASSERT_EQ(coro_chan_send(k == 0 ? a : b, k == 0 ? &one : &two), 0);
    }
    ASSERT_GE(count[0], n * 40 / 100);
    ASSERT_LE(count[0], n * 60 / 100);
    ASSERT_GE(count[1], n * 40 / 100);
    ASSERT_LE(count[1], n * 60 / 100);
    /* Three ready cases: each about a third. */
    coro_chan_t *c = coro_chan_new(sizeof(int), 1);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(coro_chan_send(c, &one), 0);
    int c3[3] = { 0, 0, 0 };
    for (int i = 0; i < 9000; i++) {
        coro_case_t cs[3] = { { a, CORO_RECV, &got, 0 }, { b, CORO_RECV, &got, 0 },
                              { c, CORO_RECV, &got, 0 } };
        int k = coro_select(cs, 3);
        ASSERT(k >= 0 && k < 3);
        c3[k]++;
        ASSERT_EQ(coro_chan_send(cs[k].ch, &got), 0);
    }
    for (int k = 0; k < 3; k++) {
        ASSERT_GE(c3[k], 2500);
        ASSERT_LE(c3[k], 3500);
    }
    coro_chan_free(a);
    coro_chan_free(b);
    coro_chan_free(c);
    return 0;
}

TEST(select_fair_among_ready_cases)
{
    ASSERT_EQ(coro_main(fair_main, NULL), 0);
}

static int sel_timeout_main(void *arg)
{
    (void)arg;
    coro_chan_t *a = coro_chan_new(sizeof(int), 0), *b = coro_chan_new(sizeof(int), 0);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    int x = 0, y = 5;
    coro_case_t cs[2] = { { a, CORO_RECV, &x, 0 }, { b, CORO_SEND, &y, 0 } };
    int64_t t0 = coro_now();
    int64_t saved = coro_timeout(15 * CORO_MS);
    ASSERT_ERRNO(coro_select(cs, 2), ETIMEDOUT);
    coro_set_deadline(saved);
    int64_t took = coro_now() - t0;
    ASSERT_EQ(took, 15 * CORO_MS); /* virtual time: exact */
    /* Both waiters are gone. */
    ASSERT_ERRNO(coro_chan_try_send(a, &y), EAGAIN);
    ASSERT_ERRNO(coro_chan_try_recv(b, &x), EAGAIN);
    ASSERT_EQ(x, 0);
    coro_chan_free(a);
    coro_chan_free(b);
    return 0;
}

TEST(select_timeout_via_coro_timeout)
{
    ASSERT_EQ(ts_main_sim(sel_timeout_main, NULL, 2), 0);
}

/* A parked select completed by a peer: through its send case, then
 * through its receive case. */
typedef struct selp {
    coro_chan_t *a, *b;
    int ret, err;
    int sendv, recvv;
    int done;
    coro_case_t cs[2];
} selp_t;

static int selector(void *arg)
{
    selp_t *p = arg;
    p->cs[0] = (coro_case_t){ p->a, CORO_SEND, &p->sendv, -1 };
    p->cs[1] = (coro_case_t){ p->b, CORO_RECV, &p->recvv, -1 };
    errno = 0;
    p->ret = coro_select(p->cs, 2);
    p->err = errno;
    p->done = 1;
    return 0;
}

static int sel_sendrecv_main(void *arg)
{
    (void)arg;
    selp_t p;
    memset(&p, 0, sizeof p);
    p.a = coro_chan_new(sizeof(int), 0);
    p.b = coro_chan_new(sizeof(int), 0);
    ASSERT_NOT_NULL(p.a);
    ASSERT_NOT_NULL(p.b);

    /* Completed through the send case. */
    p.sendv = 41;
    coro_t *c = spawn_ok(selector, &p);
    coro_yield();
    ASSERT_EQ(p.done, 0);
    int v = 0;
    ASSERT_EQ(coro_chan_recv(p.a, &v), 0);
    ASSERT_EQ(v, 41);
    /* Its other case's waiter is stale now: a sender on b must not hand to
     * it. */
    ASSERT_ERRNO(coro_chan_try_send(p.b, &v), EAGAIN);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(p.ret, 0);
    ASSERT_EQ(p.cs[0].err, 0);
    ASSERT_EQ(p.recvv, 0);

    /* Completed through the receive case. */
    p.done = 0;
    c = spawn_ok(selector, &p);
    coro_yield();
    v = 17;
    ASSERT_EQ(coro_chan_send(p.b, &v), 0);
    ASSERT_EQ(p.recvv, 17);
    ASSERT_ERRNO(coro_chan_try_recv(p.a, &v), EAGAIN);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(p.ret, 1);
    ASSERT_EQ(p.cs[1].err, 0);

    /* Ready at once: no parking. */
    rx_t r = { .ch = p.a, .val = 0 };
    coro_t *cr = spawn_ok(rx_one, &r);
    coro_yield();
    p.sendv = 8;
    coro_case_t cs[2] = { { p.a, CORO_SEND, &p.sendv, 0 }, { p.b, CORO_RECV, &v, 0 } };
    ASSERT_EQ(coro_select(cs, 2), 0);
    ASSERT_EQ(r.val, 8);
    ASSERT_EQ(coro_join(cr, NULL), 0);
    coro_chan_free(p.a);
    coro_chan_free(p.b);
    return 0;
}

TEST(select_send_and_recv_cases)
{
    ASSERT_EQ(coro_main(sel_sendrecv_main, NULL), 0);
}

/* A send and a receive on the same unbuffered channel never meet each
 * other; a third party completes one of them. */
typedef struct same {
    coro_chan_t *ch;
    int out, in;
    int ret;
    coro_case_t cs[2];
} same_t;

static int same_selector(void *arg)
{
    same_t *s = arg;
    s->cs[0] = (coro_case_t){ s->ch, CORO_SEND, &s->out, 0 };
    s->cs[1] = (coro_case_t){ s->ch, CORO_RECV, &s->in, 0 };
    s->ret = coro_select(s->cs, 2);
    return 0;
}

static int same_main(void *arg)
{
    (void)arg;
    same_t s = { .ch = coro_chan_new(sizeof(int), 0), .out = 1, .in = 0 };
    ASSERT_NOT_NULL(s.ch);
    coro_case_t cs[2] = { { s.ch, CORO_SEND, &s.out, 0 }, { s.ch, CORO_RECV, &s.in, 0 } };
    ASSERT_ERRNO(coro_try_select(cs, 2), EAGAIN);
    coro_t *c = spawn_ok(same_selector, &s);
    coro_yield();
    int v = 9;
    ASSERT_EQ(coro_chan_send(s.ch, &v), 0); /* meets the receive case */
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(s.ret, 1);
    ASSERT_EQ(s.in, 9);
    ASSERT_ERRNO(coro_chan_try_recv(s.ch, &v), EAGAIN); /* nothing left */

    s.out = 4;
    c = spawn_ok(same_selector, &s);
    coro_yield();
    ASSERT_EQ(coro_chan_recv(s.ch, &v), 0); /* meets the send case */
    ASSERT_EQ(v, 4);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(s.ret, 0);
    ASSERT_ERRNO(coro_chan_try_send(s.ch, &v), EAGAIN);
    coro_chan_free(s.ch);
    return 0;
}

TEST(select_send_and_recv_on_one_channel_never_meet_themselves)
{
    ASSERT_EQ(coro_main(same_main, NULL), 0);
}

/* A select completed through one case leaves a stale waiter on its other
 * channel until it runs: a plain receiver parked behind that waiter gets
 * the next item, and nothing is lost. */
static int stale_main(void *arg)
{
    (void)arg;
    selp_t p;
    memset(&p, 0, sizeof p);
    p.a = coro_chan_new(sizeof(int), 0);
    p.b = coro_chan_new(sizeof(int), 0);
    ASSERT_NOT_NULL(p.a);
    ASSERT_NOT_NULL(p.b);
    p.sendv = 66;
    coro_t *c = spawn_ok(selector, &p); /* send on a, receive on b */
    coro_yield();
    /* Complete the select through a. */
    int v = 0;
    ASSERT_EQ(coro_chan_try_recv(p.a, &v), 0);
    ASSERT_EQ(v, 66);
    /* Before the selector runs, b's queue holds only its stale waiter. */
    v = 12;
    ASSERT_ERRNO(coro_chan_try_send(p.b, &v), EAGAIN);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(p.ret, 0);
    ASSERT_EQ(p.recvv, 0);
    coro_chan_free(p.a);
    coro_chan_free(p.b);
    return 0;
}

TEST(select_stale_case_waiter_is_skipped)
{
    ASSERT_EQ(coro_main(stale_main, NULL), 0);
}

/* Stale select waiter ahead of a live plain receiver on the same channel:
 * the item goes to the plain receiver. */
typedef struct irx {
    coro_chan_t *ch;
    int val, ret;
} irx_t;

static int int_rx(void *arg)
{
    irx_t *r = arg;
    r->ret = coro_chan_recv(r->ch, &r->val);
    return 0;
}

static int stale2_main(void *arg)
{
    (void)arg;
    selp_t p;
    memset(&p, 0, sizeof p);
    p.a = coro_chan_new(sizeof(int), 0);
    p.b = coro_chan_new(sizeof(int), 0);
    ASSERT_NOT_NULL(p.a);
    ASSERT_NOT_NULL(p.b);
    p.sendv = 3;
    coro_t *c = spawn_ok(selector, &p);
    irx_t r = { p.b, 0, -5 };
    coro_t *cr = spawn_ok(int_rx, &r);
    coro_yield(); /* b's queue: select's waiter, then r */
    int v = 0;
    ASSERT_EQ(coro_chan_recv(p.a, &v), 0); /* completes the select */
    ASSERT_EQ(v, 3);
    v = 21;
    ASSERT_EQ(coro_chan_send(p.b, &v), 0); /* skips the stale waiter */
    ASSERT_EQ(r.val, 21);
    ASSERT_EQ(p.recvv, 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(coro_join(cr, NULL), 0);
    ASSERT_EQ(p.ret, 0);
    ASSERT_EQ(r.ret, 0);
    coro_chan_free(p.a);
    coro_chan_free(p.b);
    return 0;
}

TEST(select_stale_waiter_ahead_of_a_live_one)
{
    ASSERT_EQ(coro_main(stale2_main, NULL), 0);
}

static int sel_closed_main(void *arg)
{
    (void)arg;
    coro_chan_t *a = coro_chan_new(sizeof(int), 0), *b = coro_chan_new(sizeof(int), 2);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    int v = 0, w = 1;
    ASSERT_EQ(coro_chan_close(a), 0);
    coro_case_t cs[2] = { { a, CORO_RECV, &v, -1 }, { NULL, 0, NULL, -1 } };
    ASSERT_EQ(coro_select(cs, 2), 0);
    ASSERT_EQ(cs[0].err, EPIPE);
    cs[0].op = CORO_SEND;
    ASSERT_EQ(coro_try_select(cs, 1), 0);
    ASSERT_EQ(cs[0].err, EPIPE);

    /* A closed buffered channel still delivers its items first. */
    ASSERT_EQ(coro_chan_send(b, &w), 0);
    ASSERT_EQ(coro_chan_close(b), 0);
    coro_case_t cb[1] = { { b, CORO_RECV, &v, -1 } };
    ASSERT_EQ(coro_select(cb, 1), 0);
    ASSERT_EQ(cb[0].err, 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(coro_select(cb, 1), 0);
    ASSERT_EQ(cb[0].err, EPIPE);
    coro_chan_free(a);
    coro_chan_free(b);

    /* A parked select whose channel is closed, then one whose channel is
     * freed: the case fires with EPIPE. */
    for (int freeit = 0; freeit < 2; freeit++) {
        selp_t p;
        memset(&p, 0, sizeof p);
        p.a = coro_chan_new(sizeof(int), 0);
        p.b = coro_chan_new(sizeof(int), 0);
        ASSERT_NOT_NULL(p.a);
        ASSERT_NOT_NULL(p.b);
        coro_t *c = spawn_ok(selector, &p);
        coro_yield();
        if (freeit)
            coro_chan_free(p.b);
        else
            ASSERT_EQ(coro_chan_close(p.b), 0);
        ASSERT_EQ(coro_join(c, NULL), 0);
        ASSERT_EQ(p.ret, 1);
        ASSERT_EQ(p.cs[1].err, EPIPE);
        ASSERT_EQ(p.cs[0].err, 0);
        ASSERT_ERRNO(coro_chan_try_recv(p.a, &v), EAGAIN);
        coro_chan_free(p.a);
        if (!freeit)
            coro_chan_free(p.b);
    }
    return 0;
}

TEST(select_closed_channel_gives_epipe)
{
    ASSERT_EQ(coro_main(sel_closed_main, NULL), 0);
}

static int sel_einval_main(void *arg)
{
    (void)arg;
    coro_chan_t *a = coro_chan_new(sizeof(int), 1);
    ASSERT_NOT_NULL(a);
    int v = 0;
    coro_case_t none[2] = { { NULL, CORO_RECV, &v, 0 }, { NULL, CORO_SEND, &v, 0 } };
    ASSERT_ERRNO(coro_select(none, 2), EINVAL);
    ASSERT_ERRNO(coro_try_select(none, 2), EINVAL);
    ASSERT_ERRNO(coro_select(none, 0), EINVAL);
    ASSERT_ERRNO(coro_select(none, -1), EINVAL);
    ASSERT_ERRNO(coro_select(NULL, 1), EINVAL);
    coro_case_t bad[1] = { { a, 3, &v, 0 } };
    ASSERT_ERRNO(coro_select(bad, 1), EINVAL);
    bad[0] = (coro_case_t){ a, CORO_RECV, NULL, 0 };
    ASSERT_ERRNO(coro_select(bad, 1), EINVAL);
    /* try_select: EAGAIN when nothing is ready. */
    coro_case_t r[1] = { { a, CORO_RECV, &v, 0 } };
    ASSERT_ERRNO(coro_try_select(r, 1), EAGAIN);
    coro_case_t s[1] = { { a, CORO_SEND, &v, 0 } };
    ASSERT_EQ(coro_try_select(s, 1), 0);
    ASSERT_ERRNO(coro_try_select(s, 1), EAGAIN);
    ASSERT_EQ(coro_try_select(r, 1), 0);
    coro_chan_free(a);
    return 0;
}

TEST(select_einval_and_try_select_eagain)
{
    ASSERT_EQ(coro_main(sel_einval_main, NULL), 0);
}

/* Cancel a parked select: ECANCELED, every case waiter gone. Then the
 * hand-off race: a peer completes a case, then the selector is cancelled
 * before it runs; the select still returns that case. */
static int sel_cancel_main(void *arg)
{
    (void)arg;
    selp_t p;
    memset(&p, 0, sizeof p);
    p.a = coro_chan_new(sizeof(int), 0);
    p.b = coro_chan_new(sizeof(int), 0);
    ASSERT_NOT_NULL(p.a);
    ASSERT_NOT_NULL(p.b);
    coro_t *c = spawn_ok(selector, &p);
    coro_yield();
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(p.ret, -1);
    ASSERT_EQ(p.err, ECANCELED);
    int v = 0;
    ASSERT_ERRNO(coro_chan_try_recv(p.a, &v), EAGAIN);
    ASSERT_ERRNO(coro_chan_try_send(p.b, &v), EAGAIN);

    memset(&p.cs, 0, sizeof p.cs);
    p.done = 0;
    c = spawn_ok(selector, &p);
    coro_yield();
    v = 55;
    ASSERT_EQ(coro_chan_send(p.b, &v), 0);
    ASSERT_EQ(coro_cancel(c), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(p.ret, 1);
    ASSERT_EQ(p.recvv, 55);
    ASSERT_ERRNO(coro_chan_try_recv(p.a, &v), EAGAIN);
    coro_chan_free(p.a);
    coro_chan_free(p.b);
    return 0;
}

TEST(select_cancel_and_handoff_race)
{
    ASSERT_EQ(coro_main(sel_cancel_main, NULL), 0);
}

/* More cases than fit on the stack: the waiters are allocated. */
#define WIDE 100

typedef struct wide {
    coro_chan_t *ch[WIDE];
    int vals[WIDE];
    coro_case_t cs[WIDE];
    int ret, err;
    int fail_alloc; /* make the select's own allocation fail */
} wide_t;

static int wide_selector(void *arg)
{
    wide_t *w = arg;
    for (int i = 0; i < WIDE; i++)
        w->cs[i] = (coro_case_t){ w->ch[i], CORO_RECV, &w->vals[i], 0 };
    if (w->fail_alloc)
        coro__fault_arm(CORO_FAULT_MALLOC, 1);
    errno = 0;
    w->ret = coro_select(w->cs, WIDE);
    w->err = errno;
    coro__fault_arm(CORO_FAULT_MALLOC, 0);
    return 0;
}

static int wide_main(void *arg)
{
    (void)arg;
    static wide_t w;
    memset(&w, 0, sizeof w);
    for (int i = 0; i < WIDE; i++) {
        w.ch[i] = coro_chan_new(sizeof(int), 0);
        ASSERT_NOT_NULL(w.ch[i]);
    }
    coro_t *c = spawn_ok(wide_selector, &w);
    coro_yield();
    int v = 1234;
    ASSERT_EQ(coro_chan_send(w.ch[73], &v), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(w.ret, 73);
    ASSERT_EQ(w.vals[73], 1234);
    for (int i = 0; i < WIDE; i++)
        ASSERT_ERRNO(coro_chan_try_send(w.ch[i], &v), EAGAIN);

    /* Its allocation failing: ENOMEM, nothing left linked. */
    w.fail_alloc = 1;
    c = spawn_ok(wide_selector, &w);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(w.ret, -1);
    ASSERT_EQ(w.err, ENOMEM);
    for (int i = 0; i < WIDE; i++) {
        ASSERT_ERRNO(coro_chan_try_send(w.ch[i], &v), EAGAIN);
        coro_chan_free(w.ch[i]);
    }
    return 0;
}

TEST(select_many_cases)
{
    ASSERT_EQ(coro_main(wide_main, NULL), 0);
}

/* Selects on both ends, many coroutines, mixed with plain calls and
 * timeouts: every item exactly once. */
#define MIX_ITEMS 3000

typedef struct mix {
    coro_chan_t *a, *b; /* a unbuffered, b buffered */
    long next_item;
    unsigned char seen[MIX_ITEMS];
    long received;
    int producers_left;
} mix_t;

static int mix_producer(void *arg)
{
    mix_t *m = arg;
    uint64_t seed = (uint64_t)(uintptr_t)coro_self();
    for (;;) {
        if (m->next_item >= MIX_ITEMS)
            break;
        long item = m->next_item++;
        for (;;) {
            coro_case_t cs[2] = { { m->a, CORO_SEND, &item, 0 }, { m->b, CORO_SEND, &item, 0 } };
            int r;
            if (ts_rand(&seed) % 5 == 0) {
                r = coro_chan_send(ts_rand(&seed) % 2 ? m->a : m->b, &item);
            } else {
                int64_t saved = coro_timeout((int64_t)(ts_rand(&seed) % 50) * CORO_US);
                r = coro_select(cs, 2);
                coro_set_deadline(saved);
                if (r < 0) {
                    ASSERT_EQ(errno, ETIMEDOUT);
                    continue; /* not sent: retry */
                }
                ASSERT_EQ(cs[r].err, 0);
                r = 0;
            }
            ASSERT_EQ(r, 0);
            break;
        }
    }
    if (--m->producers_left == 0) {
        ASSERT_EQ(coro_chan_close(m->a), 0);
        ASSERT_EQ(coro_chan_close(m->b), 0);
    }
    return 0;
}

static int mix_consumer(void *arg)
{
    mix_t *m = arg;
    uint64_t seed = (uint64_t)(uintptr_t)coro_self() * 3;
    int open = 2;
    int a_open = 1, b_open = 1;
    while (open) {
        long item = -1;
        coro_case_t cs[2] = { { a_open ? m->a : NULL, CORO_RECV, &item, 0 },
                              { b_open ? m->b : NULL, CORO_RECV, &item, 0 } };
        int64_t saved = coro_timeout((int64_t)(ts_rand(&seed) % 100) * CORO_US);
        int r = coro_select(cs, 2);
        coro_set_deadline(saved);
        if (r < 0) {
            ASSERT_EQ(errno, ETIMEDOUT);
            continue;
        }
        if (cs[r].err == EPIPE) {
            if (r == 0)
                a_open = 0;
            else
                b_open = 0;
            open--;
            continue;
        }
        ASSERT_EQ(cs[r].err, 0);
        ASSERT_GE(item, 0);
        ASSERT_LT(item, MIX_ITEMS);
        ASSERT_EQ(m->seen[item], 0);
        m->seen[item] = 1;
        m->received++;
    }
    return 0;
}

static int mix_main(void *arg)
{
    (void)arg;
    static mix_t m;
    memset(&m, 0, sizeof m);
    m.a = coro_chan_new(sizeof(long), 0);
    m.b = coro_chan_new(sizeof(long), 4);
    ASSERT_NOT_NULL(m.a);
    ASSERT_NOT_NULL(m.b);
    coro_t *c[10];
    m.producers_left = 5;
    for (int i = 0; i < 5; i++)
        c[i] = spawn_ok(mix_producer, &m);
    for (int i = 5; i < 10; i++)
        c[i] = spawn_ok(mix_consumer, &m);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    ASSERT_EQ(m.received, MIX_ITEMS);
    for (int i = 0; i < MIX_ITEMS; i++)
        ASSERT_EQ(m.seen[i], 1);
    coro_chan_free(m.a);
    coro_chan_free(m.b);
    return 0;
}

TEST(select_mixed_load_every_item_once)
{
    ASSERT_EQ(coro_main(mix_main, NULL), 0);
}

/* ---- the deadlock dump names the waits ----------------------------------- */

static coro_chan_t *dl_chan;

static int dl_recv(void *arg)
{
    coro_chan_t *ch = arg;
    long v;
    ASSERT_ERRNO(coro_chan_recv(ch, &v), ECANCELED);
    return 0;
}

static int dl_main(void *arg)
{
    (void)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(long), 0);
    ASSERT_NOT_NULL(ch);
    coro_t *c = coro_spawn_opts(dl_recv, ch, &(coro_opts_t){ .name = "receiver" });
    ASSERT_NOT_NULL(c);
    coro_t *d = coro_spawn_opts(dl_recv, ch, &(coro_opts_t){ .name = "other" });
    ASSERT_NOT_NULL(d);
    coro_yield();
    long v = 1;
    coro_chan_t *full = coro_chan_new(sizeof(long), 1);
    ASSERT_NOT_NULL(full);
    ASSERT_EQ(coro_chan_send(full, &v), 0);
    coro_case_t cs[2] = { { full, CORO_SEND, &v, 0 }, { NULL, 0, NULL, 0 } };
    ASSERT_ERRNO(coro_select(cs, 1), ECANCELED);
    /* Everyone is being unwound (a join would fail with ECANCELED too);
     * coro_main still waits for the receivers, which must not find their
     * channel freed under them: they are detached and the test frees it. */
    coro_detach(c);
    coro_detach(d);
    dl_chan = ch;
    coro_chan_free(full);
    return 0;
}

TEST(chan_deadlock_dump_names_chan_and_select_waits)
{
    ts_capture_t cap;
    ts_capture_begin(&cap);
    errno = 0;
    int r = coro_main(dl_main, NULL);
    int e = errno;
    char *out = ts_capture_end(&cap);
    printf("%s", out);
    ASSERT_EQ(r, -1);
    ASSERT_EQ(e, EDEADLK);
    coro_chan_free(dl_chan);
    ASSERT_CONTAINS(out, "\"receiver\" [parked, chan recv 0x");
    ASSERT_CONTAINS(out, "\"main\" [parked, select 0x");
    free(out);
}

/* ---- a freed handle ------------------------------------------------------- */

static int uaf_coro(void *arg)
{
    int op = *(int *)arg;
    coro_chan_t *ch = coro_chan_new(sizeof(int), 2);
    ASSERT_NOT_NULL(ch);
    coro_chan_free(ch);
    int v = 1;
    switch (op) {
    case 0: coro_chan_send(ch, &v); break;
    case 1: coro_chan_recv(ch, &v); break;
    case 2: coro_chan_close(ch); break;
    default: {
        coro_case_t cs[1] = { { ch, CORO_RECV, &v, 0 } };
        coro_select(cs, 1);
        break;
    }
    }
    printf("the freed channel was used without a complaint\n");
    return 0;
}

#if CORO_HAVE_VALGRIND
/* Memcheck warns about a thread that ends with error reporting off. */
static void uaf_on_abort(int sig)
{
    VALGRIND_ENABLE_ERROR_REPORTING;
    signal(sig, SIG_DFL);
    raise(sig);
}
#endif

static void uaf_child(void *arg)
{
    signal(SIGABRT, SIG_DFL);
#if CORO_HAVE_VALGRIND
    /* The child reads freed memory on purpose: Memcheck need not say so. */
    if (RUNNING_ON_VALGRIND) {
        signal(SIGABRT, uaf_on_abort);
        VALGRIND_DISABLE_ERROR_REPORTING;
    }
#endif
    coro_main(uaf_coro, arg);
}

TEST(chan_use_after_free_aborts_with_a_message)
{
    static const char *const names[] = { "coro_chan_send", "coro_chan_recv",
                                         "coro_chan_close", "coro_select" };
    for (int op = 0; op < 4; op++) {
        char out[16384];
        int status;
        ASSERT_EQ(test_run_child(uaf_child, &op, out, sizeof out, &status), 0);
        char how[128];
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
            test_fail(__FILE__, __LINE__, "the child should die of SIGABRT; it ended with %s, "
                      "output:\n%s", test_describe_status(status, how, sizeof how), out);
        ASSERT_CONTAINS(out, "use after coro_chan_free");
        ASSERT_CONTAINS(out, names[op]);
        ASSERT_NOT_CONTAINS(out, "without a complaint");
    }
}
