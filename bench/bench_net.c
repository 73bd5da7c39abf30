/* bench/bench_net.c: network benchmarks: a coro server against a plain
 * epoll server (the baseline), same load, same run.
 *
 *   BenchmarkEchoPingPong/conns=C/{epoll,coro}  C connections (1, 100,
 *       1000), each sending a 64-byte message and waiting for its echo,
 *       again and again: n round trips in all. conns=1 reports the median
 *       round-trip latency (p50-ns; the target is on latency there), the
 *       others wall ns per round trip (the inverse of the throughput).
 *   BenchmarkHTTP/conns=100/{epoll,coro}  keep-alive GETs over 100
 *       connections, one request in flight on each; ns per request. The
 *       load is wrk (-t1 -c100) when it is installed, else the client
 *       below; CORO_BENCH_WRK=0 forces the client, CORO_BENCH_WRK=PATH
 *       names the wrk to run. wrk runs for a time, not a count: a run lasts
 *       as long as n requests took the run before (at least 50 ms; wrk
 *       adds up to 100 ms to stop), and reports wrk's own count over wrk's
 *       own run time, so the n printed is the target, not the count.
 *   BenchmarkIdleConns10k/{epoll,coro}  10,000 connections opened to a
 *       fresh echo server, one message exchanged on each, then held idle:
 *       the server's resident memory (VmRSS) grown from before the first
 *       connection, per connection. Memory the kernel keeps for the
 *       sockets is not in it. Each runs once, in a child of its own.
 *
 * Processes: every server runs in a child process of its own, pinned to
 * one CPU; the load generator (this process during a run, or wrk) is
 * pinned to another, when the process may use two. The servers of the
 * timed benchmarks start at first use and stay up, holding their load's
 * connections open between runs (connecting is not measured), until this
 * process exits; they die with it in any case (PR_SET_PDEATHSIG). The
 * echo and HTTP client is plain epoll C, the same for both servers, with
 * one request in flight per connection.
 *
 * Every line's cpu (the harness's "other clock"; the primary value with
 * -cpu) is the server process's CPU time per operation (user + system,
 * clock_getcpuclockid), measured over the run. On loopback a sender's CPU
 * includes the TCP receive path of the bytes it sends (the softirq runs in
 * its system call), the same for both servers. The note gives the medians
 * over the same runs of: operations per second; the server's CPU per
 * operation, how busy it was (CPU time / wall time) and the share spent in
 * the kernel (from /proc/PID/stat, in ticks); the load generator's CPU per
 * operation; "others": the share of the two CPUs that other processes or
 * the hypervisor took meanwhile (from /proc/stat; a run with much of it
 * measured the machine's neighbours more than the servers); the latency
 * percentiles; and, on the coro lines, the ratios to the epoll server of
 * the same run, with the CPU target (<= 1.1x). The table's ratio is on
 * time per operation: its throughput target (>= 0.95x the baseline's
 * operations per second) reads <= 1/0.95 = 1.05263x. */
#include "bench/bench_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum impl { IMPL_EPOLL, IMPL_CORO, NIMPL };
static const char *const impl_name[NIMPL] = { "epoll", "coro" };

#define ECHO_MSG 64
#define HTTP_CONNS 100
/* No progress for this long: the server is stuck, the run fails. */
#define STALL_MS 10000

static int64_t ts_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts_ns(&ts);
}

/* ---- CPUs and descriptors ------------------------------------------------ */

static struct {
    int ready;
    int server, load;   /* CPUs; -1: not pinned (one CPU only) */
    cpu_set_t orig;     /* this process's own mask, restored after a run */
} cpus;

static void cpus_init(void)
{
    if (cpus.ready)
        return;
    cpus.ready = 1;
    cpus.server = cpus.load = -1;
    if (sched_getaffinity(0, sizeof cpus.orig, &cpus.orig) != 0)
        return;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &cpus.orig))
            continue;
        if (cpus.server < 0) {
            cpus.server = c;
        } else {
            cpus.load = c;
            break;
        }
    }
    if (cpus.load < 0)
        cpus.server = -1;
}

static void pin_to(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void unpin(void)
{
    if (cpus.load >= 0)
        sched_setaffinity(0, sizeof cpus.orig, &cpus.orig);
}

/* The soft RLIMIT_NOFILE raised to the hard one; returns the soft limit. */
static long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1L << 30 ? 1L << 30
                                                                  : (long)rl.rlim_cur;
}

