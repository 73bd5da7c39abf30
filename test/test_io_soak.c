/* test/test_io_soak.c: volume. A slow reader behind a 4 KiB send buffer
 * gets every byte of megabytes, in order, while the writer parks instead
 * of spinning (bounded context switches and CPU time). An echo server
 * written here serves thousands of connections, each sending and getting
 * back 64 KiB checksummed; afterwards the process's descriptor count is
 * back to its baseline. */
#include "test/test_io.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* ---- helpers -------------------------------------------------------------- */

static int64_t cpu_ns(void)
{
    struct rusage ru;
    ASSERT_EQ(getrusage(RUSAGE_SELF, &ru), 0);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * CORO_SEC +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * CORO_US;
}

/* ---- a slow reader and a tiny send buffer ----------------------------------- */

typedef struct slow {
    int fd;
    uint64_t n;
    uint64_t done;
    long calls;
    int64_t slept;
    int64_t nap_cpu;  /* CPU time the process used during the long naps */
    int64_t napped;   /* their wall time */
} slow_t;

static int slow_writer(void *arg)
{
    slow_t *w = arg;
    unsigned char *buf = malloc(65536);
    ASSERT_NOT_NULL(buf);
    while (w->done < w->n) {
        size_t len = w->n - w->done < 65536 ? (size_t)(w->n - w->done) : 65536;
        tio_fill_pattern(buf, len, 7, w->done);
        ASSERT_EQ(coro_write(w->fd, buf, len), (long)len);
        w->done += len;
        w->calls++;
    }
    free(buf);
    return 0;
}

static int slow_reader(void *arg)
{
    slow_t *r = arg;
    unsigned char buf[3001];
    uint64_t next_nap = 128 * 1024;
    while (r->done < r->n) {
        size_t want = 1 + (size_t)(r->calls * 37 % 3000);
        ssize_t got = coro_read(r->fd, buf, want);
        ASSERT_GT(got, 0);
        ASSERT_EQ(tio_check_pattern(buf, (size_t)got, 7, r->done), (size_t)got);
        r->done += (uint64_t)got;
        r->calls++;
        if (r->done >= next_nap) {
            /* Slow: a pause now and then while the writer waits; every
             * eighth pause is long and the process should be idle then
             * (a writer spinning on a full buffer would burn it). */
            int longer = (next_nap / (128 * 1024)) % 8 == 2;
            int64_t t0 = coro_now(), c0 = cpu_ns();
            ASSERT_EQ(coro_sleep(longer ? 20 * CORO_MS : 2 * CORO_MS), 0);
            int64_t t1 = coro_now();
            r->slept += t1 - t0;
            if (longer) {
                r->nap_cpu += cpu_ns() - c0;
                r->napped += t1 - t0;
            }
            next_nap += 128 * 1024;
        }
    }
    return 0;
}

