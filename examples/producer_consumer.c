/* producer_consumer.c: backpressure through a bounded channel.
 *
 * WHAT IT SHOWS
 *   A fast producer and a slow consumer joined by a channel of capacity 4:
 *       coro_chan_t *ch = coro_chan_new(sizeof(int), 4);
 *   The producer makes an item in no time; the consumer needs 3 ms for
 *   each. The producer runs ahead until the buffer holds 4 items, then its
 *   coro_chan_send() parks it until the consumer has taken one. From then
 *   on the producer moves at the consumer's pace: one send per receive.
 *   When the producer is done it closes the channel; the consumer still
 *   gets every buffered item, and only then does coro_chan_recv() fail
 *   with EPIPE ("Broken pipe"): closed *and drained*.
 *
 * WHY IT MATTERS
 *   An unbounded queue between a fast stage and a slow one only hides the
 *   problem: it grows until memory runs out, and the latency of each item
 *   grows with it. A bounded channel pushes back: the fast side is slowed
 *   to the speed of the slow side, and memory stays at `capacity` items.
 *   That is backpressure, and it comes for free from a blocking send, as
 *   with Go's buffered channels or asyncio.Queue(maxsize=4).
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - The first sends return at once (the first item may even go straight
 *     to the consumer, which is already waiting), until the buffer is 4/4.
 *   - Then every "send blocks" line is followed, about 3 ms later, by the
 *     send returning: it waited for the consumer to make room.
 *   - The buffer never holds more than 4 items, and the producer is never
 *     more than capacity + 1 items ahead of the consumer (the + 1: an item
 *     handed to a consumer that has not run yet).
 *   - The items arrive in order, all of them, then EPIPE.
 *   All of it is checked; the program exits non-zero if anything differs. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define CAPACITY 4
#define ITEMS 12
#define CONSUME_MS 3

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "producer_consumer: unexpected: " __VA_ARGS__); \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

struct shared {
    coro_chan_t *ch;
    int64_t t0;
    int produced;     /* sends that have returned */
    int consumed;     /* receives that have returned */
    int max_ahead;    /* the most produced - consumed seen */
    size_t max_len;   /* the most items seen in the buffer */
    int blocked;      /* sends made while the buffer was full */
    int consumer_err; /* how the consumer's last receive failed */
};

static double ms_since(const struct shared *s)
{
    return (double)(coro_now() - s->t0) / 1e6;
}

static void observe(struct shared *s)
{
    size_t len = coro_chan_len(s->ch);
    if (len > s->max_len)
        s->max_len = len;
    if (s->produced - s->consumed > s->max_ahead)
        s->max_ahead = s->produced - s->consumed;
}

static int producer(void *arg)
{
    struct shared *s = arg;
    for (int i = 0; i < ITEMS; i++) {
        size_t before = coro_chan_len(s->ch);
        int full = before == coro_chan_cap(s->ch);
        if (full) {
            s->blocked++;
            printf("  +%5.1f ms  producer: buffer %zu/%d full, send(%d) blocks\n",
                   ms_since(s), before, CAPACITY, i);
        }
        int64_t t = coro_now();
        if (coro_chan_send(s->ch, &i) != 0) {
            fprintf(stderr, "producer_consumer: coro_chan_send(%d): %s\n", i, strerror(errno));
            failures++;
            return 1;
        }
        s->produced++;
        observe(s);
        double waited = (double)(coro_now() - t) / 1e6;
        if (full)
            printf("  +%5.1f ms  producer: send(%d) returned after %.1f ms (buffer %zu/%d)\n",
                   ms_since(s), i, waited, coro_chan_len(s->ch), CAPACITY);
        else
            printf("  +%5.1f ms  producer: send(%d) returned at once (buffer %zu/%d)\n",
                   ms_since(s), i, coro_chan_len(s->ch), CAPACITY);
    }
    /* Done: close. The consumer drains what is buffered, then sees EPIPE. */
    if (coro_chan_close(s->ch) != 0) {
        fprintf(stderr, "producer_consumer: coro_chan_close: %s\n", strerror(errno));
        failures++;
        return 1;
    }
    printf("  +%5.1f ms  producer: all %d sent, channel closed (%zu still buffered)\n",
           ms_since(s), ITEMS, coro_chan_len(s->ch));
    return 0;
}

static int consumer(void *arg)
{
    struct shared *s = arg;
    int expect = 0, item;
    while (coro_chan_recv(s->ch, &item) == 0) {
        s->consumed++;
        observe(s);
        CHECK(item == expect, "received %d, expected %d", item, expect);
        expect = item + 1;
        printf("  +%5.1f ms  consumer: got %d, working %d ms\n", ms_since(s), item,
               CONSUME_MS);
        if (coro_sleep(CONSUME_MS * CORO_MS) != 0) { /* the slow part */
            fprintf(stderr, "producer_consumer: coro_sleep: %s\n", strerror(errno));
            failures++;
            return 1;
        }
    }
    s->consumer_err = errno;
    printf("  +%5.1f ms  consumer: coro_chan_recv -> %s: closed and drained\n", ms_since(s),
           strerror(errno));
    return s->consumer_err == EPIPE ? 0 : 1;
}

static int body(void *arg)
{
    (void)arg;
    struct shared s = { 0 };
    s.ch = coro_chan_new(sizeof(int), CAPACITY);
    if (!s.ch) {
        fprintf(stderr, "producer_consumer: coro_chan_new: %s\n", strerror(errno));
        return 1;
    }
    printf("a channel of capacity %zu; the consumer needs %d ms per item\n",
           coro_chan_cap(s.ch), CONSUME_MS);
    s.t0 = coro_now();

    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    if (!g) {
        fprintf(stderr, "producer_consumer: coro_group_new: %s\n", strerror(errno));
        coro_chan_free(s.ch);
        return 1;
    }
    coro_opts_t co = { .name = "consumer" }, po = { .name = "producer" };
    if (!coro_group_spawn_opts(g, consumer, &s, &co) ||
        !coro_group_spawn_opts(g, producer, &s, &po)) {
        fprintf(stderr, "producer_consumer: coro_group_spawn_opts: %s\n", strerror(errno));
        failures++;
        /* A consumer already spawned ends with EPIPE. */
        if (coro_chan_close(s.ch) != 0)
            fprintf(stderr, "producer_consumer: coro_chan_close: %s\n", strerror(errno));
    }
    int rc = coro_group_wait(g);
    if (rc != 0) {
        fprintf(stderr, "producer_consumer: coro_group_wait -> %d%s%s\n", rc,
                rc == -1 ? ": " : "", rc == -1 ? strerror(errno) : "");
        failures++;
    }
    coro_group_free(g);
    coro_chan_free(s.ch);

    printf("most items buffered at once: %zu (capacity %d); producer at most %d ahead; "
           "%d sends found the buffer full\n",
           s.max_len, CAPACITY, s.max_ahead, s.blocked);
    CHECK(s.consumed == ITEMS, "consumed %d of %d items", s.consumed, ITEMS);
    CHECK(s.consumer_err == EPIPE, "the consumer ended with \"%s\", expected EPIPE",
          strerror(s.consumer_err));
    CHECK(s.max_len == CAPACITY, "the buffer peaked at %zu items, expected %d", s.max_len,
          CAPACITY);
    CHECK(s.max_ahead <= CAPACITY + 1, "the producer got %d items ahead", s.max_ahead);
    /* Everything past the first capacity + 1 items had to wait for room. */
    CHECK(s.blocked >= ITEMS - CAPACITY - 1, "only %d sends blocked", s.blocked);
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "producer_consumer: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
