/* sync/chan.c: channels (unbuffered rendezvous and buffered rings) and
 * select, over the one park/wake mechanism of sched/wait.h.
 *
 * A channel holds a ring of `cap` items and two FIFOs of parked waiters:
 *
 *   recvq  receivers; only ever waiting while the ring is empty
 *   sendq  senders;   only ever waiting while the ring is full
 *                     (for capacity 0, always "full" and "empty")
 *
 * so an arriving sender first looks for a receiver (and copies its item
 * straight into the receiver's buffer: the rendezvous), then for room in
 * the ring, and only then parks; a receiver takes the ring's oldest item
 * and, the ring having been full, moves the first parked sender's item in
 * behind the others (FIFO order of items is kept), or takes straight from
 * a parked sender when the ring is empty (capacity 0). Every hand-off is
 * complete before the waiter is woken, so a waiter that is cancelled or
 * times out after its wake still returns 0: its item went, or came.
 *
 * Waiters live on the waiting coroutines' stacks. A plain waiter's `data`
 * is the caller's element buffer; a select case waiter (whose primary is
 * not itself) has `data` pointing at its coro_case_t. Lists can hold stale
 * waiters: a select woken through one case leaves its other case waiters
 * linked until it runs again. coro__can_wake() tells them apart and they
 * are dropped as they are met.
 *
 * A freed channel's magic is overwritten, so a later call on the handle
 * aborts with a message while the memory has not been reused. */
#include "sync/chan_int.h"
#include "sched/sched.h"
#include "coro/fault.h"
#include "sched/wait.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A live channel that the caller may use: 0, or -1/EPERM (another running
 * scheduler's channel). */
static inline int chan_enter(coro_chan_t *ch, const char *fn)
{
    chan_check(ch, fn);
    return coro__home(&ch->home) < 0 ? -1 : 0;
}

/* The same for the blocking calls, with the mismatch settled out of line
 * and the call run again (a tail call: the hot path keeps its frame). */
#define CHAN_FOREIGN(ch) __builtin_expect((ch)->home != (void *)coro__tls, 0)

/* The fast paths' whole check of ch, one compare with here (coro__here,
 * never NULL): a channel of the caller's scheduler, or the cold path
 * (*_foreign), which checks the magic first. A freed channel's home is
 * CHAN_DEAD_HOME (and a freed block reused for something else holds no
 * scheduler's address there), so a stale handle always takes the cold
 * path and its report. Under ASan the magic first: reading a freed
 * channel's home would be ASan's report, not ours. */
#define CHAN_FOREIGN_HERE(ch, here) __builtin_expect((ch)->home != (void *)(here), 0)
#if CORO_ASAN
#define CHAN_ENTER(ch, here, fn) (chan_check((ch), (fn)), CHAN_FOREIGN_HERE(ch, here))
#else
#define CHAN_ENTER(ch, here, fn) CHAN_FOREIGN_HERE(ch, here)
#endif

static int send_general(coro_chan_t *ch, const void *elem);
static int recv_general(coro_chan_t *ch, void *elem);

/* A channel whose home is not coro__here: a shared one, a stale handle,
 * one to bind, another scheduler's, or a caller outside coro_main. After
 * the home check the general path decides (it checks with coro__tls, so
 * it comes back here only for a channel not the caller's). */
__attribute__((noinline, cold)) static int send_foreign(coro_chan_t *ch, const void *elem)
{
    chan_check(ch, "coro_chan_send");
    if (ch->sh)
        return coro__chan_shared_send(ch, elem, 1);
    return coro__home(&ch->home) < 0 ? -1 : send_general(ch, elem);
}

__attribute__((noinline, cold)) static int recv_foreign(coro_chan_t *ch, void *elem)
{
    chan_check(ch, "coro_chan_recv");
    if (ch->sh)
        return coro__chan_shared_recv(ch, elem, 1);
    return coro__home(&ch->home) < 0 ? -1 : recv_general(ch, elem);
}

/* ---- items and waiters -------------------------------------------------- */

