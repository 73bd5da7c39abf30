/* sched/fd.c: the descriptor table and descriptor waits (see
 * sched/io_wait.h).
 *
 * The table is two-level, indexed by fd: a growable array of pointers to
 * chunks of FD_CHUNK entries. Entries never move once made, because
 * waiters are linked into their lists; a chunk is allocated the first time
 * a descriptor in its range is used.
 *
 * An entry is registered with the poller at its first wait, for both
 * directions, edge-triggered, with a token of (generation << 32 | fd). The
 * ready callback wakes every reader (or writer) parked on the entry; they
 * retry their system call. An event whose generation is not the entry's
 * current one belongs to a descriptor that has since been forgotten, and
 * is dropped. */
#include "sched/io_wait.h"
#include "sched/sched_int.h"
#include "coro/fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FD_CHUNK_SHIFT 10
#define FD_CHUNK (1u << FD_CHUNK_SHIFT)

/* Entry flag beside the io/ ones: registered with the poller. */
#define FD_ARMED 0x100

struct coro__fd {
    uint32_t gen;
    uint32_t flags;
    coro_list_t readers, writers;
};

static coro__fd_t *entry(coro__sched_t *s, int fd, int create)
{
    size_t ci = (size_t)fd >> FD_CHUNK_SHIFT;
    if (ci >= s->fd_chunks_len) {
        if (!create)
            return NULL;
        size_t len = s->fd_chunks_len ? s->fd_chunks_len : 4;
        while (len <= ci)
            len *= 2;
        coro__fd_t **grown = coro__realloc(s->fd_chunks, len * sizeof *grown);
        if (!grown)
            return NULL;
        memset(grown + s->fd_chunks_len, 0, (len - s->fd_chunks_len) * sizeof *grown);
        s->fd_chunks = grown;
        s->fd_chunks_len = len;
    }
    coro__fd_t *chunk = s->fd_chunks[ci];
    if (!chunk) {
        if (!create)
            return NULL;
        chunk = coro__calloc(FD_CHUNK, sizeof *chunk);
        if (!chunk)
            return NULL;
        for (unsigned i = 0; i < FD_CHUNK; i++) {
            chunk[i].gen = 1;
            coro_list_init(&chunk[i].readers);
            coro_list_init(&chunk[i].writers);
        }
        s->fd_chunks[ci] = chunk;
    }
    return &chunk[(unsigned)fd & (FD_CHUNK - 1)];
}

static uint64_t token_of(const coro__fd_t *e, int fd)
{
    return (uint64_t)e->gen << 32 | (uint32_t)fd;
}

static void wake_list(coro_list_t *list, int result, int events)
{
    while (!coro_list_empty(list)) {
        coro__waiter_t *w = coro_container_of(list->next, coro__waiter_t, node);
        if (!coro__can_wake(w)) {
            coro_list_remove(&w->node); /* woken through its other direction */
            continue;
        }
        w->primary->data = (void *)(intptr_t)events;
        /* It runs after the rest of the poll's batch is woken: have its
         * stack line in cache by then (it was cold: 1000 idle sockets). */
        coro__fiber_prefetch(&w->coro->fiber);
        coro__wake(w, result);
    }
}

/* Forget the entry: wake its waiters with EBADF, new generation. */
static void forget(coro__sched_t *s, coro__fd_t *e, int fd)
{
    wake_list(&e->readers, EBADF, 0);
    wake_list(&e->writers, EBADF, 0);
    if (e->flags & FD_ARMED) {
        (void)coro__poller_disarm(s->poller, fd); /* ENOENT/EBADF if closed already */
        coro__fd_unclaim(fd, s);
    }
    e->flags = 0;
    e->gen++;
    if (e->gen == 0)
        e->gen = 1;
}

void coro__fd_ready(coro__sched_t *s, uint64_t token, int events)
{
    int fd = (int)(uint32_t)token;
    coro__fd_t *e = entry(s, fd, 0);
    if (!e || e->gen != (uint32_t)(token >> 32))
        return; /* a stale event of a forgotten descriptor */
    if (events & SCHED_POLL_HUP)
        e->flags |= SCHED_FD_HUP;
    if (events & SCHED_POLL_READ) {
        e->flags &= ~(uint32_t)SCHED_FD_DRAINED;
        wake_list(&e->readers, 0, events);
    }
    if (events & SCHED_POLL_WRITE)
        wake_list(&e->writers, 0, events);
}

void coro__fd_free_all(coro__sched_t *s)
{
    for (size_t i = 0; i < s->fd_chunks_len; i++) {
        coro__fd_t *chunk = s->fd_chunks[i];
        for (unsigned j = 0; chunk && j < FD_CHUNK; j++)
            if (chunk[j].flags & FD_ARMED)
                coro__fd_unclaim((int)(i * FD_CHUNK + j), s);
        free(chunk);
    }
    free(s->fd_chunks);
    s->fd_chunks = NULL;
    s->fd_chunks_len = 0;
}

int coro__fd_flags(int fd)
{
    coro__sched_t *s = coro__tls;
    if (!s || fd < 0)
        return 0;
    coro__fd_t *e = entry(s, fd, 0);
    return e ? (int)(e->flags & 0xff) : 0;
}

