#!/usr/bin/env bash
# Echo servers compared: ours (Protocol, streams) vs uvloop and asyncio (the
# same two servers in Python) vs a hand-written C epoll server (the ceiling),
# driven by a ping-pong load generator; one markdown table.
#
#   bazel run --config=opt //tools/bench:echo_compare [-- options]
#   tools/bench/echo_compare.sh [options]   # from the source tree: builds first
#
# Options:
#   --quick           one round of 0.5 s per cell (a smoke run, ~30 s)
#   --rounds N        rounds; the table shows the median per cell (default 3)
#   --seconds T       measured seconds per cell and round (default 2)
#   --warmup T        unmeasured seconds before each measurement (default 0.2)
#   --sizes "A B"     message sizes in bytes (default "1024 10240 102400")
#   --conns "A B"     connection counts (default "10 100")
#   --servers "A B"   a subset of: ours-protocol ours-streams uvloop-protocol
#                     uvloop-streams asyncio-protocol asyncio-streams c-epoll
#   --read-size N     what each read() of the streams servers asks for
#                     (default 65536; 262144 for the bulk streams echo)
#   --no-pin          do not pin to core 0
#   --json FILE       also keep every measurement (JSON lines) in FILE
#   --tls             every server over TLS (the C server has none: left out),
#                     on certificates made once by make_certs (EC P-256, a CA
#                     the load generator checks them against); TLS 1.3 with
#                     OpenSSL's default suite, the same OpenSSL for everyone.
#                     Default sizes "1024 102400"; the ratios are to uvloop's
#                     server of the same kind (protocol or streams)
#   --pipeline K      request/response instead of echo: each connection sends
#                     K requests at once (lines of --sizes bytes, default 64)
#                     and waits for the K answers; our servers and Python's
#                     answer each line with one write (readuntil + write on
#                     streams), the C server echoes what it reads
#   --handshakes      a handshake table instead of the echo table (implies
#                     TLS; with --tls as well, both): each of N connections,
#                     over and over, connects, does a full handshake, echoes
#                     1 byte, exchanges close_notify and closes; handshakes/s
#                     and the server's CPU time per handshake (and the load
#                     generator's: it shares the core)
#
# How it measures: loopback throughput between the two cores of these VMs
# swings 2-3x within seconds as the host moves the virtual CPUs, so every
# server and the load generator run pinned to the same core (taskset -c 0),
# and the figure to compare is the server's CPU time per request: utime+stime
# from /proc/<pid>/stat read by echo_load at the start and at the end of the
# measured window, divided by the requests in it. req/s and latencies are
# those of one core doing both sides, so they move with the machine's load;
# CPU per request stays within a few percent from run to run. "user µs/req"
# is the utime part alone: the kernel's TCP work is the same for every server,
# so user time is where the servers differ (utime/stime are split by tick
# sampling: a few percent). Rounds are
# interleaved: each round runs every (size, connections) cell on every server,
# in an order rotated from round to round, so drift hits all servers alike.
#
# All servers start once, listen on 127.0.0.1 ports chosen by the kernel, and
# are killed on exit. Python is /usr/bin/python3 (override with $PYTHON); the
# uvloop rows need Debian's python3-uvloop. Run from the source tree, the
# script builds with bazel; $BAZEL_STARTUP_OPTS is passed to bazel (e.g.
# --output_base=...).
set -euo pipefail

rounds=3
seconds=2
warmup=0.2
sizes="1024 10240 102400"
conns_list="10 100"
all_servers="ours-protocol ours-streams uvloop-protocol uvloop-streams asyncio-protocol asyncio-streams c-epoll"
servers="$all_servers"
pin=1
json_out=""
tls=0
echo_table=1
handshakes=0
sizes_given=0
servers_given=0
pipeline=1
read_size=65536
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) rounds=1; seconds=0.5; warmup=0.1; shift ;;
    --rounds) rounds="$2"; shift 2 ;;
    --rounds=*) rounds="${1#*=}"; shift ;;
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    --warmup) warmup="$2"; shift 2 ;;
    --warmup=*) warmup="${1#*=}"; shift ;;
    --sizes) sizes="$2"; sizes_given=1; shift 2 ;;
    --sizes=*) sizes="${1#*=}"; sizes_given=1; shift ;;
    --conns) conns_list="$2"; shift 2 ;;
    --conns=*) conns_list="${1#*=}"; shift ;;
    --servers) servers="$2"; servers_given=1; shift 2 ;;
    --servers=*) servers="${1#*=}"; servers_given=1; shift ;;
    --no-pin) pin=0; shift ;;
    --read-size) read_size="$2"; shift 2 ;;
    --json) json_out="$2"; shift 2 ;;
    --json=*) json_out="${1#*=}"; shift ;;
    --tls) tls=1; shift ;;
    --handshakes) handshakes=1; shift ;;
    --pipeline) pipeline="$2"; shift 2 ;;
    --pipeline=*) pipeline="${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "echo_compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for s in $servers; do
  [[ " $all_servers " == *" $s "* ]] || { echo "echo_compare.sh: unknown server $s" >&2; exit 2; }
