/* io/simnet_part.c: partitions of the simulated network, the public
 * coro_sim_partition and coro_sim_heal: holding what is in flight between
 * two hosts, and letting it go again in order (the model: io/simnet.c;
 * the test a delivery makes, coro__simnet_parted, is there too). */
#include "io/simnet_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- partitions (public) ---------------------------------------------------------- */

static int check_hosts(const char *a)
{
    if (!coro__sim_active()) {
        errno = EPERM;
        return -1;
    }
    if (!a || !*a) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* Move a UDP socket's held datagrams to the end of its queue (in their
 * order): the queue stays ordered by visibility. */
static void udp_held_last(simsock_t *s)
{
    delivery_t *keep = NULL, **kt = &keep, *held = NULL, **ht = &held;
    for (delivery_t *d = s->rx_head, *next; d; d = next) {
        next = d->next;
        d->next = NULL;
        if (d->held) {
            *ht = d;
            ht = &d->next;
        } else {
            *kt = d;
            kt = &d->next;
        }
    }
    *kt = held;
    s->rx_head = keep;
    s->rx_tail = NULL;
    for (delivery_t *d = s->rx_head; d; d = d->next)
        s->rx_tail = d;
}

int coro_sim_partition(const char *a, const char *b)
{
    if (check_hosts(a) != 0)
        return -1;
    simnet_t *n = coro__simnet_net_get();
    if (!n)
        return -1;
    partition_t *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    coro__simnet_copy_str(p->a, sizeof p->a, a);
    coro__simnet_copy_str(p->b, sizeof p->b, b);
    p->next = n->parts;
    n->parts = p;
    /* What is in flight between them now is held. */
    int64_t now = coro_now();
    for (coro_list_t *it = n->all.next; it != &n->all; it = it->next) {
        simsock_t *s = coro_container_of(it, simsock_t, all_node);
        if (s->kind == SK_LISTEN)
            continue;
        for (delivery_t *d = s->rx_head; d; d = d->next) {
            const char *from = s->kind == SK_UDP ? d->from : s->remote;
            char fh[64];
            coro__simnet_copy_str(fh, sizeof fh, from);
            if (s->kind == SK_UDP && strrchr(fh, ':'))
                *strrchr(fh, ':') = '\0';
            if (!d->held && d->ready_at > now && coro__simnet_parted(n, fh, s->host)) {
                d->held = 1;
                d->ready_at = CORO_NEVER;
            }
            /* Behind a held one, every later delivery waits too (order). */
            if (s->kind == SK_CONN && d->held) {
                for (delivery_t *e = d->next; e; e = e->next) {
                    e->held = 1;
                    e->ready_at = CORO_NEVER;
                }
                break;
            }
        }
        if (s->kind == SK_UDP)
            udp_held_last(s);
        if (s->kind == SK_CONN && s->listener && !s->arrive_held && s->arrive_at > now &&
            coro__simnet_parted(n, s->host, s->remote)) {
            s->arrive_held = 1;
            s->arrive_at = CORO_NEVER;
            coro__simnet_backlog_insert(s->listener, s);
        }
    }
    return 0;
}

int coro_sim_heal(const char *a, const char *b)
{
    if (check_hosts(a) != 0)
        return -1;
    simnet_t *n = coro__simnet_tls;
    if (!n)
        return 0;
    for (partition_t **pp = &n->parts; *pp;) {
        partition_t *p = *pp;
        int hit = !b || !*b ? (!strcmp(p->a, a) || !strcmp(p->b, a))
                            : ((!strcmp(p->a, a) && !strcmp(p->b, b)) ||
                               (!strcmp(p->a, b) && !strcmp(p->b, a)));
        if (hit) {
            *pp = p->next;
            free(p);
        } else {
            pp = &p->next;
        }
    }
    /* Let go what is no longer partitioned, in order, a fresh latency
     * from now. */
    int64_t now = coro_now();
    for (coro_list_t *it = n->all.next; it != &n->all; it = it->next) {
        simsock_t *s = coro_container_of(it, simsock_t, all_node);
        if (s->kind == SK_LISTEN)
            continue;
        int woke = 0;
        if (s->kind == SK_CONN) {
            if (!coro__simnet_parted(n, s->remote, s->host)) {
                int64_t last = s->rx_last;
                for (delivery_t *d = s->rx_head; d; d = d->next) {
                    if (!d->held)
                        continue;
                    int64_t r = now + coro__sim_latency();
                    d->ready_at = r > last ? r : last;
                    last = d->ready_at;
                    d->held = 0;
                    woke = 1;
                }
                s->rx_last = last;
            }
            if (s->listener && s->arrive_held && !coro__simnet_parted(n, s->host, s->remote)) {
                s->arrive_held = 0;
                s->arrive_at = now + coro__sim_latency();
                coro__simnet_backlog_insert(s->listener, s);
                if (s->peer)
                    coro__wake_all(&s->peer->readers, 0);
            }
        } else {
            /* Datagrams: take the held ones out, give them a time, put
             * them back in order. */
            delivery_t *held = NULL, **ht = &held;
            for (delivery_t **at = &s->rx_head; *at;) {
                delivery_t *d = *at;
                char fh[64];
                coro__simnet_copy_str(fh, sizeof fh, d->from);
                if (strrchr(fh, ':'))
                    *strrchr(fh, ':') = '\0';
                if (d->held && !coro__simnet_parted(n, fh, s->host)) {
                    *at = d->next;
                    d->next = NULL;
                    *ht = d;
                    ht = &d->next;
                } else {
                    at = &d->next;
                }
            }
            while (held) {
                delivery_t *d = held;
                held = d->next;
                d->held = 0;
                d->ready_at = now + coro__sim_latency();
                delivery_t **at = &s->rx_head;
                while (*at && !(*at)->held && (*at)->ready_at <= d->ready_at)
                    at = &(*at)->next;
                d->next = *at;
                *at = d;
                woke = 1;
            }
            s->rx_tail = s->rx_head;
            while (s->rx_tail && s->rx_tail->next)
                s->rx_tail = s->rx_tail->next;
        }
        if (woke)
            coro__wake_all(&s->readers, 0);
    }
    return 0;
}
