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

#include <errno.h>

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
    w->coro = self;
    w->primary = w;
    self->wait = w;
    self->wait_what = "delivery";
    self->wait_obj = NULL;
    self->wait_num = -1;
    self->wait_since = s->loop_now;
    self->state = CORO_PARKED;
    s->ext_waiters++;
    coro__pass_clamp(s);
    coro__switch(s);
    s->ext_waiters--;
}

int coro__xwait_park(coro__xwait_t *x, unsigned flags, const char *what, const void *obj)
{
    if (!x->sched) {
        pthread_mutex_lock(&x->mu);
        while (!x->delivered)
            pthread_cond_wait(&x->cv, &x->mu);
        pthread_mutex_unlock(&x->mu);
        return 0;
    }
    coro__sched_t *s = x->sched;
    if (coro__park(&x->w, flags, CORO_NEVER, what, obj, -1) == 0)
        return 0; /* delivered, or completed by a peer on this thread */
    int e = errno;
    if (coro__xwait_claim(x)) {
        errno = e;
        return -1; /* the cancellation (or deadline) won: nobody else will */
    }
    /* A peer won: its item has moved; wait for its delivery to arrive
     * (a peer on this thread has delivered already). */
    coro_t *self = s->current;
    while (!x->delivered)
        park_for_delivery(s, self, &x->w);
    return 0;
}

int coro__xwait_withdraw(coro__xwait_t *x)
{
    if (coro__xwait_claim(x))
        return 1;
    /* A peer won: wait for its delivery, which it has begun or will
     * begin at once (a peer on this thread has made it already). */
    if (!x->sched) {
        pthread_mutex_lock(&x->mu);
        while (!x->delivered)
            pthread_cond_wait(&x->cv, &x->mu);
        pthread_mutex_unlock(&x->mu);
        return 0;
    }
    coro__sched_t *s = x->sched;
    coro_t *self = s->current;
    while (!x->delivered)
        park_for_delivery(s, self, &x->w);
    return 0;
}

const void *coro__xwait_run(void)
{
    coro__sched_t *s = coro__tls;
    return s ? (const void *)s->run : NULL;
}
