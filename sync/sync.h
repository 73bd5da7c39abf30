/* sync/sync.h: synchronisation between coroutines of one scheduler:
 * mutex, read-write lock, semaphore, condition, event, wait group, once,
 * channels with select, and generators. Included by <coro.h>.
 *
 * Every wait is FIFO-fair, allocates nothing, and is a checkpoint: it fails
 * with ECANCELED (cancelled, unless shielded) or ETIMEDOUT (the caller's
 * deadline passed) before it would block and while it waits, and with
 * EPERM outside a coroutine. Unlocks, releases, signals, sets and closes
 * never block and never fail with those two.
 *
 * Hand-offs are never lost: an unlock, release, signal or send that picks
 * a waiter hands the lock, permit, wake-up or item to it there and then;
 * if that waiter is cancelled or times out before it runs, its call still
 * succeeds (the cancellation shows at its next checkpoint). A waiter that
 * has already been woken for another reason is skipped, and the next one
 * gets it.
 *
 * The embeddable objects (mutex, rwlock, sem, cond, event, wg, once) have
 * static initialisers and need no allocation; do not copy one once used.
 *
 * THE THREAD BOUNDARY. Every object here (the embeddable ones, channels,
 * generators) belongs to one scheduler: the scheduler of the first
 * coroutine that uses it, for as long as that scheduler runs. A call on it
 * from any other thread (another scheduler's, or a plain thread without
 * one) fails with EPERM and changes nothing; void calls (coro_chan_free,
 * coro_gen_free) do nothing there but say so on stderr. Before any
 * coroutine has used an object, a plain thread may (main() filling a
 * channel before coro_main, say); once its scheduler has ended the object
 * is free again, and the next scheduler to use it takes it over. The
 * initialisers and coro_chan_cap (which never changes) work anywhere.
 * The check is one compare, and exact whenever the other thread's use is
 * ordered with the call (a join, a lock, an atomic); two threads using one
 * object at the same time with no ordering at all is a data race that it
 * may miss. A later version may make chosen calls thread-safe; today none
 * is.
 *
 * Ownership (the mutex owner, the rwlock writer) is a coroutine id
 * (coro_id), never an address: a coroutine created later on a recycled
 * stack is a different owner. */
#ifndef CORO_SYNC_SYNC_H
#define CORO_SYNC_SYNC_H

#include "coro/coro.h"

