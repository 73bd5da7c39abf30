/* io/signal.c: coro_signal_wait (see io/io.h).
 *
 * The signals are blocked in the calling thread and stay so; the poller
 * (signalfd on Linux, EVFILT_SIGNAL on kqueue) only says that one may have
 * arrived, and the signal itself is taken with sigtimedwait and a zero
 * timeout, which takes exactly one pending signal of the set, directed at
 * the thread or at the process. A signal that arrives while nobody waits
 * stays pending (blocked), so the next wait returns it. */
#include "io/io_int.h"

#include <errno.h>
#include <signal.h>
#include <time.h>

/* Signals the kernel sends for a fault of the thread itself: never
 * waitable. */
static int refused(int sig)
{
    return sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS ||
           sig == SIGFPE || sig == SIGILL;
}

static int valid_set(const sigset_t *set)
{
    int any = 0;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sigismember(set, sig) != 1)
            continue;
        if (refused(sig))
            return 0;
        any = 1;
    }
    return any;
}

/* Take one pending signal of set: its number, 0 if none, -1 on error. */
static int take_pending(const sigset_t *set)
{
#ifdef __APPLE__
    sigset_t pending;
    if (sigpending(&pending) != 0)
        return -1;
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(set, sig) == 1 && sigismember(&pending, sig) == 1) {
            sigset_t one;
            sigemptyset(&one);
            sigaddset(&one, sig);
            int got;
            return sigwait(&one, &got) == 0 ? got : -1;
        }
    return 0;
#else
    const struct timespec zero = { 0, 0 };
    for (;;) {
        int sig = sigtimedwait(set, NULL, &zero);
        if (sig > 0)
            return sig;
        if (errno == EAGAIN)
            return 0;
        if (errno != EINTR)
            return -1;
    }
#endif
}

int coro_signal_wait(const sigset_t *set)
{
    if (!set || !valid_set(set)) {
        errno = EINVAL;
        return -1;
    }
    if (coro__checkpoint() != 0)
        return -1;
    int e = pthread_sigmask(SIG_BLOCK, set, NULL);
    if (e) {
        errno = e;
        return -1;
    }
    for (;;) {
        int sig = take_pending(set);
        if (sig != 0)
            return sig; /* a signal, or -1 */
        if (coro__signal_park(set) != 0)
            return -1;
    }
}
