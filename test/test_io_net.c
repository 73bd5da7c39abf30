/* test/test_io_net.c: listening, dialing and binding by name (io/net.c).
 * TCP over 127.0.0.1 and ::1 with an echo both ways (the sockets are
 * non-blocking and close-on-exec, dialed ones have TCP_NODELAY); the dual
 * stack wildcard takes IPv4 (and occupies the IPv4 port), CORO_IPV6ONLY
 * leaves the IPv4 port free; CORO_REUSEPORT lets two listeners share a
 * port; a closed port refuses; dial tries the addresses in order (the
 * loopback pair of a NULL host, and "localhost" through the blocking
 * pool); Unix sockets, a stale socket file removed but nothing else,
 * ENAMETOOLONG at the exact limit; UDP bind with sendto/recvfrom over the
 * dual stack; bad arguments, checkpoints (EPERM, ECANCELED, ETIMEDOUT);
 * and every test checks that the process holds as many descriptors after
 * coro_main as before. */
#include "test/test_io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

/* ---- helpers -------------------------------------------------------------- */

static void port_str(int port, char *buf, size_t size)
{
    ASSERT_GT(port, 0);
    ASSERT_LT(snprintf(buf, size, "%d", port), (int)size);
}

/* The descriptor is non-blocking and close-on-exec. */
static void assert_nonblock_cloexec(int fd)
{
    ASSERT(fcntl(fd, F_GETFL) & O_NONBLOCK);
    ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static int sockopt(int fd, int level, int opt)
{
    int v = -1;
    socklen_t len = sizeof v;
    ASSERT_EQ(getsockopt(fd, level, opt, &v, &len), 0);
    return v;
}

static int local_family(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    return ss.ss_family;
}

static int peer_family(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ASSERT_EQ(getpeername(fd, (struct sockaddr *)&ss, &len), 0);
    return ss.ss_family;
}

/* Can this system make and bind an IPv6 loopback socket? */
static int have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Read exactly n bytes from fd (coro_read), failing the test at EOF. */
static void read_exact(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = coro_read(fd, (char *)buf + got, n - got);
        ASSERT_GT(r, 0);
        got += (size_t)r;
    }
}

/* ---- an echo server ------------------------------------------------------- */

#define GREETING "hello from the server\n"

typedef struct echo {
    int lfd;
    long echoed;
    int family; /* of the accepted peer */
} echo_t;

/* Accept one connection, greet, echo until EOF, close. */
static int echo_server(void *arg)
{
    echo_t *e = arg;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int c = coro_accept(e->lfd, (struct sockaddr *)&ss, &len);
    ASSERT_GE(c, 0);
    e->family = ss.ss_family;
    if (ss.ss_family != AF_UNIX)
        ASSERT_EQ(sockopt(c, IPPROTO_TCP, TCP_NODELAY), 1);
    ASSERT_EQ(coro_write(c, GREETING, strlen(GREETING)), (ssize_t)strlen(GREETING));
    char buf[4096];
    ssize_t n;
    while ((n = coro_read(c, buf, sizeof buf)) > 0) {
        ASSERT_EQ(coro_write(c, buf, (size_t)n), n);
        e->echoed += n;
    }
    ASSERT_EQ(n, 0);
    ASSERT_EQ(coro_close(c), 0);
    return 0;
}

typedef struct sender {
    int fd;
    const unsigned char *data;
    size_t n;
} sender_t;

/* Send the payload, then half-close. */
static int send_all(void *arg)
{
    sender_t *s = arg;
    ASSERT_EQ(coro_write(s->fd, s->data, s->n), (ssize_t)s->n);
    ASSERT_EQ(shutdown(s->fd, SHUT_WR), 0);
    return 0;
}

/* A dialer for echo_round_trip: a connected descriptor for lfd's peer. */
typedef int (*dialer_t)(int lfd, const char *where);

