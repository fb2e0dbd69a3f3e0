#!/bin/bash
# Runs //tools/gdb:known_tasks under gdb in batch mode, stopped at
# asyncio_debug_breakpoint() (every task waiting), and checks what the
# commands of asyncio_gdb.py print: on the live process, then on a core file
# of it.
set -euo pipefail
program=$1
script=$2
expected_tree=$3

fail=0
expect() {  # expect FILE TEXT: TEXT is in FILE
  if ! grep -qF -- "$2" "$1"; then
    echo "missing from $1: $2"
    fail=1
  fi
}
# The tree below the line naming the loop (its address varies), compared
# with the expected one.
check_tree() {  # check_tree FILE
  sed -n '/^loop #1 at 0x[0-9a-f]*:$/,$p' "$1" | tail -n +2 >"$1.body"
  diff -u "$expected_tree" "$1.body" || fail=1
}

# Under AddressSanitizer the process maps terabytes of shadow memory: no
# core file of it.
with_core=1
save_core=(-ex "gcore $TEST_TMPDIR/known_tasks.core")
if readelf -d "$program" | grep -q libasan; then
  with_core=0
  save_core=()
fi

live="$TEST_TMPDIR/live.txt"
gdb -nx -batch -x "$script" \
  -ex "break asyncio_debug_breakpoint" -ex run \
  -ex "echo == loops\n" -ex asyncio-loops \
  -ex "echo == tasks\n" -ex asyncio-tasks \
  -ex "echo == tree\n" -ex asyncio-tree \
  -ex "echo == end\n" "${save_core[@]}" \
  -ex kill --args "$program" --break >"$live" 2>&1 || { cat "$live"; exit 1; }
cat "$live"

expect "$live" "loop #1 at 0x"
expect "$live" ": 9 pending tasks"
sed -n '/^== tasks$/,/^== tree$/p' "$live" >"$live.tasks"
expect "$live.tasks" "task name  state    awaited by  coroutine stack"
expect "$live.tasks" "  main       pending              asyncio::TaskGroup::join() -> app::main_task()"
expect "$live.tasks" "  fetch-a    pending  main        app::fetch_a()"
expect "$live.tasks" "  fetch-b    pending  main        app::read_reply() -> app::fetch_b()"
expect "$live.tasks" "  parse      pending  fetch-a     app::read_reply() -> app::parse()"
# Through gather's outer future and wait's waiter to the awaiting task.
expect "$live.tasks" "  gatherer   pending  main        asyncio::futures_internal::gather_tuple() -> app::gather_both()"
expect "$live.tasks" "  gather-1   pending  gatherer    app::read_reply()"
expect "$live.tasks" "  gather-2   pending  gatherer    app::read_reply()"
expect "$live.tasks" "  waited     pending  waiter      app::read_reply()"
if grep -q "^warning: RTTI" "$live"; then
  echo "gdb warned while reading the tasks"
  fail=1
fi
sed -n '/^== tree$/,/^== end$/p' "$live" | grep -v '^== end$' >"$live.tree"
check_tree "$live.tree"

if [[ $with_core == 1 ]]; then
  gdb -nx -batch -x "$script" -ex asyncio-tree "$program" "$TEST_TMPDIR/known_tasks.core" >"$TEST_TMPDIR/core.txt" 2>&1 ||
    { cat "$TEST_TMPDIR/core.txt"; exit 1; }
  cat "$TEST_TMPDIR/core.txt"
  check_tree "$TEST_TMPDIR/core.txt"
fi
exit $fail
