/* sched/sim.c: deterministic simulation, the scheduler's half: a virtual
 * clock that moves only when every coroutine is blocked (then straight to
 * the earliest timer), and one seeded generator that draws which ready
 * coroutine runs next (and which ready case a select takes). The same seed
 * gives the same run, step for step; a hash of every draw and every clock
 * step tells two runs apart (coro_sim_trace).
 *
 * How it plugs in: a simulation's passes have length 0 (as in
 * CORO_DEBUG=slow), so every switch goes through coro__pass_end, which
 * asks coro__sim_pick; the loop asks coro__sim_advance instead of
 * sleeping in the poller; coro__clock reads the virtual clock. Nothing of
 * it is on the path of a scheduler that does not simulate. */
#include "sched/sched_int.h"
#include "coro/fault.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Where the virtual clock starts in every run: 1000 s, far from 0 so that
 * "now - x" arithmetic in programs never goes negative. */
#define SIM_EPOCH ((int64_t)1000 * CORO_SEC)

/* splitmix64: a full-period generator whose every seed, 0 included, gives
 * a good stream. */
static uint64_t next_random(coro__sim_t *sim)
{
    uint64_t z = (sim->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform draw below n (n > 0). */
static uint64_t below(coro__sim_t *sim, uint64_t n)
{
    /* Lemire's multiply-shift; the bias for the small n used here is far
     * below anything a test could see, and it is deterministic. */
    return (uint64_t)(((unsigned __int128)next_random(sim) * n) >> 64);
}

static void mix(coro__sim_t *sim, uint64_t v)
{
    /* FNV-1a over the eight bytes of v. */
    uint64_t h = sim->trace;
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 0x100000001B3ull;
    }
    sim->trace = h;
}

/* ---- an abort names the seed ----------------------------------------------- */

/* The seed of the simulation that installed the handler (the latest, if
 * several threads simulate), for the SIGABRT handler to print. */
static volatile sig_atomic_t abort_armed;
static uint64_t abort_seed;
static struct sigaction abort_chain;

/* Async-signal-safe: digits by hand, write(2). */
static void on_abort(int sig)
{
    if (abort_armed) {
        char buf[96] = "coro: simulation aborted; replay with CORO_SIM_SEED=";
        size_t n = strlen(buf);
        char digits[24];
        size_t d = 0;
        uint64_t v = abort_seed;
        do {
            digits[d++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (d)
            buf[n++] = digits[--d];
        buf[n++] = '\n';
        ssize_t w = write(STDERR_FILENO, buf, n);
        (void)w;
    }
    /* Then whatever was there before: a handler of the program's, or the
     * default (abort(3) raises again once a handler returns). */
    if (abort_chain.sa_handler != SIG_DFL && abort_chain.sa_handler != SIG_IGN &&
        !(abort_chain.sa_flags & SA_SIGINFO))
        abort_chain.sa_handler(sig);
    else
        signal(SIGABRT, SIG_DFL);
}

static void abort_arm(coro__sim_t *sim)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_abort;
    sigemptyset(&sa.sa_mask);
    abort_seed = sim->seed;
    if (sigaction(SIGABRT, &sa, &sim->old_abort) == 0) {
        abort_chain = sim->old_abort;
        abort_armed = 1;
    }
}

static void abort_disarm(coro__sim_t *sim)
{
    if (abort_armed) {
        abort_armed = 0;
        sigaction(SIGABRT, &sim->old_abort, NULL);
    }
}

/* CORO_SIM_SEED: 1 and *seed set, 0 when unset, -1 when it is not a whole
 * decimal number. */
static int seed_from_env(uint64_t *seed)
{
    const char *v = getenv("CORO_SIM_SEED");
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || *v == '-')
        return -1;
    *seed = x;
    return 1;
}

static uint64_t chosen_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
                 (uint64_t)getpid() << 32;
    x ^= x >> 29;
    return x ? x : 1;
}

int coro__sim_start(coro__sched_t *s, const coro_sim_t *cfg)
{
    if (!(cfg->fault_rate >= 0.0 && cfg->fault_rate <= 1.0) || cfg->latency_min < 0 ||
        cfg->latency_max < cfg->latency_min) {
        errno = EINVAL;
        return -1;
    }
    uint64_t seed = cfg->seed;
    int from_env = seed_from_env(&seed);
    if (from_env < 0) {
        fprintf(stderr, "coro: CORO_SIM_SEED=%s is not a seed (a decimal number)\n",
                getenv("CORO_SIM_SEED"));
        errno = EINVAL;
        return -1;
    }
    if (!from_env && seed == 0) {
        seed = chosen_seed();
        fprintf(stderr, "coro: simulation seed %" PRIu64 " (CORO_SIM_SEED=%" PRIu64
                        " replays this run)\n", seed, seed);
    }
    coro__sim_t *sim = coro__calloc(1, sizeof *sim);
    if (!sim)
        return -1;
    sim->seed = seed;
    sim->rng = seed;
    sim->trace = 0xCBF29CE484222325ull;
    sim->now = SIM_EPOCH;
    sim->fault_rate = cfg->fault_rate;
    sim->latency_min = cfg->latency_min;
    sim->latency_max = cfg->latency_max;
    s->sim = sim;
    s->loop_now = sim->now;
    abort_arm(sim);
    return 0;
}

