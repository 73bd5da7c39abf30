/* sched/dump.c: seeing inside a running scheduler: coro_dump (every
 * coroutine, its state and what it waits on, like Go's goroutine dump),
 * coro_stats, and CORO_DEBUG=slow:<time>, which names a coroutine that ran
 * that long without reaching a checkpoint (it was blocking the loop). */
#include "sched/sched_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *state_name(const coro__sched_t *s, const coro_t *c)
{
    switch (c->state) {
    case CORO_ACTIVE: return c == s->current ? "running" : "ready";
    case CORO_PARKED: return "parked";
    default: return "done";
    }
}

/* "1.5 s", "12 ms", "80 us", "300 ns". */
static void fmt_duration(char *buf, size_t n, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    if (ns >= 10 * CORO_SEC)
        snprintf(buf, n, "%lld s", (long long)(ns / CORO_SEC));
    else if (ns >= CORO_SEC)
        snprintf(buf, n, "%.1f s", (double)ns / 1e9);
    else if (ns >= CORO_MS)
        snprintf(buf, n, "%lld ms", (long long)(ns / CORO_MS));
    else if (ns >= CORO_US)
        snprintf(buf, n, "%lld us", (long long)(ns / CORO_US));
    else
        snprintf(buf, n, "%lld ns", (long long)ns);
}

static void dump_one(int fd, const coro__sched_t *s, const coro_t *c, int64_t now)
{
    char wait[160] = "", since[32], left[32];
    if (c->state == CORO_PARKED) {
        fmt_duration(since, sizeof since, now - c->wait_since);
        int off;
        if (c->wait_num >= 0)
            off = snprintf(wait, sizeof wait, ", %s %lld", c->wait_what, (long long)c->wait_num);
        else if (c->wait_obj)
            off = snprintf(wait, sizeof wait, ", %s %p", c->wait_what, c->wait_obj);
        else
            off = snprintf(wait, sizeof wait, ", %s", c->wait_what);
        if (off < 0 || (size_t)off >= sizeof wait)
            off = (int)strlen(wait);
        off += snprintf(wait + off, sizeof wait - (size_t)off, ", %s", since);
        if (c->timer_index && (size_t)off < sizeof wait) {
            fmt_duration(left, sizeof left, c->timer_when - now);
            snprintf(wait + off, sizeof wait - (size_t)off, ", %s in %s",
                     c->timer_when == c->deadline ? "deadline" : "wakes", left);
        }
    } else if (c->state == CORO_DONE) {
        snprintf(wait, sizeof wait, ", status %d, %s", c->status,
                 c->group_held ? "held by its group" : "not yet joined");
    }
    dprintf(fd, "coroutine %llu \"%s\" [%s%s]%s%s\n",
            (unsigned long long)c->fiber.id, c->fiber.name ? c->fiber.name : "",
            state_name(s, c), wait,
            c->cancelled ? " cancelled" : "", c == s->current ? " <- current" : "");
}

void coro__dump_to(coro__sched_t *s, int fd, const char *headline)
{
    int64_t now = coro__clock();
    size_t n[3] = { 0, 0, 0 };
    for (coro_list_t *l = s->all.next; l != &s->all; l = l->next)
        n[coro_container_of(l, coro_t, all_node)->state]++;
    size_t running = s->current != NULL; /* ACTIVE, and the one running */
    if (headline)
        dprintf(fd, "%s\n", headline);
    dprintf(fd, "coro: %zu coroutines: %zu running, %zu ready, %zu parked, %zu done\n",
            n[CORO_ACTIVE] + n[CORO_PARKED] + n[CORO_DONE], running,
            n[CORO_ACTIVE] - running, n[CORO_PARKED], n[CORO_DONE]);
    for (coro_list_t *l = s->all.next; l != &s->all; l = l->next)
        dump_one(fd, s, coro_container_of(l, coro_t, all_node), now);
}

void coro_dump(int fd)
{
    coro__sched_t *s = coro__tls;
    if (!s) {
        dprintf(fd, "coro: no scheduler runs on this thread\n");
        return;
    }
    if (!s->run || !s->current) {
        coro__dump_to(s, fd, NULL);
        return;
    }
    /* A run: every scheduler in index order, each written on its own
     * thread (its state is its thread's) while the caller waits. */
    int n = coro__thread_count_of(s);
    for (int i = 0; i < n; i++) {
        coro__sched_t *t = coro__run_sched(s, i);
        if (t != s) {
            if (coro__remote_dump(s, t, fd) != 0)
                dprintf(fd, "coro: scheduler %d of %d: no answer (%s)\n", i, n, strerror(errno));
            continue;
        }
        char head[64];
        snprintf(head, sizeof head, "coro: scheduler %d of %d:", i, n);
        coro__dump_to(s, fd, head);
    }
}

void coro_stats(coro_stats_t *out)
{
    coro__sched_t *s = coro__tls;
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!s)
        return;
    coro__stats_of(s, out);
    if (!s->run || !s->current)
        return;
    /* A run: the sum over its schedulers (the worst lag), each asked on
     * its own thread. */
    for (int i = 0; i < coro__thread_count_of(s); i++) {
        coro__sched_t *t = coro__run_sched(s, i);
        coro_stats_t o;
        if (t == s || coro__remote_stats(s, t, &o) != 0)
            continue;
        out->switches += o.switches;
        out->spawned += o.spawned;
        out->live += o.live;
        out->io_waits += o.io_waits;
        out->timers += o.timers;
        out->group_held += o.group_held;
        if (o.max_loop_lag_ns > out->max_loop_lag_ns)
            out->max_loop_lag_ns = o.max_loop_lag_ns;
    }
}

void coro__stats_of(coro__sched_t *s, coro_stats_t *out)
{
    out->switches = coro__switches(s);
    out->spawned = s->spawned;
    out->live = s->live;
    out->io_waits = s->io_waits;
    out->timers = s->heap_len;
    out->max_loop_lag_ns = s->max_lag;
    out->group_held = s->group_held;
}

/* Parse "<number>[ns|us|ms|s]" (ms when no unit); 0 if malformed. */
static int64_t parse_duration(const char *v)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || x <= 0)
        return 0;
    double unit = 1e6;
    if (strncmp(end, "ns", 2) == 0) unit = 1;
    else if (strncmp(end, "us", 2) == 0) unit = 1e3;
    else if (strncmp(end, "ms", 2) == 0) unit = 1e6;
    else if (*end == 's') unit = 1e9;
    else if (*end && *end != ',') return 0;
    return (int64_t)(x * unit);
}

void coro__debug_init(coro__sched_t *s)
{
    const char *e = getenv("CORO_DEBUG");
    if (!e)
        return;
    const char *p = strstr(e, "slow:");
    if (!p)
        return;
    s->slow_ns = parse_duration(p + 5);
    if (!s->slow_ns)
        fprintf(stderr, "coro: CORO_DEBUG: cannot read \"%s\" (want slow:<n>[ns|us|ms|s])\n", p);
    s->run_since = coro__clock();
}

void coro__debug_slow(coro__sched_t *s, coro_t *c, int64_t ran_ns)
{
    (void)s;
    char d[32];
    fmt_duration(d, sizeof d, ran_ns);
    fprintf(stderr, "coro: slow: coroutine %llu \"%s\" ran %s without reaching a checkpoint "
                    "(it blocked the loop)\n",
            (unsigned long long)c->fiber.id, c->fiber.name ? c->fiber.name : "", d);
}
