"""gdb commands for C++ asyncio programs: loops, tasks and await chains.

    (gdb) source tools/gdb/asyncio_gdb.py
    (gdb) asyncio-loops     the loops that have had tasks, with their counts
    (gdb) asyncio-tasks     one line per pending task: id, name, state, what
                            it awaits, its coroutine stack (innermost first)
    (gdb) asyncio-tree      the tasks as trees, as format_task_tree (and
                            `python -m asyncio pstree`) prints them

They read the program's memory only (no function of the program is
called), so they work on a live process stopped anywhere, a loop thread
stuck in a callback included, and on a core file. They walk the process's
list of task registries (TaskRegistry::live_head_), each registry's pending
tasks, each task's chain of suspended coroutine frames (a frame starts
with its resume function, whose symbol names the coroutine), and who awaits
each task, read from its done-callbacks as capture_call_graph reads them,
through gather, wait, wait_for, shield, as_completed and TaskGroup.

The program needs the DWARF description of the library's structures: link
//futures:gdb_types (or build everything with -g) and keep debug sections
(--strip=never). The state of the task running at the moment of the stop
is shown as of its last suspension.
"""

import re

import gdb

_NS = "asyncio::futures_internal::"


def _type(name):
    return gdb.lookup_type(_NS + name)


def _pointer(value):
    """The raw pointer of a std::unique_ptr or std::coroutine_handle."""
    void_pp = gdb.lookup_type("void").pointer().pointer()
    return int(value.address.cast(void_pp).dereference())


def _string_at(address):
    """The std::string at `address` (libstdc++'s layout: data, then length)."""
    data = _read_pointer(address)
    length = _read_pointer(address + gdb.lookup_type("void").pointer().sizeof)
    if length == 0:
        return ""
    mem = gdb.selected_inferior().read_memory(data, min(length, 4096))
    return bytes(mem).decode(errors="replace")


def _symbol(address):
    """`info symbol`'s name for an address (without the offset), or None."""
    text = gdb.execute("info symbol %#x" % address, to_string=True).strip()
    if text.startswith("No symbol"):
        return None
    text = re.sub(r" in section \S+( of .*)?$", "", text)
    return re.sub(r" \+ \d+$", "", text)


def _function_name(resume_address):
    """"app::fetch()" from a coroutine's resume function, as the program's
    own call graphs name it (demangled, without parameters)."""
    name = _symbol(resume_address)
    if name is None:
        return "%#x" % resume_address
    name = re.sub(r" \[clone [^\]]*\]$", "", name)
    if name.startswith("_Z"):
        return _nested_name(name) + "()"
    # Cut the parameter list: the parenthesized group that ends the name.
    name = _cut_trailing_group(name, "(", ")")
    # A template function's demangled name starts with its return type.
    depth = 0
    start = 0
    for i, c in enumerate(name):
        if c in "<(":
            depth += 1
        elif c in ">)":
            depth -= 1
        elif c == " " and depth == 0:
            start = i + 1
    name = name[start:]
    # The function's own template arguments, which the program's call graphs
    # (absl's symbolizer) leave out.
    return _cut_trailing_group(name, "<", ">") + "()"


def _cut_trailing_group(name, opening, closing):
    """`name` without the bracketed group that ends it, if one does."""
    if not name.endswith(closing):
        return name
    depth = 0
    for i in range(len(name) - 1, -1, -1):
        if name[i] == closing:
            depth += 1
        elif name[i] == opening:
            depth -= 1
            if depth == 0:
                return name[:i]
    return name


def _nested_name(mangled):
    """"asyncio::wait" from a symbol gdb could not demangle (Clang mangles a
    requires-clause that gdb's demangler does not know): the leading
    components of its nested name, _ZN<length><identifier>..."""
    match = re.match(r"_ZN((?:\d+[A-Za-z_]\w*)+)", mangled)
    if not match:
        return mangled
    parts = []
    rest = match.group(1)
    while rest and rest[0].isdigit():
        length = int(re.match(r"\d+", rest).group(0))
        digits = len(str(length))
        parts.append(rest[digits:digits + length])
        rest = rest[digits + length:]
    return "::".join(parts)


def _read_pointer(address):
    void_pp = gdb.lookup_type("void").pointer().pointer()
    return int(gdb.Value(address).cast(void_pp).dereference())


