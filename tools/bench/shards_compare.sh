#!/usr/bin/env bash
# //shards in numbers: one markdown report.
#
#   bazel run --config=opt //tools/bench:shards_compare [-- options]
#
# Options:
#   --quick        one round of 0.5 s per cell, fewer calls (a smoke run)
#   --rounds N     rounds; each cell shows the median (default 3)
#   --seconds T    measured seconds per echo cell and round (default 2)
#   --calls N      cross-shard round trips per measurement (default 200000)
#
# 1. shards_bench: cross-shard round trips (Shard::call, Shard::submit)
#    against run_coroutine_threadsafe between two loops, one at a time and
#    100 at once; the spread of 1,000 connections over 2 reuse_port shards.
# 2. Server CPU per request (utime+stime of the server process, all its
#    threads, from /proc, divided by the requests: echo_load --server-pid) for
#    the same 1 KiB echo over 10 connections on 1 shard and on 2 shards: the
#    per-request cost of sharding, which must stay flat (within 5 %).
# 3. Latency (p50/p99 from echo_load) of a streams echo on 2 shards whose
#    every request first makes a Shard::call to the other shard, against the
#    same echo without the call.
#
# Nothing is pinned: the load generator and the shards share the machine's
# cores, so req/s moves with the machine; CPU per request is the figure to
# compare. On a 2-core machine the load generator competes with 2 shards;
# see the README ("Using every core") for measuring scaling on a larger one.
set -euo pipefail

rounds=3
seconds=2
calls=200000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) rounds=1; seconds=0.5; calls=20000; shift ;;
    --rounds) rounds="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --calls) calls="$2"; shift 2 ;;
    *) echo "shards_compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

bench_dir=""
for dir in "${RUNFILES_DIR:+$RUNFILES_DIR/asyncio_cpp}" "$0.runfiles/asyncio_cpp"; do
  if [[ -n "$dir" && -x "$dir/tools/bench/shards_echo_server" ]]; then
    bench_dir="$dir/tools/bench"
    break
  fi
done
if [[ -z "$bench_dir" ]]; then
  echo "shards_compare.sh: run it with bazel run --config=opt //tools/bench:shards_compare" >&2
  exit 2
fi

server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

"$bench_dir/shards_bench" --calls "$calls" --rounds "$rounds"
echo

# Starts a server (args: its options), sets server_pid and port.
start_server() {
  local fifo
  fifo="$(mktemp -u)"
  mkfifo "$fifo"
  "$bench_dir/shards_echo_server" "$@" 0 >"$fifo" &
  server_pid=$!
  read -r port <"$fifo"
  rm -f "$fifo"
}

stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
}

# One measurement: prints the JSON field $1 of echo_load's output.
measure() {
  local field="$1"
  shift
  "$bench_dir/echo_load" --port "$port" --server-pid "$server_pid" --seconds "$seconds" "$@" |
    python3 -c "import json, sys; print(json.load(sys.stdin)['$field'])"
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

cpu_cell() {  # connections, server options...
  local conns="$1" values=()
  shift
  start_server "$@"
  for ((r = 0; r < rounds; r++)); do
    values+=("$(measure server_cpu_us_per_req --connections "$conns" --size 1024)")
  done
  stop_server
  printf '%s\n' "${values[@]}" | median
}

echo "| 1 KiB echo | server CPU µs/req (median of $rounds) |"
echo "|---|--:|"
one="$(cpu_cell 10 --shards 1)"
two="$(cpu_cell 10 --shards 2)"
two20="$(cpu_cell 20 --shards 2)"
echo "| \`Protocol\`, 1 shard, 10 connections | $one |"
echo "| \`Protocol\`, 2 shards, 10 connections (5 per shard) | $two |"
echo "| \`Protocol\`, 2 shards, 20 connections (10 per shard) | $two20 |"
one_s="$(cpu_cell 10 --shards 1 --streams)"
two_s="$(cpu_cell 10 --shards 2 --streams)"
two20_s="$(cpu_cell 20 --shards 2 --streams)"
echo "| streams, 1 shard, 10 connections | $one_s |"
echo "| streams, 2 shards, 10 connections (5 per shard) | $two_s |"
echo "| streams, 2 shards, 20 connections (10 per shard) | $two20_s |"
python3 -c "import sys; a,b,c,d,e,f=map(float,sys.argv[1:]); print('\n2 shards / 1 shard, same connections: Protocol %.3fx, streams %.3fx; same connections per shard: Protocol %.3fx, streams %.3fx' % (b/a, e/d, c/a, f/d))" \
  "$one" "$two" "$two20" "$one_s" "$two_s" "$two20_s"
echo

latency_row() {  # label, server options...
  local label="$1"
  shift
  local p50s=() p99s=() cpus=()
  start_server "$@"
  for ((r = 0; r < rounds; r++)); do
    local json
    json="$("$bench_dir/echo_load" --port "$port" --server-pid "$server_pid" --seconds "$seconds" \
      --connections 10 --size 64)"
    p50s+=("$(python3 -c "import json, sys; print(json.loads(sys.argv[1])['p50_us'])" "$json")")
    p99s+=("$(python3 -c "import json, sys; print(json.loads(sys.argv[1])['p99_us'])" "$json")")
    cpus+=("$(python3 -c "import json, sys; print(json.loads(sys.argv[1])['server_cpu_us_per_req'])" "$json")")
  done
  stop_server
  echo "| $label | $(printf '%s\n' "${p50s[@]}" | median) | $(printf '%s\n' "${p99s[@]}" | median) | $(printf '%s\n' "${cpus[@]}" | median) |"
}

echo "| 64-byte streams echo, 2 shards, 10 connections | p50 µs | p99 µs | server CPU µs/req |"
echo "|---|--:|--:|--:|"
latency_row "answered on the accepting shard" --shards 2 --streams
latency_row "after a \`Shard::call\` to the other shard" --shards 2 --cross
