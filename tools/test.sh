#!/bin/sh
# Builds alice-metrics and runs every test suite:
#   build/       debugoptimized, warnings as errors
#   build-asan/  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   build-fuzz/  clang only: the libFuzzer targets of tests/fuzz, each run
#                for LIBFUZZER_SECONDS (5) over a copy of tests/fuzz/corpus
#                (skipped, and said so, when clang is not installed)
# Prints per-suite results and, as its last line, "N passed, M failed"
# (individual checks summed over all suites of both builds; each libFuzzer
# run is one check). Exits non-zero when anything failed.
#
#   tools/test.sh            everything
#   tools/test.sh --quick    the normal build only
set -u
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)

quick=0
[ "${1:-}" = "--quick" ] && quick=1

# Sanitizer reports must fail the test that triggered them.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1}"

# A build that fails counts as one failed check in the closing line. The
# logs go into the build directory, not the source tree.
broken=0
setup_cc=""  # a C compiler for the next configure, when not the default
configure() { # dir, extra meson args...
    dir=$1
    shift
    mkdir -p "$dir"
    [ -f "$dir/build.ninja" ] && return 0
    env ${setup_cc:+CC="$setup_cc"} meson setup "$dir" --werror "$@" \
        >"$dir/test-sh-setup.log" 2>&1 && return 0
    cat "$dir/test-sh-setup.log"
    broken=$((broken + 1))
    return 1
}
compile() { # dir, ninja targets (default: all)...
    ninja -C "$@" >"$1/test-sh-ninja.log" 2>&1 && return 0
    tail -50 "$1/test-sh-ninja.log"
    broken=$((broken + 1))
    return 1
}

status=0
builds="build"
configure build --buildtype=debugoptimized && compile build || status=1
if [ "$quick" = 0 ]; then
    configure build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false &&
        compile build-asan || status=1
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

# libFuzzer: every *-libfuzzer target of a -Dfuzzing=true clang build, run
# in its own folder of build-fuzz/fuzz-run/ on a copy of the corpus (it adds
# the inputs it finds to the corpus it is given, and writes crash files to
# -artifact_prefix): nothing is written to the source tree.
fuzz_results=build-fuzz/test-sh-fuzz-results.txt
run_fuzz() {
    setup_cc=clang
    configure build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false \
        --buildtype=debug || { setup_cc=""; return 1; }
    setup_cc=""
    targets=$(meson introspect build-fuzz --targets | /usr/bin/python3 -c '
import json, os, sys
for t in json.load(sys.stdin):
    if t["type"] == "executable" and t["name"].endswith("-libfuzzer"):
        print(os.path.relpath(t["filename"][0], "build-fuzz"))')
    if [ -z "$targets" ]; then
        echo "build-fuzz: no *-libfuzzer target"
        broken=$((broken + 1))
        return 1
    fi
    # shellcheck disable=SC2086
    compile build-fuzz $targets || return 1
    secs=${LIBFUZZER_SECONDS:-5}
    rc=0
    : >"$fuzz_results"
    for t in $targets; do
        name=$(basename "$t")
        work=build-fuzz/fuzz-run/$name
        rm -rf "$work"
        mkdir -p "$work/corpus" "$work/artifacts"
        # fuzz-<x>-libfuzzer seeds from tests/fuzz/corpus-<x>/, else corpus/
        seeds=tests/fuzz/corpus-${name#fuzz-}
        seeds=${seeds%-libfuzzer}
        [ -d "$seeds" ] || seeds=tests/fuzz/corpus
        cp "$seeds"/* "$work/corpus/"
        echo "== libFuzzer $name (${secs} s)"
        if (cd "$work" && timeout $((secs + 120)) "$top/build-fuzz/$t" -max_total_time="$secs" \
            -max_len=4096 -timeout=10 -artifact_prefix=artifacts/ corpus) >"$work/log" 2>&1; then
            grep '^Done ' "$work/log"
            echo "build-fuzz $name OK" >>"$fuzz_results"
        else
            tail -40 "$work/log"
            echo "(log and failing input in $work)"
            echo "build-fuzz $name FAIL" >>"$fuzz_results"
            rc=1
        fi
    done
    return $rc
}

checks=""
if [ "$quick" = 0 ]; then
    if command -v clang >/dev/null 2>&1; then
        rm -f "$fuzz_results"
        run_fuzz || status=1
        [ -f "$fuzz_results" ] && checks="--checks $fuzz_results"
    else
        echo "== libFuzzer: clang not installed, fuzz targets skipped" \
            "(tools/install-deps.sh --test installs it)"
    fi
fi

# shellcheck disable=SC2086
/usr/bin/python3 tools/test-totals.py --broken-builds "$broken" $checks $builds
rc=$?
[ $rc -ne 0 ] && status=1
exit $status
