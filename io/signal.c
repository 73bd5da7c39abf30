/* io/signal.c: coro_signal_wait (see io/io.h).
 *
 * The signals are blocked in the calling thread until coro_main returns
 * (sched/sigmask.c gives the thread its mask back then); the poller
 * (signalfd on Linux, EVFILT_SIGNAL on kqueue) only says that one may have
 * arrived, and the signal itself is taken with sigtimedwait and a zero
 * timeout, which takes exactly one pending signal of the set, directed at
 * the thread or at the process. A signal that arrives while nobody waits
 * stays pending (blocked), so the next wait returns it. Without
 * sigtimedwait (macOS) it is sigpending + sigwait: see coro__signal_take
 * in sched/sigmask.c for what that costs. */
#include "io/io_int.h"

#include <errno.h>
#include <signal.h>

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

int coro_signal_wait(const sigset_t *set)
{
    if (!set || !valid_set(set)) {
        errno = EINVAL;
        return -1;
    }
    if (coro__checkpoint() != 0)
        return -1;
    /* Blocked for the caller: coro_main gives the mask back (and takes a
     * pending one the caller would not handle) when it ends. */
    if (coro__block_signals(set) != 0)
        return -1;
    for (;;) {
        int sig = coro__signal_take(set);
        if (sig != 0)
            return sig; /* a signal, or -1 */
        if (coro__signal_park(set) != 0)
            return -1;
    }
}