/* The buffer a waiter sends from or receives into. */
static inline void *waiter_elem(const coro__waiter_t *w)
{
    if (w->primary == w)
        return w->data;
    return ((coro_case_t *)w->data)->elem;
}

/* Can w be woken and completed by the caller? A waiter of a select that
 * also waits on a shared channel must first win that select's claim
 * (a peer on another thread may be completing it through a shared case);
 * a plain waiter has no claim word and costs one test. */
static inline int can_take(coro__waiter_t *w)
{
    if (__builtin_expect(!coro__can_wake(w), 0))
        return 0;
    return __builtin_expect(!w->claim, 1) || coro__xwait_claim_word(w->claim);
}

/* The first waiter of q that can still be woken, or NULL; stale waiters
 * met on the way are unlinked. The running coroutine's own waiters never
 * qualify (it is not parked), so a select with a send and a receive on
 * one channel cannot meet itself. A waiter returned with a claim word
 * has been claimed: it must be completed (coro__wake) now. */
static inline coro__waiter_t *first_live(coro_list_t *q)
{
    coro_list_t *n;
    while ((n = q->next) != q) {
        coro__waiter_t *w = coro_container_of(n, coro__waiter_t, node);
        if (__builtin_expect(can_take(w), 1))
            return w;
        coro_list_remove(n);
    }
    return NULL;
}

/* Wake w (taken by first_live) with result. For a claimed waiter, its
 * cross-thread wait learns here that it was completed on its own thread
 * (the select then reads which case from the primary's fired). */
static inline void take(coro__waiter_t *w, int result)
{
    if (__builtin_expect(w->claim != NULL, 0))
        coro_container_of(w->claim, coro__xwait_t, claimed)->delivered = 1;
    coro__wake(w, result);
}

/* Send elem now: to the live receiver r if there is one, else into the
 * ring (which has room). */
static inline void send_to(coro_chan_t *ch, const void *elem, coro__waiter_t *r)
{
    if (r) {
        sync_copy_elem(waiter_elem(r), elem, ch->elem_size);
        take(r, 0);
    } else {
        ring_put(ch, elem);
    }
}

/* Receive into elem now, from the ring if it holds anything (refilling it
 * from the first live sender), else from the live sender s. */
static inline __attribute__((always_inline)) void recv_from(coro_chan_t *ch, void *elem,
                                                         coro__waiter_t *s)
{
    if (ch->len) {
        ring_take(ch, elem);
        if ((s = first_live(&ch->sendq)) != NULL) {
            ring_put(ch, waiter_elem(s));
            take(s, 0);
        }
    } else {
        sync_copy_elem(elem, waiter_elem(s), ch->elem_size);
        take(s, 0);
    }
}

/* Park the caller on q until a peer completes its send or receive of the
 * item at elem (0), or a close, free, cancellation or deadline ends the
 * wait (-1 with errno; the channel may be gone then: touch nothing). Out
 * of line, so the fast paths keep a small frame; called in tail position. */
__attribute__((noinline))
static int park_on(coro_list_t *q, void *elem, const char *what, const coro_chan_t *ch)
{
    coro__waiter_t me;
    me.data = elem;
    me.claim = NULL;
    coro_list_push_back(q, &me.node);
    return coro__park(&me, 0, CORO_NEVER, what, ch, -1);
}

/* park_on for a fast path that has checked the caller itself (see
 * coro__park_checked). */
__attribute__((noinline)) static int park_on_checked(coro__sched_t *s, coro_t *self,
                                                     coro_list_t *q, void *elem,
                                                     const char *what, const coro_chan_t *ch)
{
    coro__waiter_t me;
    me.data = elem;
    me.claim = NULL;
    coro_list_push_back(q, &me.node);
    return coro__park_checked(s, self, &me, 0, what, ch, -1);
}

/* ---- channels ----------------------------------------------------------- */

