#!/bin/sh
# Set up pvwtasks and deploy the built-in stand-in release (no network besides pip install).
# Usage: sh scripts/demo.sh        (from a fresh clone; no sudo, no network past pip)
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e .
# The stand-in release is not ParaView: its pvpython runs this venv's Python.
.venv/bin/python -m pvwtasks.demo _demo/releases/ParaView-demo-MPI-Linux-x86_64.tar.gz --family legacy --version 5.13.0
.venv/bin/doit update
.venv/bin/doit status
