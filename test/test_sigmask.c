/* test/test_sigmask.c: coro_main gives the thread its signal mask back
 * exactly, whatever coro blocked on the caller's behalf (coro_signal_wait's
 * sets, SIGPIPE for I/O), on a normal return and after a deadlock; and a
 * signal of those sets still pending when coro_main ends meets the
 * caller's own mask and disposition: kept pending if the caller blocks it,
 * delivered to the caller's handler, taken by coro if its disposition is
 * the default or ignore (never fatal because coro had blocked it). Per
 * thread, with two schedulers at once. */
#include "test/test_io.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

static void thread_mask(sigset_t *m)
{
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, m), 0);
}

static void assert_same_mask(const sigset_t *a, const sigset_t *b)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(a, sig) != sigismember(b, sig))
            test_fail(__FILE__, __LINE__, "signal %d (%s): %s after coro_main, %s before", sig,
                      strsignal(sig), sigismember(a, sig) == 1 ? "blocked" : "unblocked",
                      sigismember(b, sig) == 1 ? "blocked" : "unblocked");
}

static int is_pending(int sig)
{
    sigset_t p;
    ASSERT_EQ(sigpending(&p), 0);
    return sigismember(&p, sig) == 1;
}

static sigset_t usr2_term(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    sigaddset(&s, SIGTERM);
    return s;
}

/* What a body does: an I/O call first (which blocks SIGPIPE), a raise of
 * SIGTERM after the last signal wait, a deadlock at the end. */
enum { WITH_IO = 1, RAISE_AT_END = 2, DEADLOCK = 4, RAISE_IN_LAST = 8 };

static volatile sig_atomic_t handled;

static void on_term(int sig)
{
    (void)sig;
    handled++;
}

static int raise_term_last(void *arg)
{
    (void)arg;
    /* The last coroutine to end: nothing runs after it but the shutdown. */
    ASSERT_EQ(coro_sleep(2 * CORO_MS), 0);
    ASSERT_EQ(raise(SIGTERM), 0);
    return 0;
}

static int raise_usr2(void *arg)
{
    (void)arg;
    ASSERT_EQ(raise(SIGUSR2), 0); /* runs once body waits: blocked by then */
    return 0;
}

static int body(void *arg)
{
    int how = *(int *)arg;
    if (how & WITH_IO) {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        char c = 1;
        ASSERT_EQ(coro_write(p[1], &c, 1), 1);
        ASSERT_EQ(coro_read(p[0], &c, 1), 1);
        ASSERT_EQ(coro_close(p[0]), 0);
        ASSERT_EQ(coro_close(p[1]), 0);
    }
    sigset_t set = usr2_term();
    coro_t *r = coro_spawn(raise_usr2, NULL);
    ASSERT_NOT_NULL(r);
    ASSERT_EQ(coro_signal_wait(&set), SIGUSR2);
    ASSERT_EQ(coro_join(r, NULL), 0);
    ASSERT_EQ(raise(SIGTERM), 0);
    ASSERT_EQ(coro_signal_wait(&set), SIGTERM);
    if (how & RAISE_AT_END)
        ASSERT_EQ(raise(SIGTERM), 0); /* pending while coro_main shuts down */
    if (how & RAISE_IN_LAST) {
        coro_t *c = coro_spawn(raise_term_last, NULL);
        ASSERT_NOT_NULL(c);
        coro_detach(c);
    }
    ASSERT_EQ(handled, 0); /* blocked: not delivered inside coro_main */
    if (how & DEADLOCK) {
        coro_event_t never = CORO_EVENT_INIT;
        ASSERT_ERRNO(coro_event_wait(&never), ECANCELED);
    }
    return 0;
}

/* Run body(how) and check the mask after it against the one before. */
static void run_body(int how)
{
    sigset_t before, after;
    thread_mask(&before);
    if (how & DEADLOCK) {
        ts_capture_t cap;
        ts_capture_begin(&cap);
        errno = 0;
        int r = coro_main(body, &how);
        int e = errno;
        char *out = ts_capture_end(&cap);
        ASSERT_CONTAINS(out, "deadlock");
        free(out);
        ASSERT_EQ(r, -1);
        ASSERT_EQ(e, EDEADLK);
    } else {
        ASSERT_EQ(coro_main(body, &how), 0);
    }
    thread_mask(&after);
    assert_same_mask(&after, &before);
}