#ifdef __cplusplus
extern "C" {
#endif

CORO_PUBLIC_BEGIN

/* ---- Mutex --------------------------------------------------------------- */

/* Each object's last field, `home`, is private: the scheduler it belongs
 * to (NULL until a coroutine uses it). */
typedef struct coro_mutex {
    uint64_t owner;        /* coro_id of the owner, 0 when free */
    coro_list_t waiters;   /* FIFO of parked lockers */
    void *home;
} coro_mutex_t;
#define CORO_MUTEX_INIT { 0, { NULL, NULL }, NULL }

void coro_mutex_init(coro_mutex_t *m);
/* Errors: EDEADLK the caller holds it; EINVAL m NULL; ECANCELED,
 * ETIMEDOUT, EPERM (outside a coroutine, or m belongs to another running
 * scheduler: true of every call below that lists EPERM). */
int coro_mutex_lock(coro_mutex_t *m);
/* Errors: EBUSY held (by anyone, the caller included); EINVAL; EPERM. */
int coro_mutex_trylock(coro_mutex_t *m);
/* Hands the mutex straight to the first waiter. Errors: EPERM the caller
 * is not the owner; EINVAL. */
int coro_mutex_unlock(coro_mutex_t *m);

/* ---- Read-write lock (writer-preferring, no starvation) ------------------ */

/* Arrivals queue in FIFO order behind a waiting writer, so neither side
 * starves: a release grants the head of the queue (one writer, or every
 * reader up to the next queued writer). */
typedef struct coro_rwlock {
    long readers;          /* readers holding it */
    uint64_t writer;       /* coro_id of the writer holding it, or 0 */
    coro_list_t waiters;
    void *home;
} coro_rwlock_t;
#define CORO_RWLOCK_INIT { 0, 0, { NULL, NULL }, NULL }

void coro_rwlock_init(coro_rwlock_t *l);
/* Errors: EDEADLK the caller holds the write lock; EINVAL; ECANCELED,
 * ETIMEDOUT, EPERM. (A reader may not take the lock twice while a writer
 * waits: that deadlocks, as with any writer-preferring lock.) */
int coro_rwlock_rdlock(coro_rwlock_t *l);
int coro_rwlock_wrlock(coro_rwlock_t *l);
/* Errors: EBUSY; EINVAL; EPERM. */
int coro_rwlock_tryrdlock(coro_rwlock_t *l);
int coro_rwlock_trywrlock(coro_rwlock_t *l);
/* Releases whichever the caller holds. Errors: EPERM not held (as a
 * writer: by the caller); EINVAL. */
int coro_rwlock_unlock(coro_rwlock_t *l);

/* ---- Semaphore ------------------------------------------------------------ */

typedef struct coro_sem {
    long count;            /* permits available */
    coro_list_t waiters;
    void *home;
} coro_sem_t;
#define CORO_SEM_INIT(n) { (n), { NULL, NULL }, NULL }

/* Errors: EINVAL n < 0. */
int coro_sem_init(coro_sem_t *s, long n);
int coro_sem_acquire(coro_sem_t *s);       /* ECANCELED, ETIMEDOUT, EPERM, EINVAL */
int coro_sem_try_acquire(coro_sem_t *s);   /* EAGAIN none available; EPERM, EINVAL */
/* Hands the permit straight to the first waiter. Works outside a
 * coroutine on a sem no scheduler uses. Errors: EOVERFLOW the count would
 * pass LONG_MAX; EPERM s belongs to another running scheduler; EINVAL. */
int coro_sem_release(coro_sem_t *s);
/* The permits available; 0 for NULL; -1/EPERM on another running
 * scheduler's sem. */
long coro_sem_value(const coro_sem_t *s);

/* ---- Condition variable --------------------------------------------------- */

typedef struct coro_cond {
    coro_list_t waiters;
    void *home;
} coro_cond_t;
#define CORO_COND_INIT { { NULL, NULL }, NULL }

void coro_cond_init(coro_cond_t *c);
/* Unlock m, wait for a signal, lock m again. m is held again on return,
 * also on error (relocking ignores cancellation and deadline). Spurious
 * wake-ups do not happen, but re-check your predicate anyway. Errors:
 * EPERM the caller does not hold m (or outside a coroutine); EINVAL;
 * ECANCELED, ETIMEDOUT. */
int coro_cond_wait(coro_cond_t *c, coro_mutex_t *m);
/* Wake the first waiter / every waiter. Work outside a coroutine on a
 * cond no scheduler uses. Errors: EINVAL; EPERM another running
 * scheduler's cond. */
int coro_cond_signal(coro_cond_t *c);
int coro_cond_broadcast(coro_cond_t *c);

/* ---- Event (asyncio.Event) ----------------------------------------------- */

typedef struct coro_event {
    int set;
    coro_list_t waiters;
    void *home;
} coro_event_t;
#define CORO_EVENT_INIT { 0, { NULL, NULL }, NULL }

void coro_event_init(coro_event_t *e);
/* set wakes every waiter and stays set. set and clear work outside a
 * coroutine on an event no scheduler uses. Errors: EINVAL; EPERM another
 * running scheduler's event (wait: as every wait). */
int coro_event_set(coro_event_t *e);
int coro_event_clear(coro_event_t *e);
int coro_event_wait(coro_event_t *e);      /* returns at once while set */
/* 1 or 0; 0 for NULL; -1/EPERM on another running scheduler's event. */
int coro_event_is_set(const coro_event_t *e);

/* ---- Wait group (Go's WaitGroup; Queue.join / task_done) ----------------- */

typedef struct coro_wg {
    long count;
    coro_list_t waiters;
    void *home;
} coro_wg_t;
#define CORO_WG_INIT { 0, { NULL, NULL }, NULL }

void coro_wg_init(coro_wg_t *wg);
/* Errors: EINVAL the count would go below zero (it is left unchanged) or
 * overflow; EPERM another running scheduler's wg (they work outside a
 * coroutine on a wg no scheduler uses). Reaching zero wakes every
 * waiter. */
int coro_wg_add(coro_wg_t *wg, int n);
int coro_wg_done(coro_wg_t *wg);           /* coro_wg_add(wg, -1) */
int coro_wg_wait(coro_wg_t *wg);           /* returns at once at zero */

/* ---- Once ------------------------------------------------------------------ */

typedef struct coro_once {
    int state;             /* 0 not run, 1 running, 2 done */
    coro_list_t waiters;
    void *home;
} coro_once_t;
#define CORO_ONCE_INIT { 0, { NULL, NULL }, NULL }

/* Run fn(arg) the first time; callers meanwhile wait until it has
 * returned. If fn returns non-zero the once is not done, and a later (or
 * waiting) caller runs fn again. Returns fn's status to the caller that
 * ran it, 0 to the others. A checkpoint. Errors: ECANCELED, ETIMEDOUT,
 * EPERM (outside a coroutine, or another running scheduler's once),
 * EINVAL. */
int coro_once(coro_once_t *o, coro_fn fn, void *arg);

/* ---- Channels ------------------------------------------------------------- */

typedef struct coro_chan coro_chan_t;

/* capacity 0: unbuffered rendezvous (the value goes straight from the
 * sender's buffer to the receiver's). Errors: EINVAL elem_size 0;
 * ENOMEM. */
coro_chan_t *coro_chan_new(size_t elem_size, size_t capacity);
/* A SHARED CHANNEL: the calls below (coro_select too, also mixing shared
 * and local channels) work on it from a coroutine of any scheduler and
 * from a plain thread with no scheduler, where the blocking calls block
 * the thread (and a plain thread's select may have only shared cases:
 * EPERM otherwise). It may be made and freed on any thread, outside any
 * coroutine too. Items keep their order, as on a local channel. With a
 * capacity its items go through a lock-free ring (a send that returned 0
 * is received, even with a close right after it); unbuffered, each
 * hand-off takes a short spinlock and is complete before its waiter
 * wakes. A local channel (coro_chan_new) is still faster where one
 * scheduler is enough.
 * Deadlock detection in a run of several schedulers counts a wait on it
 * as a plain wait, unless the channel was made outside a coroutine of the
 * run or has been used by a plain thread, a lone scheduler or another run:
 * then something outside can still end the wait, and it never counts as
 * deadlocked. Freeing it while coroutines or threads wait on it wakes
 * them with EPIPE (as coro_chan_free); no thread may call on it after
 * coro_chan_free has returned. Errors: as coro_chan_new; EINVAL capacity
 * above 2^40. */
coro_chan_t *coro_chan_new_shared(size_t elem_size, size_t capacity);
/* Blocks while full (unbuffered: until a receiver takes it). Errors: EPIPE
 * closed (also when closed while waiting); EINVAL; ECANCELED, ETIMEDOUT,
 * EPERM. */
int coro_chan_send(coro_chan_t *ch, const void *elem);
/* Blocks while empty. Errors: EPIPE closed and drained; as send. */
int coro_chan_recv(coro_chan_t *ch, void *elem);
/* Never block: EAGAIN instead. They work outside a coroutine on a channel
 * no scheduler uses yet; on another running scheduler's channel (from a
 * plain thread too) they fail with EPERM and change nothing. */
int coro_chan_try_send(coro_chan_t *ch, const void *elem);
int coro_chan_try_recv(coro_chan_t *ch, void *elem);
/* Wakes every waiter (senders and receivers get EPIPE); items already
 * buffered stay receivable. Errors: EPIPE already closed; EPERM another
 * running scheduler's channel; EINVAL. */
int coro_chan_close(coro_chan_t *ch);
/* Items buffered now (0 and EPERM for another running scheduler's
 * channel; 0 and EINVAL for NULL). */
size_t coro_chan_len(const coro_chan_t *ch);
/* Never changes: works on any thread (0 and EINVAL for NULL). */
size_t coro_chan_cap(const coro_chan_t *ch);
/* Closes the channel if needed, then frees it; waiters wake with EPIPE and
 * do not touch it again. Later use of the handle is detected while its
 * memory has not been reused: an abort with a message. On another running
 * scheduler's channel it frees nothing, sets EPERM and says so on
 * stderr. */
void coro_chan_free(coro_chan_t *ch);

enum { CORO_SEND = 1, CORO_RECV = 2 };
typedef struct coro_case {
    coro_chan_t *ch;       /* NULL: the case is ignored */
    int op;                /* CORO_SEND or CORO_RECV */
    void *elem;            /* what to send, or where to receive */
    int err;               /* out: 0, or EPIPE if the case completed because
                              its channel is closed (a send did not happen;
                              a receive got nothing) */
} coro_case_t;

/* Wait until one case can complete, complete it, return its index. Among
 * several ready cases the choice is random (fair). A case whose channel is
 * closed (and, for a receive, drained) is ready: it is chosen like any
 * other and its err is EPIPE. Errors (-1): EINVAL cases NULL, n <= 0, a bad
 * op, a NULL elem, or no case with a channel; EPERM a case's channel
 * belongs to another running scheduler; ENOMEM more than 32 cases
 * and no memory for their waiters (up to 32 never allocate); ECANCELED,
 * ETIMEDOUT, EPERM. errno is left alone on success. */
int coro_select(coro_case_t *cases, int n);
/* As coro_select, without blocking: -1/EAGAIN when no case is ready (the
 * "default:" of Go's select). */
int coro_try_select(coro_case_t *cases, int n);

/* ---- Generators ------------------------------------------------------------ */

typedef struct coro_gen coro_gen_t;
typedef int (*coro_gen_fn)(coro_gen_t *g, void *arg);

/* fn runs as its own coroutine, started by the first coro_gen_next.
 * Errors: EINVAL fn NULL or elem_size 0; EPERM outside a coroutine;
 * ENOMEM. */
coro_gen_t *coro_gen_new(coro_gen_fn fn, void *arg, size_t elem_size);
/* The same with the producer coroutine's options (coro_spawn_opts): its
 * stack size, and its name in coro_dump and overflow reports ("generator"
 * when opts or opts->name is NULL). Errors: those of coro_gen_new, and
 * EINVAL for a bad opts->stack_size. */
coro_gen_t *coro_gen_new_opts(coro_gen_fn fn, void *arg, size_t elem_size,
                              const coro_opts_t *opts);
/* Inside fn: hand one value to the consumer and wait for the next
 * coro_gen_next. Errors: ECANCELED (the generator is being freed: return;
 * a value handed over before the failure stays delivered), ETIMEDOUT (a
 * deadline fn set itself), EPERM not called from g's own coroutine (so
 * never from another thread),
 * EINVAL g or elem NULL. */
int coro_gen_yield(coro_gen_t *g, const void *elem);
/* Run fn until it yields a value into *elem (0) or returns (-1/ENOENT, and
 * ENOENT ever after). Switches straight to the producer and back, with no
 * run-queue traffic when no other coroutine is ready (with others ready,
 * the producer takes its turn behind them: a generator loop never starves
 * anyone). Errors: ENOENT fn has returned or g is being freed; EBUSY
 * another coroutine is in coro_gen_next on g; EDEADLK called from fn
 * itself; ECANCELED, ETIMEDOUT (the caller; a value produced meanwhile is
 * kept for the next call), EPERM (outside a coroutine, or g was made on
 * another thread's scheduler, running or ended: its producer lives
 * there), EINVAL. */
int coro_gen_next(coro_gen_t *g, void *elem);
/* fn's return value once it has returned (ENOENT from next), else -1
 * (also with EINVAL for NULL, and with EPERM while g's scheduler runs on
 * another thread; readable anywhere once it has ended). */
int coro_gen_status(const coro_gen_t *g);
/* Cancels fn if it has not finished, waits for it to return, frees g. A
 * generator never started never calls fn. An unfinished generator that is
 * never freed keeps its producer parked forever: coro_main then reports a
 * deadlock. After g's scheduler has ended it only frees the memory (any
 * thread); while that scheduler runs on another thread it frees nothing,
 * sets EPERM and says so on stderr. */
void coro_gen_free(coro_gen_t *g);

CORO_PUBLIC_END

#ifdef __cplusplus
}
#endif

#endif /* CORO_SYNC_SYNC_H */
