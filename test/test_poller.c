/* test_poller.c: the poller backend on its own (sched/poller.h), whichever
 * one is built (epoll, or kqueue with `make POLLER=kqueue`): descriptors
 * armed once, edge-triggered, reporting the caller's 64-bit token (replaced
 * on re-arm, never reported for a disarmed or forgotten registration);
 * hang-ups and errors waking both directions; notify from another thread;
 * signals; timeouts that are neither early nor rounded up to milliseconds;
 * EINTR as 0 events; more ready registrations than one wait returns.
 *
 * A backend may report a token more than once per wait (kqueue reports
 * READ and WRITE as two events) and may add spurious wake-ups, so the
 * tests look at the union of what was reported for each token. With the
 * kqueue shim (-DCORO_KQUEUE_SHIM) the kevent semantics the backend
 * relies on are checked too, against FreeBSD's kqueue(2). */
#include "test/test.h"
#include "sched/poller.h"
#include "coro/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MS ((int64_t)1000000)
#define BOTH (SCHED_POLL_READ | SCHED_POLL_WRITE)

/* Tokens use all 64 bits, as the descriptor table's (generation << 32 | fd). */
#define TOK_R (((uint64_t)0xfeedu << 48) | 1)
#define TOK_W (((uint64_t)0xfeedu << 48) | 2)

typedef struct seen {
    int n;
    uint64_t token[2048];
    int events[2048];
} seen_t;

static void record(void *ctx, uint64_t token, int events)
{
    seen_t *s = ctx;
    if (s->n < 2048) {
        s->token[s->n] = token;
        s->events[s->n] = events;
    }
    s->n++;
}

/* The union of the events reported for token; how often it was. */
static int mask_of(const seen_t *s, uint64_t token)
{
    int m = 0;
    for (int i = 0; i < s->n && i < 2048; i++)
        if (s->token[i] == token)
            m |= s->events[i];
    return m;
}

static int count_of(const seen_t *s, uint64_t token)
{
    int c = 0;
    for (int i = 0; i < s->n && i < 2048; i++)
        c += s->token[i] == token;
    return c;
}

/* Wait up to timeout_ns for a first report, then take whatever else is
 * ready; s starts afresh. Returns the number of events. */
static int collect(coro__poller_t *p, int64_t timeout_ns, seen_t *s)
{
    memset(s, 0, sizeof *s);
    int total = coro__poller_wait(p, timeout_ns, record, s);
    ASSERT_GE(total, 0);
    for (int i = 0; i < 64; i++) {
        int n = coro__poller_wait(p, 0, record, s);
        ASSERT_GE(n, 0);
        if (n == 0)
            break;
        total += n;
    }
    ASSERT_EQ(total, s->n);
    return total;
}

static seen_t *new_seen(void)
{
    seen_t *s = calloc(1, sizeof *s);
    ASSERT_NOT_NULL(s);
    return s;
}

static coro__poller_t *new_poller(void)
{
    coro__poller_t *p = coro__poller_new();
    ASSERT_NOT_NULL(p);
    return p;
}

/* Free what new_poller and new_seen made. */
static void free_poller(coro__poller_t *p, seen_t *s)
{
    free(s);
    coro__poller_free(p);
}

