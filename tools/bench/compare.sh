#!/usr/bin/env bash
# Ours vs uvloop vs asyncio on the same micro workloads, as one markdown table.
#
#   bazel run --config=opt //tools/bench:compare [-- options]
#   tools/bench/compare.sh [options]        # from the source tree: builds micro first
#
# Options:
#   --repetitions N   runs of each benchmark; the table shows the median (default 3)
#   --quick           one repetition, Python work sizes / 5 (a smoke run)
#   --clock wall|cpu  rate by wall-clock (default) or by CPU time of the loop
#                     thread; cpu is steadier on a busy machine. Timers and
#                     threadsafe round trips are always wall-clock.
#   --no-pin          do not pin to one core
#   --json FILE       also write the table's rows to FILE (JSON, for charts.py)
#   --asio            also run //tools/bench:asio_micro (the timer and round-trip
#                     workloads on Boost.Asio; needs libboost1.81-dev, see
#                     ./dev deps --bench) and add its column
#
# Run from the source tree it builds micro itself; $BAZEL_STARTUP_OPTS is
# passed to bazel (e.g. --output_base=...).
#
# Everything runs pinned to core 0 with `taskset -c 0` when available. The
# C++ side is //tools/bench:micro (Google Benchmark, JSON), the Python side
# tools/bench/micro.py under /usr/bin/python3 (override with $PYTHON), which
# must have uvloop for its column.
set -euo pipefail

repetitions=3
scale=1
clock=wall
pin=1
json_out=""
asio=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repetitions) repetitions="$2"; shift 2 ;;
    --repetitions=*) repetitions="${1#*=}"; shift ;;
    --quick) repetitions=1; scale=0.2; shift ;;
    --clock) clock="$2"; shift 2 ;;
    --clock=*) clock="${1#*=}"; shift ;;
    --no-pin) pin=0; shift ;;
    --json) json_out="$2"; shift 2 ;;
    --json=*) json_out="${1#*=}"; shift ;;
    --asio) asio=1; shift ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

# --- find micro, micro.py and compare.py --------------------------------------
find_files() {
  local dir
  for dir in "${RUNFILES_DIR:+$RUNFILES_DIR/asyncio_cpp}" "$0.runfiles/asyncio_cpp" "$PWD"; do
    if [[ -n "$dir" && -x "$dir/tools/bench/micro" && -f "$dir/tools/bench/micro.py" ]]; then
      bench_dir="$dir/tools/bench"
      return 0
    fi
  done
  return 1
}

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

bench_dir=""
if ! find_files; then
  # Not under `bazel run`: build micro from the workspace this script is in.
  src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  workspace="${BUILD_WORKSPACE_DIRECTORY:-$(cd "$src_dir/../.." && pwd)}"
  echo "compare.sh: building //tools/bench:micro in $workspace" >&2
  # BAZEL_STARTUP_OPTS (e.g. --output_base=...) is a list of words.
  read -r -a startup <<<"${BAZEL_STARTUP_OPTS:-}"
  (cd "$workspace" && bazel "${startup[@]}" build --config=opt //tools/bench:micro >&2)
  bin_dir="$(cd "$workspace" && bazel "${startup[@]}" info --config=opt bazel-bin 2>/dev/null)"
  bench_dir="$out/bin"
  mkdir -p "$bench_dir"
  cp "$bin_dir/tools/bench/micro" "$src_dir/micro.py" "$src_dir/compare.py" "$bench_dir/"
fi

# asio_micro is a manual target (it needs Boost), so not in micro's runfiles:
# build it in the workspace (under `bazel run`, the one it was run from).
asio_micro=""
if [[ $asio == 1 ]]; then
  workspace="${BUILD_WORKSPACE_DIRECTORY:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
  read -r -a startup <<<"${BAZEL_STARTUP_OPTS:-}"
  echo "compare.sh: building //tools/bench:asio_micro in $workspace" >&2
  (cd "$workspace" && bazel "${startup[@]}" build --config=opt //tools/bench:asio_micro >&2)
  asio_micro="$(cd "$workspace" && bazel "${startup[@]}" info --config=opt bazel-bin 2>/dev/null)/tools/bench/asio_micro"
fi

python="${PYTHON:-/usr/bin/python3}"
[[ -x "$python" ]] || python="$(command -v python3)"

pin_cmd=()
pinned="not pinned"
if [[ $pin == 1 ]] && command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then
  pin_cmd=(taskset -c 0)
  pinned="pinned to core 0 (taskset -c 0)"
fi

# --- run ------------------------------------------------------------------------
# run_google_benchmark LABEL BINARY JSON_OUT
run_google_benchmark() {
  echo "== $1 ($pinned, $repetitions repetitions)" >&2
  "${pin_cmd[@]}" "$2" \
    --benchmark_repetitions="$repetitions" \
    --benchmark_report_aggregates_only=true \
    --benchmark_format=json --benchmark_out_format=json \
    --benchmark_out="$3" >/dev/null
}

run_google_benchmark "ours: micro" "$bench_dir/micro" "$out/ours.json"
asio_args=()
if [[ -n "$asio_micro" ]]; then
  run_google_benchmark "Boost.Asio: asio_micro" "$asio_micro" "$out/asio.json"
  asio_args=(--asio "$out/asio.json")
fi

have_uvloop=1
"$python" -c "import uvloop" 2>/dev/null || have_uvloop=0
for kind in uvloop asyncio; do
  if [[ $kind == uvloop && $have_uvloop == 0 ]]; then
    echo "== uvloop: not importable by $python, column left empty" >&2
    continue
  fi
  echo "== $kind: micro.py ($pinned)" >&2
  "${pin_cmd[@]}" "$python" "$bench_dir/micro.py" --loop "$kind" --json \
    --repetitions "$repetitions" --scale "$scale" --clock "$clock" >"$out/$kind.json"
done

# --- report -----------------------------------------------------------------------
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)"
versions="$("$python" -c 'import sys; v = sys.version.split()[0]
try:
    import uvloop; v += ", uvloop " + uvloop.__version__
except ImportError: pass
print("Python " + v)')"
echo
echo "Micro benchmarks: ${cpu:-unknown CPU}, $(nproc) cores, $pinned;" \
  "median of $repetitions runs; rates per ${clock}-clock second; $versions;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo
"$python" "$bench_dir/compare.py" --ours "$out/ours.json" --uvloop "$out/uvloop.json" \
  --asyncio "$out/asyncio.json" --clock "$clock" ${json_out:+--json "$json_out"} "${asio_args[@]}"
exit 0
