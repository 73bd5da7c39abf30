# sched/kqueue.mk: build settings for POLLER=kqueue (included by the
# Makefile). On BSD and macOS kqueue is part of libc. On Linux it comes
# from libkqueue (Debian: libkqueue-dev) when installed; otherwise
# sched/kqueue_shim.c, a small epoll-based emulation of the kqueue subset
# the backend uses, stands in so the backend still builds and is tested.
# CORO_POLLER_KQUEUE tells tests which backend they run on.
ALL_CFLAGS += -DCORO_POLLER_KQUEUE
ifeq ($(shell uname -s),Linux)
ifneq ($(wildcard /usr/include/kqueue/sys/event.h),)
ALL_CFLAGS += -I/usr/include/kqueue
LIBS += -lkqueue
LIB_SRC := $(filter-out sched/kqueue_shim.c,$(LIB_SRC))
else
ALL_CFLAGS += -DCORO_KQUEUE_SHIM
endif
else
LIB_SRC := $(filter-out sched/kqueue_shim.c,$(LIB_SRC))
endif
