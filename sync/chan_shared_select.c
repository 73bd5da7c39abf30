/* sync/chan_shared_select.c: coro_select with shared cases (local cases
 * too).
 *
 * A select that has a shared case locks every shared channel of its
 * cases in address order (so two selects can never wait for each other's
 * locks), looks for a ready case, and otherwise links one waiter per case:
 * nodes on the shared channels, and on the local ones ordinary waiters
 * carrying the wait's claim word, which local peers must win too. A ring
 * channel's state changes without its lock, so a ready ring case may
 * fail to complete (look again), and a select about to park takes a
 * last look at its ring cases (see sync/chan_shared.c's ring part). */
#include "sync/chan_shared_int.h"
#include "sched/sched.h"
#include "coro/fault.h"
#include "coro/fence.h"
#include "sched/wait.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The shared channels of the cases, each once, in address order. */
static int shared_set(coro_case_t *cases, int n, coro_chan_t **set)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        coro_chan_t *ch = cases[i].ch;
        if (!ch || !ch->sh)
            continue;
        int j = k;
        while (j > 0 && (uintptr_t)set[j - 1] > (uintptr_t)ch)
            j--;
        if (j > 0 && set[j - 1] == ch)
            continue; /* already in */
        memmove(&set[j + 1], &set[j], (size_t)(k - j) * sizeof *set);
        set[j] = ch;
        k++;
    }
    return k;
}

static void lock_set(coro_chan_t **set, int k)
{
    for (int i = 0; i < k; i++)
        coro__xchan_lock(set[i]);
}

static void unlock_set(coro_chan_t **set, int k)
{
    for (int i = k - 1; i >= 0; i--)
        coro__xchan_unlock(set[i]);
}

/* Could the case complete now? (The shared channels are locked; a
 * ring's state may still change under it: case_complete can fail.) */
static int case_ready(coro_case_t *c)
{
    coro_chan_t *ch = c->ch;
    if (!ch->sh)
        return coro__chan_case_ready(c);
    if (ch->sh->ring)
        return coro__xchan_ring_ready(ch, c->op);
    if (c->op == CORO_SEND)
        return ch->closed || coro__xchan_any_unclaimed(&ch->recvq);
    return ch->closed || coro__xchan_any_unclaimed(&ch->sendq);
}

/* What a completed case leaves to do once the locks are released. */
typedef struct after {
    xnode_t *deliver;   /* an unbuffered peer handed an item: wake it */
    coro_chan_t *poke;  /* a ring pushed to (op CORO_SEND) or popped from */
    int op;
} after_t;

static void after_unlock(const after_t *a)
{
    if (a->deliver)
        coro__xwait_deliver(a->deliver->x);
    if (a->poke) {
        if (a->op == CORO_SEND)
            coro__xchan_poke_receivers(a->poke);
        else
            coro__xchan_poke_senders(a->poke);
    }
}

/* A ring case: push or pop now. 1 done (or failed for good: c->err),
 * 0 if the ring changed since case_ready (look again). */
static int ring_case_complete(coro_case_t *c, after_t *a)
{
    coro_chan_t *ch = c->ch;
    coro__xring_t *ring = ch->sh->ring;
    int r;
    if (c->op == CORO_SEND) {
        r = coro__xring_push(ring, c->elem);
        if (r < 0) {
            c->err = EPIPE;
            return 1;
        }
    } else {
        r = coro__xring_pop(ring, c->elem);
        if (!r && coro__xring_closed(ring) && coro__xring_drained(ring)) {
            c->err = EPIPE;
            return 1;
        }
    }
    if (r > 0) {
        a->poke = ch;
        a->op = c->op;
    }
    return r > 0;
}

/* Complete a ready case (the shared channels locked): 1, or 0 if it
 * cannot complete after all (a shared case's waiter was claimed by
 * someone else meanwhile, a ring was emptied or filled: look again). */
static int case_complete(coro_case_t *c, after_t *a)
{
    coro_chan_t *ch = c->ch;
    if (!ch->sh) {
        coro__chan_case_complete(c);
        return 1;
    }
    if (ch->sh->ring)
        return ring_case_complete(c, a);
    if (c->op == CORO_SEND) {
        if (ch->closed) {
            c->err = EPIPE;
            return 1;
        }
        return coro__xchan_try_send_locked(ch, c->elem, &a->deliver);
    }
    if (coro__xchan_try_recv_locked(ch, c->elem, &a->deliver))
        return 1;
    if (ch->closed) {
        c->err = EPIPE;
        return 1;
    }
    return 0;
}

/* A select woken by a ring case (CHAN_RETRY) that then completed another
 * case, or none, took a wake-up meant for one waiter of that ring: pass
 * it on to the next, if there is still something to find. */
static void pass_on(coro_case_t *c)
{
    if (!coro__xchan_ring_ready(c->ch, c->op))
        return;
    if (c->op == CORO_SEND)
        coro__xchan_poke_senders(c->ch);
    else
        coro__xchan_poke_receivers(c->ch);
}

/* select_wait's "look again": woken by a ring, or withdrawn after the
 * last look. */
#define SELECT_AGAIN (-2)

/* Per case while the select waits: a node on a shared channel, or an
 * ordinary waiter on a local one. */
typedef union case_waiter {
    xnode_t node;
    coro__waiter_t w;
} case_waiter_t;

/* Wait for one of the cases (the set locked; unlocks it). The case
 * completed, -1 with errno, or SELECT_AGAIN with *woken the ring case
 * whose wake-up this was (-1 if none). The first wait of a select takes
 * a reference on each channel of the set (*held) for the rest of the
 * call: it may look at them again (its last look, SELECT_AGAIN) after
 * another thread has freed one. */
