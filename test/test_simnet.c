/* test/test_simnet.c: the simulated network (io/simnet.c): an echo server
 * with 20 clients over 1-5 ms of virtual latency (all bytes intact, fast in
 * wall time, virtual time moved), the same seed with faults giving the
 * same outcome twice (and faults occurring), a refused dial, end of file
 * and EPIPE after a close, backpressure, a read's deadline exact in
 * virtual time, a partition holding data until healed, Unix sockets and
 * UDP, nothing left open after the simulation, and the echo workload
 * under 100 seeds at a 5% fault rate (the failing seed is printed). */
#include "test/test_sched.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run_net(coro_fn fn, void *arg, uint64_t seed, double fault_rate)
{
    coro_sim_t sim = { .seed = seed, .fault_rate = fault_rate,
                       .latency_min = 1 * CORO_MS, .latency_max = 5 * CORO_MS };
    coro_main_opts_t o = { .sim = &sim };
    return coro_main_opts(fn, arg, &o);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* ---- an echo server and its clients ---------------------------------------------- */

#define CLIENTS 20
#define MSG 1000

typedef struct echo_run {
    int lfd;
    int codes[CLIENTS];  /* 0, or the errno the client stopped with */
    int got[CLIENTS];    /* bytes echoed back intact */
    int emfile;          /* accepts that said EMFILE */
    int handler_errors;
    int64_t elapsed;
    uint64_t trace;
} echo_run_t;

typedef struct client_arg {
    echo_run_t *run;
    int i;
} client_arg_t;

static int handler(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[512];
    for (;;) {
        ssize_t r = coro_read(fd, buf, sizeof buf);
        if (r <= 0)
            break;
        if (coro_write(fd, buf, (size_t)r) != r)
            break;
    }
    coro_close(fd);
    return 0;
}

static int server(void *arg)
{
    echo_run_t *run = arg;
    for (;;) {
        int fd = coro_accept(run->lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EMFILE) {
                run->emfile++;
                continue;
            }
            return errno == EBADF ? 0 : 1; /* the listener was closed */
        }
        coro_t *h = coro_spawn(handler, (void *)(intptr_t)fd);
        if (!h)
            return 1;
        coro_detach(h);
    }
}

static int client(void *arg)
{
    client_arg_t *a = arg;
    echo_run_t *run = a->run;
    char out[MSG], in[MSG];
    for (int k = 0; k < MSG; k++)
        out[k] = (char)(a->i * 31 + k * 7);
    coro_timeout(60 * CORO_SEC);
    int fd = coro_tcp_dial("server", "7000");
    if (fd < 0) {
        run->codes[a->i] = errno;
        return 0;
    }
    ssize_t w = coro_write(fd, out, MSG);
    if (w != MSG) {
        run->codes[a->i] = errno;
        coro_close(fd);
        return 0;
    }
    int got = 0;
    while (got < MSG) {
        ssize_t r = coro_read(fd, in + got, (size_t)(MSG - got));
        if (r < 0) {
            run->codes[a->i] = errno;
            break;
        }
        if (r == 0) {
            run->codes[a->i] = -1; /* early end of file */
            break;
        }
        got += (int)r;
    }
    int intact = 0;
    while (intact < got && in[intact] == out[intact])
        intact++;
    run->got[a->i] = intact;
    coro_close(fd);
    return 0;
}

static int echo_main(void *arg)
{
    echo_run_t *run = arg;
    int64_t t0 = coro_now();
    ASSERT_GE(run->lfd = coro_tcp_listen("server", "7000", 0), 0);
    coro_t *srv = coro_spawn(server, run);
    ASSERT_NOT_NULL(srv);
    client_arg_t args[CLIENTS];
    coro_t *c[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (client_arg_t){ run, i };
        ASSERT_NOT_NULL(c[i] = coro_spawn(client, &args[i]));
    }
    for (int i = 0; i < CLIENTS; i++)
        ASSERT_EQ(coro_join(c[i], NULL), 0);
    ASSERT_EQ(coro_close(run->lfd), 0);
    int st = -1;
    ASSERT_EQ(coro_join(srv, &st), 0);
    ASSERT_EQ(st, 0);
    run->elapsed = coro_now() - t0;
    run->trace = coro_sim_trace();
    return 0;
}