coro_chan_t *coro__chan_alloc(size_t elem_size, size_t capacity, void *home)
{
    if (elem_size == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (capacity > (SIZE_MAX - sizeof(coro_chan_t)) / elem_size) {
        errno = ENOMEM;
        return NULL;
    }
    coro_chan_t *ch = coro__malloc(sizeof *ch + capacity * elem_size);
    if (!ch)
        return NULL;
    ch->magic = CHAN_MAGIC_LIVE;
    ch->closed = 0;
    ch->small = ch->send_fast = (uint8_t)sync_small_elem(elem_size);
    ch->home = home;
    ch->elem_size = elem_size;
    ch->cap = capacity;
    ch->head = 0;
    ch->len = 0;
    ch->sh = NULL;
    coro_list_init(&ch->recvq);
    coro_list_init(&ch->sendq);
    return ch;
}

coro_chan_t *coro_chan_new(size_t elem_size, size_t capacity)
{
    return coro__chan_alloc(elem_size, capacity, NULL);
}

/* ---- the blocking calls ------------------------------------------------- */

/* coro_chan_send and coro_chan_recv in full: every case, in the order of
 * their checks (the fast paths below handle the common ones and hand the
 * rest here by a tail call). */
__attribute__((noinline)) static int send_general(coro_chan_t *ch, const void *elem)
{
    if (!ch || !elem) {
        errno = EINVAL;
        return -1;
    }
    chan_check(ch, "coro_chan_send");
    if (CHAN_FOREIGN(ch))
        return send_foreign(ch, elem);
    coro__waiter_t *r = NULL;
    if (!ch->closed) {
        r = first_live(&ch->recvq);
        /* Nothing to complete with: park (coro__park is the checkpoint). */
        if (!r && ch->len == ch->cap)
            return park_on(&ch->sendq, (void *)(uintptr_t)elem, "chan send", ch);
    }
    if (coro__checkpoint() != 0)
        return -1;
    if (ch->closed) {
        errno = EPIPE;
        return -1;
    }
    send_to(ch, elem, r);
    return 0;
}

__attribute__((noinline)) static int recv_general(coro_chan_t *ch, void *elem)
{
    if (!ch || !elem) {
        errno = EINVAL;
        return -1;
    }
    chan_check(ch, "coro_chan_recv");
    if (CHAN_FOREIGN(ch))
        return recv_foreign(ch, elem);
    coro__waiter_t *s = NULL;
    if (!ch->len) {
        s = first_live(&ch->sendq);
        if (!s && !ch->closed)
            return park_on(&ch->recvq, elem, "chan recv", ch);
    }
    if (coro__checkpoint() != 0)
        return -1;
    if (!ch->len && !s) {
        errno = EPIPE; /* closed and drained */
        return -1;
    }
    recv_from(ch, elem, s);
    return 0;
}

/* The waiter at the head of q if it is a plain one (no claim word) that
 * can be woken now; NULL otherwise (the general path then decides). Every
 * waiter of a local channel's queues names its coroutine (park_on and
 * park_on_checked link it for the park that sets it, before anyone else
 * runs; a select's case links it set). */
static inline coro__waiter_t *plain_head(coro_list_t *q)
{
    coro__waiter_t *w = coro_container_of(q->next, coro__waiter_t, node);
    return __builtin_expect(!w->claim && coro__can_wake_linked(w), 1) ? w : NULL;
}

/* The fast paths: a caller with nothing pending, a live channel of its
 * own scheduler, a small element, and the peer (if any) a plain waiter.
 * They call nothing but by tail calls (the park, the general path), so
 * they keep no values in callee-saved registers. */
int coro_chan_send(coro_chan_t *ch, const void *elem)
{
    if (__builtin_expect(!ch || !elem, 0))
        return send_general(ch, elem);
    coro__sched_t *s = coro__here;
    if (CHAN_ENTER(ch, s, "coro_chan_send"))
        return send_foreign(ch, elem);
    coro_t *self = coro__current_here(s);
    if (__builtin_expect(!self || coro__checkpoint_pending(self) || !ch->send_fast, 0))
        return send_general(ch, elem);
    if (ch->recvq.next != &ch->recvq) {
        coro__waiter_t *r = plain_head(&ch->recvq);
        if (!r)
            return send_general(ch, elem);
        sync_copy_small(waiter_elem(r), elem, ch->elem_size);
        return coro__wake_last_in(s, r, 0);
    }
    if (ch->len < ch->cap) {
        ring_put_small(ch, elem);
        return 0;
    }
    return park_on_checked(s, self, &ch->sendq, (void *)(uintptr_t)elem, "chan send", ch);
}

int coro_chan_recv(coro_chan_t *ch, void *elem)
{
    if (__builtin_expect(!ch || !elem, 0))
        return recv_general(ch, elem);
    coro__sched_t *s = coro__here;
    if (CHAN_ENTER(ch, s, "coro_chan_recv"))
        return recv_foreign(ch, elem);
    coro_t *self = coro__current_here(s);
    if (__builtin_expect(!self || coro__checkpoint_pending(self) || !ch->small, 0))
        return recv_general(ch, elem);
    int senders = ch->sendq.next != &ch->sendq;
    if (ch->len) {
        if (senders) /* a full ring: refilled from the first sender */
            return recv_general(ch, elem);
        ring_take_small(ch, elem);
        return 0;
    }
    if (!senders) {
        if (ch->closed)
            return recv_general(ch, elem);
        return park_on_checked(s, self, &ch->recvq, elem, "chan recv", ch);
    }
    coro__waiter_t *w = plain_head(&ch->sendq);
    if (!w)
        return recv_general(ch, elem);
    sync_copy_small(elem, waiter_elem(w), ch->elem_size);
    return coro__wake_last_in(s, w, 0);
}

int coro_chan_try_send(coro_chan_t *ch, const void *elem)
{
    if (!ch || !elem) {
        errno = EINVAL;
        return -1;
    }
    chan_check(ch, "coro_chan_try_send");
    if (__builtin_expect(ch->sh != NULL, 0))
        return coro__chan_shared_send(ch, elem, 0);
    if (chan_enter(ch, "coro_chan_try_send") != 0)
        return -1;
    if (ch->closed) {
        errno = EPIPE;
        return -1;
    }
    coro__waiter_t *r = first_live(&ch->recvq);
    if (!r && ch->len == ch->cap) {
        errno = EAGAIN;
        return -1;
    }
    send_to(ch, elem, r);
    return 0;
}

int coro_chan_try_recv(coro_chan_t *ch, void *elem)
{
    if (!ch || !elem) {
        errno = EINVAL;
        return -1;
    }
    chan_check(ch, "coro_chan_try_recv");
    if (__builtin_expect(ch->sh != NULL, 0))
        return coro__chan_shared_recv(ch, elem, 0);
    if (chan_enter(ch, "coro_chan_try_recv") != 0)
        return -1;
    coro__waiter_t *s = NULL;
    if (!ch->len && !(s = first_live(&ch->sendq))) {
        errno = ch->closed ? EPIPE : EAGAIN;
        return -1;
    }
    recv_from(ch, elem, s);
    return 0;
}

/* Wake every waiter of q that can be taken with result; unlink the
 * rest. */
static void take_all(coro_list_t *q, int result)
{
    coro__waiter_t *w;
    while ((w = first_live(q)) != NULL)
        take(w, result);
}

static void close_chan(coro_chan_t *ch)
{
    ch->closed = 1;
    ch->send_fast = 0;
    take_all(&ch->recvq, EPIPE);
    take_all(&ch->sendq, EPIPE);
}

int coro_chan_close(coro_chan_t *ch)
{
    if (!ch) {
        errno = EINVAL;
        return -1;
    }
    chan_check(ch, "coro_chan_close");
    if (ch->sh)
        return coro__chan_shared_close(ch);
    if (chan_enter(ch, "coro_chan_close") != 0)
        return -1;
    if (ch->closed) {
        errno = EPIPE;
        return -1;
    }
    close_chan(ch);
    return 0;
}

size_t coro_chan_len(const coro_chan_t *ch)
{
    if (!ch) {
        errno = EINVAL;
        return 0;
    }
    chan_check(ch, "coro_chan_len");
    if (ch->sh)
        return coro__chan_shared_len(ch);
    void *h = __atomic_load_n(&ch->home, __ATOMIC_RELAXED);
    if (h && h != (void *)coro__tls && coro__sched_alive(h)) {
        errno = EPERM;
        return 0;
    }
    return ch->len;
}

size_t coro_chan_cap(const coro_chan_t *ch)
{
    if (!ch) {
        errno = EINVAL;
        return 0;
    }
    chan_check(ch, "coro_chan_cap");
    return ch->cap;
}

void coro_chan_free(coro_chan_t *ch)
{
    if (!ch)
        return;
    chan_check(ch, "coro_chan_free");
    if (ch->sh) {
        coro__chan_shared_free(ch);
        return;
    }
    if (chan_enter(ch, "coro_chan_free") != 0) {
        fprintf(stderr, "coro: coro_chan_free(%p): the channel belongs to a scheduler running "
                        "on another thread; not freed\n", (void *)ch);
        return;
    }
    /* Every waiter is woken and unlinked here, stale ones too, so nobody
     * touches the memory again: a select woken with EPIPE through this
     * channel unlinks its other waiters from their own channels only. */
    if (!ch->closed)
        close_chan(ch);
    /* volatile: a store just before free() is otherwise dead to the
     * compiler, and the check on the stale handle would see the old magic. */
    *(volatile uint32_t *)&ch->magic = CHAN_MAGIC_DEAD;
    /* And no scheduler's: the fast paths' one compare then sends a stale
     * handle to the path that checks the magic (CHAN_ENTER). */
    *(void *volatile *)&ch->home = CHAN_DEAD_HOME;
    free(ch);
}

/* ---- select ------------------------------------------------------------- */

/* A per-thread xorshift64* generator for the fair choice among ready
 * cases: cheap, and no shared state with rand(). */
static __thread uint64_t select_rng __attribute__((tls_model("initial-exec")));

static uint32_t rand_below(uint32_t n)
{
    if (__builtin_expect(coro__sim_active(), 0))
        return coro__sim_below(n); /* the simulation's seed decides */
    uint64_t x = select_rng;
    if (__builtin_expect(x == 0, 0)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec
            ^ (uint64_t)(uintptr_t)&select_rng;
        if (!x)
            x = 0x2545F4914F6CDD1Dull;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    select_rng = x;
    uint32_t r = (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
    return (uint32_t)(((uint64_t)r * n) >> 32);
}

/* Check the cases; clear every err. Returns 0 (*shared: whether a case
 * is on a shared channel), or -1/EINVAL (EPERM another scheduler's
 * channel). */
static int select_validate(coro_case_t *cases, int n, int *shared)
{
    *shared = 0;
    if (!cases || n <= 0) {
        errno = EINVAL;
        return -1;
    }
    int any = 0;
    for (int i = 0; i < n; i++) {
        coro_case_t *c = &cases[i];
        c->err = 0;
        if (!c->ch)
            continue;
        chan_check(c->ch, "coro_select");
        if (c->ch->sh)
            *shared = 1;
        else if (coro__home(&c->ch->home) < 0)
            return -1;
        if ((c->op != CORO_SEND && c->op != CORO_RECV) || !c->elem) {
            errno = EINVAL;
            return -1;
        }
        any = 1;
    }
    if (!any) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* Could the case complete now (closed counts)? */
static int case_ready(coro_case_t *c)
{
    coro_chan_t *ch = c->ch;
    if (c->op == CORO_SEND)
        return ch->closed || ch->len < ch->cap || first_live(&ch->recvq) != NULL;
    return ch->len || ch->closed || first_live(&ch->sendq) != NULL;
}

/* Complete a ready case. */
static void case_complete(coro_case_t *c)
{
    coro_chan_t *ch = c->ch;
    if (c->op == CORO_SEND) {
        if (ch->closed)
            c->err = EPIPE;
        else
            send_to(ch, c->elem, first_live(&ch->recvq));
    } else {
        coro__waiter_t *s = ch->len ? NULL : first_live(&ch->sendq);
        if (!ch->len && !s)
            c->err = EPIPE;
        else
            recv_from(ch, c->elem, s);
    }
}

/* No case is ready: wait on all of them at once. One waiter per case in
 * its channel's queue, each pointing at the primary we park on; whoever
 * completes a case (or closes its channel) wakes us through that case's
 * waiter, and p.fired names it. */
static int select_wait(coro_case_t *cases, int n)
{
    coro__waiter_t local[SELECT_STACK_CASES], *ws = local;
    coro_t *self = coro__current();
    if (!self) {
        errno = EPERM;
        return -1;
    }
    if (n > SELECT_STACK_CASES) {
        if (coro__checkpoint() != 0)
            return -1;
        ws = coro__malloc((size_t)n * sizeof *ws);
        if (!ws)
            return -1;
    }
    coro__waiter_t p;
    coro_list_init(&p.node);
    p.fired = NULL;
    int saved_errno = errno;
    for (int i = 0; i < n; i++) {
        coro_case_t *c = &cases[i];
        if (!c->ch)
            continue;
        coro__waiter_t *w = &ws[i];
        w->coro = self;
        w->primary = &p;
        w->fired = NULL;
        w->result = 0;
        w->data = c;
        w->claim = NULL;
        coro_list_push_back(c->op == CORO_SEND ? &c->ch->sendq : &c->ch->recvq, &w->node);
    }
    coro__park(&p, 0, CORO_NEVER, "select", cases, -1);
    int e = errno;
    /* Unlink the rest. A channel freed meanwhile has already unlinked
     * ours, so this touches no freed memory. */
    for (int i = 0; i < n; i++)
        if (cases[i].ch)
            coro_list_remove(&ws[i].node);
    coro__waiter_t *f = p.fired;
    int idx = (f && f != &p) ? (int)(f - ws) : -1;
    if (ws != local)
        free(ws);
    if (idx >= 0) {
        /* Completed by a peer (0), or its channel was closed (EPIPE). */
        cases[idx].err = p.result;
        errno = saved_errno;
        return idx;
    }
    errno = e;
    return -1;
}

static int select_impl(coro_case_t *cases, int n, int block)
{
    int shared;
    if (select_validate(cases, n, &shared) != 0)
        return -1;
    if (__builtin_expect(shared, 0))
        return coro__chan_select_shared(cases, n, block);
    int pick = -1;
    uint32_t ready = 0;
    for (int i = 0; i < n; i++) {
        if (!cases[i].ch || !case_ready(&cases[i]))
            continue;
        /* Reservoir sampling: each ready case ends up chosen with
         * probability 1/ready. */
        if (++ready == 1 || rand_below(ready) == 0)
            pick = i;
    }
    if (pick >= 0) {
        if (block && coro__checkpoint() != 0)
            return -1;
        case_complete(&cases[pick]);
        return pick;
    }
    if (!block) {
        errno = EAGAIN;
        return -1;
    }
    return select_wait(cases, n);
}

int coro_select(coro_case_t *cases, int n)
{
    return select_impl(cases, n, 1);
}

int coro_try_select(coro_case_t *cases, int n)
{
    return select_impl(cases, n, 0);
}

/* ---- for a select that mixes local and shared channels --------------------- */

int coro__chan_case_ready(coro_case_t *c)
{
    return case_ready(c);
}

void coro__chan_case_complete(coro_case_t *c)
{
    case_complete(c);
}

void coro__chan_case_link(coro_case_t *c, coro__waiter_t *w, coro__waiter_t *primary, int *claim)
{
    w->coro = coro__current();
    w->primary = primary;
    w->fired = NULL;
    w->result = 0;
    w->data = c;
    w->claim = claim;
    coro_list_push_back(c->op == CORO_SEND ? &c->ch->sendq : &c->ch->recvq, &w->node);
}