/* ---- server processes ------------------------------------------------------ */

typedef struct proc {
    pid_t pid;          /* 0: not running */
    int port;
    clockid_t clock;    /* its CPU-time clock */
} proc_t;

/* The servers of the timed benchmarks, by implementation and protocol. */
static proc_t servers[NIMPL][2];
static pid_t servers_owner;

static void proc_stop(proc_t *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    p->pid = 0;
}

/* Close every descriptor from `from` on (a server child must not hold
 * the load's connections to other servers open). */
static void close_from(int from)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    if (close_range((unsigned)from, ~0U, 0) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = from; fd < (max > 0 ? max : 65536); fd++)
        close((int)fd);
}

static int proc_start(proc_t *p, enum impl impl, enum net_proto proto)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("bench net: pipe2");
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench net: fork");
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* Die with the benchmark, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        close(fds[0]);
        int report = fds[1];
        if (report != 3) {
            if (dup2(report, 3) < 0)
                _exit(1);
            report = 3;
        }
        close_from(4);
        pin_to(cpus.server);
        raise_nofile();
        int rc = impl == IMPL_CORO ? net_coro_serve(proto, report)
                                   : net_epoll_serve(proto, report);
        fflush(stderr);
        _exit(rc ? rc : 1);
    }
    close(fds[1]);
    p->pid = pid;
    int port = 0;
    struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
    ssize_t got = -1;
    if (poll(&pfd, 1, 10000) == 1)
        got = read(fds[0], &port, sizeof port);
    close(fds[0]);
    if (got != (ssize_t)sizeof port || port <= 0 || port > 65535) {
        fprintf(stderr, "bench net: the %s %s server did not start\n", impl_name[impl],
                proto == NET_ECHO ? "echo" : "http");
        proc_stop(p);
        return -1;
    }
    p->port = port;
    if (clock_getcpuclockid(pid, &p->clock) != 0) {
        perror("bench net: clock_getcpuclockid");
        proc_stop(p);
        return -1;
    }
    return 0;
}

static void servers_stop(void)
{
    if (getpid() != servers_owner)
        return;
    for (int i = 0; i < NIMPL; i++)
        for (int j = 0; j < 2; j++)
            proc_stop(&servers[i][j]);
}

static proc_t *server_get(enum impl impl, enum net_proto proto)
{
    proc_t *p = &servers[impl][proto];
    if (servers_owner != getpid()) {
        /* First use, or a forked child: the table is not ours. */
        memset(servers, 0, sizeof servers);
        if (!servers_owner)
            atexit(servers_stop);
        servers_owner = getpid();
    }
    if (p->pid > 0 && waitpid(p->pid, NULL, WNOHANG) != 0) {
        fprintf(stderr, "bench net: the %s server died; starting another\n",
                impl_name[impl]);
        p->pid = 0;
    }
    if (p->pid == 0 && proc_start(p, impl, proto) != 0)
        return NULL;
    return p;
}

static int64_t proc_cpu_ns(const proc_t *p)
{
    struct timespec ts;
    if (clock_gettime(p->clock, &ts) != 0)
        return 0;
    return ts_ns(&ts);
}

/* utime and stime of a process, in clock ticks (/proc/PID/stat). */
static void proc_ticks(pid_t pid, int64_t *user, int64_t *sys)
{
    char path[64], buf[1024];
    *user = *sys = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    /* After the command's closing parenthesis: fields 3, 4, ...; utime and
     * stime are fields 14 and 15. */
    char *s = strrchr(buf, ')');
    if (!s)
        return;
    long long u = 0, st = 0;
    if (sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &u, &st) == 2) {
        *user = u;
        *sys = st;
    }
}