static int dial_tcp(int lfd, const char *host)
{
    char port[16];
    port_str(coro_sock_port(lfd), port, sizeof port);
    int c = coro_tcp_dial(host, port);
    ASSERT_GE(c, 0);
    ASSERT_EQ(sockopt(c, IPPROTO_TCP, TCP_NODELAY), 1);
    return c;
}

static int dial_unix(int lfd, const char *path)
{
    (void)lfd;
    int c = coro_unix_dial(path);
    ASSERT_GE(c, 0);
    return c;
}

/* Against an echo server on lfd: dial it, read the greeting, send a
 * payload larger than the socket buffers from one coroutine while reading
 * its echo in this one. Returns the accepted peer's address family. */
static int echo_round_trip(int lfd, dialer_t dial, const char *where)
{
    echo_t e = { .lfd = lfd };
    coro_t *srv = coro_spawn(echo_server, &e);
    ASSERT_NOT_NULL(srv);
    int c = dial(lfd, where);
    assert_nonblock_cloexec(c);

    char greet[sizeof GREETING - 1];
    read_exact(c, greet, sizeof greet);
    ASSERT_EQ(memcmp(greet, GREETING, sizeof greet), 0);

    size_t n = (size_t)ts_count(1 << 20, 256 << 10);
    unsigned char *out = malloc(n), *in = malloc(n);
    ASSERT_NOT_NULL(out);
    ASSERT_NOT_NULL(in);
    tio_fill_pattern(out, n, 7, 0);
    sender_t s = { c, out, n };
    coro_t *tx = coro_spawn(send_all, &s);
    ASSERT_NOT_NULL(tx);
    read_exact(c, in, n);
    ASSERT_EQ(memcmp(in, out, n), 0);
    char extra;
    ASSERT_EQ(coro_read(c, &extra, 1), 0); /* the server closed after EOF */
    ASSERT_EQ(coro_join(tx, NULL), 0);
    ASSERT_EQ(coro_join(srv, NULL), 0);
    ASSERT_EQ(e.echoed, (long)n);
    ASSERT_EQ(coro_close(c), 0);
    free(out);
    free(in);
    return e.family;
}

/* ---- TCP ------------------------------------------------------------------ */

static int tcp4_main(void *arg)
{
    (void)arg;
    int l = coro_tcp_listen("127.0.0.1", "0", 0);
    ASSERT_GE(l, 0);
    assert_nonblock_cloexec(l);
    ASSERT_EQ(local_family(l), AF_INET);
    ASSERT_EQ(sockopt(l, SOL_SOCKET, SO_REUSEADDR), 1);
    ASSERT_EQ(sockopt(l, SOL_SOCKET, SO_ACCEPTCONN), 1);
    ASSERT_EQ(echo_round_trip(l, dial_tcp, "127.0.0.1"), AF_INET);
    ASSERT_EQ(coro_close(l), 0);
    return 0;
}

TEST(io_net_tcp4_listen_dial_echo_both_ways)
{
    tio_run(tcp4_main, NULL);
}

static int tcp6_main(void *arg)
{
    (void)arg;
    int l = coro_tcp_listen("::1", "0", 0);
    ASSERT_GE(l, 0);
    ASSERT_EQ(local_family(l), AF_INET6);
    ASSERT_EQ(echo_round_trip(l, dial_tcp, "::1"), AF_INET6);
    ASSERT_EQ(coro_close(l), 0);
    return 0;
}

TEST(io_net_tcp6_loopback_echo_both_ways)
{
    if (!have_ipv6())
        TEST_SKIP("no IPv6 on this system");
    tio_run(tcp6_main, NULL);
}

/* host NULL and "": one IPv6 socket taking IPv4 too; the IPv4 port is
 * then taken. */
