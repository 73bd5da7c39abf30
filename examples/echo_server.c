/* echo_server.c: a TCP echo server, one coroutine per connection, one
 * thread per core.
 *
 * WHAT IT SHOWS
 *   The shape of a coroutine server, which reads like a blocking one:
 *       for (;;) { fd = coro_accept(lfd); spawn(serve_conn, fd); }
 *       serve_conn: for (;;) { n = coro_read(fd, buf); coro_write(fd, buf, n); }
 *   Each coro_read/coro_write parks only its own coroutine until the
 *   descriptor is ready, so ten thousand connections are ten thousand
 *   small stacks on one thread, not ten thousand threads.
 *   Around that loop, what a real server needs:
 *   - A connection cap, as backpressure: the accept loop takes a permit
 *     from a semaphore (coro_sem_t) *before* it accepts, and a connection
 *     gives it back when it ends. At the cap the server simply stops
 *     accepting; new clients wait in the kernel's listen backlog until a
 *     connection frees a slot (and their own connect timeout decides how
 *     long they are prepared to wait). Nothing is accepted only to be
 *     dropped.
 *   - An idle timeout: each round (read what the client sends, write it
 *     all back) runs under a deadline scope, so a client that goes quiet,
 *     or stops reading its echo, loses its connection after --idle
 *     seconds instead of holding a descriptor forever.
 *   - Small stacks: each connection runs on a 32 KiB stack (coro_spawn_opts)
 *     with a 2 KiB buffer on it. Only the pages a coroutine touches cost
 *     memory, and the coroutine's header, its frames and the buffer fit in
 *     one 4 KiB page: measured over 5000 idle connections, each costs the
 *     process 4.2 KiB of RSS (a 4 KiB buffer makes it 8.3 KiB). The
 *     kernel's socket buffers come on top, outside the process.
 *   - Every core: with -t N (by default one per online CPU) the process
 *     runs N schedulers, one per thread (coro_main_opts with threads = N),
 *     and each thread is a whole server of its own, a "shard": its own
 *     listener on the same port (CORO_REUSEPORT, i.e. SO_REUSEPORT: the
 *     kernel spreads new connections over the listeners), its own accept
 *     loop, semaphore, task group and counters. A connection is served
 *     by the thread that accepted it, start to end; the threads share
 *     nothing but the configuration, which no one writes once they run,
 *     so there is no lock anywhere. -t 1 is the single-threaded server.
 *   - The limits are the process's: --max-conns is divided between the
 *     threads (10000 over 2 threads: 5000 each), and the idle timeout is
 *     per connection anyway. The kernel picks a listener by a hash of the
 *     connection's addresses and ports, not by load, so one thread may be
 *     at its share while another has room: that thread's new clients then
 *     wait in its backlog, as they would at the cap of a single thread.
 *   - Graceful shutdown on SIGINT/SIGTERM: scheduler 0's main coroutine
 *     (the "conductor") waits in coro_signal_wait(), then cancels each
 *     thread's shard through the handle coro_spawn_on gave it. In each
 *     thread the accept loop stops, the listener is closed, the open
 *     connections get 2 s to finish (a deadline around coro_group_wait),
 *     and whatever is still open then is cancelled: the group cancels its
 *     children and waits for them to unwind. The conductor joins every
 *     shard and adds up their counters. Exit 0. (How and why: see "the
 *     conductor" below.)
 *   The connections belong to a task group, so none can outlive the
 *   server: CORO_GROUP_COLLECT (one client's error is not the others'
 *   business) | CORO_GROUP_REAP (each connection's coroutine is freed the
 *   moment it ends). Without REAP a group keeps every ended child, stack
 *   and all, until it is waited on, which here happens only at shutdown:
 *   20,000 connections, one after another, took the process from 10 MB
 *   to 90 MB, and with mprotect stack guards (kernels before 6.13) every
 *   connection after about the 32,750th was refused. With REAP memory
 *   stays flat (test/churn.sh checks it).
 *   - Running out of memory or mappings when a connection arrives is
 *     reported on stderr (at most one line a second per thread, with a
 *     count of the ones held back), the connection is closed, and the
 *     server goes on.
 *
 * HOW TO RUN IT
 *   echo_server PORT [-t N] [--max-conns N] [--idle SECONDS] [--host ADDR]
 *       PORT 0 picks a free port. The first line on stdout is always
 *       "listening on ADDR:PORT" (scripts read the port from it).
 *       Defaults: -t (--threads) one per online CPU, --max-conns 10000 for
 *       the whole process, --idle 60, --host 127.0.0.1. There are never
 *       more threads than --max-conns.
 *       With two threads or more, another process of the same user that
 *       listens on PORT with SO_REUSEPORT too joins the group silently
 *       and gets a share of the connections: do not start two servers on
 *       one port. (With -t 1 there is no SO_REUSEPORT, and the second
 *       server fails with "Address already in use", as it should.)
 *   Then, from another terminal:
 *       echo_client -p PORT -c 50 -d 3      (a load generator, echo_client.c)
 *   and stop the server with Ctrl-C or kill -TERM. (A job a shell script
 *   starts with & has SIGINT ignored; only SIGTERM reaches it then.)
 *   At the end it prints how many connections each thread served.
 *
 * WHAT TO NOTICE
 *   - There is no event loop, state machine or callback in this file;
 *     the scheduler turns every would-block into a park.
 *   - Every per-connection resource is bounded: one descriptor, one stack,
 *     one buffer, and time (the idle deadline). A hostile client can hold
 *     one slot for at most --idle seconds per round.
 *   - Threads talk to each other only through coroutine handles:
 *     coro_spawn_on, coro_cancel and coro_join work across the
 *     schedulers of a run, and that is all the shutdown needs. */
