/* sched/xwait.c: a wait that another thread may end (see coro__xwait_t in
 * sched/wait.h): the claim, the delivery to the owner's thread, and the
 * owner's side of the wait.
 *
 * The owner is a coroutine (x->sched its scheduler) or a plain thread
 * (x->sched NULL). The winner of the claim, on any thread, has handed its
 * item over before it delivers, so the owner's outcome is fixed by the
 * claim alone; the delivery only tells the owner's thread so. Because x
 * (and the post inside it) lives on the owner's stack, an owner whose
 * cancellation lost the claim to a peer must not return until that
 * peer's delivery has arrived: it waits for it, whatever else happens. */
#include "sched/sched_int.h"
#include "coro/spin.h"

#include <errno.h>

/* x->spin: the owner may be busy-waiting for the delivery (XSPIN_ON, from
 * init until it decides), and then a delivery only sets XSPIN_DONE: no
 * post, no wake-up, no switch. Once the owner has turned it back to
 * XSPIN_OFF (its compare-and-swap won), deliveries take the usual way. */
enum { XSPIN_OFF, XSPIN_ON, XSPIN_DONE };

/* How long a waiter with nothing else to do on its thread busy-waits
 * before it parks: about the cost of the park and wake-up it saves twice
 * over, and well under the scheduler's own spin before it sleeps
 * (sched/sched.c), which ignores the descriptors as this does. */
#define XWAIT_SPIN_NS (10 * CORO_US)

int coro__xwait_init(coro__xwait_t *x)
{
    x->claimed = 0;
    x->delivered = 0;
    x->fired = -1;
    x->result = 0;
    x->sched = coro__tls && coro__tls->current ? coro__tls : NULL;
    coro_list_init(&x->w.node);
    x->w.coro = NULL; /* not parked (yet): see coro__xwait_withdraw */
    x->w.fired = NULL;
    x->w.claim = NULL;
    x->plain = 0;
    x->spin = XSPIN_ON;
    if (!x->sched) {
        pthread_mutex_init(&x->mu, NULL);
        pthread_cond_init(&x->cv, NULL);
        x->plain = 1;
        return 0;
    }
    /* A lone scheduler's posts need its wake-up channel (a run's exist). */
    return x->sched->run ? 0 : coro__post_prepare();
}

void coro__xwait_fini(coro__xwait_t *x)
{
    if (x->plain) {
        pthread_cond_destroy(&x->cv);
        pthread_mutex_destroy(&x->mu);
    }
}

/* On the owner's scheduler: the news is in. */
static void arrived(coro__xwait_t *x)
{
    x->delivered = 1;
    if (coro__can_wake(&x->w))
        coro__wake(&x->w, 0);
    /* else: woken already (its cancellation or deadline, which then lost
     * the claim): it looks at delivered when it runs. */
}

static void arrived_post(coro__post_t *m)
{
    arrived(coro_container_of(m, coro__xwait_t, post));
}

void coro__xwait_deliver(coro__xwait_t *x)
{
    int on = XSPIN_ON;
    if (__atomic_load_n(&x->spin, __ATOMIC_RELAXED) == XSPIN_ON &&
        __atomic_compare_exchange_n(&x->spin, &on, XSPIN_DONE, 0, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED))
        return; /* the owner is spinning and sees it: x may be gone now */
    coro__sched_t *s = x->sched;
    if (!s) {
        pthread_mutex_lock(&x->mu);
        x->delivered = 1;
        pthread_cond_signal(&x->cv);
        pthread_mutex_unlock(&x->mu);
    } else if (s == coro__tls) {
        arrived(x);
    } else {
        x->post.fn = arrived_post;
        if (s->run)
            coro__run_post(s, &x->post);
        else
            coro__post(s, &x->post);
    }
}

/* Park self on w for the delivery, ignoring cancellation, deadlines and
 * even a deadlock's unwind: the delivery has been started and will come.
 * An external waiter, so the scheduler waits for the post. */
static void park_for_delivery(coro__sched_t *s, coro_t *self, coro__waiter_t *w)
{
    coro_list_init(&w->node);
    (void)coro__park_body(s, self, w, CORO__PARK_EXTERNAL, "delivery", NULL, -1);
}

/* May the calling thread busy-wait? Not while its scheduler has anything
 * else to run (ready coroutines, posts), nor in a simulation. */
