/* coro/list.h: intrusive circular doubly-linked lists. A node lives inside
 * the struct it links (a waiter on a coroutine's stack, a coroutine in a
 * group), so linking never allocates. An unlinked node points at itself,
 * which makes "is it still linked?" a load and unlinking twice harmless. */
#ifndef CORO_LIST_H
#define CORO_LIST_H

#include "coro/coro.h" /* coro_list_t itself is public: sync/ objects embed it */

#include <stddef.h>

#define CORO_LIST_INIT(name) { &(name), &(name) }

/* The struct that holds `ptr` as its member `field`. */
#define coro_container_of(ptr, type, field) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, field)))

static inline void coro_list_init(coro_list_t *l) { l->next = l->prev = l; }
static inline int coro_list_empty(const coro_list_t *l) { return l->next == l; }
/* For a node: is it in some list? For a head: does it hold anything? */
static inline int coro_list_linked(const coro_list_t *n) { return n->next != n; }

/* A head from a static initialiser ({ NULL, NULL }, as in CORO_MUTEX_INIT)
 * is empty and becomes a proper circular head on first use. */
static inline void coro_list_lazy_init(coro_list_t *head)
{
    if (!head->next)
        coro_list_init(head);
}
static inline int coro_list_lazy_empty(const coro_list_t *head)
{
    return !head->next || head->next == head;
}

static inline void coro_list_push_back(coro_list_t *head, coro_list_t *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

/* Unlink n (a no-op if it is not linked) and leave it pointing at itself. */
static inline void coro_list_remove(coro_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

/* Unlink n for good (a no-op if it is not linked): for a node about to
 * go away, left as it is. */
static inline void coro_list_unlink(coro_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
}

/* The first node, or NULL when empty. */
static inline coro_list_t *coro_list_first(const coro_list_t *head)
{
    return head->next == head ? NULL : head->next;
}

#endif /* CORO_LIST_H */
