"""PythonInstall: `meson install` into a DESTDIR puts the alice_metrics
package in a directory Debian's /usr/bin/python3 searches by default, and
the installed copy imports and sends.

    test_install.py BUILD_DIR      (MESON: the meson program, else PATH's)"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyhelp  # noqa: E402,I100
from pyhelp import PYTHON, wait_value  # noqa: E402

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(pyhelp.SOURCE_ROOT,
                                                                            "build"))
MESON = os.environ.get("MESON") or shutil.which("meson")
MODULES = {"__init__.py", "_addr.py", "_core.py", "_metrics.py", "builtin.py"}
DEST = None
PACKAGE = None  # the installed package's directory, without DEST


def interpreter(code):
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60,
                       env=pyhelp.amtest.clean_env())
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def setUpModule():
    global DEST, PACKAGE
    if not MESON:
        raise unittest.SkipTest("meson not found")
    DEST = tempfile.mkdtemp(prefix="alice-py-install-")
    r = subprocess.run([MESON, "install", "-C", BUILD, "--no-rebuild", "--destdir", DEST],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    found = [root for root, _, files in os.walk(DEST)
             if os.path.basename(root) == "alice_metrics" and "__init__.py" in files]
    assert len(found) == 1, found
    PACKAGE = "/" + os.path.relpath(found[0], DEST)


def tearDownModule():
    if DEST:
        shutil.rmtree(DEST, ignore_errors=True)


class Install(unittest.TestCase):
    def prefix(self):
        r = subprocess.run([MESON, "introspect", BUILD, "--buildoptions"], capture_output=True,
                           text=True, timeout=60, check=True)
        return next(o["value"] for o in json.loads(r.stdout) if o["name"] == "prefix")

    def test_every_module_installed(self):
        self.assertEqual({f for f in os.listdir(DEST + PACKAGE) if f.endswith(".py")}, MODULES)

    def test_where_debian_python_looks(self):
        prefix = self.prefix()
        paths = interpreter("import json, site, sys; "
                            "print(json.dumps([site.getsitepackages(), sys.path]))")
        site_dir = os.path.dirname(PACKAGE)
        self.assertTrue(site_dir.startswith(prefix.rstrip("/") + "/"), (site_dir, prefix))
        if prefix in ("/usr/local", "/usr"):
            # the default prefix (the README's Quick start) and the distribution's
            self.assertIn(site_dir, paths[0])
            self.assertIn(site_dir, paths[1])
        else:
            self.skipTest("prefix %s: no Python searches it by default" % prefix)

    def test_installed_copy_imports_and_sends(self):
        with pyhelp.amtest.Daemon() as d:
            env = pyhelp.amtest.clean_env({
                "PYTHONPATH": DEST + os.path.dirname(PACKAGE),
                "ALICE_METRICS_ADDR": "127.0.0.1:%d" % d.udp_port,
            })
            code = ("import alice_metrics as m; print(m.__file__); "
                    "m.Counter('py_installed_total', 'd').inc()")
            r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,
                               timeout=60, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), DEST + PACKAGE + "/__init__.py")
            wait_value(d, "py_installed_total", 1)


if __name__ == "__main__":
    sys.argv[1:] = []
    pyhelp.main()
