/* echo_client.c: a load generator for echo_server, one coroutine per
 * connection, that checks every byte it gets back.
 *
 * WHAT IT SHOWS
 *   A client side written like a blocking program, and many of them at
 *   once: each connection is a coroutine that loops
 *       fill the message with its own pseudo-random bytes
 *       coro_write(fd, msg)  ->  read exactly as many bytes back  ->  compare
 *   for the whole run, and times each round trip. How they start and stop:
 *   - The connections are dialled concurrently (coro_tcp_dial); a wait
 *     group counts them in, and an event (coro_event_t) starts them all
 *     together once every one is up, so the clock does not include the
 *     connection storm.
 *   - They run in a CORO_GROUP_FAILFAST task group: the first connection
 *     that fails (an error, a short echo, one wrong byte) cancels all the
 *     others, and the program exits 1 saying which and why.
 *   - Each worker's deadline is the end of the run plus 5 s, so a server
 *     that stops answering makes the client fail, not hang.
 *   - Latencies go into a fixed log-linear histogram (32 buckets per power
 *     of two, 3% resolution, 15 KiB whatever the run's length), from
 *     which p50 and p99 are read.
 *   A message larger than 16 KiB is sent in 16 KiB steps, each read back
 *   before the next is written: with everything written before anything
 *   is read, client and server could both block on full socket buffers.
 *
 * HOW TO RUN IT
 *   echo_client [-c CONNS] [-s SIZE] [-d SECONDS] [-p PORT] [-h HOST]
 *       defaults: -c 50 -s 64 -d 3 -p 7000 -h 127.0.0.1
 *   e.g.  echo_server 7000 &  echo_client -c 50 -d 3
 *
 * WHAT TO NOTICE
 *   Every byte is checked: each connection's pattern continues from round
 *   to round, so a byte from another connection, an old round, or the
 *   wrong offset is caught, and reported with where it was found. */
#include <coro.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CHUNK (16 * 1024)                /* most bytes in flight per connection */
#define GRACE (5 * CORO_SEC)             /* a round trip this late after the end fails */
#define CONNECT_TIMEOUT (10 * CORO_SEC)  /* for all the connections to come up */
#define WORKER_STACK (64 * 1024)

/* ---- latency histogram ---------------------------------------------------------- */

/* Values (ns) below 32 have a bucket each; above, each power of two is cut
 * into 32 buckets. */
#define SUB_BITS 5
#define SUB (1 << SUB_BITS)
#define BUCKETS ((64 - SUB_BITS + 1) * SUB)

static uint64_t hist[BUCKETS];
static uint64_t samples;
static int64_t lat_min = INT64_MAX, lat_max;

static int bucket_of(uint64_t v)
{
    if (v < SUB)
        return (int)v;
    int top = 63 - __builtin_clzll(v);                  /* v's highest bit, >= SUB_BITS */
    return (top - SUB_BITS + 1) * SUB + (int)((v >> (top - SUB_BITS)) & (SUB - 1));
}

/* The middle of bucket i. */
static double bucket_value(int i)
{
    if (i < SUB)
        return i;
    int top = i / SUB + SUB_BITS - 1, shift = top - SUB_BITS;
    uint64_t low = (uint64_t)(SUB + i % SUB) << shift;
    return (double)low + (double)(((uint64_t)1 << shift) - 1) / 2;
}

static void record(int64_t ns)
{
    hist[bucket_of((uint64_t)ns)]++;
    samples++;
    if (ns < lat_min)
        lat_min = ns;
    if (ns > lat_max)
        lat_max = ns;
}

/* The q-quantile (0 < q <= 1) in ns: the middle of its bucket, within
 * the smallest and largest values seen. */
static double quantile(double q)
{
    uint64_t rank = (uint64_t)(q * (double)samples + 0.999999), seen = 0;
    double v = (double)lat_max;
    for (int i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank && hist[i]) {
            v = bucket_value(i);
            break;
        }
    }
    return v < (double)lat_min ? (double)lat_min : v > (double)lat_max ? (double)lat_max : v;
}