#include <coro.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_MAX_CONNS 10000
#define DEFAULT_IDLE_SEC 60
#define MAX_THREADS 1024              /* coro_main_opts' limit */
#define DRAIN_TIMEOUT (2 * CORO_SEC)  /* how long open connections get at shutdown */
#define CONN_STACK (32 * 1024)        /* address space; only touched pages cost memory */
#define ECHO_BUF 2048                 /* on the connection's stack */

/* The command line. Written by main() before any scheduler starts, only
 * read after: every thread may read it without a lock. */
static struct config {
    const char *host;
    const char *port;      /* as given; "0" picks one (see open_listeners) */
    long max_conns;        /* for the whole process */
    int64_t idle;          /* ns */
    int threads;
} cfg;

/* Trouble that may come in floods (out of descriptors, out of memory) is
 * reported at most once a second; the reports held back are counted, and
 * the count goes with the next report, or out at shutdown (report_held). */
struct ratelimit {
    int printed;           /* a report has been printed */
    int64_t last;          /* when */
    long held;             /* reports held back since */
};

/* One thread's server. Only that thread touches it while the server runs
 * (scheduler 0 reads the counters once the shard has been joined, which
 * orders the reads after the writes). Each shard starts on a cache line
 * of its own, so that two threads counting their own connections never
 * write to the same line (false sharing would make each wait for the
 * other's cache). */
struct shard {
    _Alignas(64) int index;  /* its scheduler's index, coro_thread_index() */
    char tag[16];          /* "thread 1: " before its messages; "" with one thread */
    long max_conns;        /* its share of --max-conns */
    int lfd;               /* its listening socket */
    coro_sem_t slots;      /* a permit per connection it may still accept */
    coro_group_t *conns;   /* every connection's coroutine */
    coro_t *co;            /* the shard's coroutine: scheduler 0 keeps the handle */
    long open;             /* connections open now */
    long served;           /* connections accepted so far */
    long cut_off;          /* connections cancelled at shutdown */
    long turned_away;      /* connections closed because no coroutine could start */
    struct ratelimit accept_trouble, spawn_trouble;
};

