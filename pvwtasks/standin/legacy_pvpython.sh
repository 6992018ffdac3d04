#!/bin/sh
# Stand-in pvpython of the pvwtasks legacy demo release (not ParaView): runs the
# project's Python with the release's site-packages first on the path.
# Filled in by pvwtasks.demo: the Python tag and the host Python.
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here/lib/python@PYTHON_TAG@/site-packages${PYTHONPATH:+:$PYTHONPATH}"
first=1
for arg in "$@"; do
  if [ "$first" = 1 ]; then set --; first=0; fi
  case "$arg" in
    -dr|--disable-registry|--force-offscreen-rendering) ;;
    *) set -- "$@" "$arg" ;;
  esac
done
exec "@PYTHON@" "$@"
