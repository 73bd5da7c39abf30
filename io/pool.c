/* io/pool.c: the blocking pool (coro_run_blocking, coro_getaddrinfo; see
 * io/io.h): a few threads per scheduler that run blocking functions while
 * the coroutines go on.
 *
 * A job is a heap object shared by the caller (a parked coroutine) and a
 * worker thread. The queue, and a job's move from queued to running, are
 * guarded by the pool's mutex; everything else about a job happens on the
 * scheduler's thread: the worker hands the finished job back with
 * coro__post (the scheduler's wake-up channel: an eventfd or EVFILT_USER),
 * and the post wakes the caller.
 *
 * A caller that is cancelled (or whose deadline passes) stops waiting at
 * once: a queued job is taken off the queue and freed, a running one is
 * marked abandoned and freed, with its late result (discard), when its post
 * arrives.
 *
 * Threads. The workers are started lazily, one more whenever a queued job
 * finds no idle worker (and none already on its way), up to the pool's
 * size: coro_main_opts' pool_threads, else CORO_POOL_THREADS, else the
 * number of online CPUs. The scheduler's thread never starts them: it
 * would stall every coroutine for a pthread_create each (milliseconds
 * under ThreadSanitizer, which waits for the new thread to begin), and a
 * submission would wait for it. Instead each pool has one more thread, the
 * starter, made once when the pool is (the only thread the scheduler's
 * thread creates); a submission that needs another worker only counts it
 * in `wanted` and signals the starter, which creates it outside the lock.
 * If no worker exists and none can be created, the queued jobs fail with
 * the error (EAGAIN) instead of waiting forever. Every pool thread has
 * every signal blocked (signals are for the scheduler's thread:
 * coro_signal_wait): the starter is created so, and workers inherit its
 * mask. All are joined when coro_main returns, after finishing what they
 * run: the starter first, so the list of workers is final.
 *
 * fork(2): the child has none of the pool's threads (only the forking
 * thread goes on), and the pool belongs to a dead scheduler there (see
 * sched/fork.c). An atfork child handler forgets the forking thread's pool
 * (abandoned, never touched: its lock may be held by a thread that does
 * not exist in the child), so a fresh coro_main starts its own. A job
 * whose function forks and returns in the child (it should exec or _exit)
 * would hand its result to a scheduler that is not there: the worker
 * notices the fork and the child leaves with _exit(status). */
#include "io/io_int.h"
#include "coro/fault.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { JOB_QUEUED, JOB_RUNNING, JOB_FAILED };

typedef struct job {
    coro__post_t post;          /* first: the post is the job */
    struct job *next;           /* queue link (under the pool's lock) */
    int state;                  /* JOB_QUEUED / _RUNNING / _FAILED (under the lock) */
    coro_fn fn;
    void *arg;
    int status;                 /* fn's result, written by the worker */
    int err;                    /* JOB_FAILED: why it never ran (errno) */
    /* Scheduler-thread side: */
    coro__waiter_t *waiter;     /* the parked caller; NULL once it left */
    int completed;              /* the post has arrived */
    void (*discard)(void *arg); /* frees a result nobody will collect */
} job_t;

typedef struct pool {
    pthread_mutex_t lock;
    /* Workers wait on `work` for a job; the starter waits on `grow` for a
     * worker to start (or for stopping). */
    pthread_cond_t work, grow;
    /* The queue of jobs no worker has taken yet (queued of them). */
    job_t *head, *tail;
    int queued;
    /* Workers started (their ids in tids[0..threads)), waiting for a job
     * (idle), asked of the starter and not yet created (wanted), and the
     * most there may be (max: the pool's size). */
    int threads, idle, wanted, max;
    int stopping;
    pthread_t *tids;
    pthread_t starter;
    struct sched *sched;
} pool_t;

static __thread pool_t *thread_pool;
/* Forks into a child so far in this process's ancestry (the child handler
 * counts them): a worker that sees it change after a job runs in a child. */
