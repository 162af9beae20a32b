#!/usr/bin/python3
"""Sums individual checks over meson test logs and prints the closing
"N passed, M failed" line.

Each test's output is read for its own tally: Check's
"100%: Checks: 12, Failures: 0, Errors: 0" or our Python tests'
"N passed, M failed". A test that printed neither counts as one check. A
test that failed (crash, timeout, sanitizer abort) although its tally shows
no failure adds one failure, so nothing that failed can be counted green."""

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


def main(argv):
    extra_failed = 0
    if argv[:1] == ["--broken-builds"]:
        extra_failed = int(argv[1])
        argv = argv[2:]
        if extra_failed:
            print("%d build(s) failed: counted as failures" % extra_failed)
    builds = argv or ["build"]
    total_p, total_f = 0, extra_failed
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
                print("%-12s %-28s %-6s %4d passed %3d failed" % (
                    b, e.get("name", "?"), e.get("result"), p, fl))
    print("%d passed, %d failed" % (total_p, total_f))
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