static int dual_main(void *arg)
{
    const char *host = arg;
    int l = coro_tcp_listen(host, "0", 0);
    ASSERT_GE(l, 0);
    ASSERT_EQ(local_family(l), AF_INET6);
    ASSERT_EQ(sockopt(l, IPPROTO_IPV6, IPV6_V6ONLY), 0);
    char port[16];
    port_str(coro_sock_port(l), port, sizeof port);
    ASSERT_ERRNO(coro_tcp_listen("0.0.0.0", port, 0), EADDRINUSE);
    /* An IPv4 client arrives as an IPv4-mapped IPv6 peer. */
    ASSERT_EQ(echo_round_trip(l, dial_tcp, "127.0.0.1"), AF_INET6);
    ASSERT_EQ(coro_close(l), 0);
    return 0;
}

TEST(io_net_dual_stack_listen_accepts_ipv4)
{
    if (!have_ipv6())
        TEST_SKIP("no IPv6 on this system");
    static char empty[] = "";
    tio_run(dual_main, NULL);
    tio_run(dual_main, empty);
}

/* CORO_IPV6ONLY: the IPv4 port stays free for an IPv4 listener of its
 * own, which is where an IPv4 client goes. */
static int v6only_main(void *arg)
{
    (void)arg;
    int l6 = coro_tcp_listen(NULL, "0", CORO_IPV6ONLY);
    ASSERT_GE(l6, 0);
    ASSERT_EQ(local_family(l6), AF_INET6);
    ASSERT_EQ(sockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    char port[16];
    port_str(coro_sock_port(l6), port, sizeof port);
    int l4 = coro_tcp_listen("0.0.0.0", port, 0);
    ASSERT_GE(l4, 0);
    ASSERT_EQ(coro_sock_port(l4), coro_sock_port(l6));
    ASSERT_EQ(echo_round_trip(l4, dial_tcp, "127.0.0.1"), AF_INET);
    ASSERT_EQ(echo_round_trip(l6, dial_tcp, "::1"), AF_INET6);
    ASSERT_EQ(coro_close(l4), 0);
    ASSERT_EQ(coro_close(l6), 0);
    return 0;
}

TEST(io_net_ipv6only_leaves_ipv4_port_free)
{
    if (!have_ipv6())
        TEST_SKIP("no IPv6 on this system");
    tio_run(v6only_main, NULL);
}

/* Two listeners on one port with CORO_REUSEPORT; a third without it is
 * refused; connections land on one of the two. */
static int reuseport_main(void *arg)
{
    (void)arg;
    int a = coro_tcp_listen("127.0.0.1", "0", CORO_REUSEPORT);
    ASSERT_GE(a, 0);
    ASSERT_EQ(sockopt(a, SOL_SOCKET, SO_REUSEPORT), 1);
    char port[16];
    port_str(coro_sock_port(a), port, sizeof port);
    int b = coro_tcp_listen("127.0.0.1", port, CORO_REUSEPORT);
    ASSERT_GE(b, 0);
    ASSERT_EQ(coro_sock_port(b), coro_sock_port(a));
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", port, 0), EADDRINUSE);

    enum { N = 8 };
    int c[N];
    for (int i = 0; i < N; i++) {
        c[i] = coro_tcp_dial("127.0.0.1", port);
        ASSERT_GE(c[i], 0);
    }
    int accepted = 0;
    for (int round = 0; accepted < N && round < 200; round++) {
        int lfds[2] = { a, b };
        for (int k = 0; k < 2; k++) {
            int s;
            while ((s = accept4(lfds[k], NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                close(s);
                accepted++;
            }
            ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
        }
        if (accepted < N)
            coro_sleep(CORO_MS);
    }
    ASSERT_EQ(accepted, N);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(coro_close(c[i]), 0);
    ASSERT_EQ(coro_close(a), 0);
    ASSERT_EQ(coro_close(b), 0);
    return 0;
}

TEST(io_net_reuseport_two_listeners_share_a_port)
{
    tio_run(reuseport_main, NULL);
}

static int refused_main(void *arg)
{
    (void)arg;
    int l = coro_tcp_listen("127.0.0.1", "0", 0);
    ASSERT_GE(l, 0);
    char port[16];
    port_str(coro_sock_port(l), port, sizeof port);
    ASSERT_EQ(coro_close(l), 0);
    ASSERT_ERRNO(coro_tcp_dial("127.0.0.1", port), ECONNREFUSED);
    if (have_ipv6())
        ASSERT_ERRNO(coro_tcp_dial("::1", port), ECONNREFUSED);
    return 0;
}

TEST(io_net_dial_closed_port_refused)
{
    tio_run(refused_main, NULL);
}

/* host NULL dials the loopback addresses, ::1 first when the system
 * lists both: with only the IPv4 one listening, the dial falls through to
 * it; with ::1 listening too, ::1 wins. */
static int order_main(void *arg)
{
    int both = *(int *)arg;
    int l4 = coro_tcp_listen("127.0.0.1", "0", 0);
    ASSERT_GE(l4, 0);
    char port[16];
    port_str(coro_sock_port(l4), port, sizeof port);
    int c = coro_tcp_dial(NULL, port);
    ASSERT_GE(c, 0);
    ASSERT_EQ(peer_family(c), AF_INET);
    ASSERT_EQ(coro_close(c), 0);
    if (both) {
        int l6 = coro_tcp_listen("::1", port, CORO_IPV6ONLY);
        ASSERT_GE(l6, 0);
        c = coro_tcp_dial("", port);
        ASSERT_GE(c, 0);
        ASSERT_EQ(peer_family(c), AF_INET6);
        ASSERT_EQ(coro_close(c), 0);
        ASSERT_EQ(coro_close(l6), 0);
    }
    ASSERT_EQ(coro_close(l4), 0);
    return 0;
}

TEST(io_net_dial_tries_addresses_in_order)
{
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    ASSERT_EQ(getaddrinfo(NULL, "1", &hints, &res), 0);
    int first6 = res->ai_family == AF_INET6;
    int has4 = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        has4 |= ai->ai_family == AF_INET;
    freeaddrinfo(res);
    if (!first6 || !has4)
        TEST_SKIP("the loopback addresses are not [::1, 127.0.0.1] here");
    int both = have_ipv6();
    tio_run(order_main, &both);
}

/* "localhost" goes through coro_getaddrinfo (the blocking pool). Only its
 * last address listens: every one before it is tried and refused. */
typedef struct named {
    struct sockaddr_storage last;
    socklen_t last_len;
    int naddrs;
} named_t;

static int localhost_main(void *arg)
{
    named_t *nm = arg;
    int l = socket(nm->last.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(l, 0);
    int one = 1;
    if (nm->last.ss_family == AF_INET6)
        ASSERT_EQ(setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one), 0);
    ASSERT_EQ(bind(l, (struct sockaddr *)&nm->last, nm->last_len), 0);
    ASSERT_EQ(listen(l, 16), 0);
    char port[16];
    port_str(coro_sock_port(l), port, sizeof port);
    int c = coro_tcp_dial("localhost", port);
    ASSERT_GE(c, 0);
    ASSERT_EQ(peer_family(c), nm->last.ss_family);
    ASSERT_EQ(coro_close(c), 0);
    ASSERT_EQ(coro_close(l), 0);

    /* And a listener by name. */
    l = coro_tcp_listen("localhost", "0", 0);
    ASSERT_GE(l, 0);
    port_str(coro_sock_port(l), port, sizeof port);
    ASSERT_EQ(coro_close(l), 0);
    return 0;
}

TEST(io_net_dial_localhost_by_name_tries_each_address)
{
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo("localhost", NULL, &hints, &res) != 0)
        TEST_SKIP("\"localhost\" does not resolve here");
    named_t nm;
    memset(&nm, 0, sizeof nm);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        memcpy(&nm.last, ai->ai_addr, ai->ai_addrlen);
        nm.last_len = ai->ai_addrlen;
        nm.naddrs++;
    }
    freeaddrinfo(res);
    if (nm.last.ss_family == AF_INET6 && !have_ipv6())
        TEST_SKIP("\"localhost\" ends with an IPv6 address, and no IPv6 here");
    tio_run(localhost_main, &nm);
}

/* A name that does not resolve, and a service name that does not exist. */
static int badname_main(void *arg)
{
    (void)arg;
    /* A DNS lookup: ENOENT, or EAGAIN / ETIMEDOUT without a resolver. */
    int64_t saved = coro_timeout(3 * CORO_SEC);
    errno = 0;
    ASSERT_EQ(coro_tcp_dial("no-such-host.invalid", "80"), -1);
    ASSERT(errno == ENOENT || errno == EAGAIN || errno == ETIMEDOUT);
    coro_set_deadline(saved);
    ASSERT_ERRNO(coro_tcp_dial("127.0.0.1", "no-such-service"), EINVAL);
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "no-such-service", 0), EINVAL);
    return 0;
}