static int may_spin(const coro__sched_t *s)
{
    return !s || (!s->runq_head && !s->sim && !coro__posts_pending((coro__sched_t *)s));
}

/* Busy-wait until ready(arg), looking every gap pauses, for at most
 * XWAIT_SPIN_NS and only while may_spin. */
static int spin(int (*ready)(const void *arg), const void *arg, unsigned gap)
{
    coro__sched_t *s = coro__tls;
    if (s && !s->current)
        s = NULL; /* a plain thread that once ran a scheduler */
    if (ready(arg))
        return 1;
    /* A scheduler spins only while spinning pays (s->post_credit, as its
     * idle spin for posts): a consumer that waits long for each item
     * stops burning 10 us of CPU, and seeing its descriptors that late,
     * per wait. */
    if (!may_spin(s) || (s && !s->post_credit))
        return 0;
    if (s)
        s->post_spins++;
    int64_t until = coro__clock() + XWAIT_SPIN_NS;
    for (unsigned i = 1;; i++) {
        for (unsigned k = 0; k < gap; k++)
            coro__cpu_relax();
        if (ready(arg)) {
            if (s)
                s->post_credit = CORO__POST_SPIN_CREDIT;
            return 1;
        }
        if ((i * gap) % 64 == 0 && (coro__clock() >= until || !may_spin(s))) {
            if (s && coro__clock() >= until)
                s->post_credit--;
            return 0;
        }
    }
}

/* Pauses between two looks at a shared structure (about 20 ns each on
 * x86-64): a looker that reads the line a producer is about to write
 * makes every item a round trip of that line between the two cores;
 * looking less often lets a few items gather, which are then taken in
 * a row. */
#define SPIN_GAP 32

int coro__xwait_spin(int (*ready)(const void *arg), const void *arg)
{
    return spin(ready, arg, SPIN_GAP);
}

static int spin_done(const void *arg)
{
    return __atomic_load_n(&((const coro__xwait_t *)arg)->spin, __ATOMIC_ACQUIRE) == XSPIN_DONE;
}

/* End x's spinning phase: 1 if the delivery came meanwhile (then it is
 * complete: nothing else will touch x), else 0 and later deliveries take
 * the usual way. */
static int spin_end(coro__xwait_t *x)
{
    int on = XSPIN_ON;
    if (__atomic_compare_exchange_n(&x->spin, &on, XSPIN_OFF, 0, __ATOMIC_ACQUIRE,
                                    __ATOMIC_ACQUIRE))
        return 0;
    return 1; /* XSPIN_DONE */
}

/* A peer has won x's claim: wait for its delivery, which it has begun or
 * will begin at once (a peer on this thread has made it already). For a
 * coroutine, whatever else happens: the post lives on this stack. */
static void wait_delivered(coro__xwait_t *x)
{
    if (!x->sched) {
        pthread_mutex_lock(&x->mu);
        while (!x->delivered)
            pthread_cond_wait(&x->cv, &x->mu);
        pthread_mutex_unlock(&x->mu);
        return;
    }
    coro__sched_t *s = x->sched;
    coro_t *self = s->current;
    while (!x->delivered)
        park_for_delivery(s, self, &x->w);
}

int coro__xwait_park(coro__xwait_t *x, unsigned flags, const char *what, const void *obj)
{
    /* Nothing else to do here: wait a moment for a peer on another thread
     * before paying for the park and the post that would end it. */
    if (spin(spin_done, x, 1) || spin_end(x))
        return 0;
    if (!x->sched) {
        wait_delivered(x); /* a plain thread: no cancellation, no deadline */
        return 0;
    }
    if (coro__park(&x->w, flags, CORO_NEVER, what, obj, -1) == 0)
        return 0; /* delivered, or completed by a peer on this thread */
    int e = errno;
    if (coro__xwait_claim(x)) {
        errno = e;
        return -1; /* the cancellation (or deadline) won: nobody else will */
    }
    wait_delivered(x); /* a peer won: its item has moved */
    return 0;
}

int coro__xwait_withdraw(coro__xwait_t *x)
{
    if (coro__xwait_claim(x))
        return 1;
    if (!spin_end(x)) /* else the peer's delivery is in already */
        wait_delivered(x);
    return 0;
}

const void *coro__xwait_run(void)
{
    coro__sched_t *s = coro__tls;
    return s ? (const void *)s->run : NULL;
}
