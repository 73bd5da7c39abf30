/* sched/sched.h: the scheduler's public API: running a scheduler, spawning
 * and joining coroutines, sleeping, cancellation, deadlines, task groups
 * and observation. Included by <coro.h>.
 *
 * Conventions (see API.md): a call that fails returns -1 (or NULL) and sets
 * errno. Every blocking call is a checkpoint: it fails with ECANCELED once
 * the caller is cancelled (unless shielded) and with ETIMEDOUT once the
 * caller's deadline has passed, both before it would block and while it
 * waits. Blocking calls made outside a coroutine fail with EPERM.
 *
 * THE THREAD BOUNDARY. Each thread runs its own scheduler, and nothing here
 * is shared between them by locks. A call on a handle (coroutine, group)
 * of a scheduler that runs on another thread fails with EPERM and changes
 * nothing (a void call does nothing: coro_detach, coro_group_cancel; and
 * coro_group_free, which says so on stderr). Calls about the caller itself
 * (coro_self, coro_yield, coro_sleep, deadlines, shields, coro_dump,
 * coro_stats) act on the calling thread's own scheduler. Calls that read
 * what never changes work on any thread: coro_now, and coro_id / coro_name
 * of a live handle. The same rule holds in sync/sync.h and io/io.h.
 *
 * SIGNAL HANDLERS. No coro call is async-signal-safe. Wait for signals
 * with coro_signal_wait (io/io.h) instead of calling coro from a handler.
 * A yield or a blocking call made from a handler that runs on the
 * alternate signal stack, or that interrupted a switch or a park, is
 * caught and aborts with a message on stderr (it would resume a saved
 * context on the wrong stack); other handler calls are not detected. */
#ifndef CORO_SCHED_SCHED_H
#define CORO_SCHED_SCHED_H

#include "coro/coro.h"