static unsigned forks_seen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forget_in_child(void)
{
    thread_pool = NULL;
    __atomic_store_n(&forks_seen, forks_seen + 1, __ATOMIC_RELAXED);
}

static void install_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, forget_in_child);
}

static void job_free(job_t *j, int discard)
{
    if (discard && j->discard)
        j->discard(j->arg);
    free(j);
}

/* ---- worker threads ------------------------------------------------------ */

/* On the scheduler's thread: the job is done (or failed before it ran). */
static void job_completed(coro__post_t *m)
{
    job_t *j = (job_t *)m;
    j->completed = 1;
    if (!j->waiter) {
        job_free(j, 1); /* its caller left: nobody wants the result */
        return;
    }
    if (coro__can_wake(j->waiter))
        coro__wake(j->waiter, 0);
    /* else the caller was woken for another reason and frees the job when
     * it runs (it sees completed). */
}

static void *worker(void *arg)
{
    pool_t *p = arg;
    unsigned forks = __atomic_load_n(&forks_seen, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping) {
            p->idle++;
            pthread_cond_wait(&p->work, &p->lock);
            p->idle--;
        }
        if (!p->head)
            break; /* stopping, nothing left */
        job_t *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&p->lock);
        j->status = j->fn(j->arg);
        if (__builtin_expect(__atomic_load_n(&forks_seen, __ATOMIC_RELAXED) != forks, 0))
            _exit(j->status); /* fn forked and returned in the child */
        coro__post(p->sched, &j->post);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* No worker exists and none could be created: every queued job fails with
 * err (its caller wakes with it). Under the lock. */
static void fail_queued(pool_t *p, int err)
{
    while (p->head) {
        job_t *j = p->head;
        p->head = j->next;
        p->queued--;
        j->state = JOB_FAILED;
        j->err = err;
        coro__post(p->sched, &j->post);
    }
    p->tail = NULL;
}

/* The starter: creates the workers that submissions ask for, outside the
 * lock, so neither the scheduler's thread nor the lock waits on
 * pthread_create. */
static void *starter(void *arg)
{
    pool_t *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->wanted && !p->stopping)
            pthread_cond_wait(&p->grow, &p->lock);
        if (p->stopping)
            break;
        pthread_mutex_unlock(&p->lock);
        pthread_t tid;
        int e = pthread_create(&tid, NULL, worker, p); /* inherits our mask */
        pthread_mutex_lock(&p->lock);
        p->wanted--;
        if (e == 0)
            p->tids[p->threads++] = tid;
        else if (p->threads == 0)
            fail_queued(p, e);
        /* else the workers there are run the queue. */
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- the pool's life ----------------------------------------------------- */

static void pool_free(pool_t *p)
{
    pthread_cond_destroy(&p->grow);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p->tids);
    free(p);
}

/* Stop the threads: the starter first (then no worker is on its way and
 * tids is final), then the workers, which finish the job they run. */
static void pool_stop(void *arg)
{
    pool_t *p = arg;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    /* Every caller has gone (coro_main is returning): queued jobs are
     * orphans; callers remove their own queued jobs, so this is a guard. */
    while (p->head) {
        job_t *j = p->head;
        p->head = j->next;
        job_free(j, 0);
    }
    p->tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->work);
    pthread_cond_signal(&p->grow);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->starter, NULL);
    for (int i = 0; i < p->threads; i++)
        pthread_join(p->tids[i], NULL);
    /* Their last posts run next (coro__destroy), freeing abandoned jobs. */
    pool_free(p);
    thread_pool = NULL;
}

/* The pool's size: coro_main_opts' pool_threads, else CORO_POOL_THREADS
 * (1..CORO__POOL_MAX_THREADS; other values are ignored), else the number
 * of online CPUs (at least 1). */