TEST(io_net_unknown_names)
{
    tio_run(badname_main, NULL);
}

/* A peer that never accepts, with its backlog full: the dial waits until
 * the caller's deadline. */
static int dial_deadline_main(void *arg)
{
    (void)arg;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(l, 0);
    struct sockaddr_in a;
    tio_loopback(&a);
    ASSERT_EQ(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(l, 0), 0);
    char port[16];
    port_str(coro_sock_port(l), port, sizeof port);
    /* Fill the accept queue with connections nobody accepts. */
    int fill[8], nfill = 0, stalled = 0;
    while (nfill < 8 && !stalled) {
        int64_t saved = coro_timeout(50 * CORO_MS);
        int c = coro_tcp_dial("127.0.0.1", port);
        int e = errno;
        coro_set_deadline(saved);
        if (c >= 0)
            fill[nfill++] = c;
        else if (e == ETIMEDOUT)
            stalled = 1;
        else
            test_fail(__FILE__, __LINE__, "dial: %s", strerror(e));
    }
    for (int i = 0; i < nfill; i++)
        ASSERT_EQ(coro_close(fill[i]), 0);
    ASSERT_EQ(close(l), 0);
    if (!stalled)
        return 77;
    return 0;
}

TEST(io_net_dial_honours_deadline)
{
    int before = tio_count_fds();
    int r = coro_main(dial_deadline_main, NULL);
    ASSERT_EQ(tio_count_fds(), before);
    if (r == 77)
        TEST_SKIP("this kernel completes connections to a full backlog");
    ASSERT_EQ(r, 0);
}