/* ---- one connection --------------------------------------------------------------- */

static struct {
    const char *host, *port;
    long conns;
    size_t size;
    int64_t duration;
    coro_wg_t dialling;      /* connections not yet up (or failed) */
    coro_event_t go;         /* set once they all are */
    int64_t end;             /* no round trip starts after this */
} run = { .host = "127.0.0.1", .port = "7000", .conns = 50, .size = 64,
          .duration = 3 * CORO_SEC, .dialling = CORO_WG_INIT, .go = CORO_EVENT_INIT };

struct worker {
    long id;
    uint64_t rng;            /* this connection's pattern, continued round to round */
    unsigned char *tx, *rx;
    uint64_t rounds;
};

/* splitmix64: a tiny, good pseudo-random generator. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void fill(unsigned char *p, size_t n, uint64_t *rng)
{
    while (n > 0) {
        uint64_t x = next_random(rng);
        size_t k = n < sizeof x ? n : sizeof x;
        memcpy(p, &x, k);
        p += k;
        n -= k;
    }
}

/* Report a failure (err 0: the server closed the connection) and return 1.
 * ECANCELED is not news: another connection failed first and said why. */
static int fail(const struct worker *w, const char *what, int err)
{
    if (err != ECANCELED)
        fprintf(stderr, "echo_client: connection %ld, round %llu: %s: %s\n", w->id,
                (unsigned long long)w->rounds + 1, what,
                err ? strerror(err) : "the server closed the connection");
    return 1;
}