done
if [[ $pipeline != 1 ]]; then
  if [[ $tls == 1 || $handshakes == 1 ]]; then
    echo "echo_compare.sh: --pipeline is for plain TCP only" >&2
    exit 2
  fi
  [[ $sizes_given == 1 ]] || sizes="64"
fi
if [[ $handshakes == 1 ]]; then
  [[ $tls == 1 ]] || echo_table=0  # --handshakes alone: that table only
  tls=1
fi
if [[ $tls == 1 ]]; then
  [[ $sizes_given == 1 ]] || sizes="1024 102400"
  if [[ " $servers " == *" c-epoll "* ]]; then
    [[ $servers_given == 1 ]] && echo "echo_compare.sh: c-epoll has no TLS; left out" >&2
    servers="$(tr ' ' '\n' <<<"$servers" | grep -v '^c-epoll$' | tr '\n' ' ')"
  fi
fi

out="$(mktemp -d)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- find the binaries --------------------------------------------------------------
targets=(echo_epoll echo_load echo_protocol_server echo_streams_server)
bench_dir=""
make_certs=""
for dir in "${RUNFILES_DIR:+$RUNFILES_DIR/asyncio_cpp}" "$0.runfiles/asyncio_cpp"; do
  if [[ -n "$dir" && -x "$dir/tools/bench/echo_load" && -f "$dir/tools/bench/echo_server.py" ]]; then
    bench_dir="$dir/tools/bench"
    make_certs="$dir/tls/testing/make_certs"
    break
  fi
done
if [[ -z "$bench_dir" ]]; then
  # Not under `bazel run`: build from the workspace this script is in.
  src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  workspace="${BUILD_WORKSPACE_DIRECTORY:-$(cd "$src_dir/../.." && pwd)}"
  echo "echo_compare.sh: building the echo servers in $workspace" >&2
  read -r -a startup <<<"${BAZEL_STARTUP_OPTS:-}"
  labels=()
  for t in "${targets[@]}"; do labels+=("//tools/bench:$t"); done
  labels+=(//tls/testing:make_certs)
  # --symlink_prefix=/: leave the workspace's bazel-* links alone.
  (cd "$workspace" && bazel "${startup[@]}" build --config=opt --symlink_prefix=/ "${labels[@]}" >&2)
  bin_dir="$(cd "$workspace" && bazel "${startup[@]}" info --config=opt bazel-bin 2>/dev/null)"
  bench_dir="$out/bin"
  mkdir -p "$bench_dir"
  for t in "${targets[@]}"; do cp "$bin_dir/tools/bench/$t" "$bench_dir/"; done
  cp "$bin_dir/tls/testing/make_certs" "$bench_dir/"
  make_certs="$bench_dir/make_certs"
  cp "$src_dir/echo_server.py" "$bench_dir/"
fi

# --- TLS: one set of certificates for every server ------------------------------------
tls_server_args=()
load_args=()
lines_mode=""
if [[ $pipeline != 1 ]]; then
  load_args=(--pipeline "$pipeline")
  lines_mode="-lines"
fi
if [[ $tls == 1 ]]; then
  declare -A cert
  while IFS='=' read -r name path; do cert[$name]="$path"; done < <("$make_certs" "$out/certs")
  if [[ -z "${cert[server_cert]:-}" || -z "${cert[server_key]:-}" || -z "${cert[ca_file]:-}" ]]; then
    echo "echo_compare.sh: make_certs gave no server certificate" >&2
    exit 1
  fi
  tls_server_args=(--tls "${cert[server_cert]}" "${cert[server_key]}")
  load_args=(--ca-file "${cert[ca_file]}")
fi

python="${PYTHON:-/usr/bin/python3}"
[[ -x "$python" ]] || python="$(command -v python3)"

pin_cmd=()
pinned="not pinned"
if [[ $pin == 1 ]] && command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then
  pin_cmd=(taskset -c 0)
  pinned="server and load generator pinned to core 0"
fi

if ! "$python" -c "import uvloop" 2>/dev/null; then
  echo "echo_compare.sh: uvloop is not importable by $python; its rows are skipped" >&2
  servers="$(tr ' ' '\n' <<<"$servers" | grep -v '^uvloop-' | tr '\n' ' ')"
fi

# --- start the servers ----------------------------------------------------------------
declare -A pid_of port_of
server_cmd() {
  case "$1" in
    ours-protocol) echo "$bench_dir/echo_protocol_server ${lines_mode:+--lines}" ;;
    ours-streams) echo "$bench_dir/echo_streams_server ${lines_mode:+--lines}" ;;  # read size: below
    c-epoll) echo "$bench_dir/echo_epoll" ;;
    uvloop-*|asyncio-*)
      echo "$python $bench_dir/echo_server.py --loop ${1%%-*} --mode ${1#*-}$lines_mode --read-size $read_size" ;;
  esac
}
started=""
for s in $servers; do
  read -r -a cmd <<<"$(server_cmd "$s")"
  trailing=()
  [[ "$s" == ours-streams ]] && trailing=("$read_size")
  # exec: $! is the server itself (taskset execs it too).
  "${pin_cmd[@]}" "${cmd[@]}" "${tls_server_args[@]}" 0 "${trailing[@]}" >"$out/$s.port" 2>"$out/$s.err" &
  pid=$!
  pids+=("$pid")
  port=""
  for _ in $(seq 100); do  # up to 10 s
    port="$(head -n1 "$out/$s.port" 2>/dev/null || true)"
    [[ -n "$port" ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ ! "$port" =~ ^[0-9]+$ ]]; then
    echo "echo_compare.sh: $s did not start; stderr:" >&2
    cat "$out/$s.err" >&2 || true
    continue
  fi
  # Smoke check: every byte comes back, at every size (and handshakes work).
  ok=1
  for size in $sizes; do
    if ! "$bench_dir/echo_load" --port "$port" --size "$size" --connections 2 \
        --requests 50 --seconds 5 --warmup 0 --verify "${load_args[@]}" >/dev/null; then
      ok=0
    fi
  done
  if [[ $handshakes == 1 ]] && ! "$bench_dir/echo_load" --port "$port" --handshakes \
      --connections 2 --requests 20 --seconds 5 --warmup 0 --verify "${load_args[@]}" >/dev/null; then
    ok=0
  fi
  if [[ $ok == 0 ]]; then
    echo "echo_compare.sh: $s failed the echo check; left out" >&2
    continue
  fi
  pid_of[$s]=$pid
  port_of[$s]=$port
  started="$started $s"
