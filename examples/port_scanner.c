/* port_scanner.c: scan TCP ports with bounded concurrency and a deadline
 * per attempt.
 *
 * WHAT IT SHOWS
 *   1. Listening on a port the system picks: coro_tcp_listen("127.0.0.1",
 *      "0", 0), then coro_sock_port() says which. The program opens three
 *      such listeners, so that it has something to find. (They never call
 *      accept: the kernel completes the handshake for a listening socket
 *      on its own, which is all a scanner sees.)
 *   2. A scan of the ports around them, one coroutine per attempt, at most
 *      LIMIT alive at once. The permit is taken *before* the spawn:
 *          coro_sem_acquire(&slots);        // parks while LIMIT are out
 *          coro_group_spawn(g, probe, ...); // probe releases as it ends
 *      so however many ports there are, no more than LIMIT stacks and
 *      sockets exist at any time.
 *   3. A deadline per attempt: each connect runs in its own scope,
 *          int64_t saved = coro_timeout(ATTEMPT_TIMEOUT);
 *          coro_connect(fd, ...);
 *          coro_set_deadline(saved);
 *      A closed port answers at once (ECONNREFUSED), but a port behind a
 *      firewall that drops packets never answers: without the deadline the
 *      kernel would retry the handshake for a minute or more.
 *   4. The probes belong to a task group: coro_group_wait() collects the
 *      stragglers before the results are read.
 *
 * HOW TO RUN IT
 *   port_scanner             (no arguments; it only touches 127.0.0.1)
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - The three listeners are found open, and the final line says so; the
 *     port numbers change from run to run.
 *   - Another program listening nearby on this machine is reported as
 *     "another local service"; that is not an error.
 *   - A scan of the ephemeral range can connect a socket to itself (TCP
 *     "simultaneous open": the probe's own local port is the one it
 *     dials). That is not an open port; the probe checks for it.
 *   The program exits non-zero if one of its own listeners is not found. */
#include <coro.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LISTENERS 3
#define AROUND 8                           /* ports scanned each side of a listener */
#define LIMIT 8                            /* probes alive at once */
#define ATTEMPT_TIMEOUT (200 * CORO_MS)

enum { CLOSED, OPEN, TIMED_OUT, FAILED };

struct target {
    int port;
    int result;              /* CLOSED, OPEN, TIMED_OUT or FAILED */
};

static coro_sem_t slots = CORO_SEM_INIT(LIMIT);
static int alive, peak;      /* probes spawned and not yet ended */

/* Did connecting to `port` give fd a connection to itself? */
static int connected_to_itself(int fd, int port)
{
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    return getsockname(fd, (struct sockaddr *)&me, &len) == 0 && ntohs(me.sin_port) == port;
}

/* One attempt on 127.0.0.1:port, bounded by ATTEMPT_TIMEOUT. */
static int try_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return FAILED;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    int64_t saved = coro_timeout(ATTEMPT_TIMEOUT);
    int rc = coro_connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    coro_set_deadline(saved);

    int result = rc == 0 ? (connected_to_itself(fd, port) ? CLOSED : OPEN)
                 : err == ECONNREFUSED ? CLOSED
                 : err == ETIMEDOUT   ? TIMED_OUT
                                      : FAILED;
    coro_close(fd);
    return result;
}

static int probe(void *arg)
{
    struct target *t = arg;
    t->result = try_port(t->port);
    alive--;
    coro_sem_release(&slots);    /* the permit the scanner took for us */
    return 0;
}

/* Spawn a probe per target, at most LIMIT alive at once, and wait for all. */
static int scan(struct target *ts, int n)
{
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    if (!g) {
        perror("port_scanner: coro_group_new");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (coro_sem_acquire(&slots) != 0) {
            perror("port_scanner: coro_sem_acquire");
            break;
        }
        if (!coro_group_spawn(g, probe, &ts[i])) {
            perror("port_scanner: coro_group_spawn");
            coro_sem_release(&slots);
            ts[i].result = FAILED;
            continue;
        }
        if (++alive > peak)
            peak = alive;
    }
    coro_group_wait(g);
    coro_group_free(g);
    return 0;
}

static int by_port(const void *a, const void *b)
{
    return ((const struct target *)a)->port - ((const struct target *)b)->port;
}

/* The ports AROUND each side of every listener, sorted, each once. */
static int make_targets(const int *ours, struct target *ts)
{
    int n = 0;
    for (int i = 0; i < LISTENERS; i++)
        for (int p = ours[i] - AROUND; p <= ours[i] + AROUND; p++)
            if (p > 0 && p < 65536)
                ts[n++] = (struct target){ p, FAILED };
    qsort(ts, (size_t)n, sizeof *ts, by_port);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || ts[i].port != ts[m - 1].port)
            ts[m++] = ts[i];
    return m;
}

static int is_ours(const int *ours, int port)
{
    for (int i = 0; i < LISTENERS; i++)
        if (ours[i] == port)
            return 1;
    return 0;
}

static int body(void *arg)
{
    (void)arg;
    int lfd[LISTENERS], ours[LISTENERS];
    for (int i = 0; i < LISTENERS; i++) {
        lfd[i] = coro_tcp_listen("127.0.0.1", "0", 0);
        if (lfd[i] < 0 || (ours[i] = coro_sock_port(lfd[i])) < 0) {
            perror("port_scanner: listen");
            return 1;
        }
    }
    printf("our listeners: 127.0.0.1 ports %d, %d, %d\n", ours[0], ours[1], ours[2]);

    struct target ts[LISTENERS * (2 * AROUND + 1)];
    int n = make_targets(ours, ts);
    printf("scanning %d ports (%d each side of ours), at most %d at once, %lld ms each\n", n,
           AROUND, LIMIT, (long long)(ATTEMPT_TIMEOUT / CORO_MS));
    int64_t t0 = coro_now();
    if (scan(ts, n) != 0)
        return 1;
    printf("scanned in %.1f ms; at most %d probes were alive at once\n",
           (double)(coro_now() - t0) / 1e6, peak);

    int found = 0, closed = 0, timed_out = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        switch (ts[i].result) {
        case OPEN:
            if (is_ours(ours, ts[i].port))
                found++;
            printf("  port %5d open (%s)\n", ts[i].port,
                   is_ours(ours, ts[i].port) ? "ours" : "another local service");
            break;
        case CLOSED: closed++; break;
        case TIMED_OUT: timed_out++; break;
        default: failed++; break;
        }
    }
    printf("  %d closed, %d timed out, %d failed\n", closed, timed_out, failed);
    for (int i = 0; i < LISTENERS; i++)
        coro_close(lfd[i]);

    if (found != LISTENERS) {
        fprintf(stderr, "port_scanner: found %d of our %d listeners\n", found, LISTENERS);
        return 1;
    }
    printf("found all %d of our listeners open\n", LISTENERS);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        perror("port_scanner: coro_main");
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