/* Only the first cfg.threads are used; the pages of the others are never
 * touched, so they cost no memory. */
static struct shard shards[MAX_THREADS];

/* The shard of the calling thread: a coroutine runs on the scheduler that
 * spawned it, and scheduler i serves shard i. */
static struct shard *here(void)
{
    return &shards[coro_thread_index()];
}

/* Scheduler 0's main coroutine, which stops the server (see conduct). */
static coro_t *conductor;

/* SIGINT and SIGTERM, blocked in main() before any thread exists. */
static sigset_t stop_signals;

/* ---- one connection --------------------------------------------------------- */

/* Echo until the client closes, errs, idles out or we are cancelled. The
 * argument is the descriptor itself (no allocation per connection). */
static int serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct shard *sh = here();
    char buf[ECHO_BUF];

    for (;;) {
        /* One deadline for the whole round: the client has --idle seconds
         * to send something and to take all of its echo back. */
        int64_t saved = coro_timeout(cfg.idle);
        ssize_t n = coro_read(fd, buf, sizeof buf);
        if (n > 0 && coro_write(fd, buf, (size_t)n) != n)
            n = -1;
        coro_set_deadline(saved);
        if (n <= 0)
            break;           /* end of file, error, idle timeout, cancelled */
    }
    if (coro_cancelled())
        sh->cut_off++;
    /* Neither call is a checkpoint: cleanup runs even when cancelled. */
    coro_close(fd);
    sh->open--;
    coro_sem_release(&sh->slots);
    return 0;                /* per-client trouble is not the server's failure */
}

/* ---- accepting ---------------------------------------------------------------- */

static __attribute__((format(printf, 3, 4))) void report(const struct shard *sh,
                                                        struct ratelimit *rl,
                                                        const char *fmt, ...)
{
    int64_t now = coro_now();
    if (rl->printed && now - rl->last < CORO_SEC) {
        rl->held++;
        return;
    }
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (rl->held > 0)
        fprintf(stderr, "echo_server: %s%s (and %ld more since the last report)\n", sh->tag,
                msg, rl->held);
    else
        fprintf(stderr, "echo_server: %s%s\n", sh->tag, msg);
    rl->printed = 1;
    rl->last = now;
    rl->held = 0;
}

static void report_held(const struct shard *sh, const struct ratelimit *rl, const char *what)
{
    if (rl->held > 0)
        fprintf(stderr, "echo_server: %s%ld more %s not reported\n", sh->tag, rl->held, what);
}

/* Errors after which accepting again makes sense: out of descriptors or
 * memory (coro_accept has already waited up to 100 ms for one to be freed,
 * so retrying does not spin), or a network error of the new connection
 * that Linux reports through accept(2). */
static int accept_error_is_transient(int err)
{
    return err != EBADF && err != EINVAL && err != ENOTSOCK && err != ECANCELED;
}

/* Accept until cancelled (0) or a fatal error (1). */
static int accept_loop(struct shard *sh)
{
    coro_opts_t opts = { .stack_size = CONN_STACK, .name = "conn" };

    for (;;) {
        /* At the cap this parks until a connection ends: backpressure. */
        if (coro_sem_acquire(&sh->slots) != 0)
            return 0;                        /* cancelled: shutting down */
        int fd = coro_accept(sh->lfd, NULL, NULL);
        if (fd < 0) {
            int err = errno;
            coro_sem_release(&sh->slots);
            if (err == ECANCELED)
                return 0;
            if (!accept_error_is_transient(err)) {
                fprintf(stderr, "echo_server: %saccept: %s\n", sh->tag, strerror(err));
                return 1;
            }
            report(sh, &sh->accept_trouble, "accept: %s (retrying)", strerror(err));
            continue;
        }
        /* Echo each piece as it comes: without TCP_NODELAY the kernel
         * holds a small write back until the previous one is acknowledged,
         * and the client may delay its acknowledgement by 40 ms. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* The handle is not kept: in a REAP group it dies with the
         * connection, and shutdown cancels through the group. */
        if (!coro_group_spawn_opts(sh->conns, serve_conn, (void *)(intptr_t)fd, &opts)) {
            /* Out of memory or mappings: say so, turn this client away,
             * pause briefly (memory may come back), go on. */
            report(sh, &sh->spawn_trouble,
                   "no coroutine for a new connection: %s; connection closed", strerror(errno));
            sh->turned_away++;
            coro_close(fd);
            coro_sem_release(&sh->slots);
            if (coro_sleep(10 * CORO_MS) != 0)
                return 0;
            continue;
        }
        sh->open++;
        sh->served++;
    }
}

