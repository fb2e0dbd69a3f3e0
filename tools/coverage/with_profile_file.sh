#!/usr/bin/env bash
# Runs a test (the arguments) with its coverage profile written to the test's
# undeclared outputs directory, one file per process (tests fork and spawn).
export LLVM_PROFILE_FILE="${TEST_UNDECLARED_OUTPUTS_DIR:?not run by bazel test}/%p-%m.profraw"
exec "$@"