/* A non-blocking pipe, as the scheduler's descriptors are. */
static void nb_pipe(int fds[2])
{
    ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

/* A non-blocking pair of Unix stream sockets. */
static void nb_socketpair(int sv[2])
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void close_both(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* The set of one signal. */
static sigset_t sigset_of(int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    return set;
}

TEST(poller_reports_armed_fd_edge_triggered)
{
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    int fds[2];
    nb_pipe(fds);
    ASSERT_EQ(coro__poller_arm(p, fds[0], TOK_R), 0);
    ASSERT_EQ(coro__poller_arm(p, fds[1], TOK_W), 0);
    /* Arming again is no error (the token is replaced, here by itself). */
    ASSERT_EQ(coro__poller_arm(p, fds[0], TOK_R), 0);

    /* The write end is writable at once; the read end is not readable. */
    ASSERT_GE(collect(p, 0, s), 1);
    ASSERT_EQ(mask_of(s, TOK_W), SCHED_POLL_WRITE);
    ASSERT_EQ(count_of(s, TOK_R), 0);

    /* Edge-triggered: nothing new, nothing reported. */
    ASSERT_EQ(coro__poller_wait(p, 0, record, s), 0);

    /* Data arrives: the read side fires, with its own token. */
    ASSERT_EQ(write(fds[1], "x", 1), 1);
    collect(p, 100 * MS, s);
    ASSERT_EQ(mask_of(s, TOK_R) & SCHED_POLL_READ, SCHED_POLL_READ);
    /* Not drained, but no new edge: silent. */
    collect(p, 0, s);
    ASSERT_EQ(count_of(s, TOK_R), 0);

    /* The writer hangs up: the reader sees it as readable (EOF to read). */
    close(fds[1]);
    collect(p, 100 * MS, s);
    ASSERT_EQ(mask_of(s, TOK_R) & SCHED_POLL_READ, SCHED_POLL_READ);
    close(fds[0]);
    free_poller(p, s);
}

TEST(poller_hangup_wakes_both_directions)
{
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    int fds[2];
    nb_pipe(fds);
    ASSERT_EQ(coro__poller_arm(p, fds[1], TOK_W), 0);
    collect(p, 0, s);
    ASSERT_EQ(mask_of(s, TOK_W), SCHED_POLL_WRITE); /* the writable edge */
    /* The reader goes away: the writer gets an error, reported as both
     * directions so whichever side waits retries and sees EPIPE. */
    close(fds[0]);
    collect(p, 100 * MS, s);
    ASSERT_EQ(mask_of(s, TOK_W), BOTH | SCHED_POLL_HUP);
    close(fds[1]);

    /* A socket whose peer closes: both directions too. */
    int sv[2];
    nb_socketpair(sv);
    ASSERT_EQ(coro__poller_arm(p, sv[0], TOK_R), 0);
    collect(p, 0, s);
    close(sv[1]);
    collect(p, 100 * MS, s);
    ASSERT_EQ(mask_of(s, TOK_R), BOTH | SCHED_POLL_HUP);
    close(sv[0]);
    free_poller(p, s);
}

TEST(poller_half_close_wakes_the_reader)
{
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    int sv[2];
    nb_socketpair(sv);
    ASSERT_EQ(coro__poller_arm(p, sv[0], TOK_R), 0);
    collect(p, 0, s);
    ASSERT_EQ(mask_of(s, TOK_R), SCHED_POLL_WRITE);
    /* The peer stops writing: the reader wakes to read EOF. */
    ASSERT_EQ(shutdown(sv[1], SHUT_WR), 0);
    collect(p, 100 * MS, s);
    ASSERT_EQ(mask_of(s, TOK_R) & SCHED_POLL_READ, SCHED_POLL_READ);
    char c;
    ASSERT_EQ(read(sv[0], &c, 1), 0);
    /* Writing still works: the connection is half-open. */
    ASSERT_EQ(write(sv[0], "x", 1), 1);
    close_both(sv);
    free_poller(p, s);
}

TEST(poller_rearm_replaces_the_token)
{
    const uint64_t a = 0x1111111100000003u, b = 0x2222222200000003u;
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    int fds[2];
    nb_pipe(fds);
    /* Replaced before the first wait: only the new token is reported. */
    ASSERT_EQ(coro__poller_arm(p, fds[1], a), 0);
    ASSERT_EQ(coro__poller_arm(p, fds[1], b), 0);
    collect(p, 0, s);
    ASSERT_EQ(count_of(s, a), 0);
    ASSERT_EQ(mask_of(s, b), SCHED_POLL_WRITE);

    /* An event already pending goes out under the token of the day. */
    ASSERT_EQ(coro__poller_arm(p, fds[0], a), 0);
    collect(p, 0, s);
    ASSERT_EQ(count_of(s, a), 0);
    ASSERT_EQ(write(fds[1], "x", 1), 1);
    ASSERT_EQ(coro__poller_arm(p, fds[0], b), 0);
    collect(p, 100 * MS, s);
    ASSERT_EQ(count_of(s, a), 0);
    ASSERT_EQ(mask_of(s, b) & SCHED_POLL_READ, SCHED_POLL_READ);
    close_both(fds);
    free_poller(p, s);
}

TEST(poller_stale_token_of_a_reused_descriptor_is_never_reported)
{
    const uint64_t old_tok = ((uint64_t)7 << 32) | 5, new_tok = ((uint64_t)8 << 32) | 5;
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    int p1[2], p2[2];
    nb_pipe(p1);
    int num = p1[0];
    ASSERT_EQ(coro__poller_arm(p, num, old_tok), 0);
    /* An event is pending for the old registration when it is dropped. */
    ASSERT_EQ(write(p1[1], "x", 1), 1);
    ASSERT_EQ(coro__poller_disarm(p, num), 0);
    close_both(p1);
    /* The number comes back for another pipe, armed with a new token. */
    nb_pipe(p2);
    ASSERT_NE(p2[1], num);
    if (p2[0] != num) {
        ASSERT_EQ(dup3(p2[0], num, O_CLOEXEC), num);
        close(p2[0]);
        p2[0] = num;
    }
    ASSERT_EQ(coro__poller_arm(p, num, new_tok), 0);
    collect(p, 0, s);
    ASSERT_EQ(count_of(s, old_tok), 0);
    ASSERT_EQ(count_of(s, new_tok), 0); /* nothing to read yet */
    ASSERT_EQ(write(p2[1], "y", 1), 1);
    collect(p, 100 * MS, s);
    ASSERT_EQ(count_of(s, old_tok), 0);
    ASSERT_EQ(mask_of(s, new_tok) & SCHED_POLL_READ, SCHED_POLL_READ);
    close_both(p2);
    free_poller(p, s);
}

TEST(poller_disarm_stops_reports)
{
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    int fds[2];
    nb_pipe(fds);
    ASSERT_EQ(coro__poller_arm(p, fds[0], TOK_R), 0);
    ASSERT_EQ(coro__poller_arm(p, fds[1], TOK_W), 0);
    collect(p, 0, s);
    ASSERT_EQ(coro__poller_disarm(p, fds[0]), 0);
    ASSERT_EQ(coro__poller_disarm(p, fds[1]), 0);
    ASSERT_EQ(write(fds[1], "x", 1), 1);
    collect(p, 20 * MS, s);
    ASSERT_EQ(s->n, 0);
    /* Not registered any more. */
    ASSERT_ERRNO(coro__poller_disarm(p, fds[0]), ENOENT);
    /* Armed again: the data already there is reported at once. */
    ASSERT_EQ(coro__poller_arm(p, fds[0], TOK_W), 0);
    collect(p, 100 * MS, s);
    ASSERT_EQ(mask_of(s, TOK_W) & SCHED_POLL_READ, SCHED_POLL_READ);
    ASSERT_EQ(count_of(s, TOK_R), 0);
    /* Disarming a closed descriptor: EBADF. */
    int closed = fds[0];
    close(fds[0]);
    ASSERT_ERRNO(coro__poller_disarm(p, closed), EBADF);
    close(fds[1]);
    free_poller(p, s);
}

TEST(poller_arm_refuses_files_and_bad_descriptors)
{
    coro__poller_t *p = new_poller();
    /* A regular file cannot be polled: the caller does blocking I/O. */
    FILE *f = tmpfile();
    ASSERT_NOT_NULL(f);
    ASSERT_ERRNO(coro__poller_arm(p, fileno(f), TOK_R), EPERM);
    fclose(f);
    ASSERT_ERRNO(coro__poller_arm(p, -1, TOK_R), EBADF);
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    close_both(fds);
    ASSERT_ERRNO(coro__poller_arm(p, fds[0], TOK_R), EBADF);
    coro__poller_free(p);
}

/* ---- notify ------------------------------------------------------------------ */

static void *notify_later(void *arg)
{
    struct timespec d = { 0, 50 * 1000000 };
    nanosleep(&d, NULL);
    coro__poller_notify(arg);
    return NULL;
}

TEST(poller_notify_from_another_thread_wakes_a_wait)
{
    const uint64_t tok = 0xabcdef0123456789u;
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    ASSERT_EQ(coro__poller_notify_arm(p, tok), 0);
    /* Arming may itself wake once (epoll: the eventfd is registered for
     * writing too, and is writable); after that, silence. */
    collect(p, 0, s);
    collect(p, 0, s);
    ASSERT_EQ(s->n, 0);

    /* A wait with no limit, ended by the other thread. */
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, notify_later, p), 0);
    int64_t t0 = test_now_ns();
    memset(s, 0, sizeof *s);
    ASSERT_GE(coro__poller_wait(p, -1, record, s), 1);
    ASSERT_LT(test_now_ns() - t0, (int64_t)test_timeout_seconds() * 1000 * MS / 2);
    ASSERT_EQ(mask_of(s, tok), SCHED_POLL_READ);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    /* Consumed: not reported again and again (an extra report may come,
     * as for epoll, whose reading of the eventfd edges it writable). */
    collect(p, 0, s);
    collect(p, 0, s);
    ASSERT_EQ(count_of(s, tok), 0);

    /* Notifies made before the wait are kept for it (maybe as one). */
    coro__poller_notify(p);
    coro__poller_notify(p);
    coro__poller_notify(p);
    collect(p, 0, s);
    ASSERT_GE(count_of(s, tok), 1);
    collect(p, 0, s);
    ASSERT_EQ(count_of(s, tok), 0);

    /* Armed again: the token is replaced, the channel kept. */
    ASSERT_EQ(coro__poller_notify_arm(p, tok + 1), 0);
    coro__poller_notify(p);
    collect(p, 100 * MS, s);
    ASSERT_EQ(count_of(s, tok), 0);
    ASSERT_EQ(mask_of(s, tok + 1), SCHED_POLL_READ);
    free_poller(p, s);
}