/* ---- one thread's server -------------------------------------------------------- */

/* Give the open connections DRAIN_TIMEOUT to finish, then cancel the rest:
 * when the deadline passes, coro_group_wait cancels the children and waits
 * for them to unwind before it returns ETIMEDOUT. */
static void drain(struct shard *sh)
{
    long open = sh->open;
    printf("%s%ld connection%s open; waiting up to %lld s\n", sh->tag, open,
           open == 1 ? "" : "s", (long long)(DRAIN_TIMEOUT / CORO_SEC));
    int64_t saved = coro_timeout(DRAIN_TIMEOUT);
    int rc = coro_group_wait(sh->conns);
    int err = errno;
    coro_set_deadline(saved);
    if (rc == -1 && err == ETIMEDOUT)
        printf("%scancelled %ld connection%s still open after the deadline\n", sh->tag,
               sh->cut_off, sh->cut_off == 1 ? "" : "s");
    coro_group_free(sh->conns);
}

/* Cancel c, which may run on another thread: that cancellation is a
 * message, which needs a little memory; wait for some rather than leave
 * c running. */
static void cancel(coro_t *c)
{
    while (coro_cancel(c) != 0 && errno == ENOMEM)
        coro_sleep(CORO_MS);
}

/* A shard's coroutine, on its own scheduler: serve until cancelled (by the
 * conductor, at shutdown), then close the listener and drain. */
static int serve_shard(void *arg)
{
    struct shard *sh = arg;
    coro_sem_init(&sh->slots, sh->max_conns);
    sh->conns = coro_group_new(CORO_GROUP_COLLECT | CORO_GROUP_REAP);
    if (!sh->conns) {
        fprintf(stderr, "echo_server: %stask group: %s\n", sh->tag, strerror(errno));
        cancel(conductor);
        coro_close(sh->lfd);
        return 1;
    }
    int status = accept_loop(sh);
    if (status != 0)
        cancel(conductor);   /* a thread that cannot accept stops the server */
    /* The cancellation that stopped the accept loop is sticky: held back,
     * it lets the drain below wait (its deadline still applies). */
    coro_shield(1);
    coro_close(sh->lfd);     /* new clients are refused from now on */
    drain(sh);
    report_held(sh, &sh->accept_trouble, "accept errors");
    report_held(sh, &sh->spawn_trouble, "connections closed for want of a coroutine");
    if (sh->turned_away > 0)
        printf("%sturned away %ld connection%s: no memory for a coroutine\n", sh->tag,
               sh->turned_away, sh->turned_away == 1 ? "" : "s");
    return status;
}

