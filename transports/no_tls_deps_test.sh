#!/bin/sh
# $1: the labels //transports depends on, one a line (genquery). A program
# that uses //transports without TLS must link neither //tls nor OpenSSL.
set -eu
grep -q '^//transports:transports$' "$1"
if grep -E '^(//tls|@openssl)' "$1"; then
  echo "//transports depends on the above" >&2
  exit 1
fi