static int pool_size(void)
{
    int n = coro__pool_threads_requested();
    if (n > 0)
        return n;
    const char *env = getenv("CORO_POOL_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v >= 1 && v <= CORO__POOL_MAX_THREADS)
            return (int)v;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        return 1;
    return cpus > CORO__POOL_MAX_THREADS ? CORO__POOL_MAX_THREADS : (int)cpus;
}

/* Start the starter, with every signal blocked. */
static int start_starter(pool_t *p)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&p->starter, NULL, starter, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        errno = e;
        return -1;
    }
    return 0;
}

static pool_t *pool_get(void)
{
    if (thread_pool)
        return thread_pool;
    pthread_once(&atfork_once, install_atfork);
    if (coro__post_prepare() != 0)
        return NULL;
    pool_t *p = coro__calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->max = pool_size();
    p->sched = coro__self();
    if (!(p->tids = coro__calloc((size_t)p->max, sizeof *p->tids))) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->grow, NULL);
    if (start_starter(p) != 0) {
        int e = errno;
        pool_free(p);
        errno = e;
        return NULL;
    }
    if (coro__at_exit(pool_stop, p) != 0) {
        int e = errno;
        pthread_mutex_lock(&p->lock);
        p->stopping = 1;
        pthread_cond_signal(&p->grow);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->starter, NULL);
        pool_free(p);
        errno = e;
        return NULL;
    }
    thread_pool = p;
    return p;
}

/* ---- running a job ------------------------------------------------------- */

/* discard(arg), if given, keeping errno: a call that fails before its job
 * was queued owes it too. */
static void discard_now(void (*discard)(void *), void *arg)
{
    if (discard) {
        int e = errno;
        discard(arg);
        errno = e;
    }
}

/* Queue fn(arg), wait for it. On success *status gets fn's result and
 * arg is the caller's again; on failure (-1) the job is dropped or left to
 * finish, and discard(arg), if given, runs once nobody can use it (at once
 * when the job never started or was never queued). */
static int pool_run(coro_fn fn, void *arg, void (*discard)(void *), int *status)
{
    pool_t *p = NULL;
    job_t *j = NULL;
    if (__builtin_expect(coro__sim_active(), 0)) {
        /* A simulation runs the job inline, at no virtual cost: a thread
         * would make the order the kernel's. */
        if (coro__checkpoint() != 0) {
            discard_now(discard, arg);
            return -1;
        }
        int st = fn(arg);
        if (status)
            *status = st;
        return 0; /* arg is the caller's again: no release */
    }
    if (coro__checkpoint() != 0 || !(p = pool_get()) || !(j = coro__calloc(1, sizeof *j))) {
        discard_now(discard, arg);
        return -1;
    }
    j->post.fn = job_completed;
    j->fn = fn;
    j->arg = arg;
    j->discard = discard;
    j->state = JOB_QUEUED;

    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    /* One more worker when the queue outgrows the idle ones and those on
     * their way: the starter makes it; this thread only asks. */
    if (p->queued > p->idle + p->wanted && p->threads + p->wanted < p->max) {
        p->wanted++;
        pthread_cond_signal(&p->grow);
    }
    if (p->idle)
        pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);

    coro__waiter_t w;
    coro_list_init(&w.node);
    j->waiter = &w;
    /* A wait only the worker's post ends (pool_get armed the wake-up). */
    if (coro__park(&w, CORO__PARK_POLL, CORO_NEVER, "blocking job", (const void *)fn, -1) == 0) {
        if (j->state == JOB_FAILED) {
            /* No worker could be started (read on this thread after the
             * post: no lock needed). */
            int e = j->err;
            job_free(j, 1);
            errno = e;
            return -1;
        }
        if (status)
            *status = j->status;
        free(j);
        return 0;
    }
    int e = errno;
    j->waiter = NULL;
    if (j->completed) {
        job_free(j, 1);
    } else {
        pthread_mutex_lock(&p->lock);
        if (j->state == JOB_QUEUED) {
            /* Never started: take it off the queue. */
            job_t **at = &p->head, *prev = NULL;
            while (*at != j) {
                prev = *at;
                at = &(*at)->next;
            }
            *at = j->next;
            if (p->tail == j)
                p->tail = prev;
            p->queued--;
            pthread_mutex_unlock(&p->lock);
            job_free(j, 1);
        } else {
            pthread_mutex_unlock(&p->lock); /* running: its post frees it */
        }
    }
    errno = e;
    return -1;
}

