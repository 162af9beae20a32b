#!/bin/sh
# Builds alice-metrics twice and runs every test suite against both builds:
#   build/       debugoptimized, warnings as errors
#   build-asan/  the same under AddressSanitizer + UndefinedBehaviorSanitizer
# Prints per-suite results and, as its last line, "N passed, M failed"
# (individual checks summed over all suites of both builds). Exits non-zero
# when anything failed.
#
#   tools/test.sh            everything
#   tools/test.sh --quick    the normal build only
set -u
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

# Sanitizer reports must fail the test that triggered them.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1}"

# A build that fails counts as one failed check in the closing line.
broken=0
setup() { # dir, extra meson args...
    dir=$1
    shift
    # the logs go into the build directory, not the source tree
    mkdir -p "$dir"
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" --werror "$@" >"$dir/test-sh-setup.log" 2>&1 || {
            cat "$dir/test-sh-setup.log"
            broken=$((broken + 1))
            return 1
        }
    fi
    ninja -C "$dir" >"$dir/test-sh-ninja.log" 2>&1 || {
        tail -50 "$dir/test-sh-ninja.log"
        broken=$((broken + 1))
        return 1
    }
}

status=0
builds="build"
setup build --buildtype=debugoptimized || status=1
if [ "$quick" = 0 ]; then
    setup build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false || status=1
    builds="build build-asan"
fi

for b in $builds; do
    [ -f "$b/build.ninja" ] || continue
    echo "== meson test ($b)"
    # the deploy suite checks config files, not code: once is enough
    suites=""
    if [ "$b" = build-asan ]; then
        suites="--no-suite deploy --no-suite bench-smoke"
    fi
    # shellcheck disable=SC2086
    meson test -C "$b" --print-errorlogs --num-processes 2 $suites || status=1
done

# shellcheck disable=SC2086
/usr/bin/python3 tools/test-totals.py --broken-builds "$broken" $builds
rc=$?
[ $rc -ne 0 ] && status=1
exit $status