/* ---- signals ------------------------------------------------------------------ */

static int take(int sig)
{
    sigset_t one = sigset_of(sig);
    const struct timespec zero = { 0, 0 };
    return sigtimedwait(&one, NULL, &zero);
}

TEST(poller_signal_arm_reports_the_token)
{
    const uint64_t tok = ((uint64_t)1 << 63) | 42;
    sigset_t usr1 = sigset_of(SIGUSR1), usr2 = sigset_of(SIGUSR2), both = usr1, old;
    sigaddset(&both, SIGUSR2);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &both, &old), 0);
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    ASSERT_EQ(coro__poller_signal_arm(p, &usr1, tok), 0);
    collect(p, 0, s);
    ASSERT_EQ(s->n, 0);

    ASSERT_EQ(raise(SIGUSR1), 0);
    collect(p, 1000 * MS, s);
    ASSERT_EQ(mask_of(s, tok), SCHED_POLL_READ);
    /* The poller only says so: the signal is still pending, to be taken. */
    ASSERT_EQ(take(SIGUSR1), SIGUSR1);
    ASSERT_ERRNO(take(SIGUSR1), EAGAIN);
    collect(p, 0, s);
    ASSERT_EQ(count_of(s, tok), 0);

    /* A second set adds to the first. */
    ASSERT_EQ(coro__poller_signal_arm(p, &usr2, tok), 0);
    collect(p, 0, s);
    ASSERT_EQ(count_of(s, tok), 0);
    ASSERT_EQ(raise(SIGUSR1), 0);
    collect(p, 1000 * MS, s);
    ASSERT_EQ(mask_of(s, tok), SCHED_POLL_READ);
    ASSERT_EQ(take(SIGUSR1), SIGUSR1);
    ASSERT_EQ(raise(SIGUSR2), 0);
    collect(p, 1000 * MS, s);
    ASSERT_EQ(mask_of(s, tok), SCHED_POLL_READ);
    ASSERT_EQ(take(SIGUSR2), SIGUSR2);

    free_poller(p, s);
    ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

