# tools/coro-gdb.py: gdb commands for programs built with coro.
#
# Load it with
#     (gdb) source tools/coro-gdb.py
# or automatically (see README.md, "Debugging"). It adds:
#
#     info coroutines [all]     every coroutine of the selected thread's
#                               scheduler (all: of every thread's): id, state
#                               and what it waits on, the function it was
#                               spawned with, its name; `*` marks the running
#                               one
#     coro bt ID|NAME|all [BT-ARGS]
#                               the backtrace of a coroutine, parked or ready
#                               (suspended) as well as running; BT-ARGS go to
#                               `bt` (`coro bt 3 full`, `coro bt 3 -frame-info
#                               short-location`)
#     coro apply ID|NAME|all COMMAND
#                               any read-only gdb command run "inside" a
#                               suspended coroutine (`coro apply 3 frame apply
#                               2 info locals`)
#     coro layout               which saved-register frame layout the script
#                               recognises in the process (see FRAME_LAYOUTS)
#
# How a suspended coroutine is shown. The switch (coro/switch_<arch>.S)
# pushes the callee-saved registers and the resume address on the
# coroutine's own stack and keeps the stack pointer in its context
# (coro/context_frame.h draws the frame). In a live process the script
# saves the thread's registers, loads the suspended frame's (the stack
# pointer after the frame is popped, the resume address as pc, the
# callee-saved registers), runs the command, and puts every register back
# in a `finally`, whatever the command did, before re-selecting the frame
# the user had selected. The process is never resumed in between. A core
# file's registers cannot be written: there a Python unwinder grafts the
# suspended frame onto the thread's innermost one instead (see
# _GraftUnwinder).
#
# Everything about the C structs is read by field name through the debug
# information (the library must be built with -g, as `make` does by
# default); only the assembly frame's layout is described here, in
# FRAME_LAYOUTS, and it is recognised at run time rather than assumed.

import re
import time

import gdb

# ---------------------------------------------------------------------------
# The saved-register frame (coro/context_frame.h).
#
# One table per architecture, one row per layout the library has had. For
# each suspended coroutine the rows are tried in order and the first whose
# resume slot holds a plausible resume address is used: an address just
# after a `jmp`/`call` (aarch64: `b`/`bl`) to coro__context_switch (every
# switch enters it that way), or coro__context_entry (a coroutine that has
# not run yet). A stale or unrelated word practically never passes that
# test, so a library built before or after a layout change is read right
# without configuration; if the layout changes again, add a row (offsets
# are CORO_FRAME_* of coro/context_frame.h, "sp_after" is where the stack
# pointer is once the frame is popped). `coro layout` tells which row
# matches.
#
# (Alternatives considered: reading the CORO_FRAME_* macros from the debug
# information needs a -g3 build; decoding coro__context_switch's
# instructions is fragile against any rewrite of the assembly.)
FRAME_LAYOUTS = {
    "x86-64": [
        {
            # MXCSR and the x87 control word at sp+0 (or any 8 bytes of
            # padding there: the same offsets).
            "name": "x86-64, 64 bytes: a control or padding slot at sp+0",
            "regs": {"r15": 8, "r14": 16, "r13": 24, "r12": 32, "rbx": 40, "rbp": 48},
            "resume": 56,
            "sp_after": 64,
        },
        {
            "name": "x86-64, 56 bytes: no slot below r15",
            "regs": {"r15": 0, "r14": 8, "r13": 16, "r12": 24, "rbx": 32, "rbp": 40},
            "resume": 48,
            "sp_after": 56,
        },
    ],
    "aarch64": [
        {
            # q8-q15 and FPCR above x30; only the general registers matter
            # to a backtrace.
            "name": "aarch64 (240 bytes)",
            "regs": {"x19": 0, "x20": 8, "x21": 16, "x22": 24, "x23": 32, "x24": 40,
                     "x25": 48, "x26": 56, "x27": 64, "x28": 72, "x29": 80},
            "resume": 88,
            "sp_after": 240,
        },
    ],
}

