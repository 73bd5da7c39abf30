/* io/net.c: listening, dialing and binding by name (see io/io.h).
 *
 * Name lookup goes through coro_getaddrinfo, which converts a numeric
 * host and port ("127.0.0.1", "::1", "8080") in place (that never blocks)
 * and sends only real names and service names ("http") to the blocking
 * pool. A numeric port is checked here to be 0..65535 (glibc silently
 * truncates 70000 to 4464).
 *
 * Every socket is made non-blocking and close-on-exec (coro__socket:
 * SOCK_NONBLOCK|SOCK_CLOEXEC, or fcntl where they are missing) and announced with
 * coro__io_new_socket at once, so the descriptor table forgets whatever it knew
 * of the number; every error path closes what it opened (with coro_close,
 * keeping errno).
 *
 * Several addresses: dial tries each in order until one connects (the
 * error is the last one's; a cancellation or a passed deadline stops the
 * search at once). Listen and UDP bind likewise take the first address
 * that works. For every address (host NULL or "") the IPv6 wildcard comes
 * first, with IPV6_V6ONLY cleared so it takes IPv4 too (mapped); the IPv4
 * wildcard is the fallback when the system has no IPv6 (or, after
 * CORO_IPV6ONLY, never). */
#include "io/io_int.h"
#include "io/simnet.h"
#include "coro/compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------------- */

/* Close a descriptor of ours on an error path, keeping errno. */
static int fail_close(int fd)
{
    int e = errno;
    coro_close(fd);
    errno = e;
    return -1;
}

/* port must be given; a numeric one must fit 16 bits. 0 or -1 (EINVAL). */
static int check_port(const char *port)
{
    if (!port || !*port) {
        errno = EINVAL;
        return -1;
    }
    const char *c = port;
    long v = 0;
    for (; *c >= '0' && *c <= '9'; c++)
        if (v <= 65535)
            v = v * 10 + (*c - '0');
    if (*c == '\0' && v > 65535) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* Look host:port up for `socktype` (AI_PASSIVE when passive).
 * coro_getaddrinfo converts numbers in place and sends only names to the
 * blocking pool. 0 or -1 with errno. */
static int resolve(const char *host, const char *port, int family, int socktype,
                   int passive, struct addrinfo **res)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    return coro_getaddrinfo(host, port, &hints, res);
}

/* A new socket, non-blocking and close-on-exec, in the fd table. */
static int new_socket(int family, int socktype, int protocol)
{
    int fd = coro__socket(family, socktype, protocol);
    if (fd >= 0)
        coro__io_new_socket(fd, socktype == SOCK_STREAM && family != AF_UNIX); /* see SCHED_FD_STREAM */
    return fd;
}

static int set_int(int fd, int level, int opt, int value)
{
    return setsockopt(fd, level, opt, &value, sizeof value);
}

/* ---- binding ------------------------------------------------------------------- */

/* Socket options of a bound socket, before bind. */
static int bind_options(int fd, const struct addrinfo *ai, int flags)
{
    if (ai->ai_socktype == SOCK_STREAM && set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0)
        return -1;
    if (flags & CORO_REUSEPORT) {
#ifdef SO_REUSEPORT
        if (set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0)
            return -1;
#else
        errno = ENOPROTOOPT;
        return -1;
#endif
    }
    if (ai->ai_family == AF_INET6 &&
        set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, (flags & CORO_IPV6ONLY) ? 1 : 0) < 0)
        return -1;
    return 0;
}

/* A socket for ai, bound (and listening for a stream), or -1. */
static int bind_one(const struct addrinfo *ai, int flags)
{
    int fd = new_socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (bind_options(fd, ai, flags) < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        return fail_close(fd);
    if (ai->ai_socktype == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)
        return fail_close(fd);
    return fd;
}

/* The first address of the list (of `family` only, unless AF_UNSPEC) that
 * binds; errno is the last failure's. */
static int bind_first(const struct addrinfo *res, int family, int flags)
{
    errno = EAFNOSUPPORT;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (family != AF_UNSPEC && ai->ai_family != family)
            continue;
        int fd = bind_one(ai, flags);
        if (fd >= 0)
            return fd;
    }
    return -1;
}

/* The wildcard: IPv6 (dual stack unless CORO_IPV6ONLY), else IPv4 when
 * this system cannot make IPv6 sockets. */
