#!/bin/sh
# Installs the Debian 12 packages alice-metrics needs.
#   tools/install-deps.sh          build + run the daemon
#   tools/install-deps.sh --test   also everything the test suite uses
# Used by the README's Quick start, .ci/run and deploy/Dockerfile.
set -eu

BUILD="gcc libc6-dev meson ninja-build pkg-config
       libuv1-dev libhttp-parser-dev libjansson-dev zlib1g-dev libyaml-dev
       protobuf-c-compiler libprotobuf-c-dev libsnappy-dev libssl-dev libcrypt-dev"
RUNTIME="curl netcat-openbsd ca-certificates man-db"
# chromium (headless) renders GET / in tests/integration/test_liveview.py;
# openssl makes that test's throwaway TLS certificates.
# clang builds and runs the libFuzzer targets (tools/test.sh); with
# --no-install-recommends its fuzzer and sanitizer runtimes come only with
# libclang-rt-14-dev.
TEST="check libsubunit-dev prometheus python3 python3-prometheus-client python3-yaml
      python3-snappy procps clang libclang-rt-14-dev python3-statsd
      python3-bcrypt openssl chromium"

pkgs="$BUILD $RUNTIME"
if [ "${1:-}" = "--test" ]; then
    pkgs="$pkgs $TEST"
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
echo "install-deps: all packages present"
