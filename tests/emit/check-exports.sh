#!/bin/sh
# check-exports.sh LIB EXPECTED: the dynamic symbols LIB defines are exactly
# the names in EXPECTED (one per line, sorted), as jansson's check-exports.
# Anything else exported (a leaked am_* helper, a libc wrapper) fails.
set -eu
lib=$1
expected=$2
actual=$(mktemp)
trap 'rm -f "$actual"' EXIT
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ { sub(/@.*/, "", $3); print $3 }' \
    | sort -u >"$actual"
if ! diff -u "$expected" "$actual"; then
    echo "check-exports: $lib exports differ from $expected" >&2
    exit 1
fi
echo "ok: $(wc -l <"$actual") symbols, all alice_*"