/* ---- the conductor: starting and stopping the threads ------------------------- *
 *
 * Every scheduler of the run starts with conduct() as its main coroutine;
 * scheduler 0's does the work and the others return at once (a scheduler
 * without coroutines waits, as long as the run lasts, for one to be
 * spawned on it).
 *
 * The schedulers share no channel or event: a coroutine acts on another
 * thread's coroutine only through its handle (coro_spawn_on, coro_cancel,
 * coro_join). So the conductor keeps a handle to every shard, and
 * cancellation is the stop message, both ways:
 *   1. It opens each thread's listener on that thread, the first one
 *      first (with PORT 0 it picks the port the others then share).
 *   2. It spawns each shard on its own scheduler with coro_spawn_on.
 *   3. It waits for SIGINT or SIGTERM. The process's signals reach
 *      scheduler 0's thread only (the run's other threads block them),
 *      which is why the waiting is done here.
 *   4. It cancels every shard. Each shard's accept loop fails with
 *      ECANCELED, and the shard drains its own connections (shielded, so
 *      the sticky cancellation does not cut its drain short).
 *   5. It joins every shard, then adds up their counters.
 * The other way: a shard whose accept loop fails for good cancels the
 * conductor (whose handle every shard can read: it is set before the
 * shards are spawned, and it stays valid until they have all been
 * joined). Its coro_signal_wait then fails with ECANCELED and it goes on
 * at step 4: one broken thread stops the server, as with one thread. The
 * conductor shields itself for steps 4 and 5, since it may have been
 * cancelled: its joins must wait all the same. */

/* The port every listener binds: PORT, or the one the first listener was
 * given for PORT 0. */
static char listen_port[8];

/* Runs on the shard's own scheduler (coro_spawn_on): the listener is made,
 * used and closed by one thread, as io/io.h's thread boundary asks. */
static int open_listener(void *arg)
{
    struct shard *sh = arg;
    int flags = cfg.threads > 1 ? CORO_REUSEPORT : 0;
    sh->lfd = coro_tcp_listen(cfg.host, listen_port, flags);
    if (sh->lfd < 0) {
        fprintf(stderr, "echo_server: %slisten on %s:%s: %s\n", sh->tag, cfg.host, listen_port,
                strerror(errno));
        return 1;
    }
    return 0;
}

/* Step 1. On failure the listeners already made stay open until the
 * process exits, which it is about to. */
static int open_listeners(void)
{
    snprintf(listen_port, sizeof listen_port, "%s", cfg.port);
    for (int i = 0; i < cfg.threads; i++) {
        int status = 1;
        coro_t *c = coro_spawn_on(i, open_listener, &shards[i]);
        if (!c) {
            perror("echo_server: coro_spawn_on");
            return -1;
        }
        coro_join(c, &status);
        if (status != 0)
            return -1;
        if (i == 0)
            snprintf(listen_port, sizeof listen_port, "%d", coro_sock_port(shards[0].lfd));
    }
    return 0;
}

/* Step 3: 0 on a signal or when a shard cancelled us, 1 if signals cannot
 * be waited for (then the server stops at once). */
