#!/usr/bin/env bash
# Lookups per second against one local dnsmasq: c-ares on our loop
# (//dns:dns_bench) vs Python asyncio's and uvloop's loop.getaddrinfo (the
# system resolver on a thread pool). Same names, same server, same run.
#
#   dns/bench/run.sh [options]
#
# Options:
#   --concurrency "1 10 100"  concurrent lookups (a list; default "1 10 100 1000")
#   --count N                 lookups per measurement (default 20000)
#   --names N                 distinct names, bench0.test ... (default 1000)
#   --repetitions N           the table shows the median (default 3)
#   --pin                     dnsmasq on CPU 1, the client on CPU 0
#
# Needs root: glibc's resolver only talks to port 53, so dnsmasq listens on
# 127.0.0.1:53, and the Python side runs in a private mount namespace
# (unshare --mount) where /etc/resolv.conf is a bind-mounted file naming
# 127.0.0.1; the machine's own /etc/resolv.conf is never touched.
# $BAZEL_STARTUP_OPTS is passed to bazel (e.g. --output_base=...); $PYTHON
# (default /usr/bin/python3) must have uvloop.
set -euo pipefail

concurrency_list="1 10 100 1000"
count=20000
names=1000
repetitions=3
pin=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --concurrency) concurrency_list="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --names) names="$2"; shift 2 ;;
    --repetitions) repetitions="$2"; shift 2 ;;
    --pin) pin=1; shift ;;
    -h | --help) sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python="${PYTHON:-/usr/bin/python3}"
dnsmasq_bin="$(command -v dnsmasq || echo /usr/sbin/dnsmasq)"
if ((EUID != 0)); then
  echo "run.sh: needs root (dnsmasq on port 53, unshare --mount)" >&2
  exit 1
fi
[[ -x "$dnsmasq_bin" ]] || { echo "run.sh: dnsmasq is not installed (apt-get install dnsmasq-base)" >&2; exit 1; }
"$python" -c 'import uvloop' || { echo "run.sh: $python has no uvloop (apt-get install python3-uvloop)" >&2; exit 1; }

# shellcheck disable=SC2086
bazel ${BAZEL_STARTUP_OPTS:-} build -c opt --symlink_prefix=/ //dns:dns_bench >&2
# shellcheck disable=SC2086
bench="$(bazel ${BAZEL_STARTUP_OPTS:-} info -c opt bazel-bin 2>/dev/null)/dns/dns_bench"

tmp="$(mktemp -d)"
dnsmasq_pid=""
cleanup() {
  if [[ -n "$dnsmasq_pid" ]]; then kill "$dnsmasq_pid" 2>/dev/null || true; wait "$dnsmasq_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

for ((i = 0; i < names; ++i)); do
  echo "198.18.$((i / 256 % 256)).$((i % 256)) bench$i.test"
done >"$tmp/hosts"
printf 'nameserver 127.0.0.1\n' >"$tmp/resolv.conf"

server_pin=()
client_pin=()
if ((pin)); then
  server_pin=(taskset -c 1)
  client_pin=(taskset -c 0)
fi
"${server_pin[@]}" "$dnsmasq_bin" --no-daemon --port=53 --listen-address=127.0.0.1 --bind-interfaces \
  --no-resolv --no-hosts --no-poll --conf-file=/dev/null --addn-hosts="$tmp/hosts" \
  --local=/test/ --log-facility="$tmp/dnsmasq.log" &
dnsmasq_pid=$!
ready=0
for ((i = 0; i < 100; ++i)); do
  if "$bench" --count=1 --concurrency=1 --names=1 >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
if ((!ready)); then
  echo "run.sh: dnsmasq does not answer on 127.0.0.1:53:" >&2
  cat "$tmp/dnsmasq.log" >&2 || true
  exit 1
fi

# Prints the median lookups_per_second of `repetitions` runs of "$@".
median_rate() {
  local rates=() line
  for ((r = 0; r < repetitions; ++r)); do
    line="$("$@")"
    echo "  $line" >&2
    rates+=("$(sed -n 's/.*lookups_per_second=\([0-9]*\).*/\1/p' <<<"$line")")
  done
  printf '%s\n' "${rates[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

python_side() {
  local loop="$1" c="$2"
  unshare --mount sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh \
    "$tmp/resolv.conf" "${client_pin[@]}" "$python" dns/bench/getaddrinfo_bench.py \
    --loop="$loop" --names="$names" --count="$count" --concurrency="$c"
}

echo
echo "Lookups/s against dnsmasq on 127.0.0.1:53 ($names names, $count lookups, AF_INET, median of $repetitions$( ((pin)) && echo ', pinned'))"
echo
echo "| concurrent lookups | c-ares on the loop | asyncio getaddrinfo | uvloop getaddrinfo | vs asyncio | vs uvloop |"
echo "|---:|---:|---:|---:|---:|---:|"
for c in $concurrency_list; do
  echo "concurrency $c:" >&2
  ours="$(median_rate "${client_pin[@]}" "$bench" --server=127.0.0.1:53 --names="$names" --count="$count" --concurrency="$c")"
  asyncio_rate="$(median_rate python_side asyncio "$c")"
  uvloop_rate="$(median_rate python_side uvloop "$c")"
  awk -v c="$c" -v o="$ours" -v a="$asyncio_rate" -v u="$uvloop_rate" \
    'BEGIN { printf "| %s | %d | %d | %d | %.1fx | %.1fx |\n", c, o, a, u, o / a, o / u }'
done