/* ---- Unix sockets --------------------------------------------------------- */

typedef struct tmpdir {
    char dir[64];
    char path[256];
} tmpdir_t;

static void tmpdir_make(tmpdir_t *t)
{
    strcpy(t->dir, "/tmp/coro-net-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(t->dir));
    ASSERT_LT(snprintf(t->path, sizeof t->path, "%s/sock", t->dir), (int)sizeof t->path);
}

static void tmpdir_remove(tmpdir_t *t)
{
    unlink(t->path);
    ASSERT_EQ(rmdir(t->dir), 0);
}

static int unix_main(void *arg)
{
    tmpdir_t *t = arg;
    ASSERT_ERRNO(coro_unix_dial(t->path), ENOENT);
    int l = coro_unix_listen(t->path);
    ASSERT_GE(l, 0);
    assert_nonblock_cloexec(l);
    ASSERT_EQ(local_family(l), AF_UNIX);
    ASSERT_ERRNO(coro_sock_port(l), EINVAL);
    ASSERT_EQ(echo_round_trip(l, dial_unix, t->path), AF_UNIX);
    ASSERT_EQ(coro_close(l), 0);

    /* The file stays behind: a stale socket. Dialing it is refused, and
     * a new listener replaces it. */
    struct stat st;
    ASSERT_EQ(lstat(t->path, &st), 0);
    ASSERT(S_ISSOCK(st.st_mode));
    ASSERT_ERRNO(coro_unix_dial(t->path), ECONNREFUSED);
    l = coro_unix_listen(t->path);
    ASSERT_GE(l, 0);
    int c = coro_unix_dial(t->path);
    ASSERT_GE(c, 0);
    ASSERT_EQ(coro_close(c), 0);
    ASSERT_EQ(coro_close(l), 0);

    /* Anything but a socket is left alone. */
    ASSERT_EQ(unlink(t->path), 0);
    int f = open(t->path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(f, 0);
    ASSERT_EQ(write(f, "keep", 4), 4);
    ASSERT_EQ(close(f), 0);
    ASSERT_ERRNO(coro_unix_listen(t->path), EADDRINUSE);
    ASSERT_EQ(lstat(t->path, &st), 0);
    ASSERT(S_ISREG(st.st_mode));
    ASSERT_EQ(st.st_size, 4);
    return 0;
}

TEST(io_net_unix_listen_dial_and_stale_socket_file)
{
    tmpdir_t t;
    tmpdir_make(&t);
    tio_run(unix_main, &t);
    tmpdir_remove(&t);
}

/* sun_path holds 107 characters and the NUL: 107 works, 108 does not. */
static int unix_long_main(void *arg)
{
    tmpdir_t *t = arg;
    struct sockaddr_un sa;
    size_t max = sizeof sa.sun_path - 1;
    char path[sizeof sa.sun_path + 8];
    size_t dirlen = strlen(t->dir);
    memcpy(path, t->dir, dirlen);
    path[dirlen] = '/';
    memset(path + dirlen + 1, 'p', sizeof path - dirlen - 1);
    path[max] = '\0';
    ASSERT_EQ(strlen(path), max);
    int l = coro_unix_listen(path);
    ASSERT_GE(l, 0);
    int c = coro_unix_dial(path);
    ASSERT_GE(c, 0);
    ASSERT_EQ(coro_close(c), 0);
    ASSERT_EQ(coro_close(l), 0);
    ASSERT_EQ(unlink(path), 0);

    path[max] = 'p';
    path[max + 1] = '\0';
    ASSERT_ERRNO(coro_unix_listen(path), ENAMETOOLONG);
    ASSERT_ERRNO(coro_unix_dial(path), ENAMETOOLONG);
    return 0;
}

TEST(io_net_unix_path_too_long)
{
    tmpdir_t t;
    tmpdir_make(&t);
    tio_run(unix_long_main, &t);
    tmpdir_remove(&t);
}

/* ---- UDP ------------------------------------------------------------------ */

typedef struct udp_peer {
    int fd;
    char got[64];
    ssize_t n;
    struct sockaddr_storage from;
    socklen_t fromlen;
} udp_peer_t;

/* Wait for one datagram, answer it with "pong" to where it came from. */
static int udp_echo(void *arg)
{
    udp_peer_t *p = arg;
    p->fromlen = sizeof p->from;
    p->n = coro_recvfrom(p->fd, p->got, sizeof p->got, 0, (struct sockaddr *)&p->from, &p->fromlen);
    ASSERT_GT(p->n, 0);
    ASSERT_EQ(coro_sendto(p->fd, "pong", 4, 0, (struct sockaddr *)&p->from, p->fromlen), 4);
    return 0;
}

static int udp_main(void *arg)
{
    int v6 = *(int *)arg;
    int a = coro_udp_bind("127.0.0.1", "0");
    ASSERT_GE(a, 0);
    assert_nonblock_cloexec(a);
    ASSERT_EQ(sockopt(a, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    ASSERT_EQ(local_family(a), AF_INET);
    /* Every address: the dual-stack wildcard where there is IPv6. */
    udp_peer_t b = { .fd = coro_udp_bind(NULL, "0") };
    ASSERT_GE(b.fd, 0);
    ASSERT_EQ(local_family(b.fd), v6 ? AF_INET6 : AF_INET);
    coro_t *srv = coro_spawn(udp_echo, &b);
    ASSERT_NOT_NULL(srv);
    coro_yield(); /* b parks in recvfrom */

    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons((uint16_t)coro_sock_port(b.fd));
    ASSERT_EQ(coro_sendto(a, "ping", 4, 0, (struct sockaddr *)&to, sizeof to), 4);
    char buf[16];
    struct sockaddr_in from;
    socklen_t fromlen = sizeof from;
    ASSERT_EQ(coro_recvfrom(a, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen), 4);
    ASSERT_EQ(memcmp(buf, "pong", 4), 0);
    ASSERT_EQ(ntohs(from.sin_port), coro_sock_port(b.fd));
    ASSERT_EQ(coro_join(srv, NULL), 0);
    ASSERT_EQ(b.n, 4);
    ASSERT_EQ(memcmp(b.got, "ping", 4), 0);
    ASSERT_EQ(b.from.ss_family, v6 ? AF_INET6 : AF_INET); /* v4-mapped */

    /* A port already bound (no SO_REUSEADDR for UDP). */
    char port[16];
    port_str(coro_sock_port(a), port, sizeof port);
    ASSERT_ERRNO(coro_udp_bind("127.0.0.1", port), EADDRINUSE);
    ASSERT_EQ(coro_close(a), 0);
    ASSERT_EQ(coro_close(b.fd), 0);
    return 0;
}

TEST(io_net_udp_bind_sendto_recvfrom)
{
    int v6 = have_ipv6();
    tio_run(udp_main, &v6);
}

/* ---- errors --------------------------------------------------------------- */

static int badargs_main(void *arg)
{
    (void)arg;
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", NULL, 0), EINVAL);
    ASSERT_ERRNO(coro_tcp_listen(NULL, NULL, 0), EINVAL);
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "", 0), EINVAL);
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "65536", 0), EINVAL);
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "99999999999999999999", 0), EINVAL);
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "4294967376", 0), EINVAL); /* 2^32 + 80 */
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "-1", 0), EINVAL);
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "0", 4), EINVAL);
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "0", -1), EINVAL);
    ASSERT_ERRNO(coro_tcp_dial("127.0.0.1", NULL), EINVAL);
    ASSERT_ERRNO(coro_tcp_dial("127.0.0.1", "70000"), EINVAL);
    ASSERT_ERRNO(coro_udp_bind(NULL, NULL), EINVAL);
    ASSERT_ERRNO(coro_udp_bind("127.0.0.1", "65536"), EINVAL);
    ASSERT_ERRNO(coro_unix_listen(NULL), EINVAL);
    ASSERT_ERRNO(coro_unix_listen(""), EINVAL);
    ASSERT_ERRNO(coro_unix_dial(NULL), EINVAL);
    ASSERT_ERRNO(coro_unix_dial(""), EINVAL);
    /* An address that is not this host's: bind's error. */
    ASSERT_ERRNO(coro_tcp_listen("192.0.2.1", "0", 0), EADDRNOTAVAIL);
    /* Port 65535 is a valid number. */
    int l = coro_tcp_listen("127.0.0.1", "65535", 0);
    if (l >= 0)
        ASSERT_EQ(coro_close(l), 0);
    else
        ASSERT_EQ(errno, EADDRINUSE);

    ASSERT_ERRNO(coro_sock_port(-1), EBADF);
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    ASSERT_ERRNO(coro_sock_port(p[0]), ENOTSOCK);
    close(p[0]);
    close(p[1]);
    int sv[2];
    tio_stream_pair(sv);
    ASSERT_ERRNO(coro_sock_port(sv[0]), EINVAL);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