#ifdef __cplusplus
extern "C" {
#endif

CORO_PUBLIC_BEGIN

/* ---- Running ----------------------------------------------------------- */

/* Start a scheduler on the calling thread, run fn(arg) as the first
 * coroutine (named "main") and return when every coroutine has finished.
 * Returns fn's status.
 * Errors: EINVAL fn is NULL; EBUSY this thread already runs a scheduler;
 * ENOMEM no memory for the scheduler or the first coroutine; EMFILE/ENFILE
 * no descriptor for the poller (epoll/kqueue instance); EDEADLK every
 * coroutine is blocked and nothing (timer, fd, signal, blocking job) can ever
 * wake one: a dump goes to stderr, the blocked coroutines are cancelled
 * (shields overridden) so they unwind, and -1 is returned.
 * The unwind never gives up half-way: coro_main returns only once every
 * coroutine has ended. A coroutine cancelled by it can never block again
 * (each later blocking call fails at once with ECANCELED, also after it
 * catches one and retries), so by then none of its waiters is left in any
 * object's wait list, and objects that outlive coro_main (a static mutex,
 * semaphore, event, channel, group) work in the next coro_main. They are
 * left as the unwinding code left them: a lock, permit or item handed over
 * before the cancellation came is the receiver's (its call returned 0):
 * a mutex whose owner ends without unlocking stays locked for good, a
 * permit acquired and never released stays taken. A coroutine that
 * ignores the errors and loops forever without returning keeps coro_main
 * from returning (nothing preempts it).
 * Coroutines left unjoined when it returns are freed; their handles die.
 * The thread's signal mask is recorded when it starts and restored
 * exactly when it returns, on every path (see coro_signal_wait for the
 * signals coro blocked meanwhile).
 *
 * fork(): in the child, every scheduler of the parent is dead, the
 * calling thread's too (also when fork was called from a coroutine): it
 * never touches the parent's poller (its inherited descriptors are closed
 * in the child, which changes none of the parent's registrations), every
 * call that needs a scheduler fails with EPERM as outside coro_main, the
 * thread's signal mask is the one from before that coro_main, and the
 * blocking pool is gone. coro_main starts a fresh scheduler in the child,
 * also from inside the inherited coroutine's stack (deep enough for it:
 * the default 128 KiB is). The dead scheduler's memory is abandoned, not
 * freed; objects it used (coroutine handles, channels, locks, groups) must
 * not be used in the child. A child that does not exec should end with
 * _exit(), not exit(): the parent's atexit handlers and stdio buffers are
 * not the child's, and a leak checker at exit would count the dead
 * coroutines' names as lost (Valgrind sees them as still reachable).
 * A child made by _Fork() or a raw clone (no atfork handlers) is not
 * covered. */
int coro_main(coro_fn fn, void *arg);

/* A deterministic simulation: coro_main_opts with opts->sim runs fn on a
 * scheduler whose clock is virtual and whose choices come from one seed.
 *  - Virtual time: coro_now() starts at the same value in every run
 *    (1000 s) and moves only when every coroutine is blocked, then straight
 *    to the earliest timer or deadline: an hour of sleeps takes
 *    microseconds, a deadline fires exactly at its limit.
 *  - Seeded order: which ready coroutine runs next, and which ready case a
 *    coro_select takes, are drawn from the seed; the same seed gives the
 *    same run step for step (coro_sim_trace tells), another seed another.
 *  - Replay: seed 0 chooses one and prints it; CORO_SIM_SEED=<n> in the
 *    environment overrides the seed; when the run fails (fn's status is
 *    non-zero, or a deadlock: -1/EDEADLK after the usual dump) stderr says
 *    "replay with CORO_SIM_SEED=<n>"; so does an abort(3) during the run
 *    (the library's own reports and assert(3) end in one): a SIGABRT
 *    handler is installed for the simulation's length, chaining to the
 *    program's own, and the old action is put back at the end.
 *  - Escapes are refused, never silently nondeterministic: waiting on a
 *    real descriptor (a pipe, a terminal, a socket not made by the
 *    simulated network's calls)
 *    and coro_signal_wait fail with EPERM, as does a coro_getaddrinfo that
 *    needs a lookup; coro_run_blocking runs its job inline, at no virtual
 *    cost. Another thread's calls on the simulation's objects fail with
 *    EPERM as always.
 *  - The socket calls of io/io.h work on a simulated network (see "The
 *    simulated network" there): deliveries take latency_min..latency_max
 *    ns of virtual time, and each call draws a fault with probability
 *    fault_rate (EINVAL outside 0..1, a negative latency, or min > max). */
typedef struct coro_sim {
    uint64_t seed;          /* 0: one is chosen and printed; CORO_SIM_SEED overrides */
    double   fault_rate;    /* 0..1 */
    int64_t  latency_min, latency_max;  /* simulated network delivery, ns */
} coro_sim_t;

/* Options of coro_main_opts; zero every field you do not set
 * (`coro_main_opts_t o = { .pool_threads = 4 };`). */
typedef struct coro_main_opts {
    /* Non-NULL: run as a deterministic simulation (see coro_sim_t). */
    const coro_sim_t *sim;
    /* >= 2: a run of that many schedulers, one per thread (see RUNS OF
     * SEVERAL SCHEDULERS below). 0 or 1: one scheduler, on the calling
     * thread. */
    int threads;
    /* The blocking pool's size (coro_run_blocking, coro_getaddrinfo): at
     * most that many jobs run at once, on threads started as needed. 0:
     * the default, which is CORO_POOL_THREADS from the environment when it
     * holds a number from 1 to 1024, else the number of online CPUs (at
     * least 1). A value given here wins over CORO_POOL_THREADS. */
    int pool_threads;
} coro_main_opts_t;

/* coro_main with options; opts NULL is coro_main(fn, arg). Returns as
 * coro_main, with its errors, and: EINVAL threads or pool_threads negative,
 * threads or pool_threads above 1024, a sim with threads >= 2 (a
 * simulation runs on one thread), a bad sim (see coro_sim_t) or a
 * CORO_SIM_SEED that is not a decimal number; EAGAIN (or pthread_create's
 * other errors) a thread of a run could not be started.
 *
 * RUNS OF SEVERAL SCHEDULERS (threads >= 2): thread per core, no
 * migration. Scheduler 0 runs on the calling thread, schedulers 1 ..
 * threads-1 on threads started for the run; every one runs fn(arg) as its
 * main coroutine (coro_thread_index tells them apart). Each is a whole
 * scheduler of its own: its coroutines, timers, descriptors, blocking
 * pool (pool_threads each) and stacks never move to another thread, and
 * the thread boundary above holds between them, except where a call says
 * otherwise: coro_spawn_on, and coro_join, coro_cancel and coro_detach of
 * a coroutine of another scheduler of the run.
 * The run lasts until no coroutine is left on any scheduler: a scheduler
 * whose coroutines have all ended waits (another may still spawn on it).
 * Then it returns -1/EDEADLK if the run was deadlocked (below), else the
 * first non-zero status of the main coroutines by index (with that
 * scheduler's errno), else 0.
 * Deadlock: when every scheduler is blocked with nothing that can wake
 * any of them (no ready coroutine, timer, descriptor, blocking job or
 * signal wait, and no message between schedulers on its way) while
 * coroutines remain, the run is deadlocked: stderr gets a dump of every
 * scheduler's coroutines, under its index, and they are all cancelled,
 * shields overridden, as in a lone coro_main.
 * Signals: the run's other threads block every signal except those the
 * kernel sends to the thread that caused them (SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL, SIGTRAP, SIGSYS, SIGABRT), so a signal sent to the process is
 * delivered to the calling thread as without a run. coro_signal_wait works
 * on scheduler 0; on another scheduler it sees a signal only if the
 * calling thread blocks it too (block it before coro_main_opts, or wait on
 * scheduler 0 and pass the news on). */
int coro_main_opts(coro_fn fn, void *arg, const coro_main_opts_t *opts);

/* This scheduler's index in its run (0 .. coro_thread_count()-1; 0 in a
 * lone coro_main); -1 on a thread that runs no scheduler. */
int coro_thread_index(void);
/* The number of schedulers of the caller's run: 1 in a lone coro_main, 0
 * on a thread that runs no scheduler. */
int coro_thread_count(void);

/* 64 random bits. In a simulation they are drawn from its seed (so a
 * program's own random choices, such as a retry's jitter, replay with
 * the run); elsewhere from a per-thread generator seeded from the clock.
 * Not for cryptography. Any thread, no errors. */
uint64_t coro_random(void);

/* The running simulation's seed (as given, from CORO_SIM_SEED, or
 * chosen); 0 outside one. */
uint64_t coro_sim_seed(void);
/* A hash of every choice the running simulation has drawn and every step
 * of its clock so far: two runs with equal traces at the same point took
 * the same path. 0 outside a simulation. */
uint64_t coro_sim_trace(void);

/* ---- Coroutines -------------------------------------------------------- */

/* Create a coroutine running fn(arg), ready at once: it runs when the
 * caller next switches out (coro_yield, or a call that has to wait; a
 * checkpoint that need not wait, such as an uncontended lock, does not
 * switch). Must be called from a
 * coroutine. Errors: EINVAL fn NULL, bad opts->stack_size or an unknown bit in opts->flags; EPERM no
 * scheduler on this thread; ENOMEM out of memory, address space or
 * mappings. The handle must be joined or detached.
 * The child inherits nothing of its spawner's scope: it starts with no
 * deadline (CORO_NEVER) whatever coro_timeout the spawner is under, not
 * cancelled even if the spawner is, and unshielded. To bound a child, set
 * its deadline in the child (pass the time in arg), or cancel it or its
 * group when the spawner's deadline passes. */
coro_t *coro_spawn(coro_fn fn, void *arg);
coro_t *coro_spawn_opts(coro_fn fn, void *arg, const coro_opts_t *opts);

/* coro_spawn on scheduler `index` of the caller's run (its own index:
 * coro_spawn). The new coroutine runs fn(arg) there; the handle may be
 * joined, cancelled or detached from any scheduler of the run (it must
 * be joined or detached, once). The caller waits while the other
 * scheduler makes the coroutine (a message there and back); not a
 * checkpoint. Errors: EPERM not called from a coroutine; EINVAL fn NULL
 * or no scheduler with that index; ENOMEM (the caller's or the other
 * scheduler's memory); ECANCELED a deadlock's unwind ended the wait (the
 * coroutine, if made, is detached). */
coro_t *coro_spawn_on(int index, coro_fn fn, void *arg);
/* coro_spawn_on with coro_spawn_opts' options (stack size, name, flags),
 * made on the other scheduler; opts may be NULL, and need not outlive the
 * call (the name is copied). Errors: as coro_spawn_on, and EINVAL for
 * options coro_spawn_opts refuses. */
coro_t *coro_spawn_on_opts(int index, coro_fn fn, void *arg, const coro_opts_t *opts);

/* Wait for c to end, store its status (if status is not NULL), free it.
 * A checkpoint. c may belong to another scheduler of the caller's run
 * (the join is then made there, and c is freed there once the caller has
 * its status). Errors: EDEADLK c is the caller; EINVAL c is NULL,
 * detached, owned by a group, the main coroutine, already being joined,
 * or was freed (see STALE HANDLES below); EPERM outside a coroutine, or c
 * belongs to a scheduler running on another thread outside the caller's
 * run; ECANCELED/ETIMEDOUT the caller was cancelled or its deadline
 * passed: c keeps running and stays joinable. */
int coro_join(coro_t *c, int *status);

/* Let c be freed when it ends; it can no longer be joined. Ignores NULL,
 * stale handles, group children, a coroutine already being joined and
 * another thread's coroutine, unless that thread's scheduler is in the
 * caller's run (then it is done there, a moment later).
 *
 * STALE HANDLES. A coroutine's struct lives at the top of its stack, and
 * stacks are reused. A handle to a freed coroutine is recognised (EINVAL)
 * until its stack is reused for a coroutine placed at the same address:
 * each reuse of a stack moves the struct by one cache line, through 8
 * positions, so that takes at least 8 reuses of that stack (often only 8
 * spawns, in a spawn/join loop). After that, or once the stack has been
 * unmapped, the handle is simply dangling, as after free(): a pointer
 * cannot tell one coroutine from a later one at its address. Keep ids
 * (coro_id), never addresses, to name a coroutine that may have ended. */
void coro_detach(coro_t *c);

/* Cancel c: its current checkpoint (if it is parked) and every later one
 * fail with ECANCELED, unless it has shielded itself. Sticky and
 * idempotent; cancelling a finished or never-started coroutine is harmless
 * (a never-started one still runs and meets ECANCELED at its first
 * checkpoint). Returns 0. Errors: EINVAL c is NULL or a stale handle;
 * EPERM c is a live coroutine of a scheduler running on another thread,
 * outside the caller's run
 * (also when no scheduler runs on this thread; a NULL or dead handle there
 * is EINVAL). */
int coro_cancel(coro_t *c);
/* A coroutine of another scheduler of the caller's run is cancelled
 * there: coro_cancel sends the request and returns 0 (ENOMEM if it
 * cannot); the coroutine sees it once its scheduler has taken the
 * message, which it does between two of its switches. */

/* Go to the back of the ready queue; other ready coroutines, expired timers
 * and ready I/O get their turn. Not a checkpoint: never fails. */
void coro_yield(void);

/* Sleep for ns nanoseconds (<= 0 is a plain checkpoint), or until the
 * monotonic time `when`. Returns 0 once the time has come.
 * Errors: ECANCELED, ETIMEDOUT (the caller's deadline came first), EPERM. */
int coro_sleep(int64_t ns);
int coro_sleep_until(int64_t when);

/* The calling coroutine, NULL outside one. */
coro_t *coro_self(void);
/* Monotonic time in nanoseconds. */
int64_t coro_now(void);
/* A coroutine's id and name ("" if none). Ids are unique in the process
 * and never reused, across threads and coro_main runs (64-bit, handed out
 * in blocks per thread, so they grow but are not consecutive); 0 for
 * NULL. Both read only what never changes: any thread may ask, of a live
 * handle. */
uint64_t coro_id(const coro_t *c);
const char *coro_name(const coro_t *c);

/* on != 0: cancellation is held back (deadlines still apply) so cleanup may
 * block. Returns the previous value; -1/EPERM outside a coroutine. */
int coro_shield(int on);
/* 1 if the caller has been cancelled (shielded or not), else 0. */
int coro_cancelled(void);

/* ---- Deadlines (timeout scopes) ---------------------------------------- */

/* deadline = min(current, now + ns); returns the old deadline, to be given
 * back to coro_set_deadline(). Outside a coroutine they do nothing and
 * return CORO_NEVER (errno EPERM). */
int64_t coro_timeout(int64_t ns);
int64_t coro_set_deadline(int64_t when);
int64_t coro_deadline(void);

/* ---- Structured concurrency -------------------------------------------- */

typedef struct coro_group coro_group_t;
/* A group's flags: FAILFAST or COLLECT, optionally with REAP (|). */
enum {
    CORO_GROUP_FAILFAST = 0, /* first non-zero status cancels the others */
    CORO_GROUP_COLLECT = 1,  /* let every child finish */
    CORO_GROUP_REAP = 2      /* free each child as soon as it ends */
};

/* Without CORO_GROUP_REAP a group keeps every ended child (its status, its
 * handle and its whole stack) until coro_group_next hands it out or
 * coro_group_wait/coro_group_free collect it: a group that is waited on
 * only at the end (a server's connections) grows with every child it ever
 * had (coro_stats_t.group_held counts them).
 *
 * CORO_GROUP_REAP: an ended child is freed at once: its handle is dead when
 * it ends, and its stack goes back to the pool as a detached coroutine's
 * does (at the next end, the next spawn or when the scheduler idles); the
 * group keeps only the count of children still running and its first
 * non-zero status. Everything else holds as without it: coro_group_wait
 * returns 0 or the first non-zero status in completion order, FAILFAST |
 * REAP cancels the other children on the first failure (COLLECT | REAP
 * does not), coro_group_cancel cancels every child still running, and
 * coro_group_wait/coro_group_free return only once every child has ended.
 * coro_group_next needs the ended children, so it fails with EINVAL on a
 * REAP group.
 * The handle coro_group_spawn returns for a REAP child is valid only while
 * the child has not ended: from the moment its body returns the handle is
 * dangling, as after free(); the same memory soon holds another coroutine.
 * While the child runs, the handle may be given to coro_cancel (the child
 * then ends through its ECANCELED paths and is freed; the group counts its
 * status as any other), coro_id and coro_name; coro_join and coro_detach
 * refuse it as they refuse any group child (EINVAL; ignored). Cancel a REAP
 * child by its handle only from code that knows it still runs: the child
 * itself, or code the child tells before it returns (it removes itself
 * from the table its handle is kept in, say). A call with an ended child's
 * handle is detected (EINVAL) only while its stack lies unused in the
 * pool; once reused it would reach the coroutine that lives there now.
 * To cancel every child, coro_group_cancel needs no handle and is always
 * safe. */

/* Errors: EINVAL unknown flags; ENOMEM. */
coro_group_t *coro_group_new(int flags);
/* A group belongs to the scheduler of its first child: the calls below,
 * on another running scheduler's group, fail with EPERM (cancel and free
 * do nothing; free says so on stderr). */
/* As coro_spawn; the child belongs to the group (never join or detach it).
 * Like coro_spawn's, the child does not inherit its spawner's deadline,
 * cancellation or shield; a coro_group_wait that times out or is cancelled
 * cancels the children. On a REAP group the handle is valid only until the
 * child ends (above). */
coro_t *coro_group_spawn(coro_group_t *g, coro_fn fn, void *arg);
coro_t *coro_group_spawn_opts(coro_group_t *g, coro_fn fn, void *arg,
                              const coro_opts_t *o);
/* Wait until every child has ended; returns 0 or the first non-zero status
 * (in completion order), with errno set to 0 so that a child's own -1 can
 * be told from a failure of the call (errno non-zero). If the waiter is
 * cancelled or its deadline passes, the children are cancelled and waited
 * for before it returns -1 with ECANCELED/ETIMEDOUT: no child outlives its
 * group. EINVAL g NULL; EPERM outside a coroutine or another running
 * scheduler's group. */
int coro_group_wait(coro_group_t *g);
/* The next child to end, in completion order; *status gets its status. The
 * handle stays valid until the next call on the group. NULL+ENOENT when
 * none is left; NULL+ECANCELED/ETIMEDOUT (children keep running);
 * NULL+EINVAL g is NULL or a REAP group (which keeps no ended child). */
coro_t *coro_group_next(coro_group_t *g, int *status);
/* Cancel every child still running. Does nothing on another running
 * scheduler's group. */
void coro_group_cancel(coro_group_t *g);
/* Cancel and wait for any children left, then free the group. Waiting
 * needs a coroutine: called outside one while children still run, it
 * says so on stderr and frees nothing (the group stays usable). On another
 * running scheduler's group it frees nothing, sets EPERM and says so on
 * stderr. */
void coro_group_free(coro_group_t *g);

/* ---- Observing --------------------------------------------------------- */

/* Write every coroutine of the calling thread's scheduler (id, name,
 * state, what it waits on, for how long) to fd. Outside a scheduler it
 * writes a one-line note. From a coroutine of a run of several
 * schedulers it covers them all, in index order, each part headed
 * "coro: scheduler i of N:" and written by that scheduler's thread while
 * the caller waits.
 *
 * CORO_DEBUG=slow:<n>[ns|us|ms|s] (ms without a unit) in the environment
 * when coro_main starts: whenever a coroutine switches out after running
 * longer than that without reaching a checkpoint, a line on stderr names
 * it ("coro: slow: coroutine 5 "parser" ran 120 ms ..."). It is reported
 * when the coroutine finally yields, so a coroutine that never does is not
 * named (the whole loop is stuck; attach a debugger). */
void coro_dump(int fd);

typedef struct coro_stats {
    uint64_t switches;        /* context switches so far */
    uint64_t spawned;         /* coroutines created */
    uint64_t live;            /* coroutines not yet ended */
    uint64_t io_waits;        /* coroutines parked on a descriptor now */
    uint64_t timers;          /* armed timers (sleeps and deadlines) now */
    int64_t max_loop_lag_ns;  /* worst lateness of a timer so far */
    uint64_t group_held;      /* ended group children whose group still keeps
                                 them (never a REAP group's): not yet
                                 collected by coro_group_wait/free, or the
                                 one coro_group_next handed out last */
} coro_stats_t;
/* The calling thread's scheduler's counters; zeroes *out outside one.
 * From a coroutine of a run: the sum over its schedulers (the worst
 * lag), each asked on its own thread while the caller waits. */
void coro_stats(coro_stats_t *out);

CORO_PUBLIC_END

#ifdef __cplusplus
}
#endif

#endif /* CORO_SCHED_SCHED_H */