static int slow_main(void *arg)
{
    (void)arg;
    struct sockaddr_in a;
    int l = tio_tcp_listener_rcvbuf(SOMAXCONN, 4096, &a);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(c, 0);
    tio_set_buffer(c, SO_SNDBUF, 4096);
    ASSERT_EQ(coro_connect(c, (struct sockaddr *)&a, sizeof a), 0);
    int s = coro_accept(l, NULL, NULL);
    ASSERT_GE(s, 0);
    tio_set_buffer(s, SO_RCVBUF, 4096);

    uint64_t n = (uint64_t)ts_count(8 << 20, 1 << 20);
    if (test_under_valgrind())
        n = 512 << 10;
    slow_t w = { c, n, 0, 0, 0, 0, 0 }, r = { s, n, 0, 0, 0, 0, 0 };
    uint64_t sw0 = ts_switches();
    int64_t t0 = coro_now(), cpu0 = cpu_ns();
    coro_t *wc = coro_spawn(slow_writer, &w);
    coro_t *rc = coro_spawn(slow_reader, &r);
    ASSERT_NOT_NULL(wc);
    ASSERT_NOT_NULL(rc);
    ASSERT_EQ(coro_join(wc, NULL), 0);
    ASSERT_EQ(coro_join(rc, NULL), 0);
    int64_t wall = coro_now() - t0, cpu = cpu_ns() - cpu0;
    uint64_t sw = ts_switches() - sw0;
    printf("%llu bytes in %lld ms (cpu %lld ms, reader slept %lld ms; in its long naps %lld ms, "
           "cpu %lld ms), %ld reads, %llu switches\n",
           (unsigned long long)n, (long long)ts_ms(wall), (long long)ts_ms(cpu),
           (long long)ts_ms(r.slept), (long long)ts_ms(r.napped), (long long)ts_ms(r.nap_cpu),
           r.calls, (unsigned long long)sw);
    ASSERT_EQ(r.done, n);
    ASSERT_EQ(w.done, n);
    /* Every switch is paid for by progress: a writer woken with no room,
     * over and over, would show up as switches without reads. */
    ASSERT_LT(sw, (uint64_t)(2 * r.calls + 200));
    /* While the reader naps, the writer sleeps in the poller: the
     * process is idle then. */
    ASSERT_GT(r.napped, 0);
    ASSERT_LT(r.nap_cpu, r.napped / 4);
    if (!test_under_valgrind())
        ASSERT_LT(cpu, wall);
    ASSERT_EQ(coro_close(c), 0);
    ASSERT_EQ(coro_close(s), 0);
    ASSERT_EQ(coro_close(l), 0);
    return 0;
}

TEST(io_soak_slow_reader_tiny_send_buffer_every_byte)
{
    ASSERT_EQ(coro_main(slow_main, NULL), 0);
}

/* ---- an echo server and many connections -------------------------------------- */

typedef struct echo {
    int l;
    struct sockaddr_in addr;
    size_t msg;          /* bytes each client sends */
    coro_wg_t handlers;  /* server-side connections still open */
    coro_sem_t slots;    /* clients allowed at once */
    coro_wg_t clients;
    long served, ok;
    long max_live;
    long live;
} echo_t;

typedef struct conn {
    echo_t *e;
    int fd;
    uint64_t seed;
} conn_t;

static int echo_handler(void *arg)
{
    conn_t *c = arg;
    unsigned char buf[16384];
    for (;;) {
        ssize_t n = coro_read(c->fd, buf, sizeof buf);
        ASSERT_GE(n, 0);
        if (n == 0)
            break;
        ASSERT_EQ(coro_write(c->fd, buf, (size_t)n), n);
    }
    ASSERT_EQ(coro_close(c->fd), 0);
    c->e->served++;
    ASSERT_EQ(coro_wg_done(&c->e->handlers), 0);
    free(c);
    return 0;
}

static int echo_server(void *arg)
{
    echo_t *e = arg;
    for (;;) {
        int fd = coro_accept(e->l, NULL, NULL);
        if (fd < 0) {
            ASSERT_EQ(errno, ECANCELED);
            return 0;
        }
        conn_t *c = malloc(sizeof *c);
        ASSERT_NOT_NULL(c);
        c->e = e;
        c->fd = fd;
        c->seed = 0;
        ASSERT_EQ(coro_wg_add(&e->handlers, 1), 0);
        coro_t *h = coro_spawn_opts(echo_handler, c, &(coro_opts_t){ .stack_size = 64 * 1024 });
        ASSERT_NOT_NULL(h);
        coro_detach(h);
    }
}

static int client_writer(void *arg)
{
    conn_t *c = arg;
    unsigned char buf[8192];
    size_t done = 0;
    while (done < c->e->msg) {
        size_t len = c->e->msg - done < sizeof buf ? c->e->msg - done : sizeof buf;
        tio_fill_pattern(buf, len, c->seed, done);
        ASSERT_EQ(coro_write(c->fd, buf, len), (long)len);
        done += len;
    }
    ASSERT_EQ(shutdown(c->fd, SHUT_WR), 0);
    return 0;
}