TEST(poller_signal_pending_before_arm_is_reported)
{
    /* The caller looks for a pending signal, then arms and parks: one that
     * arrived in between must still wake it. */
    const uint64_t tok = 77;
    sigset_t usr1 = sigset_of(SIGUSR1), old;
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &usr1, &old), 0);
    ASSERT_EQ(raise(SIGUSR1), 0);
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    ASSERT_EQ(coro__poller_signal_arm(p, &usr1, tok), 0);
    collect(p, 100 * MS, s);
    ASSERT_EQ(mask_of(s, tok), SCHED_POLL_READ);
    ASSERT_EQ(take(SIGUSR1), SIGUSR1);
    free_poller(p, s);
    ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

/* ---- timeouts, EINTR, batches ---------------------------------------------------- */

TEST(poller_timeout_is_not_early_and_sub_millisecond)
{
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    /* 300 us: never early; natively under a millisecond's rounding. The
     * fastest of several tries is what tells: a backend rounding up to
     * whole milliseconds never comes in under one, while a loaded machine
     * only ever makes some tries slower. */
    int64_t took[7];
    for (int i = 0; i < 7; i++) {
        int64_t t0 = test_now_ns();
        ASSERT_EQ(coro__poller_wait(p, 300000, record, s), 0);
        took[i] = test_now_ns() - t0;
        ASSERT_GE(took[i], 300000);
    }
    for (int i = 1; i < 7; i++)
        for (int j = i; j > 0 && took[j] < took[j - 1]; j--) {
            int64_t t = took[j];
            took[j] = took[j - 1];
            took[j - 1] = t;
        }
    /* Without epoll_pwait2 (COMPAT=fallback: forced off) the epoll
     * backend rounds up to whole milliseconds by design. */
#if !CORO_HAVE_EPOLL_PWAIT2 && !defined(CORO_POLLER_KQUEUE)
    const int rounds_up = 1;
#else
    const int rounds_up = 0;
#endif
    if (!test_under_valgrind() && !test_under_sanitizer() && !test_under_emulator() && !rounds_up)
        ASSERT_LT(took[0], 950000);
    ASSERT_EQ(s->n, 0);
    free_poller(p, s);
}