static int select_wait(coro_case_t *cases, int n, coro_chan_t **set, int k, int *woken,
                       int *held)
{
    case_waiter_t local[SHARED_STACK_CASES], *ws = local;
    if (n > SHARED_STACK_CASES && !(ws = coro__malloc((size_t)n * sizeof *ws))) {
        unlock_set(set, k);
        return -1;
    }
    coro__xwait_t x;
    if (coro__xwait_init(&x) != 0) {
        unlock_set(set, k);
        if (ws != local)
            free(ws);
        return -1;
    }
    if (!*held) {
        for (int i = 0; i < k; i++)
            set[i]->sh->refs++;
        *held = 1;
    }
    unsigned flags = 0;
    int rings = 0;
    for (int i = 0; i < n; i++) {
        coro_case_t *c = &cases[i];
        if (!c->ch)
            continue;
        if (!c->ch->sh) {
            coro__chan_case_link(c, &ws[i].w, &x.w, &x.claimed);
            continue;
        }
        xnode_t *node = &ws[i].node;
        node->x = &x;
        node->elem = c->elem;
        node->index = i;
        coro__xchan_link_node(c->ch, c->op == CORO_SEND ? &c->ch->sendq : &c->ch->recvq, node);
        flags |= coro__xchan_park_flags(c->ch);
        rings |= c->ch->sh->ring != NULL;
    }
    unlock_set(set, k);
    /* A ring case's last look (see ring_wait). */
    int ready = 0;
    if (rings) {
        coro__fence_heavy();
        for (int i = 0; i < n && !ready; i++)
            ready = cases[i].ch && cases[i].ch->sh && cases[i].ch->sh->ring &&
                    coro__xchan_ring_ready(cases[i].ch, cases[i].op);
    }
    int r, e = 0, withdrawn = 0;
    if (ready) {
        withdrawn = coro__xwait_withdraw(&x);
        r = 0;
    } else {
        r = coro__xwait_park(&x, flags, "select", cases);
        e = errno;
    }
    int idx = -1, err = 0, through = -1; /* the shared node a peer completed */
    if (r == 0 && !withdrawn) {
        coro__waiter_t *f = x.w.fired;
        if (f && f != &x.w) {
            /* A local case, completed on this thread. */
            idx = (int)((case_waiter_t *)(void *)f - ws);
            err = x.w.result;
        } else {
            idx = through = x.fired;
            err = x.result;
        }
    }
    /* Unlink what is left: local waiters directly (this thread's own
     * channels), shared nodes under their channels' locks. */
    for (int i = 0; i < n; i++)
        if (cases[i].ch && !cases[i].ch->sh)
            coro_list_remove(&ws[i].w.node);
    for (int i = 0; i < n; i++)
        if (cases[i].ch && cases[i].ch->sh && i != through)
            coro__xchan_leave(cases[i].ch, &ws[i].node);
    coro__xwait_fini(&x);
    if (ws != local)
        free(ws);
    *woken = -1;
    if (r != 0) {
        errno = e;
        return -1;
    }
    if (withdrawn)
        return SELECT_AGAIN;
    if (err == CHAN_RETRY) {
        *woken = idx;
        return SELECT_AGAIN;
    }
    cases[idx].err = err;
    return idx;
}

/* The random choice among ready cases: coro_random (a simulation's seed
 * decides there; it never has shared channels anyway). */
static uint32_t below(uint32_t n)
{
    return (uint32_t)(((coro_random() >> 32) * (uint64_t)n) >> 32);
}

int coro__chan_select_shared(coro_case_t *cases, int n, int block)
{
    int in_coro = coro_self() != NULL;
    for (int i = 0; i < n; i++) {
        if (cases[i].ch && !cases[i].ch->sh && !in_coro) {
            errno = EPERM; /* a plain thread cannot wait on a local channel */
            return -1;
        }
    }
    coro_chan_t *stack_set[SHARED_STACK_CASES], **set = stack_set;
    if (n > SHARED_STACK_CASES && !(set = coro__malloc((size_t)n * sizeof *set)))
        return -1;
    int k = shared_set(cases, n, set);
    int ret, woken = -1; /* a ring case whose wake-up this select took */
    int held = 0;        /* references on the set (select_wait) */
    for (;;) {
        lock_set(set, k);
        for (int i = 0; i < k; i++)
            coro__xchan_note_user(set[i]);
        int pick = -1;
        uint32_t ready = 0;
        for (int i = 0; i < n; i++) {
            if (!cases[i].ch || !case_ready(&cases[i]))
                continue;
            if (++ready == 1 || below(ready) == 0)
                pick = i;
        }
        if (pick >= 0) {
            if (block && in_coro && coro__checkpoint() != 0) {
                unlock_set(set, k);
                ret = -1;
                break;
            }
            after_t a = { NULL, NULL, 0 };
            if (!case_complete(&cases[pick], &a)) {
                unlock_set(set, k); /* it went to someone else: look again */
                continue;
            }
            unlock_set(set, k);
            after_unlock(&a);
            ret = pick;
            break;
        }
        if (!block) {
            unlock_set(set, k);
            errno = EAGAIN;
            ret = -1;
            break;
        }
        int w;
        ret = select_wait(cases, n, set, k, &w, &held); /* unlocks */
        if (ret != SELECT_AGAIN)
            break;
        if (w >= 0)
            woken = w;
    }
    int e = errno;
    if (woken >= 0 && woken != ret)
        pass_on(&cases[woken]);
    for (int i = 0; held && i < k; i++)
        coro__xchan_ref_drop(set[i]);
    if (set != stack_set)
        free(set);
    errno = e;
    return ret;
}
