"""What the deploy tests need beyond tests/amtest.py (ports, the daemon,
the runner): the deploy/ paths, a real Prometheus server on loopback
(temporary storage, killed on exit) with its HTTP query API, and YAML.

Run with /usr/bin/python3 (Debian's Python: PyYAML and prometheus_client)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import amtest  # noqa: E402  (ports, the daemon, the runner)

SOURCE_ROOT = os.environ.get("ALICE_SOURCE_ROOT") or amtest.SOURCE_ROOT
DEPLOY = os.path.join(SOURCE_ROOT, "deploy")

run_tests = amtest.run_tests


def tool(name):
    """Absolute path of a Debian tool (prometheus, promtool), or fail."""
    path = shutil.which(name, path="/usr/bin:/usr/sbin:/bin:/sbin:" + os.environ.get("PATH", ""))
    if not path:
        raise AssertionError("%s not found: run tools/install-deps.sh --test" % name)
    return path


class Prometheus:
    """A Prometheus server on 127.0.0.1 with `config` (a YAML string) and
    optional extra files written beside it (name -> text)."""

    def __init__(self, config, files=None, timeout=20.0):
        self.dir = tempfile.mkdtemp(prefix="alice-prom-")
        self.config_path = os.path.join(self.dir, "prometheus.yml")
        with open(self.config_path, "w") as f:
            f.write(config)
        for name, text in (files or {}).items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        self.port = amtest.free_tcp_port()
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"),
             "--config.file=" + self.config_path,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=self.dir)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError("prometheus not ready after %.0fs:\n%s" % (timeout, self.log_tail()))

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def api(self, path, **params):
        """GET /api/v1/<path>; returns (http status, decoded JSON body)."""
        url = self.url + "/api/v1/" + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def query(self, expr, time_=None):
        """Instant query; returns the result list (raises on an API error)."""
        params = {"query": expr}
        if time_ is not None:
            params["time"] = "%.3f" % time_
        status, body = self.api("query", **params)
        if status != 200 or body.get("status") != "success":
            raise AssertionError("query %r failed: %s %s" % (expr, status, body))
        return body["data"]["result"]

    def values(self, expr, time_=None):
        """{frozenset(labels.items()): float} of an instant vector query."""
        out = {}
        for r in self.query(expr, time_):
            out[frozenset(r["metric"].items())] = float(r["value"][1])
        return out

    def wait(self, predicate, what, timeout=15.0, interval=0.2):
        """Polls predicate() until it returns a true value; returns it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except AssertionError as e:
                last = e
            else:
                if last:
                    return last
            time.sleep(interval)
        raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))

    def stop(self):
        amtest.stop_process(self.proc)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _yaml():
    try:
        import yaml
    except ImportError:
        raise AssertionError("PyYAML missing: apt-get install python3-yaml "
                             "(tools/install-deps.sh --test)") from None
    return yaml


def load_yaml(path):
    with open(path) as f:
        return _yaml().safe_load(f)


def load_yaml_all(path):
    with open(path) as f:
        return [d for d in _yaml().safe_load_all(f) if d is not None]


def dump_yaml(obj):
    return _yaml().safe_dump(obj, sort_keys=False)