int coro_run_blocking(coro_fn fn, void *arg, int *status)
{
    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    return pool_run(fn, arg, NULL, status);
}

int coro_run_blocking_owned(coro_fn fn, void *arg, void (*release)(void *arg), int *status)
{
    if (!fn) {
        errno = EINVAL;
        discard_now(release, arg);
        return -1;
    }
    return pool_run(fn, arg, release, status);
}

/* ---- getaddrinfo ------------------------------------------------------------ */

typedef struct gai_job {
    char *host, *port;
    struct addrinfo hints;
    int has_hints;
    struct addrinfo *res;
    int rc, err;
} gai_job_t;

static void gai_free(void *arg)
{
    gai_job_t *g = arg;
    if (g->res)
        freeaddrinfo(g->res);
    free(g->host);
    free(g->port);
    free(g);
}

static int gai_run(void *arg)
{
    gai_job_t *g = arg;
    g->rc = getaddrinfo(g->host, g->port, g->has_hints ? &g->hints : NULL, &g->res);
    g->err = errno;
    return 0;
}

/* An EAI_* code as an errno value (see io/io.h). */
static int gai_errno(int rc, int err)
{
    switch (rc) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return ENOENT;
    case EAI_AGAIN: return EAGAIN;
    case EAI_MEMORY: return ENOMEM;
    case EAI_SYSTEM: return err ? err : EIO;
    default: return EINVAL;
    }
}

static int numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return !host || inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int numeric_port(const char *port)
{
    if (!port)
        return 1;
    if (!*port)
        return 0;
    for (const char *c = port; *c; c++)
        if (*c < '0' || *c > '9')
            return 0;
    return 1;
}

static char *dup_or_null(const char *s, int *failed)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = coro__malloc(n);
    if (!d)
        *failed = 1;
    else
        memcpy(d, s, n);
    return d;
}

int coro_getaddrinfo(const char *host, const char *port,
                     const struct addrinfo *hints, struct addrinfo **res)
{
    if (!res || (!host && !port)) {
        errno = EINVAL;
        return -1;
    }
    if (coro__checkpoint() != 0)
        return -1;
    if (numeric_host(host) && numeric_port(port)) {
        /* Numbers only: getaddrinfo answers without any lookup, so it is
         * called here, not on the pool. */
        struct addrinfo h;
        memset(&h, 0, sizeof h);
        if (hints)
            h = *hints;
        h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
        int rc = getaddrinfo(host, port, &h, res);
        if (rc != 0) {
            errno = gai_errno(rc, errno);
            return -1;
        }
        return 0;
    }
    if (coro__sim_active()) {
        /* A name lookup asks the real network: refused in a simulation. */
        errno = EPERM;
        return -1;
    }
    gai_job_t *g = coro__calloc(1, sizeof *g);
    if (!g)
        return -1;
    int failed = 0;
    g->host = dup_or_null(host, &failed);
    g->port = dup_or_null(port, &failed);
    if (hints) {
        g->hints = *hints;
        g->hints.ai_addr = NULL;
        g->hints.ai_canonname = NULL;
        g->hints.ai_next = NULL;
        g->has_hints = 1;
    }
    if (failed) {
        gai_free(g);
        errno = ENOMEM;
        return -1;
    }
    if (pool_run(gai_run, g, gai_free, NULL) != 0)
        return -1; /* g is freed by the pool (now, or once the lookup ends) */
    if (g->rc != 0) {
        int e = gai_errno(g->rc, g->err);
        gai_free(g);
        errno = e;
        return -1;
    }
    *res = g->res;
    g->res = NULL;
    gai_free(g);
    return 0;
}
