#!/bin/bash
# Runs //tools/gdb:known_tasks with ASYNCIO_DEBUG_SOCKET=1 and checks what
# asyncio_ps.py prints for it, as a table and as a tree.
set -euo pipefail
program=$1
asyncio_ps=$2
expected_tree=$3

fifo="$TEST_TMPDIR/ready"
mkfifo "$fifo"
ASYNCIO_DEBUG_SOCKET=1 "$program" --wait >"$fifo" &
pid=$!
# Killed, the program leaves its socket file behind.
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "/tmp/asyncio-$pid.sock"' EXIT
# "ready": the tasks are in place and the socket is serving.
read -r line <"$fifo"
[[ "$line" == ready ]] || { echo "unexpected first line: $line"; exit 1; }

fail=0
expect() {  # expect FILE TEXT: TEXT is a line of FILE, or a part of one
  if ! grep -qF -- "$2" "$1"; then
    echo "missing from $1: $2"
    fail=1
  fi
}

python3 "$asyncio_ps" "$pid" >"$TEST_TMPDIR/table.txt"
cat "$TEST_TMPDIR/table.txt"
expect "$TEST_TMPDIR/table.txt" "loop #1 at 0x"
expect "$TEST_TMPDIR/table.txt" "task name"
expect "$TEST_TMPDIR/table.txt" "awaiter name"
for name in main fetch-a fetch-b parse; do
  expect "$TEST_TMPDIR/table.txt" "  $name  "
done
expect "$TEST_TMPDIR/table.txt" "app::read_reply() -> app::parse()"

python3 "$asyncio_ps" --tree "$pid" >"$TEST_TMPDIR/tree.txt"
cat "$TEST_TMPDIR/tree.txt"
# The tree, below the line naming the loop (its address and thread vary).
tail -n +2 "$TEST_TMPDIR/tree.txt" >"$TEST_TMPDIR/tree_body.txt"
diff -u "$expected_tree" "$TEST_TMPDIR/tree_body.txt" || fail=1

# A process without the socket: a clear message and a failure.
if python3 "$asyncio_ps" "$$" 2>"$TEST_TMPDIR/err.txt"; then
  echo "asyncio_ps succeeded for a process without a debug socket"
  fail=1
fi
expect "$TEST_TMPDIR/err.txt" "serves no debug socket"
exit $fail
