#!/usr/bin/python3
"""Sums individual checks over meson test logs and prints the closing
"N passed, M failed" line.

Each test's output is read for its own tally: Check's
"100%: Checks: 12, Failures: 0, Errors: 0" or our Python tests'
"N passed, M failed". A test that printed neither counts as one check. A
test that failed (crash, timeout, sanitizer abort) although its tally shows
no failure adds one failure, so nothing that failed can be counted green.

  test-totals.py [--broken-builds N] [--checks FILE]... [BUILD_DIR]...

--broken-builds N: builds that failed, one failed check each.
--checks FILE: checks run outside meson test (tools/test.sh's libFuzzer
runs), one a line: "BUILD NAME OK" or "BUILD NAME FAIL"."""

import argparse
import json
import os
import re
import sys

CHECK_RE = re.compile(r"(\d+)%: Checks: (\d+), Failures: (\d+), Errors: (\d+)")
PLAIN_RE = re.compile(r"^(\d+) passed, (\d+) failed", re.M)


def tally(entry):
    out = (entry.get("stdout") or "") + (entry.get("stderr") or "")
    passed = failed = 0
    found = False
    for m in CHECK_RE.finditer(out):
        checks, fails, errs = int(m.group(2)), int(m.group(3)), int(m.group(4))
        passed += checks - fails - errs
        failed += fails + errs
        found = True
    for m in PLAIN_RE.finditer(out):
        passed += int(m.group(1))
        failed += int(m.group(2))
        found = True
    ok = entry.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
    if not found:
        return (1, 0) if ok else (0, 1)
    if not ok and failed == 0:
        failed = 1
    return passed, failed


def row(build, name, result, passed, failed):
    print("%-12s %-28s %-6s %4d passed %3d failed" % (build, name, result, passed, failed))


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--broken-builds", type=int, default=0)
    ap.add_argument("--checks", action="append", default=[])
    ap.add_argument("builds", nargs="*")
    args = ap.parse_args(argv)
    if args.broken_builds:
        print("%d build(s) failed: counted as failures" % args.broken_builds)
    builds = args.builds or ["build"]
    total_p, total_f = 0, args.broken_builds
    for b in builds:
        log = os.path.join(b, "meson-logs", "testlog.json")
        if not os.path.exists(log):
            print("%s: no test log (build failed?)" % b)
            total_f += 1
            continue
        with open(log) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                e = json.loads(line)
                p, fl = tally(e)
                total_p += p
                total_f += fl
                row(b, e.get("name", "?"), e.get("result"), p, fl)
    for path in args.checks:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                ok = len(parts) == 3 and parts[2] == "OK"
                total_p += ok
                total_f += not ok
                row(parts[0], " ".join(parts[1:-1]) or "?", parts[-1], ok, not ok)
    print("%d passed, %d failed" % (total_p, total_f))
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
