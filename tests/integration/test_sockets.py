"""The ingest sockets: the Unix socket's mode (--unix-mode) from the moment
it exists, never a symlink followed, never a path or UDP port that another
process serves taken over (exit 1 with a message)."""

import json
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import ALICE_BIN, Daemon, clean_env, run_tests  # noqa: E402

TMP = tempfile.mkdtemp(prefix="alice-sock-")


def path(name):
    p = os.path.join(TMP, name)
    if os.path.lexists(p):
        os.unlink(p)
    return p


def run(*args, env=None):
    """metrics-server with args; it must exit by itself: (rc, stderr)."""
    r = subprocess.run([ALICE_BIN, "metrics-server", "--port", "0"] + list(args),
                       capture_output=True, text=True, timeout=10, env=clean_env(env),
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stderr


def mode_of(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_unix_mode_default_flag_env_config():
    sock = path("mode.sock")
    old = os.umask(0o077)  # the daemon's umask must not decide the mode
    try:
        with Daemon(unix=sock, udp=False, statsd_flags=False,
                    args=["--statsd-port", "0"]) as d:
            assert mode_of(sock) == 0o666, oct(mode_of(sock))
            d.send("mode_default:1|c", transport="unix")
            d.wait_samples(1)
        cfg = path("mode.json")
        with open(cfg, "w") as f:
            json.dump({"server": {"unix_mode": "0600"}}, f)
        cases = [([], None, 0o600),                                      # config
                 ([], {"ALICE_STATSD_SOCKET_MODE": "0640"}, 0o640),     # env beats config
                 (["--unix-mode", "660"], {"ALICE_STATSD_SOCKET_MODE": "0640"}, 0o660)]
        for flags, env, want in cases:
            with Daemon(unix=sock, udp=False, statsd_flags=False, env=env,
                        args=["--statsd-port", "0", "--config", cfg] + flags):
                assert mode_of(sock) == want, (flags, env, oct(mode_of(sock)))
    finally:
        os.umask(old)


def test_unix_mode_bad_values_exit_2():
    for v in ["rw", "0888", "01777", "-1", ""]:
        rc, err = run("--statsd-port", "0", "--unix", path("bad.sock"), "--unix-mode", v)
        assert rc == 2 and "--unix-mode" in err, (v, rc, err)
    rc, err = run("--statsd-port", "0", env={"ALICE_STATSD_SOCKET_MODE": "x"})
    assert rc == 2 and "ALICE_STATSD_SOCKET_MODE" in err, err
    cfg = path("badmode.json")
    with open(cfg, "w") as f:
        f.write('{"server": {"unix_mode": 438}}')  # a number, not an octal string
    rc, err = run("--statsd-port", "0", "--config", cfg)
    assert rc == 2 and "server.unix_mode" in err, err
    r = subprocess.run([ALICE_BIN, "metrics-server", "--help"], capture_output=True, text=True,
                       timeout=10, env=clean_env())
    assert "--unix-mode MODE" in r.stdout and "ALICE_STATSD_SOCKET_MODE" in r.stdout


def test_symlink_at_the_path_exit_1():
    target = path("target.txt")
    link = path("link.sock")
    os.symlink(target, link)  # dangling: a bind through it would create the target
    rc, err = run("--statsd-port", "0", "--unix", link)
    assert rc == 1 and "symlink" in err, (rc, err)
    assert not os.path.lexists(target)
    with open(target, "w") as f:
        f.write("keep me")
    rc, err = run("--statsd-port", "0", "--unix", link)
    assert rc == 1 and "symlink" in err, (rc, err)
    assert os.path.islink(link) and open(target).read() == "keep me"


def test_running_daemons_socket_not_taken_over():
    sock = path("busy.sock")
    with Daemon(unix=sock, udp=False, statsd_flags=False, args=["--statsd-port", "0"]) as d:
        rc, err = run("--statsd-port", "0", "--unix", sock)
        assert rc == 1 and "another process serves this socket" in err, (rc, err)
        # the first daemon still owns it and still receives
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        d.send("still_mine:1|c", transport="unix")
        d.wait_samples(1)
    assert not os.path.exists(sock)


def test_foreign_reuseport_socket_on_the_udp_port_exit_1():
    """With --workers 2 the daemon binds its UDP port with SO_REUSEPORT,
    which would quietly join a group another process holds there and
    share its datagrams: it checks the port first."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        for workers in ("2", "1"):
            rc, err = run("--statsd-port", str(port), "--workers", workers)
            assert rc == 1 and "udp" in err and re.search("in use", err, re.I), (workers, rc, err)
    finally:
        s.close()
    # on a free port both workers bind it and receive
    with Daemon(args=["--workers", "2"]) as d:
        d.send("two_workers:1|c")
        d.wait_samples(1)


run_tests(globals())
