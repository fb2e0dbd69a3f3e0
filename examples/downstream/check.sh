#!/usr/bin/env bash
# Builds and runs this workspace against the enclosing asyncio_cpp checkout,
# offline, and checks what each target pulls in. Run by CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

bazel build //:echo //:tls_echo
bazel run //:echo
bazel run //:tls_echo

# The external repositories a target depends on.
repos_of() {
  bazel query "deps($1)" --output=label 2>/dev/null | sed -n 's|^@\([^/]*\)//.*|\1|p' | sort -u
}
echo_repos="$(repos_of //:echo)"
tls_repos="$(repos_of //:tls_echo)"
echo "//:echo depends on: $(echo $echo_repos)"
echo "//:tls_echo depends on: $(echo $tls_repos)"
for unwanted in openssl com_github_cares_cares com_github_grpc_grpc; do
  if grep -qx "$unwanted" <<<"$echo_repos"; then
    echo "FAIL: //:echo (streams only) pulls in @$unwanted" >&2
    exit 1
  fi
done
if ! grep -qx openssl <<<"$tls_repos"; then
  echo "FAIL: //:tls_echo (streams + tls) does not pull in @openssl" >&2
  exit 1
fi
echo "downstream workspace: OK"