TEST(simnet_echo_20_clients_intact_and_fast)
{
    static echo_run_t run;
    memset(&run, 0, sizeof run);
    int fds = open_fds();
    double w0 = wall_seconds();
    ASSERT_EQ(run_net(echo_main, &run, 7, 0.0), 0);
    double wall = wall_seconds() - w0;
    for (int i = 0; i < CLIENTS; i++) {
        ASSERT_EQ(run.codes[i], 0);
        ASSERT_EQ(run.got[i], MSG);
    }
    ASSERT_EQ(run.emfile, 0);
    /* dial, the request's way there and the echo's way back: three
     * latencies of at least 1 ms each. */
    ASSERT_GE(run.elapsed, 3 * CORO_MS);
    ASSERT(wall < (test_under_valgrind() ? 20.0 : 2.0));
    /* Every placeholder descriptor is closed again. */
    ASSERT_EQ(open_fds(), fds);
}

TEST(simnet_faults_same_seed_same_outcome)
{
    static echo_run_t a, b;
    int faults_seen = 0;
    for (uint64_t seed = 100; seed < 104; seed++) {
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        ASSERT_EQ(run_net(echo_main, &a, seed, 0.05), 0);
        ASSERT_EQ(run_net(echo_main, &b, seed, 0.05), 0);
        ASSERT_EQ(memcmp(a.codes, b.codes, sizeof a.codes), 0);
        ASSERT_EQ(memcmp(a.got, b.got, sizeof a.got), 0);
        ASSERT_EQ(a.emfile, b.emfile);
        ASSERT_EQ(a.elapsed, b.elapsed);
        ASSERT_EQ(a.trace, b.trace);
        ASSERT_NE(a.trace, 0);
        for (int i = 0; i < CLIENTS; i++) {
            if (a.codes[i] != 0) {
                /* Only the errors a network may legitimately give. */
                ASSERT(a.codes[i] == ECONNRESET || a.codes[i] == ECONNREFUSED ||
                       a.codes[i] == EPIPE || a.codes[i] == -1);
                faults_seen++;
            } else {
                ASSERT_EQ(a.got[i], MSG); /* a client that succeeded got it all */
            }
        }
        faults_seen += a.emfile;
    }
    ASSERT_GT(faults_seen, 0);
    /* Without faults the same seeds see none. */
    memset(&a, 0, sizeof a);
    ASSERT_EQ(run_net(echo_main, &a, 100, 0.0), 0);
    for (int i = 0; i < CLIENTS; i++)
        ASSERT_EQ(a.codes[i], 0);
}

/* ---- refused, end of file, EPIPE -------------------------------------------------- */

static int refused_main(void *arg)
{
    (void)arg;
    int64_t t0 = coro_now();
    ASSERT_ERRNO(coro_tcp_dial("nobody", "1"), ECONNREFUSED);
    int64_t dt = coro_now() - t0;
    ASSERT_GE(dt, 1 * CORO_MS);
    ASSERT_LE(dt, 5 * CORO_MS);
    /* A listener elsewhere does not answer for this name either. */
    int l = coro_tcp_listen("somebody", "1", 0);
    ASSERT_GE(l, 0);
    ASSERT_ERRNO(coro_tcp_dial("nobody", "1"), ECONNREFUSED);
    ASSERT_ERRNO(coro_tcp_listen("somebody", "1", 0), EADDRINUSE);
    ASSERT_ERRNO(coro_tcp_listen("somebody", "http", 0), EINVAL);
    ASSERT_EQ(coro_sock_port(l), 1);
    int l0 = coro_tcp_listen(NULL, "0", 0);
    ASSERT_GE(l0, 0);
    ASSERT_GE(coro_sock_port(l0), 49152);
    ASSERT_EQ(coro_close(l), 0);
    ASSERT_EQ(coro_close(l0), 0);
    ASSERT_ERRNO(coro_tcp_dial("somebody", "1"), ECONNREFUSED);
    return 0;
}