static atomic_int eintr_done;
static void on_usr2(int sig)
{
    (void)sig;
}

static void *interrupt_until_done(void *arg)
{
    pthread_t target = *(pthread_t *)arg;
    struct timespec d = { 0, 20 * 1000000 };
    while (!atomic_load(&eintr_done)) {
        nanosleep(&d, NULL);
        if (!atomic_load(&eintr_done))
            pthread_kill(target, SIGUSR2);
    }
    return NULL;
}

TEST(poller_wait_interrupted_by_a_signal_reports_no_events)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR2, &sa, NULL), 0);
    sigset_t usr2 = sigset_of(SIGUSR2);
    ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &usr2, NULL), 0);
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    pthread_t self = pthread_self(), t;
    ASSERT_EQ(pthread_create(&t, NULL, interrupt_until_done, &self), 0);
    /* The signal may come before the wait blocks: the other thread keeps
     * sending until this one is back. */
    int64_t t0 = test_now_ns();
    int r = coro__poller_wait(p, 20 * 1000 * MS, record, s);
    atomic_store(&eintr_done, 1);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(r, 0);
    ASSERT_EQ(s->n, 0);
    ASSERT_LT(test_now_ns() - t0, 10 * 1000 * MS);
    free_poller(p, s);
}

TEST(poller_reports_more_than_one_wait_returns)
{
    enum { PAIRS = 300 };
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 3 * PAIRS) {
        rl.rlim_cur = rl.rlim_max < 3 * PAIRS ? rl.rlim_max : 3 * PAIRS;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
        if (rl.rlim_cur < 3 * PAIRS)
            TEST_SKIP("needs %d descriptors, RLIMIT_NOFILE is %ld", 3 * PAIRS, (long)rl.rlim_cur);
    }
    coro__poller_t *p = new_poller();
    seen_t *s = new_seen();
    int (*sv)[2] = calloc(PAIRS, sizeof *sv);
    int *mask = calloc(PAIRS, sizeof *mask);
    ASSERT_NOT_NULL(sv);
    ASSERT_NOT_NULL(mask);
    /* Each armed end is readable and writable: 300 registrations ready at
     * once, 600 knotes on kqueue. */
    for (int i = 0; i < PAIRS; i++) {
        nb_socketpair(sv[i]);
        ASSERT_EQ(write(sv[i][1], "x", 1), 1);
        ASSERT_EQ(coro__poller_arm(p, sv[i][0], 1000 + (uint64_t)i), 0);
    }
    int waits = 0;
    for (;;) {
        memset(s, 0, sizeof *s);
        int n = coro__poller_wait(p, 0, record, s);
        ASSERT_GE(n, 0);
        ASSERT_LE(n, 256);
        if (n == 0)
            break;
        waits++;
        ASSERT_LT(waits, 16);
        for (int j = 0; j < s->n; j++) {
            ASSERT_GE(s->token[j], 1000);
            ASSERT_LT(s->token[j], 1000 + PAIRS);
            mask[s->token[j] - 1000] |= s->events[j];
        }
    }
    ASSERT_GE(waits, 2);
    for (int i = 0; i < PAIRS; i++)
        ASSERT_EQ(mask[i], BOTH);
    for (int i = 0; i < PAIRS; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    free(sv);
    free(mask);
    free_poller(p, s);
}