/* A "Key:   123 kB" line of /proc/PID/status, in bytes; -1 if absent. */
static int64_t proc_status_bytes(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t klen = strlen(key);
    int64_t v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0) {
            v = strtoll(line + klen, NULL, 10) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

/* Ticks the two pinned CPUs spent not idle (/proc/stat: user, nice,
 * system, irq, softirq, steal), or -1 when not pinned or unknown. */
static int64_t cpus_busy_ticks(void)
{
    if (cpus.load < 0)
        return -1;
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    char line[512];
    int64_t sum = 0;
    int seen = 0;
    while (fgets(line, sizeof line, f)) {
        int cpu;
        long long v[8];
        if (sscanf(line, "cpu%d %lld %lld %lld %lld %lld %lld %lld %lld", &cpu, &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 9)
            continue;
        if (cpu != cpus.server && cpu != cpus.load)
            continue;
        sum += v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        seen++;
    }
    fclose(f);
    return seen == 2 ? sum : -1;
}

/* The share of the two CPUs that other processes (or the hypervisor) took
 * over window_ns, given what the server and the load used; -1 unknown. */
static double others_share(int64_t busy0, int64_t busy1, int64_t srv_ns, int64_t cli_ns,
                           int64_t window_ns)
{
    if (busy0 < 0 || busy1 < 0 || window_ns <= 0)
        return -1;
    double ns = (double)(busy1 - busy0) * 1e9 / (double)sysconf(_SC_CLK_TCK);
    double o = (ns - (double)srv_ns - (double)cli_ns) / (2.0 * (double)window_ns);
    return o < 0 ? 0 : o;
}

/* ---- latency histogram ------------------------------------------------------ */

/* Log-linear: exact below 128 ns, then 64 buckets per power of two
 * (at most 1.6% from the midpoint). */
#define HIST_SUB 64
#define HIST_N (2 * HIST_SUB + 34 * HIST_SUB)

typedef struct hist {
    int64_t count;
    int64_t b[HIST_N];
} hist_t;

static void hist_add(hist_t *h, int64_t v)
{
    size_t i;
    if (v < 2 * HIST_SUB) {
        i = v < 0 ? 0 : (size_t)v;
    } else {
        int e = 63 - __builtin_clzll((unsigned long long)v); /* >= 7 */
        i = 2 * HIST_SUB + (size_t)(e - 7) * HIST_SUB +
            (size_t)((v >> (e - 6)) - HIST_SUB);
        if (i >= HIST_N)
            i = HIST_N - 1;
    }
    h->b[i]++;
    h->count++;
}

/* The q-quantile (0 < q < 1), in ns; 0 when empty. */
static double hist_quantile(const hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    int64_t want = (int64_t)(q * (double)h->count) + 1, seen = 0;
    for (size_t i = 0; i < HIST_N; i++) {
        seen += h->b[i];
        if (seen < want)
            continue;
        if (i < 2 * HIST_SUB)
            return (double)i;
        int e = (int)((i - 2 * HIST_SUB) / HIST_SUB) + 7;
        int64_t top = (int64_t)((i - 2 * HIST_SUB) % HIST_SUB) + HIST_SUB;
        int64_t lo = top << (e - 6);
        return (double)lo + (double)((int64_t)1 << (e - 6)) / 2;
    }
    return 0;
}

/* ---- the load generator ---------------------------------------------------------- */

#define LBUF 512

typedef struct lconn {
    int fd;
    int len;            /* bytes of the reply received */
    int64_t t0;         /* when the request went out */
    uint64_t seq;       /* echo: the message's number */
    char buf[LBUF];
} lconn_t;

/* Connections to one server, kept open between runs. */
typedef struct connset {
    const proc_t *srv;
    pid_t srv_pid;
    enum net_proto proto;
    int n;
    int ep;
    lconn_t *c;
} connset_t;

static const char http_request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

static void connset_close(connset_t *cs)
{
    if (cs->c) {
        for (int i = 0; i < cs->n; i++)
            close(cs->c[i].fd);
        close(cs->ep);
        free(cs->c);
    }
    memset(cs, 0, sizeof *cs);
}

static int send_request(connset_t *cs, lconn_t *c, uint64_t seq)
{
    char msg[ECHO_MSG];
    const void *p = http_request;
    size_t n = sizeof http_request - 1;
    if (cs->proto == NET_ECHO) {
        memset(msg, 'x', sizeof msg);
        memcpy(msg, &seq, sizeof seq);
        p = msg;
        n = sizeof msg;
    }
    c->seq = seq;
    c->len = 0;
    ssize_t w;
    while ((w = send(c->fd, p, n, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (w != (ssize_t)n) {
        fprintf(stderr, "bench net: send: %s\n", w < 0 ? strerror(errno) : "short write");
        return -1;
    }
    return 0;
}

/* Is c's reply complete? 1 yes, 0 not yet, -1 wrong. */
static int reply_done(const connset_t *cs, const lconn_t *c)
{
    if (cs->proto == NET_ECHO) {
        if (c->len < ECHO_MSG)
            return 0;
        uint64_t seq;
        memcpy(&seq, c->buf, sizeof seq);
        if (c->len > ECHO_MSG || seq != c->seq) {
            fprintf(stderr, "bench net: echo: a wrong reply\n");
            return -1;
        }
        return 1;
    }
    const char *end = memmem(c->buf, (size_t)c->len, "\r\n\r\n", 4);
    if (!end)
        return c->len < LBUF ? 0 : -1;
    size_t head = (size_t)(end - c->buf) + 4;
    const char *cl = memmem(c->buf, head, "Content-Length:", 15);
    if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0 || !cl) {
        fprintf(stderr, "bench net: http: a wrong reply\n");
        return -1;
    }
    size_t total = head + (size_t)strtoul(cl + 15, NULL, 10);
    if ((size_t)c->len < total)
        return 0;
    if ((size_t)c->len > total) {
        fprintf(stderr, "bench net: http: more than one reply\n");
        return -1;
    }
    return 1;
}

typedef struct load_result {
    int64_t ops, wall_ns, srv_cpu_ns, cli_cpu_ns, srv_user, srv_sys;
    double p50, p99;
    double others;      /* see others_share */
} load_result_t;

/* n round trips over connections [first, first + count) of cs, one in
 * flight per connection. */
static int load_run(connset_t *cs, int first, int count, int64_t n, load_result_t *res)
{
    hist_t *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    int64_t issued = 0, done = 0;
    int64_t u0, s0, u1, s1;
    proc_ticks(cs->srv_pid, &u0, &s0);
    int64_t busy0 = cpus_busy_ticks();
    int64_t cli0 = thread_cpu_ns();
    int64_t srv0 = proc_cpu_ns(cs->srv);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t start = ts_ns(&ts), now = start;
    for (int i = first; i < first + count && issued < n; i++, issued++) {
        cs->c[i].t0 = start;
        if (send_request(cs, &cs->c[i], (uint64_t)issued) != 0)
            goto fail;
    }
    struct epoll_event evs[512];
    while (done < n) {
        int k = epoll_wait(cs->ep, evs, 512, STALL_MS);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            perror("bench net: epoll_wait");
            goto fail;
        }
        if (k == 0) {
            fprintf(stderr, "bench net: no reply for %d ms\n", STALL_MS);
            goto fail;
        }
        for (int e = 0; e < k; e++) {
            uint32_t i = evs[e].data.u32;
            if (i < (uint32_t)first || i >= (uint32_t)(first + count)) {
                fprintf(stderr, "bench net: data on an idle connection\n");
                goto fail;
            }
            lconn_t *c = &cs->c[i];
            ssize_t r = recv(c->fd, c->buf + c->len, (size_t)(LBUF - c->len), 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                fprintf(stderr, "bench net: recv: %s\n", r ? strerror(errno) : "closed");
                goto fail;
            }
            c->len += (int)r;
            int d = reply_done(cs, c);
            if (d < 0)
                goto fail;
            if (d == 0)
                continue;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            now = ts_ns(&ts);
            hist_add(h, now - c->t0);
            done++;
            if (issued < n) {
                c->t0 = now;
                if (send_request(cs, c, (uint64_t)issued++) != 0)
                    goto fail;
            }
        }
    }
    res->srv_cpu_ns = proc_cpu_ns(cs->srv) - srv0;
    res->cli_cpu_ns = thread_cpu_ns() - cli0;
    res->others = others_share(busy0, cpus_busy_ticks(), res->srv_cpu_ns, res->cli_cpu_ns,
                               now - start);
    proc_ticks(cs->srv_pid, &u1, &s1);
    res->ops = n;
    res->wall_ns = now - start;
    res->srv_user = u1 - u0;
    res->srv_sys = s1 - s0;
    res->p50 = hist_quantile(h, 0.50);
    res->p99 = hist_quantile(h, 0.99);
    free(h);
    return 0;
fail:
    free(h);
    return -1;
}

/* Open n connections to srv (in batches, each connection exchanging one
 * message before the next batch, so the listener's backlog never fills),
 * or keep cs as it is when it already holds them. */
static int connset_open(connset_t *cs, const proc_t *srv, enum net_proto proto, int n)
{
    if (cs->n == n && cs->srv == srv && cs->srv_pid == srv->pid && cs->proto == proto)
        return 0;
    connset_close(cs);
    cs->srv = srv;
    cs->srv_pid = srv->pid;
    cs->proto = proto;
    cs->ep = epoll_create1(EPOLL_CLOEXEC);
    cs->c = calloc((size_t)n, sizeof *cs->c);
    if (cs->ep < 0 || !cs->c) {
        perror("bench net: connection set");
        if (cs->ep >= 0)
            close(cs->ep);
        free(cs->c);
        memset(cs, 0, sizeof *cs);
        return -1;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)srv->port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int batch = 500;
    for (int base = 0; base < n; base += batch) {
        int m = n - base < batch ? n - base : batch;
        for (int i = base; i < base + m; i++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                fprintf(stderr, "bench net: socket #%d: %s\n", i, strerror(errno));
                goto fail;
            }
            cs->c[cs->n++].fd = fd;
            int one = 1;
            struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
            if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
                fcntl(fd, F_SETFL, O_NONBLOCK) != 0 ||
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
                epoll_ctl(cs->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
                fprintf(stderr, "bench net: connection #%d: %s\n", i, strerror(errno));
                goto fail;
            }
        }
        /* One message on each connection of the batch. */
        load_result_t res;
        if (load_run(cs, base, m, m, &res) != 0)
            goto fail;
    }
    return 0;
fail:
    connset_close(cs);
    return -1;
}

/* ---- wrk ------------------------------------------------------------------- */

/* wrk's path, or NULL to use the client above. */
static const char *wrk_path(void)
{
    static char path[512];
    static int looked;
    if (looked)
        return path[0] ? path : NULL;
    looked = 1;
    const char *env = getenv("CORO_BENCH_WRK");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "no") == 0 || *env == '\0'))
        return NULL;
    if (env && strchr(env, '/')) {
        if (access(env, X_OK) == 0)
            snprintf(path, sizeof path, "%s", env);
        else
            fprintf(stderr, "bench net: CORO_BENCH_WRK=%s is not executable\n", env);
        return path[0] ? path : NULL;
    }
    const char *p = getenv("PATH");
    if (!p)
        p = "/usr/local/bin:/usr/bin:/bin";
    while (*p) {
        size_t len = strcspn(p, ":");
        char cand[512];
        snprintf(cand, sizeof cand, "%.*s/wrk", (int)len, len ? p : ".");
        struct stat st;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
            snprintf(path, sizeof path, "%s", cand);
            return path;
        }
        p += len + (p[len] == ':');
    }
    return NULL;
}

