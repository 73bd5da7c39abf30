/* test/thread_hook.c: pthread_create as the tests see it. The runner's own
 * definition interposes the C library's (the executable's symbol wins, for
 * the library's calls too, libcoro.a being linked in), and passes every
 * call on to the next definition (the C library's, or a sanitizer's
 * interceptor) found with dlsym(RTLD_NEXT). Disarmed it only counts calls;
 * a test can make each call first sleep (a slow thread creation, as under
 * ThreadSanitizer, which waits for the new thread to begin) or fail (as
 * with EAGAIN when the process is out of threads). */
#include "test/test.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static int64_t create_delay_ns;
static int create_ok_left = -1; /* calls that succeed before failures begin; -1: no failures */
static int create_errno;
static int create_calls;

void test_thread_create_delay(int64_t ns)
{
    __atomic_store_n(&create_delay_ns, ns, __ATOMIC_SEQ_CST);
}

void test_thread_create_fail(int ok_first, int err)
{
    __atomic_store_n(&create_errno, err, __ATOMIC_SEQ_CST);
    __atomic_store_n(&create_ok_left, ok_first, __ATOMIC_SEQ_CST);
}

void test_thread_create_reset(void)
{
    test_thread_create_delay(0);
    test_thread_create_fail(-1, 0);
}

int test_thread_create_calls(void)
{
    return __atomic_load_n(&create_calls, __ATOMIC_SEQ_CST);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *),
                   void *arg)
{
    static create_fn next;
    create_fn f = __atomic_load_n(&next, __ATOMIC_ACQUIRE);
    if (!f) {
        /* dlsym returns a data pointer; POSIX guarantees the conversion. */
        void *sym = dlsym(RTLD_NEXT, "pthread_create");
        if (!sym)
            return EAGAIN;
        memcpy(&f, &sym, sizeof f);
        __atomic_store_n(&next, f, __ATOMIC_RELEASE);
    }
    __atomic_add_fetch(&create_calls, 1, __ATOMIC_SEQ_CST);
    int64_t ns = __atomic_load_n(&create_delay_ns, __ATOMIC_SEQ_CST);
    if (ns > 0) {
        struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    int left = __atomic_load_n(&create_ok_left, __ATOMIC_SEQ_CST);
    while (left >= 0) {
        if (left == 0)
            return __atomic_load_n(&create_errno, __ATOMIC_SEQ_CST);
        if (__atomic_compare_exchange_n(&create_ok_left, &left, left - 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            break;
    }
    return f(thread, attr, start, arg);
}
