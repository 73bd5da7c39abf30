# coro: GNU make build.
#
#   make                 build/libcoro.a, build/libcoro.so, examples, benchmarks
#   make test            the suite natively, then again under Valgrind Memcheck
#                        (both halves always run; one closing summary line)
#   make test-native     only the native half; make test-valgrind only the other
#   make test-scale      the scale tests the default run skips (a million
#                        coroutines: about 4 GiB of RAM and 20-60 s)
#   make bench           the benchmarks, as a table with ratios to the baselines
#   make icount          instructions per yield pair, mutex hand-offs, channel
#                        round trip, spawn+join, generator value and select,
#                        counted by Valgrind's Callgrind (bench/icount.sh;
#                        deterministic, unlike the timings; not part of make test)
#   make demo            a short tour of the examples
#   make check-package   symbols, strict headers, docs/API.md (test/check_package.sh)
#   make check-layers    each folder includes only the floors below it, and
#                        sync/ and io/ only sched/'s wait interface
#                        (test/check_layers.sh; part of test-native)
#   make check-examples-sim  retry_backoff and circuit_breaker --sim SEED:
#                        repeatable per seed, varied across seeds, fast
#                        (test/check_examples_sim.sh; part of test-native)
#   make check-gdb       tools/coro-gdb.py in gdb: `info coroutines` and
#                        `coro bt` against test/gdb/target.c (test/check_gdb.sh;
#                        part of test-native; skipped without gdb or ptrace)
#   make churn           the example servers' memory over 20k-40k connections
#                        (test/churn.sh; ~20 s, not part of make test)
#   make install PREFIX=/usr/local DESTDIR=   (coro.pc and coro-static.pc too, and
#                        share/coro/coro-gdb.py)
#   make clean
#
# Switches:
#   CONTEXT=asm|ucontext                  context-switch backend (default asm)
#   POLLER=epoll|kqueue                   poller backend (default: epoll on Linux,
#                                         kqueue elsewhere; kqueue on Linux needs
#                                         libkqueue, see sched/poller_kqueue.c)
#   SANITIZE=address|undefined|thread     any comma-separated mix the compiler allows
#   COMPAT=native|fallback                fallback: the portable path everywhere the
#                                         library has two (no accept4, pipe2,
#                                         SOCK_NONBLOCK/CLOEXEC, MSG_NOSIGNAL,
#                                         sigtimedwait, eventfd, epoll_pwait2,
#                                         guard regions), as on macOS; see
#                                         coro/compat.h (default native)
#   VALGRIND=                             empty skips the Valgrind pass of `make test`
#   TEST_EXEC="qemu-aarch64 -L /usr/aarch64-linux-gnu"   run test binaries through this
#   CC, CFLAGS, LDFLAGS, PREFIX, DESTDIR  as usual

# ---- settings ---------------------------------------------------------------
CC       ?= cc
AR       ?= ar
CFLAGS   ?= -O2 -g
LDFLAGS  ?=
CONTEXT  ?= asm
ifeq ($(shell uname -s),Linux)
POLLER   ?= epoll
else
POLLER   ?= kqueue
endif
SANITIZE ?=
COMPAT   ?= native
PREFIX   ?= /usr/local
DESTDIR  ?=
VALGRIND ?= valgrind
TEST_EXEC ?=
TEST_ARGS ?=

# A non-default configuration builds in its own folder, so switching back
# and forth never mixes objects.
comma := ,
CONFIG := $(CONTEXT)$(if $(SANITIZE),-$(subst $(comma),+,$(SANITIZE)))$(if $(filter-out epoll,$(POLLER)),-$(POLLER))$(if $(filter-out native,$(COMPAT)),-$(COMPAT))
ifeq ($(CONFIG),asm)
BUILD ?= build
else
BUILD ?= build/$(CONFIG)
endif

ARCH := $(firstword $(subst -, ,$(shell $(CC) -dumpmachine)))

WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wwrite-strings -Wundef -Wvla -Wformat=2
# Flags the library needs whatever CFLAGS says.
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -I. -pthread -fvisibility=hidden $(WARNINGS)
ifeq ($(CONTEXT),ucontext)
BASE_CFLAGS += -DCORO_CONTEXT_UCONTEXT
else ifneq ($(CONTEXT),asm)
$(error CONTEXT must be asm or ucontext)
endif
# x86-64: no red zone, so the inline context switch (coro/context.h) may
# push its resume address below rsp without first stepping over 128 bytes.
# The flag and the define go together.
ifeq ($(ARCH),x86_64)
BASE_CFLAGS += -mno-red-zone -DCORO_NO_RED_ZONE
endif
ifeq ($(COMPAT),fallback)
BASE_CFLAGS += -DCORO_FORCE_FALLBACKS
else ifneq ($(COMPAT),native)
$(error COMPAT must be native or fallback)
endif
ifneq ($(SANITIZE),)
BASE_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_LDFLAGS := -fsanitize=$(SANITIZE)
VALGRIND :=
endif
ALL_CFLAGS  := $(BASE_CFLAGS) $(CFLAGS)
ALL_LDFLAGS := $(LDFLAGS) $(SAN_LDFLAGS) -pthread
LIBS := -lm

