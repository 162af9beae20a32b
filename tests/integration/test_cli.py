"""The `alice` command line: subcommands, flags, environment, exit codes."""

import os
import re
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import (ALICE_BIN, Daemon, clean_env, free_tcp_port,  # noqa: E402
                    free_udp_port, run_tests)

TMP = tempfile.mkdtemp(prefix="alice-cli-")


def run(*args, env=None, timeout=10):
    return subprocess.run([ALICE_BIN] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=clean_env(env), stdin=subprocess.DEVNULL)


def write(name, text):
    p = os.path.join(TMP, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def test_version():
    r = run("version")
    assert r.returncode == 0 and re.match(r"alice \d+\.\d+\.\d+\n$", r.stdout), r


def test_help_lists_every_option():
    r = run("metrics-server", "--help")
    assert r.returncode == 0
    for opt, env in [("--host", "ALICE_METRICS_HOST"), ("--port", "ALICE_METRICS_PORT"),
                     ("--statsd-host", "ALICE_STATSD_HOST"), ("--statsd-port", "ALICE_STATSD_PORT"),
                     ("--unix", "ALICE_STATSD_SOCKET"), ("--config", "ALICE_METRICS_CONFIG"),
                     ("--log-level", "ALICE_LOG_LEVEL"), ("--ttl", "ALICE_METRICS_TTL"),
                     ("--workers", "ALICE_METRICS_WORKERS")]:
        assert opt in r.stdout and env in r.stdout, opt
    for default in ["127.0.0.1", "9090", "8125"]:
        assert default in r.stdout
    top = run("--help")
    assert top.returncode == 0 and "metrics-server" in top.stdout and "check-config" in top.stdout


def test_usage_errors_exit_2():
    for args in [["metrics-server", "--bogus"], ["metrics-server", "--port"],
                 ["metrics-server", "--port", "99999"], ["metrics-server", "--port", "12x"],
                 ["metrics-server", "--host", "not-an-ip"], ["metrics-server", "extra"],
                 ["--log-level", "loud", "metrics-server"], ["nonsense"], [],
                 ["metrics-server", "--config", "/nonexistent/alice.json"]]:
        r = run(*args)
        assert r.returncode == 2, (args, r)
        assert r.stderr.strip(), args
        assert len(r.stderr.strip().splitlines()) <= 20


def test_bad_env_value_exit_2():
    r = run("metrics-server", env={"ALICE_METRICS_PORT": "eighty"})
    assert r.returncode == 2 and "ALICE_METRICS_PORT" in r.stderr, r
    r = run("metrics-server", env={"ALICE_LOG_LEVEL": "chatty"})
    assert r.returncode == 2 and "ALICE_LOG_LEVEL" in r.stderr, r


def test_port_in_use_exit_1():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = run("metrics-server", "--port", str(port), "--statsd-port", str(free_udp_port()))
        assert r.returncode == 1, r
        assert "address already in use" in r.stderr.lower(), r.stderr
    finally:
        s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    try:
        r = run("metrics-server", "--port", "0", "--statsd-port", str(u.getsockname()[1]))
        assert r.returncode == 1 and "udp" in r.stderr, r
    finally:
        u.close()


def test_check_config():
    good = write("good.json", """{
  "server": {"host": "127.0.0.1", "port": 9090, "statsd_host": "127.0.0.1",
             "statsd_port": 8125, "unix": "/run/alice/metrics.sock",
             "log_level": "info", "receive_buffer_bytes": 8388608},
  "limits": {"max_series_per_family": 10000, "max_series": 1000000,
             "max_families": 1000},
  "auto_create": true,
  "families": [
    {"name": "alice_jobs_total", "type": "counter", "help": "Jobs run.",
     "labels": ["queue", "status"], "max_series": 100},
    {"name": "alice_job_duration_seconds", "type": "histogram",
     "help": "Job wall time.", "labels": ["queue"], "buckets": [0.1, 1, 10, 60]}
  ]
}""")
    r = run("check-config", good)
    assert r.returncode == 0 and "ok" in r.stdout, r
    bad = write("bad.json", '{\n  "families": [\n    {"name": "x", "type": "histogram",\n'
                            '     "bukets": [1, 2]}\n  ]\n}\n')
    r = run("check-config", bad)
    assert r.returncode == 1, r
    assert "bad.json:4:6" in r.stderr and "bukets" in r.stderr and "families[0]" in r.stderr, \
        r.stderr
    syn = write("syntax.json", '{"limits": {"max_series": 10,}}')
    r = run("check-config", syn)
    assert r.returncode == 1 and "syntax.json:1:" in r.stderr, r.stderr
    r = run("check-config")
    assert r.returncode == 2


def test_env_and_precedence():
    port = free_udp_port()
    cfg = write("prec.json", '{"server": {"statsd_port": 1, "log_level": "error"}}')
    # env beats the file: the UDP port comes from ALICE_STATSD_PORT
    d = Daemon(udp=False, args=["--config", cfg], statsd_flags=False,
               env={"ALICE_STATSD_PORT": str(port), "ALICE_STATSD_HOST": "127.0.0.1"},
               log_level="info")
    try:
        assert d.wait_log(r"transport=udp addr=127.0.0.1 port=%d" % port), d.log
    finally:
        d.stop()


def _server_section_daemon(server, flags):
    """A daemon whose settings come from the config file's server section
    (server: dict), plus the given flags for what it leaves out."""
    import json
    cfg = write("server-%d.json" % len(os.listdir(TMP)), json.dumps({"server": server}))
    udp = server.get("statsd_port", 0)
    if "--statsd-port" in flags:
        udp = int(flags[flags.index("--statsd-port") + 1])
    d = Daemon(args=["--config", cfg] + flags, statsd_flags=False, http_flags=False,
               udp=udp != 0, unix=server.get("unix"))
    d.udp_port = udp
    return d


def test_config_server_section_starts_the_daemon():
    """Every key of the config's server section is what the daemon uses, alone
    and all together (the strings they hold outlive the parse)."""
    udp = free_udp_port()
    sock = os.path.join(TMP, "from-config.sock")
    everything = {"host": "127.0.0.1", "port": 0, "statsd_host": "127.0.0.1",
                  "statsd_port": udp, "unix": sock, "log_level": "info",
                  "receive_buffer_bytes": 1048576, "workers": 2}
    with _server_section_daemon(everything, []) as d:
        assert d.wait_log(r"transport=udp addr=127.0.0.1 port=%d" % udp), d.log
        assert d.wait_log(r"transport=unix path=%s" % re.escape(sock)), d.log
        assert d.wait_log(r"transport=http addr=127.0.0.1 "), d.log
        d.send("cfg_udp_total:1|c")
        d.send("cfg_unix_total:2|c", transport="unix")
        d.wait_samples(2)
        body = d.metrics()
        assert "cfg_udp_total 1" in body and "cfg_unix_total 2" in body, body
    assert not os.path.exists(sock)
    # each key alone; flags fill in the rest (a flag beats the file)
    alone = {
        "host": (["--port", "0", "--statsd-port", "0"], r"transport=http addr=127.0.0.1 "),
        "port": (["--host", "127.0.0.1", "--statsd-port", "0"], r"transport=http "),
        "statsd_host": (["--host", "127.0.0.1", "--port", "0", "--statsd-port", str(udp)],
                        r"transport=udp addr=127.0.0.1 port=%d" % udp),
        "statsd_port": (["--host", "127.0.0.1", "--port", "0"],
                        r"transport=udp addr=127.0.0.1 port=%d" % udp),
        "unix": (["--host", "127.0.0.1", "--port", "0", "--statsd-port", "0"],
                 r"transport=unix path=%s" % re.escape(sock)),
        "log_level": (["--host", "127.0.0.1", "--port", "0", "--statsd-port", "0"],
                      r"transport=http "),
        "receive_buffer_bytes": (["--host", "127.0.0.1", "--port", "0", "--statsd-port",
                                  str(udp)], r"transport=udp "),
        "workers": (["--host", "127.0.0.1", "--port", "0", "--statsd-port", str(udp)],
                    r"workers=2"),
    }
    for key, (flags, expect) in alone.items():
        with _server_section_daemon({key: everything[key]}, flags) as d:
            assert d.wait_log(expect), (key, d.log)
            status, _, _ = d.get("/health")
            assert status == 200, key


def test_log_level_after_subcommand_and_any_case():
    d = Daemon(args=["--log-level", "DEBUG"], log_level="error")
    try:
        d.send("broken line")
        assert d.wait_log(r"level=debug event=line_rejected reason=syntax"), d.log
    finally:
        d.stop()
    # At warn nothing is logged on start, so the ports are chosen here.
    http, udp = free_tcp_port(), free_udp_port()
    p = subprocess.Popen([ALICE_BIN, "metrics-server", "--log-level", "Warn", "--port", str(http),
                          "--statsd-port", str(udp)], stderr=subprocess.PIPE, env=clean_env())
    try:
        import time
        import urllib.request
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/health" % http, timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "daemon did not come up"
                time.sleep(0.05)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"broken line", ("127.0.0.1", udp))
        u.close()
        time.sleep(0.2)
    finally:
        p.terminate()
        _, err = p.communicate(timeout=10)
    assert p.returncode == 0
    assert err == b"", err


def test_stale_socket_replaced_regular_file_kept():
    path = os.path.join(TMP, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.close()  # leaves a stale socket file behind
    with Daemon(unix=path) as d:
        d.send("alice_events_published_total:1|c|#event_type:s", transport="unix")
        d.wait_samples(1)
    regular = os.path.join(TMP, "precious.txt")
    with open(regular, "w") as f:
        f.write("keep me")
    r = run("metrics-server", "--port", "0", "--statsd-port", "0", "--unix", regular)
    assert r.returncode == 1, r
    assert "not a socket" in r.stderr, r.stderr
    with open(regular) as f:
        assert f.read() == "keep me"


run_tests(globals())
