"""Senders on the Unix socket: GET /api/v1/families "senders" and alice top.

The real daemon with --unix; real sender processes: two Python senders
under their own names (symlinks to /usr/bin/python3, so that the kernel
names the processes), alice-emit reading stdin, the daemon with
--workers 2, a sender run as uid 65534 (setpriv, as root), and the daemon in its own PID namespace (unshare, as
root) where a sender outside arrives with pid 0 and is shown by uid.
Each sender stays alive until its datagrams are counted, so its
/proc/<pid>/comm can be read; counts are exact (lines accepted and
rejected, datagrams, bytes). The table's bound is tested in
tests/unit/test-senders.c."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import ALICE_BIN, Daemon, Skip, clean_env, run_tests  # noqa: E402

TMP = tempfile.mkdtemp(prefix="alice-senders-")
os.chmod(TMP, 0o755)  # the uid 65534 sender reaches the socket through it
EMIT_BIN = os.environ.get("ALICE_EMIT_BIN", "")

# A sender: DGRAMS datagrams to PATH, each of GOOD accepted lines and BAD
# rejected ones; says "sent" and waits for its stdin to close.
SENDER = r"""
import socket, sys
path, dgrams, good, bad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
payload = "\n".join(["snd.lines:1|c"] * good + ["bad line"] * bad).encode()
for _ in range(dgrams):
    s.sendto(payload, path)
print("sent", len(payload), flush=True)
sys.stdin.read()
"""


def payload_len(good, bad):
    return len("\n".join(["snd.lines:1|c"] * good + ["bad line"] * bad))


def python_named(name):
    """A path to /usr/bin/python3 whose process the kernel names name."""
    link = os.path.join(TMP, name)
    if not os.path.exists(link):
        os.symlink("/usr/bin/python3", link)
    return link


def start_sender(cmd_prefix, name, path, dgrams, good, bad):
    p = subprocess.Popen(list(cmd_prefix) + [python_named(name), "-c", SENDER, path,
                                             str(dgrams), str(good), str(bad)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=clean_env())
    line = p.stdout.readline()
    assert line.startswith("sent"), line
    return p


def end(p):
    p.stdin.close()
    p.wait(10)
    p.stdout.close()


def senders(d):
    status, _, body = d.get("/api/v1/families")
    assert status == 200, status
    doc = json.loads(body)
    assert isinstance(doc["senders"], list) and doc["senders_evicted"] == 0, doc
    return doc["senders"]


def wait_sender(d, pred, what, timeout=5.0):
    """The sender row that pred accepts, once there."""
    deadline = time.monotonic() + timeout
    while True:
        rows = senders(d)
        got = [r for r in rows if pred(r)]
        if got:
            return got[0]
        if time.monotonic() > deadline:
            raise AssertionError("no sender %s in %s" % (what, rows))
        time.sleep(0.05)


def alice_top(d):
    r = subprocess.run([ALICE_BIN, "top", "--url", d.url], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=20, env=clean_env())
    assert r.returncode == 0, r.stderr
    _, sep, tail = r.stdout.partition("\nsenders (Unix socket): ")
    assert sep, r.stdout
    return tail.splitlines()


def test_senders_by_process():
    sock = os.path.join(TMP, "a.sock")
    with Daemon(unix=sock) as d:
        assert senders(d) == []
        a = start_sender((), "snd_alpha", sock, 10, 3, 1)
        b = start_sender((), "snd<beta>", sock, 7, 1, 0)
        try:
            ra = wait_sender(d, lambda r: r["pid"] == a.pid and r["datagrams"] == 10, "alpha")
            rb = wait_sender(d, lambda r: r["pid"] == b.pid and r["datagrams"] == 7, "beta")
        finally:
            end(a)
            end(b)
        uid = os.getuid()
        assert ra["process"] == "snd_alpha" and ra["uid"] == uid and ra["pid_visible"], ra
        assert (ra["lines"], ra["rejected"], ra["bytes"]) == (30, 10, 10 * payload_len(3, 1)), ra
        assert rb["process"] == "snd<beta>" and rb["uid"] == uid, rb
        assert (rb["lines"], rb["rejected"], rb["bytes"]) == (7, 0, 7 * payload_len(1, 0)), rb
        assert 0 <= ra["last_seen_seconds_ago"] <= ra["first_seen_seconds_ago"] < 60, ra

        # alice-emit, streaming stdin: alive until its lines are counted
        emit = [EMIT_BIN] if EMIT_BIN else [ALICE_BIN, "emit"]
        e = subprocess.Popen(emit + ["--unix", sock, "-"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
        e.stdin.write(b"snd.emit:1|c\nsnd.emit:2|c\n")
        e.stdin.flush()
        try:
            re_ = wait_sender(d, lambda r: r["pid"] == e.pid and r["lines"] == 2, "alice-emit")
        finally:
            e.stdin.close()
            assert e.wait(10) == 0, e.stderr.read()
            e.stderr.close()
        assert re_["process"] == os.path.basename(emit[0])[:15], re_
        assert re_["rejected"] == 0 and re_["datagrams"] >= 1, re_

        # most lines first
        rows = senders(d)
        assert [r["pid"] for r in rows] == [a.pid, b.pid, e.pid], rows

        # alice top: the section under the families, in a pipe
        lines = alice_top(d)
        assert lines[0] == "3, 0 evicted to bound the table", lines
        assert lines[1].split() == ["SENDER", "LINES", "REJECTED", "DATAGRAMS", "BYTES", "SEEN",
                                    "PROCESS"], lines
        row = lines[2].split()
        assert row[:8] == ["pid", str(a.pid), "uid", str(uid), "30", "10", "10",
                           str(10 * payload_len(3, 1))], row
        assert row[-1] == "snd_alpha", row

        # UDP senders are not in the table
        d.send("snd.udp:1|c")
        time.sleep(0.2)
        assert len(senders(d)) == 3

        # GET / shows them too
        status, _, page = d.get("/")
        assert status == 200 and b"Senders (Unix socket)" in page and b"snd_alpha" in page
        assert b"snd&lt;beta&gt;" in page and b"snd<beta>" not in page  # escaped


def test_senders_with_two_workers():
    # worker 0 reads the Unix socket on its own thread; the main loop copies
    # its table under that worker's lock
    sock = os.path.join(TMP, "w.sock")
    with Daemon(unix=sock, args=["--workers", "2"]) as d:
        p = start_sender((), "snd_threaded", sock, 50, 4, 1)
        try:
            r = wait_sender(d, lambda r: r["pid"] == p.pid and r["datagrams"] == 50, "threaded")
        finally:
            end(p)
        assert (r["process"], r["lines"], r["rejected"], r["bytes"]) == \
            ("snd_threaded", 200, 50, 50 * payload_len(4, 1)), r


def test_sender_of_another_uid():
    if os.getuid() != 0 or not shutil.which("setpriv"):
        raise Skip("needs root and setpriv to send as uid 65534")
    sock = os.path.join(TMP, "u.sock")
    with Daemon(unix=sock, args=["--unix-mode", "0666"]) as d:
        p = start_sender(("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"),
                         "snd_nobody", sock, 4, 2, 0)
        try:
            r = wait_sender(d, lambda r: r["pid"] == p.pid and r["datagrams"] == 4, "nobody")
        finally:
            end(p)
        assert (r["uid"], r["process"], r["lines"], r["pid_visible"]) == \
            (65534, "snd_nobody", 8, True), r


def daemon_pid_in(unshare_pid):
    """The daemon unshare forked (its only child), as this namespace sees it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/task/%d/children" % (unshare_pid, unshare_pid)) as f:
                kids = f.read().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise AssertionError("unshare has no child")