class Task:
    def __init__(self, core):
        self.core = core  # a TaskCore value
        self.address = int(core.address)

    @property
    def name(self):
        extras = _pointer(self.core["extras_"])
        if extras:
            value = gdb.Value(extras).cast(_type("TaskCore::Extras").pointer()).dereference()
            # std::optional<std::string>, whose members the DWARF of a
            # fastbuild may leave out; libstdc++'s layout: the value, then
            # the flag that says it is there.
            optional = int(value["name"].address)
            string_size = gdb.lookup_type("std::string").sizeof
            engaged = gdb.Value(optional + string_size).cast(gdb.lookup_type("bool").pointer())
            if bool(engaged.dereference()):
                return _string_at(optional)
        return "Task-%d" % int(self.core["id_"])

    @property
    def state(self):
        if bool(self.core["must_cancel_"]) or int(self.core["num_cancels_requested_"]) > 0:
            return "cancelling"
        return "pending"

    def frames(self, generators):
        """The coroutine stack, innermost first, as get_stack walks it."""
        if not bool(self.core["started_"]):
            return []
        stack = []
        frame = _pointer(self.core["link_"])
        promise_offset = 2 * gdb.lookup_type("void").pointer().sizeof
        while frame and len(stack) < 1000:
            if frame in generators:
                stack.append(_function_name(_read_pointer(frame)) + " (async generator)")
                break
            stack.append(_function_name(_read_pointer(frame)))
            core = gdb.Value(frame + promise_offset).cast(_type("TaskCore").pointer()).dereference()
            if int(core.address) == self.address or bool(core["is_task_"]):
                break
            next_frame = _pointer(core["link_"])
            if bool(core["parent_unknown_"]):
                if next_frame:
                    stack.append(_function_name(_read_pointer(next_frame)))
                break
            frame = next_frame
        return stack

    def awaiters(self, tasks_by_address):
        """The tasks awaiting this one (see _awaiting_tasks)."""
        return _awaiting_tasks(self.address, tasks_by_address)