static int bind_any(const struct addrinfo *res, int flags)
{
    int fd = bind_first(res, AF_INET6, flags);
    if (fd >= 0 || (flags & CORO_IPV6ONLY))
        return fd;
    if (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL && errno != EPROTONOSUPPORT)
        return -1;
    return bind_first(res, AF_INET, flags);
}

/* listen / UDP bind on host:port. */
static int bind_addr(const char *host, const char *port, int socktype, int flags)
{
    if (check_port(port) < 0)
        return -1;
    if ((flags & ~(CORO_REUSEPORT | CORO_IPV6ONLY)) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (coro__checkpoint() != 0)
        return -1;
    if (__builtin_expect(coro__simnet_on(), 0))
        return socktype == SOCK_STREAM ? coro__simnet_listen(host, port, 0)
                                       : coro__simnet_udp_bind(host, port);
    int any = !host || !*host;
    struct addrinfo *res;
    if (resolve(any ? NULL : host, port, AF_UNSPEC, socktype, 1, &res) < 0)
        return -1;
    int fd = any ? bind_any(res, flags) : bind_first(res, AF_UNSPEC, flags);
    int e = errno;
    freeaddrinfo(res);
    errno = e;
    return fd;
}

int coro_tcp_listen(const char *host, const char *port, int flags)
{
    return bind_addr(host, port, SOCK_STREAM, flags);
}

int coro_udp_bind(const char *host, const char *port)
{
    return bind_addr(host, port, SOCK_DGRAM, 0);
}

/* ---- dialing ------------------------------------------------------------------ */

/* Connect a new socket to ai; the descriptor, or -1. */
static int dial_one(const struct addrinfo *ai)
{
    int fd = new_socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (coro_connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        return fail_close(fd);
    return fd;
}

int coro_tcp_dial(const char *host, const char *port)
{
    if (check_port(port) < 0)
        return -1;
    if (coro__checkpoint() != 0)
        return -1;
    if (__builtin_expect(coro__simnet_on(), 0))
        return coro__simnet_dial(host, port, 0);
    struct addrinfo *res;
    if (resolve(host && *host ? host : NULL, port, AF_UNSPEC, SOCK_STREAM, 0, &res) < 0)
        return -1;
    int fd = -1;
    errno = ENOENT;
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = dial_one(ai);
        /* Cancelled or past the deadline: stop here (errno says which). */
        if (fd < 0 && coro__checkpoint() != 0)
            break;
    }
    int e = errno;
    freeaddrinfo(res);
    if (fd >= 0)
        (void)set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    errno = e;
    return fd;
}

/* ---- Unix sockets ------------------------------------------------------------- */

/* Fill sa with path: EINVAL path NULL or empty, ENAMETOOLONG when it does
 * not fit sun_path with its NUL. */
static int unix_addr(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
    if (!path || !*path) {
        errno = EINVAL;
        return -1;
    }
    size_t n = strlen(path);
    if (n >= sizeof sa->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, n + 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int coro_unix_listen(const char *path)
{
    struct sockaddr_un sa;
    socklen_t len;
    if (unix_addr(path, &sa, &len) < 0 || coro__checkpoint() != 0)
        return -1;
    if (__builtin_expect(coro__simnet_on(), 0))
        return coro__simnet_listen(NULL, path, 1); /* no file is made */
    /* A socket file left behind by an earlier listener: bind would say
     * EADDRINUSE. Anything else at path is left alone (and bind fails). */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        (void)unlink(path);
    int fd = new_socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, SOMAXCONN) < 0)
        return fail_close(fd);
    return fd;
}

int coro_unix_dial(const char *path)
{
    struct sockaddr_un sa;
    socklen_t len;
    if (unix_addr(path, &sa, &len) < 0 || coro__checkpoint() != 0)
        return -1;
    if (__builtin_expect(coro__simnet_on(), 0))
        return coro__simnet_dial(NULL, path, 1);
    int fd = new_socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (coro_connect(fd, (struct sockaddr *)&sa, len) < 0)
        return fail_close(fd);
    return fd;
}

/* ---- ports -------------------------------------------------------------------- */

int coro_sock_port(int fd)
{
    struct coro__simsock *sim = coro__simnet_sock(fd);
    if (__builtin_expect(sim != NULL, 0))
        return coro__simnet_port(sim);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    errno = EINVAL;
    return -1;
}
