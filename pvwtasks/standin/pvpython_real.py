#!/bin/sh
''''exec "@PYTHON@" -sSE "$0" "$@" # '''
"""Stand-in pvpython(-real) of a pvwtasks demo release: not ParaView.

Runs the host Python isolated (-s -S -E): only the standard library and this
release's ``lib/python<X.Y>/site-packages`` are importable, plus, with
``--venv V`` (5.13 on), ``V/lib/python<X.Y>/site-packages``.  Nothing leaks
from the Python that built the stand-in, so a release without wslink cannot
import wslink.  Takes pvpython's own options before the script, then
``-m module``, ``-c code`` or a script path, like the real program.

Filled in by pvwtasks.demo: the host Python above and the values below.
"""
import os
import runpy
import site
import sys

PYTHON_TAG = "@PYTHON_TAG@"
HAS_VENV = "@HAS_VENV@" == "1"
HAS_BACKEND_OPTION = "@HAS_BACKEND_OPTION@" == "1"

IGNORED = {"-dr", "--disable-registry", "--force-offscreen-rendering", "--symmetric", "-s", "--no-mpi"}
BACKENDS = {"glx": "vtkXOpenGLRenderWindow", "egl": "vtkEGLRenderWindow", "osmesa": "vtkOSOpenGLRenderWindow"}


def _fail(message):
    sys.stderr.write("pvpython: %s\n" % message)
    sys.exit(1)


def _options(args):
    """Consume pvpython's own options; return (venvs, rest)."""
    venvs = []
    while args:
        arg = args[0]
        if arg in IGNORED:
            args = args[1:]
        elif HAS_VENV and (arg == "--venv" or arg.startswith("--venv=")):
            value, args = (arg.split("=", 1)[1], args[1:]) if "=" in arg else (args[1:2], args[2:])
            if not value:
                _fail("--venv needs a path")
            venvs.append(value if isinstance(value, str) else value[0])
        elif HAS_BACKEND_OPTION and (arg == "--opengl-window-backend" or arg.startswith("--opengl-window-backend=")):
            value, args = (arg.split("=", 1)[1], args[1:]) if "=" in arg else ((args[1:2] or [""])[0], args[2:])
            if value.lower() not in BACKENDS:
                _fail("--opengl-window-backend must be GLX, EGL or OSMesa, not %r" % value)
            os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = BACKENDS[value.lower()]
        elif arg.startswith("-") and arg not in ("-m", "-c", "-"):
            _fail("unknown option %r" % arg)
        else:
            break
    return venvs, args


def main():
    tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    venvs, args = _options(sys.argv[1:])
    del sys.path[0]  # this file's folder (bin/)
    site.addsitedir(os.path.join(tree, "lib", "python" + PYTHON_TAG, "site-packages"))
    for venv in venvs:
        packages = os.path.join(os.path.abspath(venv), "lib", "python" + PYTHON_TAG, "site-packages")
        if not os.path.isdir(packages):
            _fail("--venv %s: no %s" % (venv, packages))
        site.addsitedir(packages)
    if args[:1] == ["-m"]:
        if len(args) < 2:
            _fail("-m needs a module name")
        sys.argv = [args[1], *args[2:]]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif args[:1] == ["-c"]:
        if len(args) < 2:
            _fail("-c needs an argument")
        sys.argv = ["-c", *args[2:]]
        sys.path.insert(0, "")
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    elif args and args[0] != "-":
        sys.argv = list(args)
        sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
        runpy.run_path(args[0], run_name="__main__")
    else:
        sys.argv = [""] + list(args[1:])
        sys.path.insert(0, "")
        exec(compile(sys.stdin.read(), "<stdin>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
