/* test/test_sched_unwind.c: what a deadlock's unwind leaves behind in
 * objects that outlive coro_main. Stubborn coroutines catch ECANCELED and
 * try to block again on a static mutex, semaphore, event, channels and a
 * select; every retry fails at once (the unwind's cancellation overrides
 * shields and stays), so each one ends and coro_main returns -1/EDEADLK
 * with none of their waiters (which live on their freed stacks) left in
 * any object's wait list. A second coro_main then parks and wakes through
 * the very same lists: a dangling waiter there would be a crash, or a
 * Valgrind/ASan error. */
#include "test/test_sched.h"

static coro_mutex_t um = CORO_MUTEX_INIT;
static coro_sem_t us = CORO_SEM_INIT(0);
static coro_event_t ue = CORO_EVENT_INIT;
static coro_chan_t *urecv_ch, *usend_ch;

enum { U_MUTEX, U_SEM, U_EVENT, U_RECV, U_SEND, U_SELECT, U_KINDS };
enum { U_RETRIES = 3 };

/* Run 1's record: per kind, the retries that failed with ECANCELED. */
static int u_cancelled[U_KINDS];

static int u_block(int kind)
{
    int v = 7;
    switch (kind) {
    case U_MUTEX: return coro_mutex_lock(&um);
    case U_SEM: return coro_sem_acquire(&us);
    case U_EVENT: return coro_event_wait(&ue);
    case U_RECV: return coro_chan_recv(urecv_ch, &v);
    case U_SEND: return coro_chan_send(usend_ch, &v);
    default: {
        coro_case_t cases[2] = { { urecv_ch, CORO_RECV, &v, 0 },
                                 { usend_ch, CORO_SEND, &v, 0 } };
        return coro_select(cases, 2);
    }
    }
}

/* Blocks, is cancelled by the unwind, and insists (shielded, too). */
static int u_stubborn(void *arg)
{
    int kind = (int)(intptr_t)arg;
    coro_shield(1);
    ASSERT_ERRNO(u_block(kind), ECANCELED);
    for (int i = 0; i < U_RETRIES; i++) {
        errno = 0;
        int r = u_block(kind);
        if (r == -1 && errno == ECANCELED)
            u_cancelled[kind]++;
    }
    return 0;
}

static int u_first_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_mutex_lock(&um), 0);
    for (int k = 0; k < U_KINDS; k++) {
        coro_t *c = coro_spawn(u_stubborn, (void *)(intptr_t)k);
        ASSERT_NOT_NULL(c);
        coro_detach(c);
    }
    /* Nothing can wake anyone now. */
    ASSERT_ERRNO(coro_event_wait(&ue), ECANCELED);
    ASSERT_ERRNO(coro_event_wait(&ue), ECANCELED); /* cannot park again */
    ASSERT_EQ(coro_mutex_unlock(&um), 0);          /* no waiter is left to hand it to */
    return 0;
}

/* ---- run 2: the same objects, through their wait lists ------------------ */

static int u_got;

static int u_second_child(void *arg)
{
    (void)arg;
    int v = 0;
    ASSERT_EQ(coro_mutex_lock(&um), 0); /* parks: main holds it */
    ASSERT_EQ(coro_mutex_unlock(&um), 0);
    ASSERT_EQ(coro_sem_acquire(&us), 0); /* parks until main's release */
    ASSERT_EQ(coro_event_wait(&ue), 0);  /* parks until main's set */
    ASSERT_EQ(coro_chan_recv(urecv_ch, &v), 0);
    u_got += v;
    coro_case_t c = { usend_ch, CORO_RECV, &v, 0 };
    ASSERT_EQ(coro_select(&c, 1), 0);
    u_got += v;
    return 0;
}

static int u_second_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(coro_mutex_lock(&um), 0);
    coro_t *c = coro_spawn(u_second_child, NULL);
    ASSERT_NOT_NULL(c);
    coro_yield(); /* the child parks on the mutex */
    ASSERT_EQ(coro_mutex_unlock(&um), 0);
    coro_yield(); /* ... and now on the semaphore */
    ASSERT_EQ(coro_sem_value(&us), 0);
    ASSERT_EQ(coro_sem_release(&us), 0);
    coro_yield(); /* ... on the event */
    ASSERT_EQ(coro_event_set(&ue), 0);
    int v = 40;
    ASSERT_EQ(coro_chan_send(urecv_ch, &v), 0); /* rendezvous */
    v = 2;
    ASSERT_EQ(coro_chan_send(usend_ch, &v), 0);
    ASSERT_EQ(coro_join(c, NULL), 0);
    ASSERT_EQ(u_got, 42);
    ASSERT_EQ(coro_sem_value(&us), 0);
    return 5;
}

TEST(sched_deadlock_unwind_leaves_objects_reusable)
{
    urecv_ch = coro_chan_new(sizeof(int), 0);
    usend_ch = coro_chan_new(sizeof(int), 0);
    ASSERT_NOT_NULL(urecv_ch);
    ASSERT_NOT_NULL(usend_ch);
    ts_capture_t cap;
    ts_capture_begin(&cap);
    errno = 0;
    int r = coro_main(u_first_main, NULL);
    int e = errno;
    char *out = ts_capture_end(&cap);
    ASSERT_EQ(r, -1);
    ASSERT_EQ(e, EDEADLK);
    ASSERT_CONTAINS(out, "deadlock");
    free(out);
    for (int k = 0; k < U_KINDS; k++)
        ASSERT_EQ(u_cancelled[k], U_RETRIES);
    /* Nothing of run 1 is owned or queued: the mutex is free, no permit
     * was handed out or lost, nothing sits in the channels. */
    ASSERT_EQ(um.owner, 0);
    ASSERT_EQ(coro_sem_value(&us), 0);
    ASSERT_EQ(coro_event_is_set(&ue), 0);
    ASSERT_EQ(coro_chan_len(urecv_ch), 0);

    ASSERT_EQ(coro_main(u_second_main, NULL), 5);
    coro_chan_free(urecv_ch);
    coro_chan_free(usend_ch);
}