# The ucontext backend (make CONTEXT=ucontext): glibc's mcontext_t.
# x86-64 gregs[] indices (REG_R12... of <sys/ucontext.h>).
UCONTEXT_X86_64 = {"r12": 4, "r13": 5, "r14": 6, "r15": 7, "rbp": 10, "rbx": 11,
                   "sp": 15, "pc": 16}

# Commands that would resume the process: refused by `coro apply`, which
# runs with another coroutine's registers loaded.
# (Calling the program's functions, by `call` or within `print`, would run
# on the coroutine's stack: do not.)
RESUMING = re.compile(r"^\s*(c|cont|continue|s|step|si|stepi|n|next|ni|nexti|"
                      r"finish|fin|u|until|adv|advance|j|jump|r|run|start|starti|"
                      r"call|signal|queue-signal|kill|detach|return|"
                      r"reverse-\w+|rc|rs|rn|record)\b")

# struct coro's state (enum coro_state of sched/sched_int.h), read from the
# debug information when it has the enum; these are the values otherwise.
# ACTIVE is running (its scheduler's current) or ready (queued).
ACTIVE, PARKED, DONE = 0, 1, 2


def _load_states():
    global ACTIVE, PARKED, DONE
    try:
        enum = gdb.lookup_type("enum coro_state")
    except gdb.error:
        return
    values = {f.name: f.enumval for f in enum.fields()}
    if all(("CORO_" + n) in values for n in ("ACTIVE", "PARKED", "DONE")):
        ACTIVE, PARKED, DONE = (values["CORO_" + n] for n in ("ACTIVE", "PARKED", "DONE"))


class CoroError(gdb.GdbError):
    pass


# ---------------------------------------------------------------------------
# Small helpers.

def _arch():
    name = gdb.newest_frame().architecture().name()
    if "x86-64" in name:
        return "x86-64"
    if "aarch64" in name:
        return "aarch64"
    raise CoroError("coro-gdb: unsupported architecture %s (x86-64 and aarch64 only)" % name)


def _u64(value):
    return int(value) & 0xFFFFFFFFFFFFFFFF


def _read_word(addr):
    mem = gdb.selected_inferior().read_memory(addr, 8)
    return int.from_bytes(bytes(mem), "little")


def _read_bytes(addr, n):
    try:
        return bytes(gdb.selected_inferior().read_memory(addr, n))
    except gdb.MemoryError:
        return None


def _sym_addr(name):
    """The address of a function (hidden symbols included), or None."""
    sym = gdb.lookup_global_symbol(name)
    if sym is None:
        sym = gdb.lookup_static_symbol(name)
    if sym is not None:
        try:
            return _u64(sym.value().address)
        except gdb.error:
            pass
    try:
        return _u64(gdb.parse_and_eval("(unsigned long)&'%s'" % name))
    except gdb.error:
        return None


def _symbol_at(addr, with_line=False):
    """The function at addr, as `name` or `name+off` (from the ELF symbol
    table, which names a function's split-off cold part apart), and with
    with_line: ` at file:line` (of the innermost inlined function)."""
    if not addr:
        return "NULL"
    text = None
    try:
        # As `print (void *)addr` shows it: "0x... <name+off>" (not `info
        # symbol`, which decodes "coro__x" as the Ada name "coro.x").
        ptr = gdb.Value(addr).cast(gdb.lookup_type("void").pointer())
        m = re.search(r"<(.+)>", ptr.format_string(symbols=True))
        if m:
            text = m.group(1)
    except gdb.error:
        pass
    if text is None:
        # No ELF symbol (stripped): the debug information's function.
        try:
            block = gdb.block_for_pc(addr)
        except RuntimeError:
            block = None
        while block is not None and block.function is None:
            block = block.superblock
        text = block.function.print_name if block is not None else "0x%x" % addr
    if with_line:
        sal = gdb.find_pc_line(addr)
        if sal.symtab is not None and sal.line:
            text += " at %s:%d" % (sal.symtab.filename, sal.line)
    return text