TEST(io_net_bad_arguments)
{
    tio_run(badargs_main, NULL);
}

/* Checkpoints: outside a coroutine EPERM; a cancelled caller or one past
 * its deadline fails before it opens anything. */
static int checkpoint_main(void *arg)
{
    tmpdir_t *t = arg;
    int64_t saved = coro_set_deadline(coro_now() - 1);
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "0", 0), ETIMEDOUT);
    ASSERT_ERRNO(coro_tcp_dial("127.0.0.1", "1"), ETIMEDOUT);
    ASSERT_ERRNO(coro_udp_bind("127.0.0.1", "0"), ETIMEDOUT);
    ASSERT_ERRNO(coro_unix_listen(t->path), ETIMEDOUT);
    ASSERT_ERRNO(coro_unix_dial(t->path), ETIMEDOUT);
    coro_set_deadline(saved);

    ASSERT_EQ(coro_cancel(coro_self()), 0);
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "0", 0), ECANCELED);
    ASSERT_ERRNO(coro_tcp_dial("localhost", "1"), ECANCELED);
    ASSERT_ERRNO(coro_udp_bind(NULL, "0"), ECANCELED);
    ASSERT_ERRNO(coro_unix_listen(t->path), ECANCELED);
    ASSERT_ERRNO(coro_unix_dial(t->path), ECANCELED);
    /* Shielded, the calls go through. */
    ASSERT_EQ(coro_shield(1), 0);
    int l = coro_tcp_listen("127.0.0.1", "0", 0);
    ASSERT_GE(l, 0);
    ASSERT_EQ(coro_close(l), 0);
    coro_shield(0);
    struct stat st;
    ASSERT_ERRNO(lstat(t->path, &st), ENOENT);
    return 0;
}