/* "123.45us" / "1.2ms" / "3s" at s, in ns; -1 if not a duration. */
static double parse_wrk_time(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s)
        return -1;
    if (strncmp(end, "us", 2) == 0)
        return v * 1e3;
    if (strncmp(end, "ms", 2) == 0)
        return v * 1e6;
    if (strncmp(end, "m", 1) == 0)
        return v * 60e9;
    if (*end == 's')
        return v * 1e9;
    return -1;
}

/* Run wrk against srv for about dur_ns (wrk's own flag counts whole
 * seconds: it runs with a long -d and is stopped with SIGINT, on which it
 * stops its threads within 100 ms and prints its totals). */
static int wrk_run(const proc_t *srv, int64_t dur_ns, load_result_t *res)
{
    const char *wrk = wrk_path();
    char url[64], dflag[32];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", srv->port);
    snprintf(dflag, sizeof dflag, "%llds", (long long)(dur_ns / 1000000000 + 30));
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
        perror("bench net: pipe2");
        return -1;
    }
    int64_t u0, s0, u1, s1;
    proc_ticks(srv->pid, &u0, &s0);
    int64_t busy0 = cpus_busy_ticks(), begin = bench_now();
    int64_t srv0 = proc_cpu_ns(srv);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench net: fork");
        close(out[0]);
        close(out[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* A SIGINT that comes before wrk handles it is lost, not fatal:
         * the parent repeats it. */
        signal(SIGINT, SIG_IGN);
        dup2(out[1], 1);
        dup2(out[1], 2);
        pin_to(cpus.load);
        char conns[16];
        snprintf(conns, sizeof conns, "%d", HTTP_CONNS);
        execl(wrk, "wrk", "-t1", "-c", conns, "-d", dflag, "--latency", url, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char buf[8192];
    size_t len = 0;
    int64_t t0 = bench_now(), deadline = t0 + dur_ns, give_up = deadline + 5000000000LL;
    int eof = 0;
    while (!eof) {
        int64_t now = bench_now();
        if (now >= give_up)
            break;
        if (now >= deadline)
            kill(pid, SIGINT); /* again if wrk missed it; harmless once it has it */
        int wait_ms = now >= deadline ? 250 : (int)((deadline - now + 999999) / 1000000);
        struct pollfd pfd = { .fd = out[0], .events = POLLIN };
        if (poll(&pfd, 1, wait_ms) > 0) {
            char spill[512]; /* past sizeof buf: read, not kept */
            int full = len == sizeof buf - 1;
            ssize_t k = full ? read(out[0], spill, sizeof spill)
                             : read(out[0], buf + len, sizeof buf - 1 - len);
            if (k > 0 && !full)
                len += (size_t)k;
            else if (k == 0 || errno != EINTR)
                eof = 1;
        }
    }
    close(out[0]);
    buf[len] = '\0';
    if (!eof)
        kill(pid, SIGKILL);
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
        ;
    res->srv_cpu_ns = proc_cpu_ns(srv) - srv0;
    proc_ticks(srv->pid, &u1, &s1);
    res->srv_user = u1 - u0;
    res->srv_sys = s1 - s0;
    res->cli_cpu_ns = ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
                      ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
    res->others = others_share(busy0, cpus_busy_ticks(), res->srv_cpu_ns, res->cli_cpu_ns,
                               bench_now() - begin);
    const char *req = strstr(buf, " requests in ");
    const char *rps = strstr(buf, "Requests/sec:");
    const char *p50 = strstr(buf, " 50%");
    if (!eof || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !req || !rps) {
        fprintf(stderr, "bench net: wrk failed (%s):\n%s\n",
                !eof ? "it did not stop" : "status", buf);
        return -1;
    }
    if (strstr(buf, "Socket errors:") || strstr(buf, "Non-2xx")) {
        fprintf(stderr, "bench net: wrk saw errors:\n%s\n", buf);
        return -1;
    }
    const char *num = req;
    while (num > buf && num[-1] >= '0' && num[-1] <= '9')
        num--;
    double rate = strtod(rps + 13, NULL);
    res->ops = strtoll(num, NULL, 10);
    if (res->ops <= 0 || rate <= 0) {
        fprintf(stderr, "bench net: wrk: no requests:\n%s\n", buf);
        return -1;
    }
    res->wall_ns = (int64_t)((double)res->ops / rate * 1e9);
    const char *p99 = strstr(buf, " 99%");
    res->p50 = p50 ? parse_wrk_time(p50 + 4 + strspn(p50 + 4, " ")) : 0;
    res->p99 = p99 ? parse_wrk_time(p99 + 4 + strspn(p99 + 4, " ")) : 0;
    if (res->p50 < 0)
        res->p50 = 0;
    if (res->p99 < 0)
        res->p99 = 0;
    return 0;
}

/* ---- results across runs ----------------------------------------------------- */

typedef struct rec {
    int64_t n;
    double ops_s, srv_cpu, cli_cpu, busy, sys, p50, p99, others;
} rec_t;

enum { B_ECHO1, B_ECHO100, B_ECHO1000, B_HTTP, NB };
#define MAX_REC 256

static struct series {
    int nrec;
    rec_t rec[MAX_REC];
} series[NB][NIMPL];

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of a field over the runs of s with the n of its last run. */
static double series_median(const struct series *s, size_t field)
{
    double v[MAX_REC];
    int k = 0;
    if (s->nrec == 0)
        return 0;
    int64_t n = s->rec[s->nrec - 1].n;
    for (int i = 0; i < s->nrec; i++)
        if (s->rec[i].n == n)
            memcpy(&v[k++], (const char *)&s->rec[i] + field, sizeof v[0]);
    qsort(v, (size_t)k, sizeof v[0], cmp_double);
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}
#define MEDIAN(s, f) series_median((s), offsetof(rec_t, f))

/* The note: medians over this benchmark's runs so far (at the last run,
 * exactly the runs the harness reports), and the ratios to epoll's. */
static void write_note(bench_run_t *r, int b, enum impl impl, const char *extra)
{
    const struct series *s = &series[b][impl], *base = &series[b][IMPL_EPOLL];
    int http = b == B_HTTP;
    char *p = r->note;
    size_t left = sizeof r->note;
    char others[32] = "";
    if (MEDIAN(s, others) >= 0)
        snprintf(others, sizeof others, "; others %.0f%%", 100 * MEDIAN(s, others));
    int k = snprintf(p, left, "%.0f %s; server %.2f us-cpu/op (%.0f%% busy, %.0f%% sys); "
                     "%s %.2f us-cpu/op%s; p50 %.1f us, p99 %.1f us",
                     MEDIAN(s, ops_s), http ? "req/s" : "rt/s", MEDIAN(s, srv_cpu) / 1e3,
                     100 * MEDIAN(s, busy), 100 * MEDIAN(s, sys), extra,
                     MEDIAN(s, cli_cpu) / 1e3, others, MEDIAN(s, p50) / 1e3,
                     MEDIAN(s, p99) / 1e3);
    if (k < 0 || (size_t)k >= left || impl == IMPL_EPOLL || base->nrec == 0)
        return;
    p += k;
    left -= (size_t)k;
    double ops = MEDIAN(s, ops_s) / MEDIAN(base, ops_s);
    double cpu = MEDIAN(s, srv_cpu) / MEDIAN(base, srv_cpu);
    if (b == B_ECHO1)
        snprintf(p, left, "; vs epoll %.2fx rt/s, %.2fx cpu/op", ops, cpu);
    else
        snprintf(p, left, "; vs epoll %.2fx %s, %.2fx cpu/op (<= 1.1x: %s)", ops,
                 http ? "req/s" : "rt/s", cpu, cpu <= 1.1 ? "PASS" : "MISS");
}

/* ---- the timed benchmarks ------------------------------------------------------- */

static connset_t loads[NIMPL][2];

static int net_bench(bench_run_t *r, int b, enum impl impl)
{
    static const int conns[NB] = { 1, 100, 1000, HTTP_CONNS };
    enum net_proto proto = b == B_HTTP ? NET_HTTP : NET_ECHO;
    cpus_init();
    if (raise_nofile() < conns[b] + 64) {
        fprintf(stderr, "bench net: %d connections need more descriptors (ulimit -n)\n",
                conns[b]);
        return -1;
    }
    proc_t *srv = server_get(impl, proto);
    if (!srv)
        return -1;
    pin_to(cpus.load);
    load_result_t res;
    memset(&res, 0, sizeof res);
    int rc = -1;
    const char *via = "client";
    if (proto == NET_HTTP && wrk_path()) {
        /* wrk runs for a time, not a count: as long as n requests took
         * the last time (30 us each the first time), at least 50 ms. */
        const struct series *s = &series[b][impl];
        double per = s->nrec ? 1e9 / s->rec[s->nrec - 1].ops_s : 30000;
        double dur = (double)r->n * per;
        if (dur < 50e6)
            dur = 50e6;
        via = "wrk";
        rc = wrk_run(srv, (int64_t)dur, &res);
    } else {
        connset_t *cs = &loads[impl][proto];
        rc = connset_open(cs, srv, proto, conns[b]);
        if (rc == 0)
            rc = load_run(cs, 0, cs->n, r->n, &res);
        if (rc != 0)
            connset_close(cs);
    }
    unpin();
    if (rc != 0) {
        /* It may be the server that broke: start afresh next time. */
        proc_stop(srv);
        return -1;
    }
    double per = (double)res.wall_ns / (double)res.ops;
    /* wrk does not do exactly n: the harness sizes runs by wall_ns/n. */
    r->wall_ns = proto == NET_HTTP ? (int64_t)(per * (double)r->n) : res.wall_ns;
    r->value = b == B_ECHO1 ? res.p50 : per;
    r->cpu_value = (double)res.srv_cpu_ns / (double)res.ops;
    struct series *s = &series[b][impl];
    if (s->nrec == MAX_REC) {
        memmove(s->rec, s->rec + 1, (MAX_REC - 1) * sizeof s->rec[0]);
        s->nrec--;
    }
    int64_t ticks = res.srv_user + res.srv_sys;
    s->rec[s->nrec++] = (rec_t){
        .n = r->n,
        .ops_s = 1e9 / per,
        .srv_cpu = r->cpu_value,
        .cli_cpu = (double)res.cli_cpu_ns / (double)res.ops,
        .busy = (double)res.srv_cpu_ns / (double)res.wall_ns,
        .sys = ticks > 0 ? (double)res.srv_sys / (double)ticks : 0,
        .p50 = res.p50,
        .p99 = res.p99,
        .others = res.others,
    };
    write_note(r, b, impl, via);
    return 0;
}

int bench_echo1_epoll(bench_run_t *r) { return net_bench(r, B_ECHO1, IMPL_EPOLL); }
int bench_echo1_coro(bench_run_t *r) { return net_bench(r, B_ECHO1, IMPL_CORO); }
int bench_echo100_epoll(bench_run_t *r) { return net_bench(r, B_ECHO100, IMPL_EPOLL); }
int bench_echo100_coro(bench_run_t *r) { return net_bench(r, B_ECHO100, IMPL_CORO); }
int bench_echo1000_epoll(bench_run_t *r) { return net_bench(r, B_ECHO1000, IMPL_EPOLL); }
int bench_echo1000_coro(bench_run_t *r) { return net_bench(r, B_ECHO1000, IMPL_CORO); }
int bench_http_epoll(bench_run_t *r) { return net_bench(r, B_HTTP, IMPL_EPOLL); }
int bench_http_coro(bench_run_t *r) { return net_bench(r, B_HTTP, IMPL_CORO); }

/* ---- BenchmarkIdleConns10k ------------------------------------------------------- */

static int idle_conns(bench_run_t *r, enum impl impl)
{
    cpus_init();
    long fds = raise_nofile();
    int n = (int)r->n;
    if (fds < n + 64) {
        if (fds - 64 < 1000) {
            fprintf(stderr, "BenchmarkIdleConns10k: skipped: %d connections need %d "
                    "descriptors, RLIMIT_NOFILE allows %ld\n", n, n + 64, fds);
            return -1;
        }
        n = (int)(fds - 64);
    }
    proc_t srv;
    memset(&srv, 0, sizeof srv);
    if (proc_start(&srv, impl, NET_ECHO) != 0)
        return -1;
    pin_to(cpus.load);
    connset_t cs;
    memset(&cs, 0, sizeof cs);
    int rc = -1;
    int64_t rss0 = proc_status_bytes(srv.pid, "VmRSS:");
    int64_t pte0 = proc_status_bytes(srv.pid, "VmPTE:");
    int64_t t0 = bench_now();
    if (connset_open(&cs, &srv, NET_ECHO, n) == 0) {
        int64_t t1 = bench_now();
        /* The last replies are out; let their coroutines park again. */
        struct timespec pause = { 0, 20 * 1000 * 1000 };
        nanosleep(&pause, NULL);
        int64_t rss1 = proc_status_bytes(srv.pid, "VmRSS:");
        int64_t pte1 = proc_status_bytes(srv.pid, "VmPTE:");
        if (rss0 > 0 && rss1 > 0) {
            r->wall_ns = t1 - t0;
            r->value = (double)(rss1 - rss0) / n;
            snprintf(r->note, sizeof r->note,
                     "%d connections; server VmRSS %.1f -> %.1f MiB, VmPTE %.0f B/conn; "
                     "connect + 1 echo %.1f us/conn",
                     n, (double)rss0 / 1048576, (double)rss1 / 1048576,
                     (double)(pte1 - pte0) / n, (double)(t1 - t0) / n / 1e3);
            rc = 0;
        } else {
            fprintf(stderr, "BenchmarkIdleConns10k: no VmRSS for the server\n");
        }
    }
    connset_close(&cs);
    proc_stop(&srv);
    unpin();
    return rc;
}

int bench_idle_conns_epoll(bench_run_t *r) { return idle_conns(r, IMPL_EPOLL); }
int bench_idle_conns_coro(bench_run_t *r) { return idle_conns(r, IMPL_CORO); }