void coro__sim_end(coro__sched_t *s, int status, int deadlocked)
{
    coro__sim_t *sim = s->sim;
    if (deadlocked || status != 0) {
        fprintf(stderr, "coro: simulation failed (%s%d) after %" PRIu64 " steps at virtual time "
                        "%" PRId64 " ns; replay with CORO_SIM_SEED=%" PRIu64 "\n",
                deadlocked ? "deadlock; status " : "status ", status, sim->steps,
                sim->now - SIM_EPOCH, sim->seed);
    }
    coro__sim_free(s);
}

void coro__sim_free(coro__sched_t *s)
{
    coro__sim_t *sim = s->sim;
    if (!sim)
        return;
    abort_disarm(sim);
    s->sim = NULL;
    free(sim);
}

coro_t *coro__sim_pick(coro__sched_t *s)
{
    size_t n = s->runq_len;
    if (n == 0)
        return NULL;
    coro__sim_t *sim = s->sim;
    size_t k = n == 1 ? 0 : (size_t)below(sim, n);
    mix(sim, (uint64_t)k << 32 | (uint64_t)n);
    sim->steps++;
    /* Unlink the k-th of the singly linked queue. */
    coro_t *prev = NULL, *c = s->runq_head;
    for (size_t i = 0; i < k; i++) {
        prev = c;
        c = c->next_ready;
    }
    if (prev)
        prev->next_ready = c->next_ready;
    else
        s->runq_head = c->next_ready;
    if (s->runq_tail == c)
        s->runq_tail = prev;
    c->next_ready = NULL;
    s->runq_len--;
    s->switches++; /* a dispatch outside the pass's count (passes are empty) */
    return c;
}

void coro__sim_advance(coro__sched_t *s)
{
    coro__sim_t *sim = s->sim;
    int64_t next = coro__timer_next(s);
    if (next > sim->now) {
        sim->now = next;
        mix(sim, (uint64_t)next);
    }
}

uint64_t coro_random(void)
{
    coro__sched_t *s = coro__tls;
    if (s && s->sim) {
        uint64_t r = next_random(s->sim);
        mix(s->sim, r);
        return r;
    }
    /* Outside a simulation: a per-thread stream seeded once from the clock
     * and the thread's own address. */
    static __thread coro__sim_t local;
    if (!local.seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        local.seed = 1;
        local.rng = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
                    (uint64_t)(uintptr_t)&local;
    }
    return next_random(&local);
}

uint64_t coro_sim_seed(void)
{
    coro__sched_t *s = coro__tls;
    return s && s->sim ? s->sim->seed : 0;
}

uint64_t coro_sim_trace(void)
{
    coro__sched_t *s = coro__tls;
    return s && s->sim ? s->sim->trace : 0;
}

int coro__sim_active(void)
{
    coro__sched_t *s = coro__tls;
    return s && s->sim;
}

uint32_t coro__sim_below(uint32_t n)
{
    coro__sim_t *sim = coro__tls->sim;
    uint32_t r = (uint32_t)below(sim, n);
    mix(sim, (uint64_t)r << 32 | n);
    return r;
}

int64_t coro__sim_latency(void)
{
    coro__sim_t *sim = coro__tls->sim;
    uint64_t span = (uint64_t)(sim->latency_max - sim->latency_min);
    uint64_t r = span == UINT64_MAX ? next_random(sim) : below(sim, span + 1);
    mix(sim, r ^ 0x4c4154ull);
    return sim->latency_min + (int64_t)r;
}

int coro__sim_fault(void)
{
    coro__sim_t *sim = coro__tls->sim;
    if (!(sim->fault_rate > 0.0))
        return 0; /* no draw at all: a run without faults keeps its trace */
    /* 53 random bits as a double in [0, 1). */
    double u = (double)(next_random(sim) >> 11) * (1.0 / 9007199254740992.0);
    int hit = u < sim->fault_rate;
    mix(sim, 0x46415500ull | (uint64_t)hit);
    return hit;
}
