# test/gdb/check.py: run inside gdb by test/check_gdb.sh, against
# test/gdb/target.c:
#
#     gdb -batch -nx -x test/gdb/check.py TARGET
#
# with CORO_GDB_SCRIPT naming tools/coro-gdb.py in the environment. Loads
# the script, stops the target in gdb_stop_here() (in its main coroutine),
# and checks what `info coroutines` and `coro bt` print, that every register
# and the selected frame are given back, and that the target then runs to
# a normal exit. Prints one line per check; the last line is
# "check_gdb: ok (N checks)" or "check_gdb: FAILED ..."; gdb's exit status
# is 0 or 1 accordingly.
import os
import re
import traceback

import gdb

checks = 0
failures = []
skipped = []


def check(cond, what, output=None):
    global checks
    checks += 1
    if cond:
        print("ok     %s" % what)
        return
    print("FAILED %s" % what)
    if output is not None:
        print("------ the output was:")
        print(output.rstrip())
        print("------")
    failures.append(what)


def run(cmd):
    return gdb.execute(cmd, to_string=True)


# A row of `info coroutines`: marker, id, state, function, name.
ROW = re.compile(r'^([* ]) ?(\d+)\s+(.+?)\s{2,}(\S+)(?:\s{2,}"(.*)")?$')


def rows(output):
    out = {}
    for line in output.splitlines():
        m = ROW.match(line)
        if m:
            out[int(m.group(2))] = {"running": m.group(1) == "*", "state": m.group(3),
                                    "fn": m.group(4), "name": m.group(5) or ""}
    return out


def regs(names):
    f = gdb.newest_frame()
    return {r: int(f.read_register(r)) for r in names}