int coro__fd_set_flags(int fd, int flags)
{
    coro__sched_t *s = coro__tls;
    if (!s) {
        errno = EPERM;
        return -1;
    }
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    coro__fd_t *e = entry(s, fd, 1);
    if (!e) {
        errno = ENOMEM;
        return -1;
    }
    /* SCHED_FD_HUP is the table's own record, whatever io/ passes. */
    uint32_t keep = ~0xffu | SCHED_FD_HUP;
    e->flags = (e->flags & keep) | ((uint32_t)flags & 0xff & ~keep);
    return 0;
}

int coro__fd_wait(int fd, int events, const char *what)
{
    coro__sched_t *s = coro__tls;
    if (!s || !s->current) {
        errno = EPERM;
        return -1;
    }
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (!(events & (SCHED_POLL_READ | SCHED_POLL_WRITE))) {
        errno = EINVAL;
        return -1;
    }
    coro__fd_t *e = entry(s, fd, 1);
    if (!e) {
        errno = ENOMEM;
        return -1;
    }
    if (__builtin_expect(s->sim != NULL, 0)) {
        /* A real descriptor's readiness is the kernel's, not the seed's. */
        errno = EPERM;
        return -1;
    }
    if (!(e->flags & FD_ARMED)) {
        /* Check the checkpoint first: a cancelled caller need not register. */
        if (coro__checkpoint() != 0)
            return -1;
        /* Another running scheduler waits on this number: EPERM. */
        if (coro__fd_claim(fd, s) != 0)
            return -1;
        if (coro__poller_arm(s->poller, fd, token_of(e, fd)) != 0) {
            int err = errno;
            coro__fd_unclaim(fd, s);
            errno = err;
            return -1;
        }
        e->flags |= FD_ARMED;
    }
    /* Waiting on both directions: the reader waiter is the primary, the
     * writer one rides along (see coro__waiter_t). */
    coro__waiter_t rw[2];
    coro__waiter_t *primary = NULL;
    coro_list_init(&rw[0].node);
    coro_list_init(&rw[1].node);
    if (events & SCHED_POLL_READ) {
        coro_list_push_back(&e->readers, &rw[0].node);
        primary = &rw[0];
    }
    if (events & SCHED_POLL_WRITE) {
        if (primary) {
            rw[1].coro = s->current;
            rw[1].primary = primary;
        } else {
            primary = &rw[1];
        }
        coro_list_push_back(&e->writers, &rw[1].node);
    }
    primary->data = NULL;
    int r = coro__park(primary, CORO__PARK_FD, CORO_NEVER, what, NULL, fd);
    coro_list_remove(&rw[0].node);
    coro_list_remove(&rw[1].node);
    if (r != 0)
        return -1;
    int fired = (int)(intptr_t)primary->data & events;
    /* A wake without matching events (cannot happen from the poller, which
     * wakes a list only for its direction) still means "retry". */
    return fired ? fired : events;
}

void coro__fd_mark_drained(int fd)
{
    coro__sched_t *s = coro__tls;
    coro__fd_t *e = s ? entry(s, fd, 0) : NULL;
    if (e)
        e->flags |= SCHED_FD_DRAINED;
}

int coro__fd_close(int fd)
{
    if (fd >= 0 && coro__fd_foreign(fd)) {
        /* Another scheduler of the caller's run: it forgets fd there,
         * waking its waiters with EBADF, before the caller closes it. */
        coro__sched_t *s = coro__tls, *owner = coro__fd_owner(fd);
        if (s && s->current && coro__same_run(s, owner))
            return coro__remote_fd_forget(s, owner, fd);
        errno = EPERM;
        return -1;
    }
    coro__sched_t *s = coro__tls;
    if (!s || fd < 0)
        return 0;
    coro__fd_t *e = entry(s, fd, 0);
    if (e)
        forget(s, e, fd);
    return 0;
}

void coro__fd_new(int fd, int flags)
{
    coro__sched_t *s = coro__tls;
    if (fd >= 0 && coro__fd_foreign(fd))
        coro__fd_unclaim_stale(fd);
    if (!s || fd < 0)
        return;
    coro__fd_t *e = entry(s, fd, flags != 0);
    if (!e)
        return; /* out of memory: the flags are worked out again later */
    if (e->flags & FD_ARMED || !coro_list_empty(&e->readers) || !coro_list_empty(&e->writers))
        forget(s, e, fd);
    else if (e->flags) {
        e->gen++;
        if (e->gen == 0)
            e->gen = 1;
    }
    e->flags = (uint32_t)flags & 0xff & ~(uint32_t)SCHED_FD_HUP;
}

static size_t list_len(const coro_list_t *l)
{
    size_t n = 0;
    if (!l->next)
        return 0;
    for (const coro_list_t *i = l->next; i != l; i = i->next)
        n++;
    return n;
}

int coro__fd_waiters(int fd)
{
    coro__sched_t *s = coro__tls;
    if (!s || fd < 0)
        return 0;
    coro__fd_t *e = entry(s, fd, 0);
    return e ? (int)(list_len(&e->readers) + list_len(&e->writers)) : 0;
}

void coro__fd_forget_in(coro__sched_t *s, int fd)
{
    coro__fd_t *e = entry(s, fd, 0);
    if (e)
        forget(s, e, fd);
}