TEST(io_net_checkpoints)
{
    ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", "0", 0), EPERM);
    ASSERT_ERRNO(coro_tcp_dial("127.0.0.1", "1"), EPERM);
    ASSERT_ERRNO(coro_udp_bind("127.0.0.1", "0"), EPERM);
    ASSERT_ERRNO(coro_unix_listen("/tmp/coro-never"), EPERM);
    ASSERT_ERRNO(coro_unix_dial("/tmp/coro-never"), EPERM);
    tmpdir_t t;
    tmpdir_make(&t);
    tio_run(checkpoint_main, &t);
    tmpdir_remove(&t);
}

/* Many failures in a row leave no descriptor behind (each error path
 * closes what it opened). */
static int leak_main(void *arg)
{
    tmpdir_t *t = arg;
    int l = coro_tcp_listen("127.0.0.1", "0", 0);
    ASSERT_GE(l, 0);
    char port[16];
    port_str(coro_sock_port(l), port, sizeof port);
    int n = tio_count_fds();
    for (int i = 0; i < 50; i++) {
        ASSERT_ERRNO(coro_tcp_listen("127.0.0.1", port, 0), EADDRINUSE);
        ASSERT_ERRNO(coro_tcp_listen("192.0.2.1", "0", 0), EADDRNOTAVAIL);
        ASSERT_ERRNO(coro_tcp_dial("127.0.0.1", "1"), ECONNREFUSED);
        ASSERT_ERRNO(coro_unix_dial(t->path), ENOENT);
    }
    int f = open(t->path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(f, 0);
    ASSERT_EQ(close(f), 0);
    for (int i = 0; i < 50; i++)
        ASSERT_ERRNO(coro_unix_listen(t->path), EADDRINUSE);
    ASSERT_EQ(tio_count_fds(), n);
    ASSERT_EQ(coro_close(l), 0);
    return 0;
}

TEST(io_net_error_paths_close_what_they_opened)
{
    tmpdir_t t;
    tmpdir_make(&t);
    tio_run(leak_main, &t);
    tmpdir_remove(&t);
}