def main():
    run("set pagination off")
    run("set width 0")
    run("set confirm off")
    script = os.environ.get("CORO_GDB_SCRIPT", "tools/coro-gdb.py")
    run("source " + script)
    run("break gdb_stop_here")
    gdb.execute("run")
    thread = gdb.selected_thread()
    check(thread is not None and gdb.selected_frame().name() == "gdb_stop_here",
          "the target stops in gdb_stop_here")
    ids = {n: int(gdb.parse_and_eval("id_" + n))
           for n in ("main", "sleeper", "receiver", "locker", "yielder", "other")}
    lock_addr = int(gdb.parse_and_eval("(unsigned long)&lock"))

    # ---- info coroutines: the selected thread's scheduler.
    out = run("info coroutines")
    print(out.rstrip())
    r = rows(out)
    check(sorted(r) == sorted(ids[n] for n in ("main", "sleeper", "receiver", "locker", "yielder")),
          "info coroutines lists the five coroutines of this thread", out)
    check(out.startswith("5 coroutines: 1 running, 1 ready, 3 parked, 0 done"),
          "info coroutines counts them by state", out)
    expect = {
        "main": ("running", "main_body", "main"),
        "sleeper": ("parked: sleep", "sleeper", "sleeper"),
        "receiver": ("parked: chan recv 0x", "receiver", "receiver"),
        "locker": ("parked: mutex 0x%x" % lock_addr, "locker", "locker"),
        "yielder": ("ready", "yielder", "yielder"),
    }
    for n, (state, fn, name) in expect.items():
        row = r.get(ids[n])
        check(row is not None and row["state"].startswith(state) and row["fn"] == fn
              and row["name"] == name and row["running"] == (n == "main"),
              "info coroutines: %s is %s in %s, named %s%s" % (
                  n, state, fn, name, ", marked running" if n == "main" else ""), out)
    check("wakes in" in r.get(ids["sleeper"], {}).get("state", ""),
          "info coroutines: the sleeper's timer is shown", out)

    # ---- info coroutines all: the other thread's scheduler too.
    out = run("info coroutines all")
    check(len(re.findall(r"^thread \d+ \(LWP \d+\), scheduler 0x", out, re.M)) == 2,
          "info coroutines all shows two threads' schedulers", out)
    other = [line for line in out.splitlines() if re.match(r"^[* ] ?%d\s" % ids["other"], line)
             and "other_body" in line]
    fd = int(gdb.parse_and_eval("other_pipe[0]"))
    check(len(other) == 1 and ("parked: read fd %d," % fd) in other[0],
          "info coroutines all: the other thread's coroutine is parked reading fd %d" % fd, out)

    # ---- coro bt of parked and ready coroutines: their own frames.
    before = regs(["pc", "sp"])
    gdb.execute("up")
    own = {
        "sleeper": ["parked_in_sleep", "sleeper"],
        "receiver": ["parked_in_recv", "receiver"],
        "locker": ["coro_mutex_lock", "parked_in_lock", "locker"],
        # coro_yield itself may be missing: with CONTEXT=ucontext it
        # tail-calls the switch, so no frame of it is left on the stack.
        "yielder": ["ready_in_yield", "yielder"],
    }
    for n, funcs in own.items():
        out = run("coro bt %d" % ids[n])
        names = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(", out, re.M)
        check(all(f in names for f in funcs) and "gdb_stop_here" not in names
              and "main_body" not in names and names.index(funcs[-1]) > names.index(funcs[0]),
              "coro bt %d (%s) shows %s" % (ids[n], n, " < ".join(funcs)), out)
    out = run("coro bt receiver")
    check(out.startswith('coroutine %d "receiver" [parked, chan recv' % ids["receiver"])
          and "parked_in_recv" in out, "coro bt NAME works, with a header", out)
    check(gdb.selected_frame().level() == 1, "coro bt keeps the selected frame (frame 1)")
    gdb.execute("down")
    check(regs(["pc", "sp"]) == before, "coro bt gives pc and sp back")

    # ---- the running coroutine: the thread's own backtrace.
    out = run("coro bt %d" % ids["main"])
    check(re.search(r"^#0\s+gdb_stop_here", out, re.M) and "main_body" in out,
          "coro bt of the running coroutine is the thread's backtrace", out)

    # ---- a coroutine of another thread (stopped in a system call).
    other_thread = [t for t in gdb.selected_inferior().threads() if t.num != thread.num][0]
    other_thread.switch()
    names = ["pc", "sp", "rbp", "rbx", "r12", "orig_rax"] if "x86-64" in \
        gdb.newest_frame().architecture().name() else ["pc", "sp", "x29", "x19"]
    other_before = regs(names)
    thread.switch()
    out = run("coro bt %d" % ids["other"])
    check("parked_in_other_thread" in out and "coro_read" in out and "other_body" in out,
          "coro bt of the other thread's coroutine shows parked_in_other_thread", out)
    check(gdb.selected_thread().num == thread.num, "coro bt keeps the selected thread")
    other_thread.switch()
    check(regs(names) == other_before,
          "the other thread's registers are given back (%s)" % ", ".join(names))
    thread.switch()

    # ---- coro bt all, coro apply, errors.
    out = run("coro bt all")
    check(len(re.findall(r"^coroutine \d+ ", out, re.M)) == 5
          and all(f in out for f in ("parked_in_sleep", "parked_in_recv", "parked_in_lock",
                                     "ready_in_yield", "gdb_stop_here")),
          "coro bt all shows the five coroutines' stacks", out)
    # A command that selects another frame: the registers must still be
    # given back to the thread, not written into the coroutine's stack
    # (the receiver's frames are checked at the end, when it runs on).
    out = run("coro apply %d frame apply all -q print $pc" % ids["receiver"])
    check("<parked_in_recv+" in out and "<receiver+" in out,
          "coro apply runs a command inside a coroutine", out)
    run("coro apply %d frame function parked_in_recv" % ids["receiver"])
    run("coro apply %d up 2" % ids["locker"])
    for cmd, msg in (("coro apply %d continue" % ids["receiver"], "could resume"),
                     ("coro bt 999999999", "no coroutine with id"),
                     ("coro bt nosuch", "no coroutine named")):
        try:
            run(cmd)
            err = ""
        except gdb.error as e:
            err = str(e)
        check(msg in err, "`%s` fails: %s" % (cmd, msg), err)
    print(run("coro layout").rstrip())

    # ---- everything given back: the target runs to its end.
    check(regs(["pc", "sp"]) == before and gdb.selected_frame().name() == "gdb_stop_here",
          "the stopped thread is where it was")
    core = os.environ.get("CORO_GDB_CORE")
    if not core:
        skipped.append("the core file part (not with a sanitizer's shadow memory)")
    else:
        try:
            run("generate-core-file " + core)
        except gdb.error as e:
            # The machine's trouble (a full disk), not the script's.
            print("skip   core file: %s" % e)
            skipped.append("the core file part (gcore failed: %s)" % e)
            core = None
    run("delete")
    gdb.execute("continue")
    code = gdb.parse_and_eval("$_exitcode")
    check(gdb.selected_inferior().pid == 0 and int(code) == 0,
          "the target then runs to a normal exit (every wait woken, every register intact)",
          str(code))
    if core:
        check_core(core, ids)


def check_core(core, ids):
    """The same process, from the core gdb wrote at the breakpoint: a core's
    registers cannot be written, so `coro bt` grafts the frames on."""
    try:
        run("core-file " + core)
    except gdb.error as e:
        # A truncated core (the disk filled up while gcore wrote it).
        if "not a core dump" in str(e) or "truncated" in str(e):
            print("skip   core file: %s" % e)
            skipped.append("the core file part (gcore wrote an unreadable core: %s)" % e)
            return
        raise
    try:
        out = run("info coroutines")
    except gdb.error as e:
        # gcore cannot read mappings holding kernel guard regions
        # (MADV_GUARD_INSTALL, Linux 6.13+): the stacks are missing. A core
        # the kernel dumps has them.
        if "breaks at" in str(e):
            print("skip   core file: %s" % e)
            skipped.append("the core file part (gcore wrote no coroutine stacks: "
                           "kernel guard regions)")
            return
        raise
    r = rows(out)
    check(r.get(ids["receiver"], {}).get("state", "").startswith("parked: chan recv"),
          "core file: info coroutines", out)
    out = run("coro bt %d" % ids["receiver"])
    names = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(", out, re.M)
    check(re.search(r"^#0 ", out, re.M) and "parked_in_recv" in names and "receiver" in names
          and "gdb_stop_here" not in names and "main_body" not in names,
          "core file: coro bt %d shows the receiver's frames from #0" % ids["receiver"], out)
    out = run("coro bt %d" % ids["main"])
    check(re.search(r"^#0\s+gdb_stop_here", out, re.M),
          "core file: coro bt of the running coroutine", out)


try:
    main()
except Exception:
    traceback.print_exc()
    failures.append("exception")
if failures:
    print("check_gdb: FAILED %d of %d checks: %s" % (len(failures), checks, "; ".join(failures)))
    gdb.execute("quit 1")
print("check_gdb: ok (%d checks%s)" % (checks, "; skipped: " + "; ".join(skipped) if skipped else ""))
gdb.execute("quit 0")
