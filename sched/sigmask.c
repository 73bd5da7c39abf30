/* sched/sigmask.c: the thread's signal mask across coro_main.
 *
 * coro blocks signals in the thread on the caller's behalf while its
 * scheduler runs: coro_signal_wait's sets (so a signal that arrives between
 * two waits is kept, not fatal) and SIGPIPE at the first I/O call (a broken
 * pipe is an EPIPE). coro_main records the mask when it starts and gives
 * exactly that mask back when it ends, on every path (a normal return, a
 * deadlock, a failure after the scheduler was made); whatever coroutines
 * did to the mask meanwhile is undone too.
 *
 * A signal that coro blocked and that is still pending then (it arrived
 * after the last wait, during the shutdown) must not become fatal just
 * because coro had blocked it:
 *   - if the caller's own mask blocks it, it stays pending (the caller's
 *     to take);
 *   - if the caller installed a handler, restoring the mask delivers it
 *     to that handler, before coro_main returns;
 *   - if its disposition is the default or "ignore", the program had asked
 *     coro to take that signal (it waited for it), so coro takes it here
 *     (sigtimedwait with a zero timeout) instead of letting its default
 *     action kill the process.
 * A signal that arrives in the instant between that take and the restore
 * meets the caller's disposition, as one arriving after coro_main returned
 * would. Masks are per thread: each coro_main does this for its own
 * thread. With CONTEXT=ucontext every switch carries the thread's current
 * mask into the resumed context (coro/context_ucontext.c), and the restore
 * runs after the last switch, on the thread's own stack. */
#include "sched/sched_int.h"
#include "coro/compat.h"
#include "sched/io_wait.h"

#include <errno.h>
#include <signal.h>
#include <time.h>

#ifndef NSIG
#define NSIG 65
#endif

void coro__mask_record(coro__sched_t *s)
{
    pthread_sigmask(SIG_BLOCK, NULL, &s->caller_mask);
    sigemptyset(&s->blocked_for_caller);
}

int coro__block_signals(const sigset_t *set)
{
    coro__sched_t *s = coro__tls;
    if (!s) {
        errno = EPERM;
        return -1;
    }
    /* A loop, not sigorset: that one is a GNU extension. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(set, sig) == 1)
            sigaddset(&s->blocked_for_caller, sig);
    int e = pthread_sigmask(SIG_BLOCK, set, NULL);
    if (e) {
        errno = e;
        return -1;
    }
    return 0;
}

/* Without sigtimedwait (macOS, OpenBSD; forced by COMPAT=fallback):
 * sigpending shows which signals of the set are pending, and sigwait takes
 * one of them, which returns at once because it is pending. The cost is a
 * window between the two calls: if another thread takes that signal first
 * (it waits for it too, with its own coro_signal_wait or sigwait, or has
 * it unblocked, which io/io.h asks users not to do), sigwait blocks this
 * scheduler's thread until the signal comes again. A program in which one
 * thread waits for a given signal never meets it. */
int coro__signal_take(const sigset_t *set)
{
#if !CORO_HAVE_SIGTIMEDWAIT
    sigset_t pending;
    if (sigpending(&pending) != 0)
        return -1;
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(set, sig) == 1 && sigismember(&pending, sig) == 1) {
            sigset_t one;
            sigemptyset(&one);
            sigaddset(&one, sig);
            int got, e;
            while ((e = sigwait(&one, &got)) == EINTR)
                ;
            if (e) {
                errno = e;
                return -1;
            }
            return got;
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

/* Would a pending sig, once unblocked, meet the default action or be
 * ignored (rather than run a handler of the caller's)? sa_handler and
 * sa_sigaction share their storage, and SIG_DFL/SIG_IGN mean the same in
 * both, as the kernel reads them. */
static int unhandled(int sig)
{
    struct sigaction sa;
    if (sigaction(sig, NULL, &sa) != 0)
        return 0;
    return sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN;
}

void coro__mask_restore(coro__sched_t *s)
{
    sigset_t take;
    sigemptyset(&take);
    int any = 0;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sigismember(&s->blocked_for_caller, sig) == 1 &&
            sigismember(&s->caller_mask, sig) != 1 && unhandled(sig)) {
            sigaddset(&take, sig);
            any = 1;
        }
    }
    /* Every pending instance (real-time signals queue). */
    if (any)
        while (coro__signal_take(&take) > 0)
            ;
    pthread_sigmask(SIG_SETMASK, &s->caller_mask, NULL);
}