done
read -r -a active <<<"$started"
if [[ ${#active[@]} == 0 ]]; then
  echo "echo_compare.sh: no server started" >&2
  exit 0
fi

# --- measure: rounds interleaved across servers -------------------------------------
results="$out/results.jsonl"
: >"$results"
# A cell: the echo_load options of one measurement.
cells=()
if [[ $echo_table == 1 ]]; then
  for size in $sizes; do
    for conns in $conns_list; do cells+=("--size $size --connections $conns"); done
  done
fi
if [[ $handshakes == 1 ]]; then
  for conns in $conns_list; do cells+=("--handshakes --connections $conns"); done
fi
ncells=${#cells[@]}
echo "== ${#active[@]} servers x $ncells cells x $rounds rounds, ${seconds} s each ($pinned)" >&2
cell=0
for ((r = 0; r < rounds; r++)); do
  for cell_args in "${cells[@]}"; do
    read -r -a args <<<"$cell_args"
    n=${#active[@]}
    for ((k = 0; k < n; k++)); do
      s="${active[$(((k + r + cell) % n))]}"
      if ! kill -0 "${pid_of[$s]}" 2>/dev/null; then
        echo "echo_compare.sh: $s died; stderr:" >&2
        tail -5 "$out/$s.err" >&2 || true
        continue
      fi
      if line="$("${pin_cmd[@]}" "$bench_dir/echo_load" --port "${port_of[$s]}" \
          "${args[@]}" --seconds "$seconds" --warmup "$warmup" \
          --server-pid "${pid_of[$s]}" "${load_args[@]}")"; then
        echo "{\"server\": \"$s\", \"round\": $r, \"result\": $line}" >>"$results"
      else
        echo "echo_compare.sh: load failed: $s $cell_args round $r" >&2
      fi
    done
    cell=$((cell + 1))
  done
  echo "== round $((r + 1))/$rounds done" >&2
done
[[ -n "$json_out" ]] && cp "$results" "$json_out"

# --- report ---------------------------------------------------------------------------
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)"
versions="$("$python" -c 'import sys; v = sys.version.split()[0]
try:
    import uvloop; v += ", uvloop " + uvloop.__version__
except ImportError: pass
print("Python " + v)')"
echo
if [[ $pipeline != 1 ]]; then
  echo "Request/response benchmark: ${cpu:-unknown CPU}, $(nproc) cores, $pinned;" \
    "$pipeline requests per batch, one write per answer; median of $rounds rounds of" \
    "${seconds} s; $versions; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
elif [[ $tls == 0 ]]; then
  echo "Echo benchmark: ${cpu:-unknown CPU}, $(nproc) cores, $pinned; ping-pong," \
    "median of $rounds rounds of ${seconds} s; $versions; load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg) at the end."
else
  suite="$(head -1 "$results" | sed -n 's/.*"tls_version": "\([^"]*\)", "cipher": "\([^"]*\)", "group": "\([^"]*\)".*/\1 \2, \3/p')"
  openssl_version="$("$python" -c 'import ssl; print(ssl.OPENSSL_VERSION)')"
  what="ping-pong"
  [[ $echo_table == 0 ]] && what="handshakes"
  [[ $echo_table == 1 && $handshakes == 1 ]] && what="ping-pong and handshakes"
  echo "TLS echo benchmark: ${cpu:-unknown CPU}, $(nproc) cores, $pinned; $what," \
    "median of $rounds rounds of ${seconds} s; ${suite:-TLS}, EC P-256 certificates, the" \
    "client checks them; $openssl_version for every server; $versions; load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg) at the end."
fi
echo
"$python" - "$results" "$started" "$tls" <<'EOF'
import json
import statistics
import sys

rows = {}
handshake_rows = {}
for line in open(sys.argv[1]):
    m = json.loads(line)
    res = m["result"]
    if "handshakes" in res:
        handshake_rows.setdefault((res["connections"], m["server"]), []).append(res)
    else:
        rows.setdefault((res["size"], res["connections"], m["server"]), []).append(res)
order = sys.argv[2].split()
tls = sys.argv[3] == "1"


# The row each row is compared to: the C server; over TLS (no C server),
# uvloop's server of the same kind.
def baseline(server):
    return "uvloop-" + server.split("-")[1] if tls else "c-epoll"


base_name = "uvloop" if tls else "C"


def size_name(n):
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


def med(results, key):
    vals = [r[key] for r in results if r[key] >= 0]
    return statistics.median(vals) if vals else float("nan")


if rows:
    print("| size | conns | server | req/s | server CPU µs/req | p50 µs | p99 µs "
          f"| CPU vs {base_name} | req/s vs {base_name} | user µs/req | page faults/req |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for size, conns in sorted({(k[0], k[1]) for k in rows}):
    for server in order:
        results = rows.get((size, conns, server))
        if not results:
            continue
        c = rows.get((size, conns, baseline(server)))
        c_cpu = med(c, "server_cpu_us_per_req") if c else None
        c_rps = med(c, "req_per_s") if c else None
        cpu = med(results, "server_cpu_us_per_req")
        rps = med(results, "req_per_s")
        vs_cpu = f"{cpu / c_cpu:.2f}x" if c_cpu else "-"
        vs_rps = f"{rps / c_rps:.2f}x" if c_rps else "-"
        user = med(results, "server_user_us_per_req")
        faults = med(results, "server_faults_per_req") if "server_faults_per_req" in results[0] else float("nan")
        print(f"| {size_name(size)} | {conns} | {server} | {rps:,.0f} | {cpu:.2f} "
              f"| {med(results, 'p50_us'):.0f} | {med(results, 'p99_us'):.0f} "
              f"| {vs_cpu} | {vs_rps} | {user:.2f} | {faults:.2f} |")

if handshake_rows:
    if rows:
        print()
    print("| conns | server | handshakes/s | server CPU µs/handshake | p50 µs | p99 µs "
          "| CPU vs uvloop | handshakes/s vs uvloop | user µs/handshake | client CPU µs/handshake |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for conns in sorted({k[0] for k in handshake_rows}):
    for server in order:
        results = handshake_rows.get((conns, server))
        if not results:
            continue
        u = handshake_rows.get((conns, baseline(server)))
        u_cpu = med(u, "server_cpu_us_per_handshake") if u else None
        u_rate = med(u, "handshakes_per_s") if u else None
        cpu = med(results, "server_cpu_us_per_handshake")
        rate = med(results, "handshakes_per_s")
        vs_cpu = f"{cpu / u_cpu:.2f}x" if u_cpu else "-"
        vs_rate = f"{rate / u_rate:.2f}x" if u_rate else "-"
        user = med(results, "server_user_us_per_handshake")
        client = med(results, "client_cpu_us_per_handshake")
        print(f"| {conns} | {server} | {rate:,.0f} | {cpu:.1f} "
              f"| {med(results, 'p50_us'):.0f} | {med(results, 'p99_us'):.0f} "
              f"| {vs_cpu} | {vs_rate} | {user:.1f} | {client:.0f} |")
EOF
exit 0