#ifdef CORO_KQUEUE_SHIM
/* ---- the shim's kevent, against FreeBSD's kqueue(2) ------------------------------ */
#include "sched/kqueue_shim.h"

TEST(poller_kqueue_shim_reports_change_errors_as_the_man_page_says)
{
    int kq = kqueue();
    ASSERT_GE(kq, 0);
    int fds[2];
    nb_pipe(fds);
    struct kevent ch[2], ev[4];
    int tag;

    /* No room in the eventlist: the failed change fails the call. */
    EV_SET(&ch[0], (uintptr_t)fds[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
    ASSERT_ERRNO(kevent(kq, ch, 1, NULL, 0, NULL), ENOENT);

    /* Room: EV_ERROR with the errno in data, the change otherwise as
     * given, and no waiting (the timeout is unlimited here). */
    EV_SET(&ch[0], (uintptr_t)fds[0], EVFILT_READ, EV_DELETE, 0, 0, &tag);
    ASSERT_EQ(kevent(kq, ch, 1, ev, 4, NULL), 1);
    ASSERT(ev[0].flags & EV_ERROR);
    ASSERT_EQ(ev[0].data, ENOENT);
    ASSERT_EQ(ev[0].ident, (uintptr_t)fds[0]);
    ASSERT_EQ(ev[0].filter, EVFILT_READ);
    ASSERT_PTR_EQ(ev[0].udata, &tag);

    /* EV_RECEIPT: every change answers, data 0 on success, and the
     * pending write event is not taken on the way. */
    EV_SET(&ch[0], (uintptr_t)fds[1], EVFILT_WRITE, EV_ADD | EV_CLEAR | EV_RECEIPT, 0, 0, &tag);
    EV_SET(&ch[1], (uintptr_t)fds[1], EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, NULL);
    ASSERT_EQ(kevent(kq, ch, 2, ev, 4, NULL), 2);
    ASSERT_EQ(ev[0].flags, EV_ERROR);
    ASSERT_EQ(ev[0].data, 0);
    ASSERT_EQ(ev[1].flags, EV_ERROR);
    ASSERT_EQ(ev[1].data, ENOENT);
    const struct timespec zero = { 0, 0 };
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 4, &zero), 1);
    ASSERT_EQ(ev[0].filter, EVFILT_WRITE);
    ASSERT_EQ(ev[0].flags & EV_CLEAR, EV_CLEAR);
    ASSERT_PTR_EQ(ev[0].udata, &tag);
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 4, &zero), 0); /* EV_CLEAR */

    /* What the shim does not implement is refused, not ignored. */
    EV_SET(&ch[0], (uintptr_t)fds[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
    ASSERT_ERRNO(kevent(kq, ch, 1, NULL, 0, NULL), EINVAL);
    EV_SET(&ch[0], 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
    ASSERT_ERRNO(kevent(kq, ch, 1, NULL, 0, NULL), ENOENT);
    struct timespec bad = { 0, 1000000000 };
    ASSERT_ERRNO(kevent(kq, NULL, 0, ev, 4, &bad), EINVAL);

    close_both(fds);
    ASSERT_EQ(coro__kqueue_shim_close(kq), 0);
    ASSERT_ERRNO(kevent(kq, NULL, 0, ev, 4, &zero), EBADF);
}

TEST(poller_kqueue_shim_hands_out_events_a_few_at_a_time)
{
    int kq = kqueue();
    ASSERT_GE(kq, 0);
    int sv[2];
    nb_socketpair(sv);
    ASSERT_EQ(write(sv[1], "x", 1), 1);
    struct kevent ch[2], ev[2];
    EV_SET(&ch[0], (uintptr_t)sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
    EV_SET(&ch[1], (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, NULL);
    ASSERT_EQ(kevent(kq, ch, 2, NULL, 0, NULL), 0);
    /* Two events ready, room for one: the other waits for the next call. */
    const struct timespec zero = { 0, 0 };
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 1, &zero), 1);
    short first = ev[0].filter;
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 1, &zero), 1);
    ASSERT_NE(ev[0].filter, first);
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 2, &zero), 0);
    /* A deleted event is not handed out, pending or not. */
    ASSERT_EQ(write(sv[1], "y", 1), 1);
    EV_SET(&ch[0], (uintptr_t)sv[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
    ASSERT_EQ(kevent(kq, ch, 1, NULL, 0, NULL), 0);
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 2, &zero), 0);
    /* The peer closes: EV_EOF. */
    close(sv[1]);
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 2, &zero), 1);
    ASSERT_EQ(ev[0].filter, EVFILT_WRITE);
    ASSERT_EQ(ev[0].flags & EV_EOF, EV_EOF);
    close(sv[0]);
    ASSERT_EQ(coro__kqueue_shim_close(kq), 0);
}