def _fmt_duration(ns):
    """As sched/dump.c writes them: 1.5 s, 12 ms, 80 us, 300 ns."""
    ns = max(ns, 0)
    if ns >= 10 * 10**9:
        return "%d s" % (ns // 10**9)
    if ns >= 10**9:
        return "%.1f s" % (ns / 1e9)
    if ns >= 10**6:
        return "%d ms" % (ns // 10**6)
    if ns >= 10**3:
        return "%d us" % (ns // 10**3)
    return "%d ns" % ns


def _is_live_process():
    inf = gdb.selected_inferior()
    if inf.pid <= 0:
        return False
    conn = getattr(inf, "connection", None)
    return conn is None or getattr(conn, "type", "native") == "native"


# ---------------------------------------------------------------------------
# Threads and frames: run something on another thread, or with other
# registers, and always come back.

class _KeepSelection:
    """Restores the selected thread and frame (by level) on exit."""

    def __enter__(self):
        self.thread = gdb.selected_thread()
        try:
            frame = gdb.selected_frame()
            self.level = frame.level() if hasattr(frame, "level") else _frame_level(frame)
        except gdb.error:
            self.level = None
        return self

    def __exit__(self, *exc):
        try:
            if self.thread is not None and self.thread.is_valid():
                self.thread.switch()
            if self.level is not None:
                # Frame.select, not the `frame` command: that one announces
                # the selection on the terminal.
                frame = gdb.newest_frame()
                for _ in range(self.level):
                    older = frame.older()
                    if older is None:
                        break
                    frame = older
                frame.select()
        except gdb.error:
            pass
        return False


def _frame_level(frame):
    level, f = 0, gdb.newest_frame()
    while f is not None and f != frame:
        f = f.older()
        level += 1
    return level if f is not None else 0


def _tls_sched():
    """The selected thread's scheduler (coro__tls) as a gdb.Value pointer,
    None if it has none; raises gdb.error if TLS cannot be read."""
    s = gdb.parse_and_eval("coro__tls")
    return s if _u64(s) else None


# ---------------------------------------------------------------------------
# The scheduler's coroutines.

class Coro:
    """One struct coro, read by field name."""

    def __init__(self, value, sched):
        self.value = value                     # struct coro (not a pointer)
        self.addr = _u64(value.address)
        self.sched = sched
        fiber = value["fiber"]
        self.id = _u64(fiber["id"])
        name = _u64(fiber["name"])
        self.name = fiber["name"].string() if name else ""
        self.state = int(value["state"])
        self.fn = _u64(value["fn"])
        self.fiber = fiber

    @property
    def state_name(self):
        if self.state == ACTIVE:
            return "running" if self.running else "ready"
        if self.state == PARKED:
            return "parked"
        if self.state == DONE:
            return "done"
        return "state %d" % self.state

    @property
    def running(self):
        return self.addr == self.sched.current

    def stack_range(self):
        st = self.fiber["stack"]
        lo = _u64(st["lo"])
        return lo, self.addr          # the struct tops the stack

    def wait_text(self, now):
        """What coro_dump writes after the state."""
        c = self.value
        if self.state == PARKED:
            what = c["wait_what"]
            text = what.string() if _u64(what) else "?"
            num, obj = int(c["wait_num"]), _u64(c["wait_obj"])
            if num >= 0:
                text += " %d" % num
            elif obj:
                text += " 0x%x" % obj
            parts = [text]
            if now is not None:
                parts.append(_fmt_duration(now - int(c["wait_since"])))
            if int(c["timer_index"]) and now is not None:
                when = int(c["timer_when"])
                parts.append("%s in %s" % ("deadline" if when == int(c["deadline"]) else "wakes",
                                           _fmt_duration(when - now)))
            return ", ".join(parts)
        if self.state == DONE:
            return "status %d, %s" % (int(c["status"]),
                                     "held by its group" if int(c["group_held"]) else "not yet joined")
        return ""


class Sched:
    def __init__(self, ptr, thread=None):
        self.ptr = ptr                          # coro__sched_t *
        self.addr = _u64(ptr)
        self.value = ptr.dereference()
        self.thread = thread
        self.current = _u64(self.value["current"])

    def coroutines(self):
        s = self.value
        coro_ptr = s["current"].type          # coro_t *
        coro_struct = coro_ptr.target().strip_typedefs()
        offset = None
        for f in coro_struct.fields():
            if f.name == "all_node":
                offset = f.bitpos // 8
        if offset is None:
            raise CoroError("coro-gdb: struct coro has no all_node field "
                            "(does the script match this version of coro?)")
        head = _u64(s["all"].address)
        node = _u64(s["all"]["next"])
        out, seen = [], set()
        while node != head:
            if node in seen or node == 0 or len(out) > 50_000_000:
                raise CoroError("coro-gdb: scheduler 0x%x: its list of coroutines breaks at 0x%x "
                                "(a core file without the coroutines' stacks, or corrupt memory)"
                                % (self.addr, node))
            seen.add(node)
            c = gdb.Value(node - offset).cast(coro_ptr).dereference()
            out.append(Coro(c, self))
            node = _u64(c["all_node"]["next"])
        return out


def _live_list_schedulers():
    """Every running scheduler of the process, from sched/fork.c's `live`
    list (no TLS needed)."""
    lookup = getattr(gdb, "lookup_static_symbols", None)          # gdb 10+
    for sym in (lookup("live") if lookup else []):
        if sym.symtab is None or not sym.symtab.filename.endswith("fork.c"):
            continue
        head = sym.value()
        try:
            head_addr = _u64(head.address)
            node = _u64(head["next"])
        except gdb.error:
            continue
        sched_ptr = None
        out = []
        tls = gdb.lookup_global_symbol("coro__tls")
        if tls is not None:
            sched_ptr = tls.type
        if sched_ptr is None:
            try:
                sched_ptr = gdb.lookup_type("coro__sched_t").pointer()
            except gdb.error:
                return []
        off = None
        for f in sched_ptr.target().strip_typedefs().fields():
            if f.name == "live_node":
                off = f.bitpos // 8
        if off is None:
            return []
        seen = set()
        while node != head_addr and node not in seen and node:
            seen.add(node)
            p = gdb.Value(node - off).cast(sched_ptr)
            out.append(p)
            node = _u64(p.dereference()["live_node"]["next"])
        return out
    return []


def _thread_label(thread):
    if thread is None:
        return "thread ?"
    lwp = thread.ptid[1] or thread.ptid[2]
    return "thread %d (LWP %d)" % (thread.num, lwp)


def schedulers(all_threads):
    """[(Sched)] for the selected thread, or for every thread. Each Sched
    knows its thread when TLS could be read."""
    if gdb.selected_thread() is None:
        raise CoroError("coro-gdb: the program is not being run")
    if gdb.lookup_global_symbol("coro__tls") is None:
        raise CoroError("coro-gdb: no symbol coro__tls: is the program linked with coro, "
                        "and the library built with debug information (-g)?")
    _load_states()
    found = []
    tls_error = None
    with _KeepSelection():
        threads = gdb.selected_inferior().threads() if all_threads else [gdb.selected_thread()]
        # Oldest thread first, as `info threads` lists them.
        for t in sorted(threads, key=lambda t: t.num):
            try:
                t.switch()
                s = _tls_sched()
            except gdb.error as e:
                tls_error = e
                continue
            if s is not None:
                found.append(Sched(s, t))
    if tls_error is None or found:
        return found, None
    # No TLS (a static program without libthread_db, a core file gdb cannot
    # map TLS in, a thread not yet initialised): sched/fork.c's list of
    # every running scheduler, threads unknown.
    try:
        scheds = [Sched(p) for p in _live_list_schedulers()]
        if not all_threads:
            # The scheduler whose running coroutine's stack holds the
            # selected thread's stack pointer.
            sp = _u64(gdb.newest_frame().read_register("sp"))
            for s in scheds:
                for c in s.coroutines():
                    lo, hi = c.stack_range()
                    if c.running and lo <= sp < hi:
                        s.thread = gdb.selected_thread()
                        return [s], None
    except gdb.error:
        scheds = []
    if not scheds:
        raise CoroError("coro-gdb: cannot read coro__tls (%s), and no running scheduler "
                        "found otherwise" % tls_error)
    return scheds, ("coro-gdb: cannot read coro__tls (%s): listing every scheduler of "
                    "the process" % tls_error)


def find_coroutines(spec):
    """The coroutines `spec` names (an id, a name, or `all`), searched in the
    selected thread's scheduler first, then in every thread's."""
    for all_threads in (False, True):
        scheds, _ = schedulers(all_threads)
        hits = []
        for s in scheds:
            for c in s.coroutines():
                if spec == "all":
                    if not all_threads:
                        hits.append(c)
                elif spec.isdigit() and c.id == int(spec):
                    return [c]
                elif c.name == spec:
                    hits.append(c)
        if hits:
            return hits
    if spec == "all":
        raise CoroError("coro-gdb: no scheduler runs on this thread")
    raise CoroError("coro-gdb: no coroutine %s%s" % (
        "with id " if spec.isdigit() else "named ", spec))


# ---------------------------------------------------------------------------
# Suspended registers.

def _is_resume_address(arch, addr, switch, entry):
    """Is addr where a switch into coro__context_switch resumes?"""
    if not addr:
        return False
    if entry is not None and addr == entry:
        return True
    if switch is None:
        return False
    if arch == "x86-64":
        b = _read_bytes(addr - 5, 5)
        if b is not None and b[0] in (0xE8, 0xE9):          # call/jmp rel32
            rel = int.from_bytes(b[1:5], "little", signed=True)
            if (addr + rel) & 0xFFFFFFFFFFFFFFFF == switch:
                return True
        b = _read_bytes(addr - 2, 2)
        if b is not None and b[0] == 0xEB:                   # jmp rel8
            if addr + int.from_bytes(b[1:2], "little", signed=True) == switch:
                return True
        return False
    # aarch64: b/bl imm26 just before.
    b = _read_bytes(addr - 4, 4)
    if b is None:
        return False
    insn = int.from_bytes(b, "little")
    if insn & 0x7C000000 != 0x14000000:
        return False
    imm = insn & 0x03FFFFFF
    if imm & 0x02000000:
        imm -= 1 << 26
    return (addr - 4 + imm * 4) & 0xFFFFFFFFFFFFFFFF == switch


_last_layout = {}


def _match_layout(arch, sp):
    """The FRAME_LAYOUTS row that fits the frame at sp, or None."""
    switch = _sym_addr("coro__context_switch")
    entry = _sym_addr("coro__context_entry")
    rows = FRAME_LAYOUTS[arch]
    order = sorted(range(len(rows)), key=lambda i: i != _last_layout.get(arch))
    for i in order:
        try:
            resume = _read_word(sp + rows[i]["resume"])
        except gdb.MemoryError:
            return None
        if _is_resume_address(arch, resume, switch, entry):
            _last_layout[arch] = i
            return rows[i]
    return None


def suspended_registers(c):
    """{register: value} that make c's suspended frame the newest one; pc and
    sp included."""
    arch = _arch()
    ctx = c.fiber["ctx"]
    field_names = [f.name for f in ctx.type.strip_typedefs().fields()]
    if "uc" in field_names:                         # CONTEXT=ucontext
        mc = ctx["uc"]["uc_mcontext"]
        if arch == "x86-64":
            g = mc["gregs"]
            return {r: _u64(g[i]) for r, i in UCONTEXT_X86_64.items()}
        regs = {"x%d" % i: _u64(mc["regs"][i]) for i in range(19, 31)}
        regs.update(sp=_u64(mc["sp"]), pc=_u64(mc["pc"]))
        return regs
    sp = _u64(ctx["sp"])
    row = _match_layout(arch, sp)
    if row is None:
        raise CoroError(
            "coro-gdb: coroutine %d: no resume address in its saved frame at 0x%x; "
            "FRAME_LAYOUTS in tools/coro-gdb.py may not match coro/context_frame.h" % (c.id, sp))
    regs = {r: _read_word(sp + off) for r, off in row["regs"].items()}
    pc = _read_word(sp + row["resume"])
    new_sp = sp + row["sp_after"]
    if arch == "x86-64":
        # The inline switch (coro/context.h) steps over the red zone with
        # `lea -128(%rsp),%rsp` before pushing and undoes it at the resume
        # address. Unwind information describes the function as if that
        # never happened, so "execute" the undoing lea here: pc past it, sp
        # back where the compiler's frame has it.
        b = _read_bytes(pc, 8)
        if b is not None and b[:4] == b"\x48\x8d\xa4\x24":
            new_sp += int.from_bytes(b[4:8], "little", signed=True)
            pc += 8
        elif b is not None and b[:4] == b"\x48\x8d\x64\x24":
            new_sp += int.from_bytes(b[4:5], "little", signed=True)
            pc += 5
    else:
        regs["x30"] = pc
    regs["sp"] = new_sp
    regs["pc"] = pc
    return regs


# Registers gdb's amd64/aarch64 Linux targets reset when pc is written (to
# stop the kernel from restarting an interrupted system call): saved and
# written back last, so a thread stopped in a system call is left exactly as
# it was.
SYSCALL_REGS = ("orig_rax", "syscallno")


class _SwappedRegisters:
    """Within: the selected thread's newest frame shows other registers."""

    def __init__(self, regs):
        self.regs = regs

    def __enter__(self):
        self.thread = gdb.selected_thread()
        frame = gdb.newest_frame()
        frame.select()
        self.saved = {}
        for r in list(self.regs) + list(SYSCALL_REGS):
            try:
                self.saved[r] = _u64(frame.read_register(r))
            except (ValueError, gdb.error):
                pass
        try:
            self._write(self.regs)
        except gdb.error as e:
            self._write(self.saved)
            raise CoroError("coro-gdb: cannot load a coroutine's registers (%s); "
                            "a core file's registers cannot be changed" % e)
        return self

    def __exit__(self, *exc):
        # Back to the thread whose registers were changed, in case the
        # command switched threads.
        if self.thread is not None and self.thread.is_valid():
            self.thread.switch()
        self._write(self.saved)
        return False

    @staticmethod
    def _write(regs):
        # `set $reg` writes the register as the selected frame sees it: in
        # an outer frame, that is the stack slot where it was saved. Only
        # frame 0's are the thread's own (the command run may have selected
        # another frame).
        gdb.newest_frame().select()
        # pc after the others (writing it resets orig_rax), the system call
        # registers last.
        order = [r for r in regs if r not in ("pc",) + SYSCALL_REGS]
        order += [r for r in ("pc",) + SYSCALL_REGS if r in regs]
        for r in order:
            gdb.execute("set $%s = %d" % (r, regs[r]), to_string=True)


def _header(c, now):
    wait = c.wait_text(now)
    return "coroutine %d%s [%s%s]%s" % (
        c.id, ' "%s"' % c.name if c.name else "", c.state_name,
        ", " + wait if wait else "", " <- running" if c.running else "")


def _now(sched):
    """Now on the process's monotonic clock (coro__clock), or None."""
    if _is_live_process():
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    return None


def _thread_running(c):
    """The thread whose stack pointer is in c's stack (when TLS could not
    tell which thread runs c's scheduler)."""
    lo, hi = c.stack_range()
    for t in gdb.selected_inferior().threads():
        t.switch()
        if lo <= _u64(gdb.newest_frame().read_register("sp")) < hi:
            return t
    return None


# ---------------------------------------------------------------------------
# Core files: registers cannot be written there, so the suspended frame is
# grafted on instead. An unwinder, active only while the command runs,
# makes the thread's innermost real frame "return" into the coroutine's
# resume point with the saved registers; the frames printed up to and
# including that real one are then cut from the output and the rest
# renumbered from 0.

try:
    from gdb.unwinder import Unwinder as _Unwinder, register_unwinder as _register_unwinder
except ImportError:                                 # gdb without unwinders
    _Unwinder = None


class _FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


if _Unwinder is not None:
    class _GraftUnwinder(_Unwinder):
        def __init__(self):
            super().__init__("coro-gdb graft")
            self.regs = None        # the coroutine's, while grafting
            self.level = None       # the frame to graft onto

        def __call__(self, pending):
            if self.regs is None or not hasattr(pending, "level") or pending.level() != self.level:
                return None
            info = pending.create_unwind_info(
                _FrameId(pending.read_register("sp"), pending.read_register("pc")))
            for r, v in self.regs.items():
                info.add_saved_register(r, gdb.Value(v).cast(pending.read_register(r).type))
            return info

    _GRAFT = _GraftUnwinder()
    _register_unwinder(None, _GRAFT, replace=True)
else:
    _GRAFT = None


def _renumber_frames(text, cut):
    """Drop frames 0..cut-1 of a backtrace's text, renumber the rest."""
    out, keep = [], True
    for line in text.splitlines(True):
        m = re.match(r"#(\d+)\s+", line)
        if m:
            n = int(m.group(1))
            keep = n >= cut
            if keep:
                line = ("#%-3d" % (n - cut)).rstrip() + " " * max(1, 4 - len(str(n - cut)) - 1) \
                    + line[m.end():]
        if keep:
            out.append(line)
    return "".join(out)


def _run_grafted(regs, command):
    if _GRAFT is None:
        raise CoroError("coro-gdb: this gdb has no Python unwinders")
    frame = gdb.newest_frame()
    level = 0
    while frame.type() == gdb.INLINE_FRAME and frame.older() is not None:
        frame = frame.older()
        level += 1
    words = command.split()
    if words and words[0] in ("bt", "backtrace"):
        # A frame count counts the frames cut too.
        words = [str(int(w) + level + 1) if re.fullmatch(r"\d+", w) else w for w in words]
        command = " ".join(words)
    _GRAFT.regs, _GRAFT.level = regs, level
    gdb.invalidate_cached_frames()
    try:
        out = gdb.execute(command, to_string=True)
    finally:
        _GRAFT.regs = _GRAFT.level = None
        gdb.invalidate_cached_frames()
    if words and words[0] in ("bt", "backtrace"):
        return _renumber_frames(out, level + 1)
    return ("(frames %d and below are the thread's own: the coroutine's start at frame %d)\n"
            % (level, level + 1)) + out


def run_in_coroutine(c, command):
    """Run a gdb command with c's frames as the thread's; returns its
    output."""
    if c.state == DONE:
        return "(ended: its stack holds no frames)\n"
    with _KeepSelection():
        thread = c.sched.thread
        if thread is None and c.running:
            thread = _thread_running(c)
            if thread is None:
                return "(running on a thread not found: none has its stack pointer in this stack)\n"
        if thread is not None and thread != gdb.selected_thread():
            thread.switch()
        if c.running:
            sp = _u64(gdb.newest_frame().read_register("sp"))
            lo, hi = c.stack_range()
            note = ""
            if not lo <= sp < hi:
                note = ("(the thread runs outside this coroutine's stack: in a signal "
                        "handler or in the middle of a switch)\n")
            gdb.newest_frame().select()
            return note + gdb.execute(command, to_string=True)
        regs = suspended_registers(c)
        if _is_live_process():
            with _SwappedRegisters(regs):
                return gdb.execute(command, to_string=True)
        # A core file (or a remote target): graft the frames on.
        try:
            return _run_grafted(regs, command)
        except (CoroError, gdb.error) as e:
            return "%s\nresumes at 0x%x in %s, stack pointer 0x%x\n" % (
                e, regs["pc"], _symbol_at(regs["pc"], True), regs["sp"])


# ---------------------------------------------------------------------------
# Commands.

class InfoCoroutines(gdb.Command):
    """List the coroutines of the selected thread's coro scheduler.
Usage: info coroutines [all]
With `all`, those of every thread's scheduler. Columns: `*` for the running
coroutine, its id, its state (running, ready, parked with what it waits on,
for how long and when its timer fires; done with its status), the function
it was spawned with, and its name."""

    def __init__(self):
        super().__init__("info coroutines", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        arg = arg.strip()
        if arg not in ("", "all", "-a"):
            raise CoroError("usage: info coroutines [all]")
        scheds, note = schedulers(arg in ("all", "-a"))
        if note:
            print(note)
        if not scheds:
            print("No coro scheduler runs on %s." % (
                "any thread" if arg else "this thread"))
            return
        for s in scheds:
            self._print_sched(s, len(scheds) > 1 or arg)

    @staticmethod
    def _print_sched(s, with_thread):
        coros = s.coroutines()
        now = _now(s)
        counts = {}
        for c in coros:
            counts[c.state_name] = counts.get(c.state_name, 0) + 1
        head = "%d coroutines: %d running, %d ready, %d parked, %d done" % (
            len(coros), counts.get("running", 0), counts.get("ready", 0),
            counts.get("parked", 0), counts.get("done", 0))
        if with_thread:
            print("%s, scheduler 0x%x: %s" % (_thread_label(s.thread), s.addr, head))
        else:
            print(head)
        rows = [("", "Id", "State", "Function", "Name")]
        names = {}                  # many coroutines share a function
        for c in coros:
            if c.fn not in names:
                names[c.fn] = _symbol_at(c.fn)
            state = c.state_name
            wait = c.wait_text(now)
            if wait:
                state += ": " + wait
            if int(c.value["cancelled"]):
                state += " (cancelled)"
            rows.append(("*" if c.running else "", str(c.id), state, names[c.fn],
                         '"%s"' % c.name if c.name else ""))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for r in rows:
            print(("%-*s %-*s  %-*s  %-*s  %s" % (
                widths[0], r[0], widths[1], r[1], widths[2], r[2], widths[3], r[3], r[4])).rstrip())
        if now is None:
            print("(durations left out: not a live process)")


class CoroPrefix(gdb.Command):
    """Commands for coro's coroutines: coro bt, coro apply, coro layout.
See also `info coroutines`."""

    def __init__(self):
        super().__init__("coro", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


def _split_spec(arg, usage):
    parts = arg.strip().split(None, 1)
    if not parts:
        raise CoroError(usage)
    return parts[0], parts[1] if len(parts) > 1 else ""


class CoroBt(gdb.Command):
    """Backtrace of a coroutine.
Usage: coro bt ID|NAME|all [BT-ARGS]
ID is a coroutine id (see `info coroutines`), NAME its name; `all` is every
coroutine of the selected thread's scheduler. Works for parked and ready
(suspended) coroutines as well as the running one; BT-ARGS are passed to
`bt` (for example `full`, or a frame count)."""

    def __init__(self):
        super().__init__("coro bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        spec, rest = _split_spec(arg, "usage: coro bt ID|NAME|all [BT-ARGS]")
        self.dont_repeat()
        for c in find_coroutines(spec):
            print(_header(c, _now(c.sched)))
            print(run_in_coroutine(c, ("bt " + rest).strip()), end="")


class CoroApply(gdb.Command):
    """Run a gdb command inside a coroutine.
Usage: coro apply ID|NAME|all COMMAND
The command runs with the coroutine's frames as the thread's stack (frame
0 is where it resumes), then every register is put back. Read-only
commands only: anything that would resume the process is refused.
Example: coro apply 3 frame apply all -q info locals"""

    def __init__(self):
        super().__init__("coro apply", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        spec, command = _split_spec(arg, "usage: coro apply ID|NAME|all COMMAND")
        if not command:
            raise CoroError("usage: coro apply ID|NAME|all COMMAND")
        if RESUMING.match(command):
            raise CoroError("coro apply: `%s` could resume the process with a "
                            "coroutine's registers loaded; not run" % command)
        self.dont_repeat()
        for c in find_coroutines(spec):
            print(_header(c, _now(c.sched)))
            print(run_in_coroutine(c, command), end="")


class CoroLayout(gdb.Command):
    """Show the saved-register frame layout each suspended coroutine matches.
The layouts are FRAME_LAYOUTS in tools/coro-gdb.py; the coroutines are the
selected thread's scheduler's."""

    def __init__(self):
        super().__init__("coro layout", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        arch = _arch()
        scheds, _ = schedulers(False)
        if not scheds:
            print("No coro scheduler runs on this thread.")
            return
        for c in scheds[0].coroutines():
            if c.running or c.state == DONE:
                continue
            ctx = c.fiber["ctx"]
            if "uc" in [f.name for f in ctx.type.strip_typedefs().fields()]:
                print("coroutine %d: ucontext (CONTEXT=ucontext)" % c.id)
                continue
            row = _match_layout(arch, _u64(ctx["sp"]))
            print("coroutine %d: %s" % (c.id, row["name"] if row else "no layout matches"))


# Loading the script twice (source, then auto-load) re-registers the
# commands, which gdb allows; the prefix must exist before its children.
CoroPrefix()
CoroBt()
CoroApply()
CoroLayout()
InfoCoroutines()