static int client(void *arg)
{
    conn_t *c = arg;
    echo_t *e = c->e;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(c->fd, 0);
    ASSERT_EQ(coro_connect(c->fd, (struct sockaddr *)&e->addr, sizeof e->addr), 0);
    e->live++;
    if (e->live > e->max_live)
        e->max_live = e->live;
    coro_t *w = coro_spawn_opts(client_writer, c, &(coro_opts_t){ .stack_size = 64 * 1024 });
    ASSERT_NOT_NULL(w);
    unsigned char buf[10007];
    size_t got = 0;
    for (;;) {
        ssize_t n = coro_read(c->fd, buf, sizeof buf);
        ASSERT_GE(n, 0);
        if (n == 0)
            break;
        size_t bad = tio_check_pattern(buf, (size_t)n, c->seed, got);
        if (bad != (size_t)n)
            test_fail(__FILE__, __LINE__, "connection %llu: byte %zu differs",
                      (unsigned long long)c->seed, got + bad);
        got += (size_t)n;
    }
    ASSERT_EQ(got, e->msg);
    ASSERT_EQ(coro_join(w, NULL), 0);
    ASSERT_EQ(coro_close(c->fd), 0);
    e->live--;
    e->ok++;
    free(c);
    ASSERT_EQ(coro_sem_release(&e->slots), 0);
    ASSERT_EQ(coro_wg_done(&e->clients), 0);
    return 0;
}

typedef struct soak_cfg {
    long conns;
    long parallel;
    size_t msg;
} soak_cfg_t;

static int soak_main(void *arg)
{
    soak_cfg_t *cfg = arg;
    echo_t e;
    memset(&e, 0, sizeof e);
    e.msg = cfg->msg;
    e.l = tio_tcp_listener(SOMAXCONN, &e.addr);
    coro_wg_init(&e.handlers);
    coro_wg_init(&e.clients);
    ASSERT_EQ(coro_sem_init(&e.slots, cfg->parallel), 0);
    coro_t *srv = coro_spawn_opts(echo_server, &e, &(coro_opts_t){ .name = "echo-server" });
    ASSERT_NOT_NULL(srv);
    for (long i = 0; i < cfg->conns; i++) {
        ASSERT_EQ(coro_sem_acquire(&e.slots), 0);
        conn_t *c = malloc(sizeof *c);
        ASSERT_NOT_NULL(c);
        c->e = &e;
        c->fd = -1;
        c->seed = (uint64_t)i + 1;
        ASSERT_EQ(coro_wg_add(&e.clients, 1), 0);
        coro_t *k = coro_spawn_opts(client, c, &(coro_opts_t){ .stack_size = 64 * 1024 });
        ASSERT_NOT_NULL(k);
        coro_detach(k);
    }
    ASSERT_EQ(coro_wg_wait(&e.clients), 0);
    ASSERT_EQ(coro_wg_wait(&e.handlers), 0);
    ASSERT_EQ(coro_cancel(srv), 0);
    ASSERT_EQ(coro_join(srv, NULL), 0);
    ASSERT_EQ(coro_close(e.l), 0);
    printf("%ld connections (%ld at once), %zu bytes each way each: %ld echoed, %ld checked\n",
           cfg->conns, e.max_live, e.msg, e.served, e.ok);
    ASSERT_EQ(e.ok, cfg->conns);
    ASSERT_EQ(e.served, cfg->conns);
    ASSERT_GT(e.max_live, 1);
    coro_stats_t st;
    coro_stats(&st);
    ASSERT_EQ(st.io_waits, 0);
    ASSERT_EQ(st.live, 1);
    return 0;
}

TEST(io_soak_echo_many_connections_checksummed)
{
    soak_cfg_t cfg = { 2000, 250, 64 * 1024 };
    if (test_under_valgrind()) {
        cfg.conns = 40;
        cfg.parallel = 20;
        cfg.msg = 16 * 1024;
    } else if (test_under_sanitizer()) {
        cfg.conns = 500;
        cfg.parallel = 100;
    }
    int before = tio_count_fds();
    int64_t t0 = test_now_ns();
    ASSERT_EQ(coro_main(soak_main, &cfg), 0);
    printf("%lld ms\n", (long long)((test_now_ns() - t0) / CORO_MS));
    ASSERT_EQ(tio_count_fds(), before);
}