TEST(simnet_dial_nobody_is_refused_after_a_latency)
{
    ASSERT_EQ(run_net(refused_main, NULL, 1, 0.0), 0);
}

static int eof_main(void *arg)
{
    (void)arg;
    int l = coro_tcp_listen(NULL, "80", 0);
    ASSERT_GE(l, 0);
    int c = coro_tcp_dial("web", "80");
    ASSERT_GE(c, 0);
    int s = coro_accept(l, NULL, NULL);
    ASSERT_GE(s, 0);
    ASSERT_NE(s, c);
    ASSERT_EQ(coro_write(c, "hello", 5), 5);
    ASSERT_EQ(coro_close(c), 0);
    char buf[16];
    int got = 0;
    for (;;) {
        ssize_t r = coro_read(s, buf + got, sizeof buf - (size_t)got);
        ASSERT_GE(r, 0);
        if (r == 0)
            break;
        got += (int)r;
    }
    ASSERT_EQ(got, 5);
    ASSERT_EQ(memcmp(buf, "hello", 5), 0);
    ASSERT_EQ(coro_read(s, buf, sizeof buf), 0); /* end of file stays */
    ASSERT_ERRNO(coro_write(s, "x", 1), EPIPE);   /* and no SIGPIPE */
    ASSERT_EQ(coro_close(s), 0);
    ASSERT_ERRNO(coro_read(s, buf, 1), EBADF); /* the placeholder is gone too */
    ASSERT_EQ(coro_close(l), 0);
    return 0;
}

TEST(simnet_eof_after_close_and_epipe)
{
    ASSERT_EQ(run_net(eof_main, NULL, 2, 0.0), 0);
}

/* ---- backpressure ------------------------------------------------------------------ */

#define BIG (1024 * 1024)

typedef struct bp {
    int fd;
    char *data;
    int done;
    ssize_t wrote;
} bp_t;

static int bp_writer(void *arg)
{
    bp_t *b = arg;
    b->wrote = coro_write(b->fd, b->data, BIG);
    b->done = 1;
    return 0;
}

static int bp_room(void *arg)
{
    bp_t *b = arg;
    return coro_wait_fd(b->fd, CORO_READ | CORO_WRITE);
}

static int bp_main(void *arg)
{
    (void)arg;
    static bp_t b;
    b.data = malloc(BIG);
    char *in = malloc(BIG);
    ASSERT_NOT_NULL(b.data);
    ASSERT_NOT_NULL(in);
    for (int i = 0; i < BIG; i++)
        b.data[i] = (char)(i * 13 + (i >> 10));
    int l = coro_tcp_listen("sink", "9", 0);
    ASSERT_GE(l, 0);
    ASSERT_GE(b.fd = coro_tcp_dial("sink", "9"), 0);
    int s = coro_accept(l, NULL, NULL);
    ASSERT_GE(s, 0);
    coro_t *w = coro_spawn(bp_writer, &b);
    ASSERT_NOT_NULL(w);
    /* Nobody reads: a second of virtual time later the writer is still
     * parked (1 MiB does not fit the 256 KiB queue). */
    ASSERT_EQ(coro_sleep(CORO_SEC), 0);
    ASSERT_EQ(b.done, 0);
    int64_t old = coro_timeout(10 * CORO_MS);
    ASSERT_ERRNO(coro_wait_fd(b.fd, CORO_WRITE), ETIMEDOUT); /* no room */
    ASSERT_ERRNO(coro_wait_fd(b.fd, CORO_WRITE | CORO_READ), ETIMEDOUT);
    coro_set_deadline(old);
    /* Reading lets it go on (and a wait for room ends). */
    coro_t *room = coro_spawn(bp_room, &b);
    ASSERT_NOT_NULL(room);
    int got = 0;
    while (got < BIG) {
        ssize_t r = coro_read(s, in + got, (size_t)(BIG - got));
        ASSERT_GT(r, 0);
        got += (int)r;
    }
    ASSERT_EQ(coro_join(w, NULL), 0);
    int st = -1;
    ASSERT_EQ(coro_join(room, &st), 0);
    ASSERT_EQ(st, CORO_WRITE);
    ASSERT_EQ(b.done, 1);
    ASSERT_EQ(b.wrote, BIG);
    ASSERT_EQ(memcmp(in, b.data, BIG), 0);
    coro_close(s);
    coro_close(b.fd);
    coro_close(l);
    free(b.data);
    free(in);
    return 0;
}