/* Read exactly n bytes. 0, or -1 with errno (0 at end of file). */
static int read_full(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t got = coro_read(fd, p, n);
        if (got <= 0) {
            if (got == 0)
                errno = 0;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* Where the echo differs from what was sent: a report, and 1. */
static int mismatch(const struct worker *w)
{
    size_t i = 0;
    while (i + 1 < run.size && w->tx[i] == w->rx[i])
        i++;
    fprintf(stderr,
            "echo_client: connection %ld, round %llu: byte %zu of the echo is 0x%02x, "
            "expected 0x%02x\n",
            w->id, (unsigned long long)w->rounds + 1, i, w->rx[i], w->tx[i]);
    return 1;
}

/* One message out and its echo back, checked and timed. 0 or 1. */
static int round_trip(struct worker *w, int fd)
{
    fill(w->tx, run.size, &w->rng);
    int64_t t0 = coro_now();
    for (size_t off = 0; off < run.size; off += CHUNK) {
        size_t n = run.size - off < CHUNK ? run.size - off : CHUNK;
        if (coro_write(fd, w->tx + off, n) != (ssize_t)n)
            return fail(w, "write", errno);
        if (read_full(fd, w->rx + off, n) != 0)
            return fail(w, "read", errno);
    }
    record(coro_now() - t0);
    if (memcmp(w->tx, w->rx, run.size) != 0)
        return mismatch(w);
    w->rounds++;
    return 0;
}

static int worker(void *arg)
{
    struct worker *w = arg;
    int fd = coro_tcp_dial(run.host, run.port);
    int err = errno;
    coro_wg_done(&run.dialling);
    if (fd < 0)
        return fail(w, "connect", err);

    int rc = 0;
    if (coro_event_wait(&run.go) != 0)       /* cancelled: someone failed */
        rc = fail(w, "start", errno);
    coro_set_deadline(run.end + GRACE);
    while (rc == 0 && coro_now() < run.end)
        rc = round_trip(w, fd);
    coro_close(fd);
    return rc;
}

/* ---- main ----------------------------------------------------------------------------- */

static void report(const struct worker *ws, int64_t elapsed)
{
    uint64_t rounds = 0;
    for (long i = 0; i < run.conns; i++)
        rounds += ws[i].rounds;
    double secs = (double)elapsed / 1e9;
    printf("  round trips: %llu in %.2f s = %.0f/s (%.1f MB/s each way)\n",
           (unsigned long long)rounds, secs, (double)rounds / secs,
           (double)rounds * (double)run.size / secs / 1e6);
    if (samples > 0)
        printf("  latency: min %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us\n",
               (double)lat_min / 1e3, quantile(0.50) / 1e3, quantile(0.99) / 1e3,
               (double)lat_max / 1e3);
}

static int body(void *arg)
{
    struct worker *ws = arg;
    printf("echo_client: %ld connection%s to %s:%s, %zu-byte messages, %.1f s\n", run.conns,
           run.conns == 1 ? "" : "s", run.host, run.port, run.size,
           (double)run.duration / 1e9);
    coro_group_t *g = coro_group_new(CORO_GROUP_FAILFAST);
    if (!g) {
        perror("echo_client: coro_group_new");
        return 1;
    }
    coro_opts_t opts = { .stack_size = WORKER_STACK, .name = "conn" };
    int failed = 0;
    coro_wg_add(&run.dialling, (int)run.conns);
    for (long i = 0; i < run.conns; i++) {
        if (!coro_group_spawn_opts(g, worker, &ws[i], &opts)) {
            perror("echo_client: coro_group_spawn");
            coro_wg_add(&run.dialling, -(int)(run.conns - i));
            failed = 1;
            break;
        }
    }

    /* Start the clock when every connection is up (or has failed). */
    int64_t saved = coro_timeout(CONNECT_TIMEOUT);
    if (coro_wg_wait(&run.dialling) != 0) {
        fprintf(stderr, "echo_client: connecting: %s\n", strerror(errno));
        failed = 1;
    }
    coro_set_deadline(saved);
    if (failed)
        coro_group_cancel(g);
    int64_t start = coro_now();
    run.end = start + run.duration;
    coro_event_set(&run.go);

    int rc = coro_group_wait(g);
    int64_t elapsed = coro_now() - start;
    coro_group_free(g);
    report(ws, elapsed);
    if (rc != 0 || failed) {
        printf("  FAILED (see above)\n");
        return 1;
    }
    printf("  every byte of every echo verified\n");
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: echo_client [-c CONNS] [-s SIZE] [-d SECONDS] [-p PORT] [-h HOST]\n");
    exit(2);
}

static double number(const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        usage();
    return v;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "c:s:d:p:h:")) != -1) {
        switch (opt) {
        case 'c': run.conns = (long)number(optarg, 1, 100000); break;
        case 's': run.size = (size_t)number(optarg, 1, 16 << 20); break;
        case 'd': run.duration = (int64_t)(number(optarg, 0.001, 86400) * 1e9); break;
        case 'p': run.port = optarg; break;
        case 'h': run.host = optarg; break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();
    if ((double)run.conns * (double)run.size > (double)(1 << 30)) {
        fprintf(stderr, "echo_client: -c times -s is over 1 GiB of buffers\n");
        return 2;
    }

    struct rlimit rl;        /* one descriptor per connection, and then some */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* Every worker and its two buffers, allocated up front. */
    struct worker *ws = calloc((size_t)run.conns, sizeof *ws);
    if (!ws) {
        perror("echo_client: calloc");
        return 1;
    }
    for (long i = 0; i < run.conns; i++) {
        ws[i].id = i;
        ws[i].rng = (uint64_t)i * 0x2545f4914f6cdd1du + 1;
        ws[i].tx = malloc(run.size);
        ws[i].rx = malloc(run.size);
        if (!ws[i].tx || !ws[i].rx) {
            perror("echo_client: malloc");
            return 1;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    int rc = coro_main(body, ws);
    if (rc < 0)
        perror("echo_client: coro_main");
    for (long i = 0; i < run.conns; i++) {
        free(ws[i].tx);
        free(ws[i].rx);
    }
    free(ws);
    return rc == 0 ? 0 : 1;
}
