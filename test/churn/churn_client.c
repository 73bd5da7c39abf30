/* test/churn/churn_client.c: the client of test/churn.sh. It makes N
 * sequential connections to 127.0.0.1:PORT; each does one exchange and
 * closes:
 *   echo  writes 64 bytes and reads the same 64 bytes back;
 *   http  sends "GET / HTTP/1.1" and reads one complete 200 reply
 *         (its header and Content-Length bytes of body).
 * A connection counts as served only if the whole exchange checked out.
 * It prints "N of M connections served in T ms" (and the first failure of
 * each kind on stderr) and exits 0 only if every connection was served.
 *
 * The client closes first, so its side keeps each connection in TIME_WAIT
 * for a minute: 40,000 in a row outnumber the local ports, which Linux
 * reuses on loopback (net.ipv4.tcp_tw_reuse=2, the default); where it
 * does not, connect waits for a port (EADDRNOTAVAIL) for up to 10 s.
 *
 * Plain blocking sockets with 10 s send and receive timeouts, on purpose:
 * the client must not share the library it is checking, and a server that
 * stops answering makes a connection fail instead of hanging the check.
 *
 * Usage: churn_client echo|http PORT N */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_SEC 10
#define ECHO_SIZE 64

static const char http_request[] = "GET / HTTP/1.1\r\nHost: churn\r\n\r\n";

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One echo round trip of ECHO_SIZE bytes, every byte checked. */
static const char *echo_once(int fd, unsigned seq)
{
    char out[ECHO_SIZE], in[ECHO_SIZE];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (char)('a' + (seq + i) % 26);
    if (write_all(fd, out, sizeof out) != 0)
        return "write";
    size_t got = 0;
    while (got < sizeof in) {
        ssize_t r = recv(fd, in + got, sizeof in - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? "closed before the echo" : "read";
        got += (size_t)r;
    }
    return memcmp(in, out, sizeof in) == 0 ? NULL : "wrong echo";
}

/* One GET /: a "200" status line and Content-Length bytes of body. */
static const char *http_once(int fd)
{
    char in[4096];
    if (write_all(fd, http_request, sizeof http_request - 1) != 0)
        return "write";
    size_t got = 0;
    for (;;) {
        if (got == sizeof in - 1)
            return "reply too long";
        ssize_t r = recv(fd, in + got, sizeof in - 1 - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? "closed before the reply" : "read";
        got += (size_t)r;
        in[got] = '\0';
        char *end = strstr(in, "\r\n\r\n");
        if (!end)
            continue;
        if (strncmp(in, "HTTP/1.1 200 ", 13) != 0)
            return "not a 200 reply";
        const char *cl = strcasestr(in, "\r\nContent-Length:");
        if (!cl || cl > end)
            return "no Content-Length";
        size_t want = (size_t)(end + 4 - in) + strtoul(cl + 17, NULL, 10);
        if (got >= want)
            return got == want ? NULL : "more than one reply";
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "echo") != 0 && strcmp(argv[1], "http") != 0)) {
        fprintf(stderr, "usage: churn_client echo|http PORT N\n");
        return 2;
    }
    int http = strcmp(argv[1], "http") == 0;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long n = atol(argv[3]);
    if (n <= 0) {
        fprintf(stderr, "churn_client: N must be positive\n");
        return 2;
    }
    struct timeval tv = { .tv_sec = IO_TIMEOUT_SEC, .tv_usec = 0 };
    long served = 0;
    const char *last_failure = NULL;
    int64_t t0 = now_ms();
    for (long i = 0; i < n; i++) {
        const char *fail = NULL;
        errno = 0;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            perror("churn_client: socket");
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        /* Out of local ports (every one in TIME_WAIT): wait for one, up
         * to 10 s; that is the client's limit, not the server's. */
        int r, tries = 0;
        while ((r = connect(fd, (struct sockaddr *)&sa, sizeof sa)) != 0 &&
               errno == EADDRNOTAVAIL && tries++ < 1000)
            nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = 10000000 }, NULL);
        if (r != 0)
            fail = "connect";
        else
            fail = http ? http_once(fd) : echo_once(fd, (unsigned)i);
        int err = errno;
        close(fd);
        if (!fail) {
            served++;
        } else if (fail != last_failure) {   /* each run of one kind once */
            fprintf(stderr, "churn_client: connection %ld: %s%s%s%s\n", i + 1, fail,
                    err ? " (" : "", err ? strerror(err) : "", err ? ")" : "");
            last_failure = fail;
        }
    }
    printf("%ld of %ld connections served in %lld ms\n", served, n,
           (long long)(now_ms() - t0));
    return served == n ? 0 : 1;
}