def _callback_nodes(future):
    """The done-callback nodes of the FutureStateBase at `future` (a circular list)."""
    # Read at the member's offset: a FutureStateBase value would make gdb
    # look for the dynamic type's RTTI, which a type private to a .cc lacks.
    offset = next(f.bitpos for f in _type("FutureStateBase").fields() if f.name == "callbacks_")
    first = _read_pointer(future + offset // 8)
    node = first
    nodes = []
    while node and len(nodes) < 100000:
        nodes.append(node)
        node = int(gdb.Value(node).cast(_type("CallbackNode").pointer()).dereference()["next"])
        if node == first:
            break
    return nodes


def _node(address, name):
    return gdb.Value(address).cast(_type(name).pointer()).dereference()


def _awaiters_of(future, seen):
    """awaiters_of in futures/call_graph.cc: the futures and tasks awaiting
    `future`, read from its done-callbacks (futures/internal/call_graph_nodes.h),
    each known by its fire function: a task's wake-up (co_await), a record of
    future_add_to_awaited_by (TaskGroup, shield, as_completed), and the nodes
    of gather and wait, whose outer future and waiter are seen through."""
    if future in seen:
        return []
    seen.add(future)
    found = []

    def add(waiter):
        if waiter and waiter not in found:
            found.append(waiter)

    for node in _callback_nodes(future):
        fire = _symbol(int(_node(node, "CallbackNode")["fire"])) or ""
        if "WakeNode::wake(" in fire:
            add(int(_node(node, "WakeNode")["task"]))
        elif "AwaitedByNode::on_fire(" in fire:
            add(int(_node(node, "AwaitedByNode")["waiter"]))
        elif "GatherChildNode::on_child_done(" in fire:
            for waiter in _awaiters_of(int(_node(node, "GatherChildNode")["owner"]), seen):
                add(waiter)
        elif "WaitNode::on_done(" in fire:
            context = _node(node, "WaitNode")["context"].dereference()
            for waiter in _awaiters_of(int(context["waiter"]["state_"]), seen):
                add(waiter)
    return found


def _awaiting_tasks(future, tasks_by_address):
    """awaiting_tasks in futures/call_graph.cc: the tasks awaiting `future`,
    through plain futures that await it."""
    tasks = []
    visited = {future}
    pending = _awaiters_of(future, set())
    while pending:
        waiter = pending.pop()
        if waiter in visited:
            continue
        visited.add(waiter)
        if waiter in tasks_by_address:
            tasks.append(waiter)
        else:
            pending.extend(_awaiters_of(waiter, set()))
    return tasks


class Loop:
    def __init__(self, registry):
        self.registry = registry
        self.serial = int(registry["serial_"])
        self.address = int(registry["loop_"].address)

    def tasks(self):
        """Pending tasks, oldest first."""
        tasks = []
        core = int(self.registry["head_"])
        while core and len(tasks) < 1000000:
            value = gdb.Value(core).cast(_type("TaskCore").pointer()).dereference()
            tasks.append(Task(value))
            core = int(value["registry_next_"])
        tasks.reverse()
        return tasks

    def generators(self):
        frames = set()
        gen = int(self.registry["generators_"])
        while gen:
            value = gdb.Value(gen).cast(_type("GeneratorControl").pointer()).dereference()
            frames.add(_pointer(value["frame"]))
            gen = int(value["next"])
        return frames

    def header(self):
        return "loop #%d at %#x" % (self.serial, self.address)


def loops():
    """The live loops that have had tasks, oldest first."""
    head_address = gdb.parse_and_eval("&'%sTaskRegistry::live_head_'" % _NS)
    registry_type = _type("TaskRegistry")
    head = head_address.cast(registry_type.pointer().pointer()).dereference()
    result = []
    registry = int(head)
    while registry:
        value = gdb.Value(registry).cast(registry_type.pointer()).dereference()
        result.append(Loop(value))
        registry = int(value["live_next_"])
    result.reverse()
    return result


def format_tree(loop):
    """format_task_tree's text for `loop`."""
    tasks = loop.tasks()
    by_address = {t.address: t for t in tasks}
    generators = loop.generators()
    children = {t.address: [] for t in tasks}
    roots = []
    for task in tasks:
        awaiters = task.awaiters(by_address)
        if not awaiters:
            roots.append(task)
        for waiter in awaiters:
            children[waiter].append(task)
    lines = []
    path = []

    def draw(task, prefix, last):
        on_path = task.address in path
        branch = "└── " if last else "├── "
        lines.append(prefix + branch + "(T) " + task.name + (" (cycle)" if on_path else ""))
        if on_path:
            return
        inner = prefix + ("    " if last else "│   ")
        for function in reversed(task.frames(generators)):
            lines.append(inner + "└──  " + function)
            inner += "    "
        path.append(task.address)
        awaited = children[task.address]
        for i, child in enumerate(awaited):
            draw(child, inner, i + 1 == len(awaited))
        path.pop()

    for root in roots:
        draw(root, "", True)
    return "".join(line + "\n" for line in lines)


class _PerLoopCommand(gdb.Command):
    """A command that prints something for each loop (show)."""

    def __init__(self, name):
        super().__init__(name, gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        found = loops()
        if not found:
            gdb.write("no event loop has tasks\n")
        for loop in found:
            gdb.write(self.show(loop))


class LoopsCommand(_PerLoopCommand):
    """List the event loops that have had tasks, with their pending task counts."""

    def __init__(self):
        super().__init__("asyncio-loops")

    def show(self, loop):
        return "%s: %d pending tasks\n" % (loop.header(), len(loop.tasks()))


class TasksCommand(_PerLoopCommand):
    """List every loop's pending tasks: id, name, state, awaiting tasks, stack."""

    def __init__(self):
        super().__init__("asyncio-tasks")

    def show(self, loop):
        tasks = loop.tasks()
        by_address = {t.address: t for t in tasks}
        generators = loop.generators()
        rows = [("task id", "task name", "state", "awaited by", "coroutine stack")]
        for task in tasks:
            waiters = ", ".join(by_address[w].name for w in task.awaiters(by_address))
            stack = " -> ".join(task.frames(generators))
            rows.append(("%#x" % task.address, task.name, task.state, waiters, stack))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        text = loop.header() + ":\n"
        for n, row in enumerate(rows):
            text += "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n"
            if n == 0:
                text += "-" * (sum(widths) + 2 * (len(widths) - 1)) + "\n"
        return text


class TreeCommand(_PerLoopCommand):
    """Print every loop's tasks as trees, each awaiting task above its frames."""

    def __init__(self):
        super().__init__("asyncio-tree")

    def show(self, loop):
        return loop.header() + ":\n" + (format_tree(loop) or "(no pending tasks)\n")


LoopsCommand()
TasksCommand()
TreeCommand()