TEST(poller_kqueue_shim_user_event_is_reset_by_ev_clear)
{
    int kq = kqueue();
    ASSERT_GE(kq, 0);
    struct kevent ch, ev[2];
    const struct timespec zero = { 0, 0 };
    int tag;
    EV_SET(&ch, 9, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, &tag);
    ASSERT_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 2, &zero), 0);
    /* Triggered, then reset before anyone looked: nothing to report. */
    EV_SET(&ch, 9, EVFILT_USER, 0, NOTE_TRIGGER, 0, &tag);
    ASSERT_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
    EV_SET(&ch, 9, EVFILT_USER, EV_CLEAR, 0, 0, &tag);
    ASSERT_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 2, &zero), 0);
    /* Triggered twice: reported once, with the udata of the last change. */
    EV_SET(&ch, 9, EVFILT_USER, 0, NOTE_TRIGGER, 0, &tag);
    ASSERT_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
    EV_SET(&ch, 9, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
    ASSERT_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 2, &zero), 1);
    ASSERT_EQ(ev[0].ident, 9);
    ASSERT_EQ(ev[0].filter, EVFILT_USER);
    ASSERT_NULL(ev[0].udata);
    ASSERT_EQ(kevent(kq, NULL, 0, ev, 2, &zero), 0);
    ASSERT_EQ(coro__kqueue_shim_close(kq), 0);
}
#endif /* CORO_KQUEUE_SHIM */
