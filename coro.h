/* coro.h: the umbrella header. Users write `#include <coro.h>` and link
 * -lcoro. Each floor has one public header; this includes them in order. */
#ifndef CORO_H
#define CORO_H

#include "coro/coro.h"
#include "sched/sched.h"
#include "sync/sync.h"
#include "io/io.h"

#endif /* CORO_H */