TEST(simnet_backpressure_parks_the_writer_until_the_reader_drains)
{
    ASSERT_EQ(run_net(bp_main, NULL, 3, 0.0), 0);
}

/* ---- deadlines ----------------------------------------------------------------------- */

static int deadline_main(void *arg)
{
    (void)arg;
    int l = coro_tcp_listen("quiet", "1", 0);
    ASSERT_GE(l, 0);
    int c = coro_tcp_dial("quiet", "1");
    ASSERT_GE(c, 0);
    int s = coro_accept(l, NULL, NULL);
    ASSERT_GE(s, 0);
    char buf[8];
    int64_t t0 = coro_now();
    int64_t old = coro_timeout(50 * CORO_MS);
    ASSERT_ERRNO(coro_read(c, buf, sizeof buf), ETIMEDOUT);
    ASSERT_EQ(coro_now() - t0, 50 * CORO_MS); /* exactly at its limit */
    ASSERT_ERRNO(coro_accept(l, NULL, NULL), ETIMEDOUT);
    ASSERT_EQ(coro_now() - t0, 50 * CORO_MS);
    coro_set_deadline(old);
    /* A read whose data comes before the deadline is not disturbed. */
    ASSERT_EQ(coro_write(s, "ok", 2), 2);
    old = coro_timeout(50 * CORO_MS);
    ASSERT_EQ(coro_read(c, buf, sizeof buf), 2);
    coro_set_deadline(old);
    ASSERT_ERRNO(coro_recv(c, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    return 0;
}

TEST(simnet_read_deadline_exact_in_virtual_time)
{
    ASSERT_EQ(run_net(deadline_main, NULL, 4, 0.0), 0);
}

/* ---- partitions ---------------------------------------------------------------------- */

static int partition_main(void *arg)
{
    (void)arg;
    int l = coro_tcp_listen("db", "5432", 0);
    ASSERT_GE(l, 0);
    int c = coro_tcp_dial("db", "5432");
    ASSERT_GE(c, 0);
    int s = coro_accept(l, NULL, NULL);
    ASSERT_GE(s, 0);
    ASSERT_EQ(coro_sim_partition("db", "client"), 0);
    ASSERT_EQ(coro_write(c, "query", 5), 5);
    char buf[16];
    /* Held: nothing arrives in a whole minute. */
    int64_t old = coro_timeout(60 * CORO_SEC);
    ASSERT_ERRNO(coro_read(s, buf, sizeof buf), ETIMEDOUT);
    coro_set_deadline(old);
    /* Dials are held too. */
    old = coro_timeout(CORO_SEC);
    ASSERT_ERRNO(coro_tcp_dial("db", "5432"), ETIMEDOUT);
    coro_set_deadline(old);
    int64_t t0 = coro_now();
    ASSERT_EQ(coro_sim_heal("db", NULL), 0);
    ASSERT_EQ(coro_read(s, buf, sizeof buf), 5);
    ASSERT_EQ(memcmp(buf, "query", 5), 0);
    int64_t dt = coro_now() - t0;
    ASSERT_GE(dt, 1 * CORO_MS);
    ASSERT_LE(dt, 5 * CORO_MS);
    coro_close(c);
    coro_close(s);
    coro_close(l);
    return 0;
}

TEST(simnet_partition_holds_data_until_healed)
{
    ASSERT_EQ(run_net(partition_main, NULL, 5, 0.0), 0);
    /* Outside a simulation there is no network to partition. */
    errno = 0;
    ASSERT_EQ(coro_sim_partition("a", "b"), -1);
    ASSERT_EQ(errno, EPERM);
}

/* ---- Unix sockets and UDP --------------------------------------------------------------- */

static int unix_udp_main(void *arg)
{
    (void)arg;
    int l = coro_unix_listen("/nonexistent/sim.sock");
    ASSERT_GE(l, 0);
    int c = coro_unix_dial("/nonexistent/sim.sock");
    ASSERT_GE(c, 0);
    int s = coro_accept(l, NULL, NULL);
    ASSERT_GE(s, 0);
    char ab[] = "ab", cd[] = "cd";
    struct iovec v[2] = { { ab, 2 }, { cd, 2 } };
    ASSERT_EQ(coro_writev(c, v, 2), 4);
    char buf[8];
    int got = 0;
    while (got < 4) {
        ssize_t r = coro_recv(s, buf + got, sizeof buf - (size_t)got, 0);
        ASSERT_GT(r, 0);
        got += (int)r;
    }
    ASSERT_EQ(memcmp(buf, "abcd", 4), 0);
    ASSERT_ERRNO(coro_unix_dial("/nonexistent/other.sock"), ECONNREFUSED);
    coro_close(c);
    coro_close(s);
    coro_close(l);

    int u1 = coro_udp_bind("127.0.0.1", "5000");
    int u2 = coro_udp_bind("127.0.0.1", "5001");
    ASSERT_GE(u1, 0);
    ASSERT_GE(u2, 0);
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(5001);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(coro_sendto(u1, "ping", 4, 0, (struct sockaddr *)&to, sizeof to), 4);
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ASSERT_EQ(coro_recvfrom(u2, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl), 4);
    ASSERT_EQ(memcmp(buf, "ping", 4), 0);
    ASSERT_EQ(fl, sizeof from);
    ASSERT_EQ(ntohs(from.sin_port), 5000);
    coro_close(u1);
    coro_close(u2);
    return 0;
}

TEST(simnet_unix_sockets_and_udp)
{
    ASSERT_EQ(run_net(unix_udp_main, NULL, 6, 0.0), 0);
}

/* ---- giving up: a dial's deadline, a listener closed with a backlog, streams ---- */

static int dialer(void *arg)
{
    (void)arg;
    return coro_tcp_dial("lb", "443") < 0 ? errno : 0;
}

static int giveup_main(void *arg)
{
    (void)arg;
    /* A dial whose deadline comes before its connection arrives. */
    int l = coro_tcp_listen("lb", "443", 0);
    ASSERT_GE(l, 0);
    int64_t t0 = coro_now();
    int64_t old = coro_timeout(500 * CORO_US); /* below latency_min */
    ASSERT_ERRNO(coro_tcp_dial("lb", "443"), ETIMEDOUT);
    coro_set_deadline(old);
    ASSERT_EQ(coro_now() - t0, 500 * CORO_US);
    /* The abandoned connection still arrives, and reads end of file. */
    int s = coro_accept(l, NULL, NULL);
    ASSERT_GE(s, 0);
    char buf[64];
    ASSERT_EQ(coro_read(s, buf, sizeof buf), 0);
    ASSERT_EQ(coro_close(s), 0);
    /* Dials under way when the listener closes are refused; an
     * established one in the backlog is reset. */
    int c1 = coro_tcp_dial("lb", "443");
    ASSERT_GE(c1, 0);
    coro_t *d = coro_spawn(dialer, NULL);
    ASSERT_NOT_NULL(d);
    coro_yield();
    ASSERT_EQ(coro_close(l), 0);
    int st = -1;
    ASSERT_EQ(coro_join(d, &st), 0);
    ASSERT_EQ(st, ECONNREFUSED);
    ASSERT_ERRNO(coro_read(c1, buf, sizeof buf), ECONNRESET);
    ASSERT_EQ(coro_close(c1), 0);
    /* Streams work over simulated sockets. */
    l = coro_tcp_listen(NULL, "25", 0);
    ASSERT_GE(l, 0);
    int c = coro_tcp_dial("mail", "25");
    ASSERT_GE(c, 0);
    s = coro_accept(l, NULL, NULL);
    ASSERT_GE(s, 0);
    coro_stream_t *out = coro_stream_new(c, 0), *in = coro_stream_new(s, 0);
    ASSERT_NOT_NULL(out);
    ASSERT_NOT_NULL(in);
    ASSERT_EQ(coro_stream_write(out, "HELO sim\r\nQUIT\r\n", 16), 16);
    ASSERT_EQ(coro_stream_flush(out), 0);
    ASSERT_EQ(coro_stream_readline(in, buf, sizeof buf), 10);
    ASSERT_EQ(memcmp(buf, "HELO sim\r\n", 10), 0);
    ASSERT_EQ(coro_stream_readline(in, buf, sizeof buf), 6);
    coro_stream_free(out);
    coro_stream_free(in);
    /* Left open on purpose: freed when coro_main returns. */
    (void)c;
    return 0;
}

TEST(simnet_dial_deadline_listener_close_and_streams)
{
    int fds = open_fds();
    ASSERT_EQ(run_net(giveup_main, NULL, 8, 0.0), 0);
    ASSERT_EQ(open_fds(), fds);
}

TEST(simnet_heavy_faults_end_cleanly_and_never_corrupt)
{
    /* At a fault rate of 0.3 most exchanges meet a fault: every run still
     * ends (no deadlock, nothing leaked), and what arrives is intact. */
    static echo_run_t r;
    int fds = open_fds();
    int failed = 0;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        memset(&r, 0, sizeof r);
        ASSERT_EQ(run_net(echo_main, &r, seed, 0.3), 0);
        for (int i = 0; i < CLIENTS; i++) {
            if (r.codes[i] == 0)
                ASSERT_EQ(r.got[i], MSG);
            else
                failed++;
        }
    }
    ASSERT_GT(failed, 0);
    ASSERT_EQ(open_fds(), fds);
}

/* The echo workload under many seeds at a fault rate of 0.05: every run
 * ends, nothing arrives corrupted, and each seed is printed first, so a
 * failure names the seed that replays it (CORO_SIM_SEED=<n> runs that one
 * alone). */
TEST(simnet_echo_under_many_seeds)
{
    static echo_run_t r;
    int seeds = (int)ts_count(100, 6);
    uint64_t first = 5000;
    const char *env = getenv("CORO_SIM_SEED");
    if (env && *env) {
        first = strtoull(env, NULL, 10);
        seeds = 1;
    }
    int fds = open_fds();
    long intact = 0, failed = 0;
    for (int k = 0; k < seeds; k++) {
        uint64_t seed = first + (uint64_t)k;
        printf("seed %llu\n", (unsigned long long)seed);
        fflush(stdout);
        memset(&r, 0, sizeof r);
        ASSERT_EQ(run_net(echo_main, &r, seed, 0.05), 0);
        for (int i = 0; i < CLIENTS; i++) {
            if (r.codes[i] == 0) {
                ASSERT_EQ(r.got[i], MSG);
                intact++;
            } else {
                failed++;
            }
        }
    }
    ASSERT_EQ(open_fds(), fds);
    ASSERT_GT(intact, 0);
    if (seeds > 1)
        ASSERT_GT(failed, 0); /* the faults really came */
    printf("%d seeds: %ld clients echoed intact, %ld stopped by a fault\n", seeds, intact,
           failed);
}
