/* coro/overflow.c: turns a stack overflow into a message that names the
 * coroutine, then lets the process die of the fault as it would have.
 *
 * A coroutine that overflows writes into the guard below its stack and
 * takes SIGSEGV (or SIGBUS). Its own stack is exhausted, so the handler
 * runs on an alternate signal stack (sigaltstack, one per thread). If the
 * fault address lies in the running fiber's guard, the handler writes
 * "stack overflow in coroutine N "name"" to stderr with write(2) only
 * (async-signal-safe), restores the previous disposition and returns: the
 * faulting instruction runs again and the process dies of the fault (or
 * the previous handler, e.g. a sanitizer's, takes over). Faults anywhere
 * else go straight to the previous handler. */
#include "coro/fiber.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static struct sigaction old_segv, old_bus;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_err;

/* The alternate stack this thread installed (NULL if it kept another). */
static __thread void *tls_altstack;
static __thread size_t tls_altstack_size;

/* Append helpers for a message built without stdio. */
static size_t put_str(char *buf, size_t at, size_t cap, const char *s)
{
    while (*s && at < cap)
        buf[at++] = *s++;
    return at;
}

static size_t put_u64(char *buf, size_t at, size_t cap, uint64_t v, int base)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % (unsigned)base];
        v /= (unsigned)base;
    } while (v);
    while (n > 0 && at < cap)
        buf[at++] = tmp[--n];
    return at;
}

static void report(const coro__fiber_t *f, const void *addr)
{
    char msg[512];
    size_t cap = sizeof msg - 1, n = 0;
    n = put_str(msg, n, cap, "coro: stack overflow in coroutine ");
    n = put_u64(msg, n, cap, f->id, 10);
    n = put_str(msg, n, cap, " \"");
    n = put_str(msg, n, cap, f->name ? f->name : "");
    n = put_str(msg, n, cap, "\" (stack ");
    n = put_u64(msg, n, cap, coro__fiber_stack_bytes(f), 10);
    n = put_str(msg, n, cap, " bytes, fault at 0x");
    n = put_u64(msg, n, cap, (uintptr_t)addr, 16);
    n = put_str(msg, n, cap, " in its guard); raise coro_opts_t.stack_size\n");
    msg[n++] = '\0';
    ssize_t w = write(STDERR_FILENO, msg, n - 1);
    (void)w;
}

static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    int saved = errno;
    struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
    const coro__fiber_t *f = coro__fiber_running_now();
    const char *addr = si->si_addr;
    if (f && f->stack.lo && si->si_code > 0 &&
        addr < f->stack.lo && addr >= f->stack.lo - coro__stack_guard_size()) {
        report(f, addr);
        sigaction(sig, old, NULL);
        errno = saved;
        return; /* the access faults again, now under the old disposition */
    }
    if (old->sa_flags & SA_SIGINFO) {
        if (old->sa_sigaction) {
            old->sa_sigaction(sig, si, uctx);
            errno = saved;
            return;
        }
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        errno = saved;
        return;
    }
    /* Default disposition: restore it; a real fault recurs and kills, a
     * signal sent by kill() is raised again. */
    sigaction(sig, old, NULL);
    if (si->si_code <= 0)
        raise(sig);
    errno = saved;
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) != 0 || sigaction(SIGBUS, &sa, &old_bus) != 0)
        install_err = errno;
}

int coro__overflow_thread_init(void)
{
    pthread_once(&install_once, install);
    if (install_err) {
        errno = install_err;
        return -1;
    }
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
        return 0; /* the thread already has one: use it */
    size_t size = 64 * 1024;
    if ((size_t)SIGSTKSZ > size)
        size = (size_t)SIGSTKSZ;
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -1;
    stack_t ss = { .ss_sp = mem, .ss_size = size, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) {
        int e = errno;
        munmap(mem, size);
        errno = e;
        return -1;
    }
    tls_altstack = mem;
    tls_altstack_size = size;
    return 0;
}

void coro__overflow_thread_fini(void)
{
    if (!tls_altstack)
        return;
    stack_t ss = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
    sigaltstack(&ss, NULL);
    munmap(tls_altstack, tls_altstack_size);
    tls_altstack = NULL;
}
