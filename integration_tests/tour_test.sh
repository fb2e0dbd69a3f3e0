#!/bin/bash
# Runs //examples:tour and compares its output with tour_expected.txt.
#
# Usage: tour_test.sh <tour binary> <expected output>
#
# Wall-clock output is checked with patterns, then normalized: "started at" /
# "finished at" times become HH:MM:SS, and the run of display_date lines
# (datetime.now(), every 0.1 s for 0.5 s) must hold 3 to 5 increasing
# timestamps and becomes one placeholder line. The hex of random bytes from
# /dev/urandom (run_in_executor's blocking_io) becomes a placeholder, and so
# do the port numbers of the network examples. The rest
# must match exactly.
# stderr must be empty, except for debug mode's slow-callback reports, which
# a loaded machine can trigger.
set -euo pipefail

tour="$1"
expected="$2"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
out="$tmp/tour.out"
err="$tmp/tour.err"

start_ns=$(date +%s%N)
status=0
"$tour" >"$out" 2>"$err" || status=$?
elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))

fail=0
if [[ $status -ne 0 ]]; then
  echo "FAIL: the tour exited with status $status"
  fail=1
fi
if ((elapsed_ms > 15000)); then
  echo "FAIL: the tour took ${elapsed_ms} ms (expected a few seconds)"
  fail=1
fi

unexpected_err=$(grep -v -E '^asyncio: Executing <.*> took [0-9.]+ seconds$' "$err" || true)
if [[ -n "$unexpected_err" ]]; then
  echo "FAIL: unexpected output on stderr:"
  cat "$err"
  fail=1
fi

normalized="$tmp/tour.normalized"
# (No regex intervals: Debian's mawk lacks them.)
awk '
  function flush_dates() {
    if (ndates == 0) return
    if (ndates >= 3 && ndates <= 5 && increasing) {
      print "<3 to 5 increasing datetime.now() lines>"
    } else {
      printf "<%d datetime.now() lines, increasing=%d: expected 3 to 5 increasing>\n", ndates, increasing
    }
    ndates = 0
  }
  /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9][0-9][0-9][0-9][0-9][0-9]$/ {
    if (ndates == 0) { increasing = 1 } else if ($0 <= last) { increasing = 0 }
    last = $0
    ++ndates
    next
  }
  { flush_dates() }
  /^(started|finished) at [0-9][0-9]:[0-9][0-9]:[0-9][0-9]$/ { print $1 " at HH:MM:SS"; next }
  /^(default|custom) thread pool 100 bytes: [0-9a-f]+\.\.\.$/ {
    if (length($NF) == 19) { print $1 " " $2 " " $3 " 100 bytes: <8 random bytes in hex>..."; next }
  }
  # Ports are whatever the kernel picked (\047 is a quote).
  { gsub(/\(\047127\.0\.0\.1\047, [0-9]+\)/, "(\047127.0.0.1\047, <port>)") }
  { print }
  END { flush_dates() }
' "$out" >"$normalized"

if ! diff -u "$expected" "$normalized"; then
  echo "FAIL: the tour output differs from $expected (diff above: - expected, + actual)"
  echo "--- raw output:"
  cat "$out"
  fail=1
fi

if ((fail)); then exit 1; fi
echo "PASS: tour output as expected (${elapsed_ms} ms)"