static int wait_for_stop(void)
{
    int sig = coro_signal_wait(&stop_signals);
    if (sig >= 0) {
        printf("got %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return 0;
    }
    if (errno == ECANCELED)
        return 0;            /* a shard failed: it said why */
    perror("echo_server: coro_signal_wait");
    return 1;
}

static int conduct(void *arg)
{
    (void)arg;
    if (coro_thread_index() != 0)
        return 0;
    conductor = coro_self();
    if (open_listeners() != 0)
        return 1;
    printf("listening on %s:%s\n", cfg.host, listen_port);
    if (cfg.threads > 1)
        printf("%d threads, each with its own listener (SO_REUSEPORT) and at most %ld "
               "connections (%ld in all)\n",
               cfg.threads, shards[0].max_conns, cfg.max_conns);

    int started = 0, status = 0;
    for (; started < cfg.threads; started++) {       /* step 2 */
        struct shard *sh = &shards[started];
        if (!(sh->co = coro_spawn_on(started, serve_shard, sh))) {
            perror("echo_server: coro_spawn_on");
            status = 1;
            break;
        }
    }
    if (status == 0)
        status = wait_for_stop();                     /* step 3 */
    coro_shield(1);
    for (int i = 0; i < started; i++)                 /* step 4 */
        cancel(shards[i].co);
    long served = 0;
    for (int i = 0; i < started; i++) {               /* step 5 */
        int shard_status = 1;
        coro_join(shards[i].co, &shard_status);
        status |= shard_status;
        served += shards[i].served;
    }
    printf("served %ld connection%s", served, served == 1 ? "" : "s");
    for (int i = 0; i < started && cfg.threads > 1; i++)
        printf("%sthread %d: %ld", i == 0 ? " (" : ", ", i, shards[i].served);
    printf("%s; bye\n", cfg.threads > 1 ? ")" : "");
    return status;
}

/* ---- main ----------------------------------------------------------------------- */

/* A server wants more descriptors than the usual soft limit of 1024. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: echo_server PORT [-t N] [--max-conns N] [--idle SECONDS] [--host ADDR]\n"
            "  PORT            0 picks a free port (printed: \"listening on ADDR:PORT\")\n"
            "  -t, --threads N threads, 1 to %d, each a server with its own listener on\n"
            "                  PORT (SO_REUSEPORT); default: one per online CPU (%ld here),\n"
            "                  never more than --max-conns\n"
            "  --max-conns N   connections open at once, 1 to 1000000, for the whole\n"
            "                  process: each thread takes its share (default %d)\n"
            "  --idle SECONDS  a connection that neither sends nor takes its echo for\n"
            "                  that long is closed, 1 to 86400 (default %d)\n"
            "  --host ADDR     the address to listen on (default 127.0.0.1)\n",
            MAX_THREADS, sysconf(_SC_NPROCESSORS_ONLN), DEFAULT_MAX_CONNS, DEFAULT_IDLE_SEC);
    exit(2);
}

/* A decimal number in [lo, hi], or usage(). */
static long number(const char *what, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "echo_server: %s must be a number from %ld to %ld, not \"%s\"\n", what,
                lo, hi, s);
        usage();
    }
    return v;
}

/* One thread per online CPU, at least one. */
static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/* Give each shard its index, its tag and its share of --max-conns (the
 * first max_conns % threads get one more). */
static void plan_shards(void)
{
    if (cfg.threads > cfg.max_conns)
        cfg.threads = (int)cfg.max_conns;    /* every thread must take at least one */
    for (int i = 0; i < cfg.threads; i++) {
        struct shard *sh = &shards[i];
        sh->index = i;
        sh->lfd = -1;
        sh->max_conns = cfg.max_conns / cfg.threads + (i < cfg.max_conns % cfg.threads);
        if (cfg.threads > 1)
            snprintf(sh->tag, sizeof sh->tag, "thread %d: ", i);
    }
}

int main(int argc, char **argv)
{
    cfg = (struct config){ "127.0.0.1", NULL, DEFAULT_MAX_CONNS, DEFAULT_IDLE_SEC * CORO_SEC,
                           online_cpus() };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if ((strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) && has_value)
            cfg.threads = (int)number(a, argv[++i], 1, MAX_THREADS);
        else if (strcmp(a, "--max-conns") == 0 && has_value)
            cfg.max_conns = number(a, argv[++i], 1, 1000000);
        else if (strcmp(a, "--idle") == 0 && has_value)
            cfg.idle = number(a, argv[++i], 1, 86400) * CORO_SEC;
        else if (strcmp(a, "--host") == 0 && has_value)
            cfg.host = argv[++i];
        else if (!cfg.port && a[0] != '-' && number("PORT", a, 0, 65535) >= 0)
            cfg.port = a;
        else
            usage();
    }
    if (!cfg.port)
        usage();
    plan_shards();

    raise_fd_limit();
    /* Block the stop signals before coro_main_opts starts any thread
     * (threads inherit the mask): a signal is then never fatal, and one
     * that comes before the conductor waits stays pending until it does. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);   /* the "listening on" line reaches a pipe at once */

    coro_main_opts_t opts = { .threads = cfg.threads };
    int rc = coro_main_opts(conduct, NULL, &opts);
    if (rc < 0) {
        perror("echo_server: coro_main_opts");
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
