#!/bin/sh
# Set up pvwtasks and deploy the built-in stand-in of a ParaView 6.1 release with the demo
# trame app (the cone viewer; trame, trame-vtk, trame-vuetify and vtk come from PyPI).
# Usage: sh scripts/demo.sh        (from a fresh clone; no sudo, no network past pip)
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e .
# The stand-in release is not ParaView: its pvpython runs this venv's Python, so its
# Python minor is this Python's (the trame apps' venv is built for it).
minor=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
.venv/bin/python -m pvwtasks.demo _demo/releases/ParaView-demo-MPI-Linux-x86_64.tar.gz --family 6.1 --python-tag "$minor"
.venv/bin/doit update
.venv/bin/doit status
