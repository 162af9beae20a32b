#!/usr/bin/python3
"""Prints the directory `meson install` puts the alice_metrics package in.

    install-dir.py PREFIX MESON_DIR

MESON_DIR is meson's own choice for pure Python modules
(python_installation.get_install_dir()). Debian's python3 does not search
the one it makes for the default prefix, /usr/local/lib/python3/dist-packages,
but it does search /usr/local/lib/python3.X/dist-packages. So: MESON_DIR
when this interpreter searches it by default (site.getsitepackages()),
else the first of PREFIX/lib/python3.X/dist-packages,
PREFIX/lib/python3.X/site-packages, PREFIX/lib/python3/dist-packages that
it searches, else MESON_DIR (a prefix no Python searches: PYTHONPATH is
then needed, which meson.build says)."""

import os
import site
import sys


def main(prefix, meson_dir):
    searched = {os.path.normpath(p) for p in site.getsitepackages()}
    meson_dir = os.path.normpath(meson_dir)
    if meson_dir in searched:
        return meson_dir, True
    version = "python%d.%d" % sys.version_info[:2]
    for parts in (("lib", version, "dist-packages"), ("lib", version, "site-packages"),
                  ("lib", "python3", "dist-packages")):
        d = os.path.normpath(os.path.join(prefix, *parts))
        if d in searched:
            return d, True
    return meson_dir, False


if __name__ == "__main__":
    d, found = main(sys.argv[1], sys.argv[2])
    print(d)
    print("searched" if found else "not-searched")
