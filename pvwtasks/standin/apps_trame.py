"""Stand-in ``paraview.apps.trame`` of a pvwtasks demo release (not ParaView).

``pvpython [--venv V] -m paraview.apps.trame --trame-app MODULE [app args]``
imports MODULE (from the release or the ``--venv``) and calls its ``main()``
with the remaining arguments in ``sys.argv``, as ParaView's module does.
"""
import argparse
import importlib
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run a trame app with ParaView (pvwtasks stand-in)")
    parser.add_argument("--trame-app", required=True, help="module of the trame app (it must have main())")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    app = importlib.import_module(args.trame_app)
    entry = getattr(app, "main", None)
    if entry is None:
        sys.exit("paraview.apps.trame: %s has no main()" % args.trame_app)
    sys.argv = [args.trame_app, *rest]
    return entry()


if __name__ == "__main__":
    main()