# ---- sources ----------------------------------------------------------------
LIB_SRC := $(wildcard coro/*.c sched/*.c sync/*.c io/*.c)
# One poller backend (sched/poller_*.c) is built.
ifeq ($(POLLER),epoll)
LIB_SRC := $(filter-out sched/poller_kqueue.c sched/kqueue_shim.c,$(LIB_SRC))
else ifeq ($(POLLER),kqueue)
LIB_SRC := $(filter-out sched/poller_epoll.c,$(LIB_SRC))
include sched/kqueue.mk
else
$(error POLLER must be epoll or kqueue)
endif
ifeq ($(CONTEXT),ucontext)
LIB_ASM :=
else
LIB_SRC := $(filter-out coro/context_ucontext.c,$(LIB_SRC))
LIB_ASM := coro/switch_$(ARCH).S
endif
HEADERS := coro.h $(wildcard coro/*.h sched/*.h sync/*.h io/*.h)
PUBLIC_HEADERS := coro.h coro/coro.h sched/sched.h sync/sync.h io/io.h

LIB_OBJ     := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(patsubst %.S,$(BUILD)/obj/%.o,$(LIB_ASM))
LIB_PIC_OBJ := $(patsubst %.c,$(BUILD)/pic/%.o,$(LIB_SRC)) $(patsubst %.S,$(BUILD)/pic/%.o,$(LIB_ASM))

TEST_SRC  := $(wildcard test/*.c)
TEST_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(TEST_SRC))
BENCH_SRC := $(filter-out bench/icount.c,$(wildcard bench/*.c))
# The benchmarks' own bare switch (bench/switch_bare.h), the floor of the
# switch ratios: with the assembly backend, on the CPUs it is written for.
BENCH_ASM := $(if $(filter asm,$(CONTEXT)),$(wildcard bench/switch_bare_$(ARCH).S))
BENCH_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(BENCH_SRC)) $(patsubst %.S,$(BUILD)/obj/%.o,$(BENCH_ASM))
EXAMPLE_SRC := $(wildcard examples/*.c)
EXAMPLES  := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRC))

STATIC := $(BUILD)/libcoro.a
SHARED := $(BUILD)/libcoro.so
RUNNER := $(BUILD)/test/runner
BENCH  := $(BUILD)/bench/coro_bench
ICOUNT := $(BUILD)/bench/icount
CHURN_CLIENT := $(BUILD)/test/churn_client

# ---- targets ----------------------------------------------------------------
.SECONDARY:
.PHONY: all lib test test-native test-valgrind test-scale check-package check-layers check-gdb check-examples-sim churn bench bench-cross icount demo install uninstall clean
all: lib $(EXAMPLES) $(BENCH) $(ICOUNT) $(RUNNER) $(CHURN_CLIENT)
lib: $(STATIC) $(SHARED)

$(BUILD)/obj/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/obj/%.o: %.S coro/context_frame.h Makefile
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/pic/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@
$(BUILD)/pic/%.o: %.S coro/context_frame.h Makefile
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^
$(SHARED): $(LIB_PIC_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,libcoro.so.0 $(ALL_LDFLAGS) $^ -o $@ $(LIBS)

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $< $(STATIC) -o $@ $(LIBS)
# The runner interposes pthread_create (test/thread_hook.c): dlsym, which
# glibc before 2.34 keeps in libdl.
TEST_LIBS := $(LIBS) $(if $(filter Linux,$(shell uname -s)),-ldl)
$(RUNNER): $(TEST_OBJ) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $(TEST_OBJ) $(STATIC) -o $@ $(TEST_LIBS)
$(BENCH_OBJ) $(TEST_OBJ): $(wildcard bench/*.h test/*.h)
$(BENCH): $(BENCH_OBJ) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $(BENCH_OBJ) $(STATIC) -o $@ $(LIBS)

# The suite natively, then under Valgrind Memcheck when it is installed.
# Both halves run whatever the first gave; each runner writes its counts to
# a file (CORO_TEST_SUMMARY), and test/summary.sh ends with one line for
# both halves and a last line `N passed, N failed, N skipped` summing them,
# failing if either half failed. The halves run one after the other even
# under -j (they would compete for the cores).
# Each forked test writes its own Valgrind log (not -q: the "client
# switching stacks?" warning is only printed without it); the runner reads
# it into that test's output and fails the test on a Memcheck error, a leak
# (exit 99) or that warning. The logs left after the run (the runner's own,
# and those of the children coro_process_spawn makes, which are forks under
# Valgrind until their exec) are removed.
TEST_SUMMARY ?=
RUN_TESTS = $(if $(TEST_SUMMARY),CORO_TEST_SUMMARY=$(TEST_SUMMARY) )
test: $(RUNNER)
	@native=0; valgrind=0; \
	rm -f $(BUILD)/test/native.counts $(BUILD)/test/valgrind.counts; \
	$(MAKE) --no-print-directory test-native TEST_SUMMARY=$(BUILD)/test/native.counts || native=$$?; \
	$(MAKE) --no-print-directory test-valgrind TEST_SUMMARY=$(BUILD)/test/valgrind.counts || valgrind=$$?; \
	sh test/summary.sh native $(BUILD)/test/native.counts $$native \
	                   valgrind $(BUILD)/test/valgrind.counts $$valgrind
test-native: $(RUNNER) check-layers check-gdb check-examples-sim
	$(RUN_TESTS)$(TEST_EXEC) $(RUNNER) $(TEST_ARGS)
test-valgrind: $(RUNNER)
ifneq ($(VALGRIND),)
	@if command -v $(VALGRIND) >/dev/null 2>&1; then \
	  echo "== again under Valgrind Memcheck =="; \
	  $(RUN_TESTS)CORO_TEST_VALGRIND_LOG=$(BUILD)/test/valgrind.%p.log \
	  $(VALGRIND) --log-file=$(BUILD)/test/valgrind.%p.log \
	    --error-exitcode=99 --leak-check=full \
	    --errors-for-leak-kinds=definite,indirect,possible \
	    --show-leak-kinds=definite,indirect,possible \
	    $(RUNNER) $(TEST_ARGS); \
	  status=$$?; rm -f $(BUILD)/test/valgrind.*.log; exit $$status; \
	else echo "valgrind not installed: skipping the Memcheck pass"; fi
else
	@echo "Valgrind pass skipped in this configuration ($(CONFIG)$(if $(TEST_EXEC), via $(TEST_EXEC)))"
endif
# The scale tests (TEST_SCALE in test/), natively only, with 4 times the
# usual timeout each.
test-scale: $(RUNNER)
	$(TEST_EXEC) $(RUNNER) --scale $(TEST_ARGS)

# The layering (coro/ < sched/ < sync/ < io/; sync/ and io/ use only
# sched/'s wait interface), on the sources; part of test-native.
check-layers:
	@sh test/check_layers.sh

# tools/coro-gdb.py against a program with coroutines parked in known
# functions (a few seconds; skipped, with a line, without gdb, ptrace or
# where TEST_EXEC runs the programs); part of test-native. The program is
# built -O0 -g, as a user's debug build would be, against the library of
# this configuration.
GDB_TARGET := $(BUILD)/test/gdb_target
$(GDB_TARGET): test/gdb/target.c $(PUBLIC_HEADERS) $(STATIC) Makefile
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O0 -g $(ALL_LDFLAGS) $< $(STATIC) -o $@ $(LIBS)
check-gdb: $(GDB_TARGET)
	@TEST_EXEC="$(TEST_EXEC)" sh test/check_gdb.sh $(GDB_TARGET)

# The examples' deterministic simulations (retry_backoff, circuit_breaker
# --sim SEED): repeatable per seed, varied across seeds, fast.
check-examples-sim: $(BUILD)/examples/retry_backoff $(BUILD)/examples/circuit_breaker
	@TEST_EXEC="$(TEST_EXEC)" sh test/check_examples_sim.sh $(BUILD)

# The library's symbols (coro_ prefix; libcoro.so exports only the public
# API), the public headers as strict C11/C17 and C++11/C++20, and
# docs/API.md naming every public function.
check-package: lib
	sh test/check_package.sh . $(BUILD) docs/API.md

# The example servers under connection churn: RSS flat over 20,000
# sequential connections, 40,000 served with mprotect guards.
# churn_client is plain POSIX: it does not link the library it checks.
$(CHURN_CLIENT): test/churn/churn_client.c Makefile
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $< -o $@
churn: $(BUILD)/examples/echo_server $(BUILD)/examples/http_server $(CHURN_CLIENT)
	sh test/churn.sh $(BUILD)

bench: $(BENCH)
	$(BENCH)

# Channels across two threads, coro's shared channels against Go's (when
# go is installed; otherwise coro's figures alone), medians of COUNT runs.
bench-cross: $(BENCH)
	bench/cross.sh $(BENCH)

# Instructions per step of the scheduler's and sync/'s hot paths: each
# scenario of bench/icount.c under Callgrind for N and 2N steps, the
# difference divided by N, against the targets in bench/icount.sh. The
# driver links the library of this build (the optimized one by default).
# ICOUNT_N sets N.
ICOUNT_N ?= 100000
$(ICOUNT): $(BUILD)/obj/bench/icount.o $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $< $(STATIC) -o $@ $(LIBS)
icount: $(ICOUNT)
	@VALGRIND="$(VALGRIND)" sh bench/icount.sh $(ICOUNT) $(ICOUNT_N)

demo: $(EXAMPLES)
	@sh examples/tour.sh $(BUILD)/examples

# ---- install ----------------------------------------------------------------
# Headers land as <coro.h> and <coro/coro/coro.h>, <coro/sched/sched.h>...;
# their includes are rewritten from repository paths to installed ones.
INCDIR := $(DESTDIR)$(PREFIX)/include
LIBDIR := $(DESTDIR)$(PREFIX)/lib
SHAREDIR := $(DESTDIR)$(PREFIX)/share/coro
install: lib
	mkdir -p $(INCDIR)/coro $(LIBDIR)/pkgconfig $(SHAREDIR)
	cp tools/coro-gdb.py $(SHAREDIR)/coro-gdb.py
	for h in $(PUBLIC_HEADERS); do \
	  if [ $$h = coro.h ]; then dst=$(INCDIR)/coro.h; else dst=$(INCDIR)/coro/$$h; fi; \
	  mkdir -p $$(dirname $$dst); \
	  sed -e 's,#include "\(coro\|sched\|sync\|io\)/,#include <coro/\1/,' \
	      -e '/#include <coro\//s|\.h"|.h>|' $$h > $$dst; \
	done
	cp $(STATIC) $(LIBDIR)/libcoro.a
	cp $(SHARED) $(LIBDIR)/libcoro.so.0
	ln -sf libcoro.so.0 $(LIBDIR)/libcoro.so
	for pc in coro coro-static; do \
	  sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(LIBS)|' $$pc.pc.in > $(LIBDIR)/pkgconfig/$$pc.pc; \
	done

VERSION := $(shell sed -n 's/^\#define CORO_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)/\2/p' coro/coro.h | paste -sd.)

uninstall:
	rm -rf $(INCDIR)/coro $(INCDIR)/coro.h $(LIBDIR)/libcoro.a $(LIBDIR)/libcoro.so \
	       $(LIBDIR)/libcoro.so.0 $(LIBDIR)/pkgconfig/coro.pc $(LIBDIR)/pkgconfig/coro-static.pc \
	       $(SHAREDIR)

clean:
	rm -rf build