TEST(sigmask_restored_after_signal_waits)
{
    /* Before the fix SIGUSR2 and SIGTERM stayed blocked after coro_main
     * (and without an I/O call, SIGPIPE's restore did not run either). */
    ASSERT(signal(SIGTERM, SIG_DFL) != SIG_ERR);
    run_body(0);
    run_body(WITH_IO);
    run_body(DEADLOCK);
    run_body(WITH_IO | DEADLOCK);
    ASSERT(!is_pending(SIGTERM));
    ASSERT(!is_pending(SIGUSR2));
}

TEST(sigmask_sigterm_during_shutdown_default_is_not_fatal)
{
    /* Before the fix, with an I/O call first, the SIGTERM killed the
     * process as coro_main returned (exit status 143); without one it
     * stayed blocked and pending. */
    ASSERT(signal(SIGTERM, SIG_DFL) != SIG_ERR);
    int variants[] = { RAISE_AT_END, WITH_IO | RAISE_AT_END, RAISE_IN_LAST,
                       WITH_IO | RAISE_IN_LAST, WITH_IO | RAISE_AT_END | DEADLOCK };
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        run_body(variants[i]);
        ASSERT(!is_pending(SIGTERM)); /* coro took it */
    }
    /* Ignored: taken too, and the caller's disposition is unchanged. */
    ASSERT(signal(SIGTERM, SIG_IGN) != SIG_ERR);
    run_body(WITH_IO | RAISE_AT_END);
    ASSERT(!is_pending(SIGTERM));
    ASSERT(signal(SIGTERM, SIG_DFL) == SIG_IGN);
}

TEST(sigmask_sigterm_during_shutdown_reaches_the_callers_handler)
{
    /* Before the fix, without an I/O call, the handler never ran: SIGTERM
     * stayed blocked after coro_main. */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGTERM, &sa, &old), 0);
    int variants[] = { RAISE_AT_END, WITH_IO | RAISE_AT_END, RAISE_IN_LAST,
                       WITH_IO | RAISE_AT_END | DEADLOCK };
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        handled = 0;
        run_body(variants[i]);
        /* Delivered when the mask was restored, before coro_main returned. */
        ASSERT_EQ(handled, 1);
        ASSERT(!is_pending(SIGTERM));
    }
    ASSERT_EQ(sigaction(SIGTERM, &old, NULL), 0);
}

TEST(sigmask_signal_the_caller_blocks_stays_pending)
{
    sigset_t set = usr2_term();
    ASSERT(signal(SIGTERM, SIG_DFL) != SIG_ERR);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
    run_body(WITH_IO | RAISE_AT_END);
    ASSERT(is_pending(SIGTERM)); /* the caller's to take */
    struct timespec zero = { 0, 0 };
    ASSERT_EQ(sigtimedwait(&set, NULL, &zero), SIGTERM);
    ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &set, NULL), 0);
}

/* ---- two schedulers, two masks ------------------------------------------------- */

typedef struct th {
    int how;
    int ok;
} th_t;

static void *thread_body(void *arg)
{
    th_t *t = arg;
    run_body(t->how);
    t->ok = 1;
    return NULL;
}

TEST(sigmask_restored_per_thread)
{
    /* Before the fix each thread kept SIGUSR2 and SIGTERM blocked. */
    ASSERT(signal(SIGTERM, SIG_DFL) != SIG_ERR);
    sigset_t before, after;
    thread_mask(&before);
    th_t t[2] = { { WITH_IO | RAISE_AT_END, 0 }, { RAISE_AT_END, 0 } };
    pthread_t id[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&id[i], NULL, thread_body, &t[i]), 0);
    run_body(WITH_IO);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(pthread_join(id[i], NULL), 0);
        ASSERT_EQ(t[i].ok, 1);
    }
    thread_mask(&after);
    assert_same_mask(&after, &before);
    ASSERT(!is_pending(SIGTERM));
}
