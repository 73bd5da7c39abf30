/* test/gdb/target.c: the program test/check_gdb.sh debugs with
 * tools/coro-gdb.py. It parks coroutines in distinct functions (a sleep, a
 * channel receive, a mutex lock), leaves one ready (yielded), starts a
 * second thread whose own scheduler parks one reading a pipe, and then stops
 * in gdb_stop_here() (a breakpoint) inside the main coroutine. After the
 * debugger continues, it wakes everything and ends normally: exit status
 * 0 tells that `coro bt` gave every register back.
 *
 * The coroutines' ids are kept in globals (id_sleeper...) so that the
 * gdb commands can name them. Built with -O0 -g so each function keeps
 * its own frame, like a user's debug build; the library is whatever the
 * build made (-O2 -g by default). */
#include "coro.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static coro_chan_t *chan;
static coro_mutex_t lock = CORO_MUTEX_INIT;
static int other_pipe[2];
/* Set by the other thread, read by main's (atomics: TSan builds run this
 * too). */
static int other_parked;
static pid_t other_tid;
static volatile int keep_yielding = 1;

volatile uint64_t id_main, id_sleeper, id_receiver, id_locker, id_yielder, id_other;

#define CHECK(x)                                                           \
    do {                                                                   \
        if (!(x)) {                                                        \
            fprintf(stderr, "gdb target: %s:%d: %s failed\n", __FILE__,    \
                    __LINE__, #x);                                         \
            exit(2);                                                       \
        }                                                                  \
    } while (0)

/* Each parks through one more frame of its own, so a backtrace shows both
 * names. */
__attribute__((noinline)) static int parked_in_sleep(void)
{
    return coro_sleep(3600 * CORO_SEC);
}

static int sleeper(void *arg)
{
    (void)arg;
    int r = parked_in_sleep();
    return r == -1 ? 0 : 1; /* cancelled: ECANCELED */
}

__attribute__((noinline)) static int parked_in_recv(int *out)
{
    return coro_chan_recv(chan, out);
}

static int receiver(void *arg)
{
    (void)arg;
    int v = 0;
    CHECK(parked_in_recv(&v) == 0);
    return v == 42 ? 0 : 1;
}

__attribute__((noinline)) static int parked_in_lock(void)
{
    return coro_mutex_lock(&lock);
}

static int locker(void *arg)
{
    (void)arg;
    CHECK(parked_in_lock() == 0);
    CHECK(coro_mutex_unlock(&lock) == 0);
    return 0;
}

__attribute__((noinline)) static void ready_in_yield(void)
{
    coro_yield();
}

static int yielder(void *arg)
{
    (void)arg;
    while (keep_yielding)
        ready_in_yield();
    return 0;
}

/* The second thread's scheduler: one coroutine parked reading a pipe
 * (main writes to it with write(2), which any thread may). */
__attribute__((noinline)) static ssize_t parked_in_other_thread(char *c)
{
    return coro_read(other_pipe[0], c, 1);
}

static int other_body(void *arg)
{
    (void)arg;
    char c = 0;
    id_other = coro_id(coro_self());
    __atomic_store_n(&other_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
    /* Set before the park: main polls until it reads 1. */
    __atomic_store_n(&other_parked, 1, __ATOMIC_RELEASE);
    CHECK(parked_in_other_thread(&c) == 1 && c == 'x');
    return 0;
}

static void *other_thread(void *arg)
{
    (void)arg;
    CHECK(coro_main(other_body, NULL) == 0);
    return NULL;
}

/* Is thread tid asleep in the kernel (state S in /proc)? 1 without
 * /proc, after the caller's sleeps. */
static int thread_sleeps(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* "tid (comm) S ..." */
    return p && p[1] == ' ' && p[2] == 'S';
}

/* The breakpoint. */
__attribute__((noinline)) void gdb_stop_here(void);
__attribute__((noinline)) void gdb_stop_here(void)
{
    __asm__ volatile("" ::: "memory");
}

static coro_t *spawn_named(coro_fn fn, const char *name)
{
    coro_opts_t o = { .name = name };
    coro_t *c = coro_spawn_opts(fn, NULL, &o);
    CHECK(c != NULL);
    return c;
}

static int main_body(void *arg)
{
    pthread_t *t = arg;
    id_main = coro_id(coro_self());
    CHECK(coro_mutex_lock(&lock) == 0);
    CHECK((chan = coro_chan_new(sizeof(int), 0)) != NULL);
    coro_t *s = spawn_named(sleeper, "sleeper");
    coro_t *r = spawn_named(receiver, "receiver");
    coro_t *l = spawn_named(locker, "locker");
    coro_t *y = spawn_named(yielder, "yielder");
    id_sleeper = coro_id(s);
    id_receiver = coro_id(r);
    id_locker = coro_id(l);
    id_yielder = coro_id(y);
    /* One yield: each runs to its park (the yielder yields back and is
     * ready again). */
    coro_yield();
    /* The other thread's coroutine parks (other_parked is set just
     * before), and its thread then sleeps in the poller. */
    while (!__atomic_load_n(&other_parked, __ATOMIC_ACQUIRE))
        CHECK(coro_sleep(CORO_MS) == 0);
    pid_t tid = __atomic_load_n(&other_tid, __ATOMIC_RELAXED);
    for (int i = 0; i < 5000 && !thread_sleeps(tid); i++)
        CHECK(coro_sleep(CORO_MS) == 0);
    CHECK(coro_sleep(5 * CORO_MS) == 0);

    gdb_stop_here();

    keep_yielding = 0;
    int v = 42, st;
    CHECK(coro_chan_send(chan, &v) == 0);
    CHECK(coro_mutex_unlock(&lock) == 0);
    CHECK(coro_cancel(s) == 0);
    CHECK(coro_join(s, &st) == 0 && st == 0);
    CHECK(coro_join(r, &st) == 0 && st == 0);
    CHECK(coro_join(l, &st) == 0 && st == 0);
    CHECK(coro_join(y, &st) == 0 && st == 0);
    coro_chan_free(chan);
    CHECK(write(other_pipe[1], "x", 1) == 1);
    CHECK(pthread_join(*t, NULL) == 0);
    return 0;
}

int main(void)
{
    pthread_t t;
    CHECK(pipe(other_pipe) == 0);
    CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0);
    int st = coro_main(main_body, &t);
    CHECK(st == 0);
    return 0;
}