def test_sender_in_another_pid_namespace():
    if os.getuid() != 0 or not shutil.which("unshare"):
        raise Skip("needs root and unshare to run the daemon in its own PID namespace")
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        raise Skip("unshare --pid fails here: " + probe.stderr.decode(errors="replace").strip())
    sock = os.path.join(TMP, "ns.sock")
    # The daemon in a new PID namespace: this test's senders are outside it,
    # where the kernel cannot name their pid (0).
    d = Daemon(unix=sock, prefix=["unshare", "--pid", "--fork", "--kill-child"])
    try:
        p = start_sender((), "snd_outside", sock, 5, 2, 1)
        try:
            r = wait_sender(d, lambda r: r["datagrams"] == 5, "from outside")
        finally:
            end(p)
        assert (r["pid"], r["pid_visible"], r["uid"], r["process"]) == (0, False, os.getuid(), ""), r
        assert (r["lines"], r["rejected"]) == (10, 5), r
        # a second process of the same uid: the same row (keyed by uid alone)
        q = start_sender((), "snd_outside2", sock, 1, 1, 0)
        try:
            wait_sender(d, lambda r: r["datagrams"] == 6, "the same uid row")
        finally:
            end(q)
        assert len(senders(d)) == 1
        lines = alice_top(d)
        assert lines[2].startswith("uid %d (pid not visible: another PID namespace) " %
                                   os.getuid()), lines
        assert lines[2].split()[-1] == "-", lines  # no process name
    finally:
        # unshare waits for its child and passes on its exit: SIGTERM the daemon
        try:
            os.kill(daemon_pid_in(d.proc.pid), 15)
        except (AssertionError, ProcessLookupError):
            pass
        rc = d.stop()
    assert rc == 0, "".join(d.log[-20:])


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
