"""Stand-in ParaViewWeb app of a pvwtasks demo release (not ParaView): a wslink echo server.

Installed as ``share/paraview-X.Y/web/<app>/server/pvw-<app>.py`` (5.6 - 5.9)
and as ``paraview/apps/<app>.py`` (5.9 - 5.12).  Like ParaView's apps it
parses its arguments strictly: an unknown flag (``-f``) makes it exit with
status 2.  The module form finds its own ``www`` and serves it, as
ParaView's ``paraview.apps`` modules add ``-c <www>`` themselves.

Filled in by pvwtasks.demo: the values below.
"""
import argparse
import glob
import os
import sys

BROKEN = "@BROKEN@"
VERSION = "@VERSION@"
FAMILY = "@FAMILY@"

_FILE = os.path.abspath(__file__)
APP = os.path.splitext(os.path.basename(_FILE))[0]
if APP.startswith("pvw-"):
    APP = APP[len("pvw-"):]


def _own_www():
    """share/paraview-X.Y/web/<app>/www of this release, for the paraview.apps form."""
    if os.path.basename(os.path.dirname(_FILE)) != "apps":
        return None
    tree = _FILE
    for _ in range(6):  # apps, paraview, site-packages, pythonX.Y, lib, tree
        tree = os.path.dirname(tree)
    found = sorted(glob.glob(os.path.join(tree, "share", "paraview-*", "web", APP, "www")))
    return found[-1] if found else None


def main(argv=None):
    if BROKEN == "crash":
        sys.exit("demo release built broken: crashing at start")
    from wslink import register as exportRpc
    from wslink import server
    from wslink.websocket import LinkProtocol, ServerProtocol

    parser = argparse.ArgumentParser(description="ParaView %s %s (pvwtasks stand-in)" % (VERSION, APP))
    server.add_arguments(parser)
    parser.add_argument("--data", default=os.getcwd(), help="folder of data files")
    parser.add_argument("--load-file", default="", help="file to load at start")
    parser.add_argument("--viewport-max-width", type=int, default=2560)
    parser.add_argument("--viewport-max-height", type=int, default=1440)
    args = parser.parse_args(argv)
    if not args.content:
        args.content = _own_www() or ""
    if BROKEN == "hang":
        print("demo release built broken: never ready", flush=True)
        import time
        while True:
            time.sleep(3600)

    class Echo(LinkProtocol):
        @exportRpc("test.echo")
        def echo(self, x):
            return {"echo": x}

        @exportRpc("demo.version")
        def version(self):
            return {"version": VERSION, "family": FAMILY, "app": APP, "data": args.data}

    class App(ServerProtocol):
        authKey = args.authKey

        def initialize(self):
            self.registerLinkProtocol(Echo())
            self.updateSecret(App.authKey)

    server.start_webserver(options=args, protocol=App)


if __name__ == "__main__":
    main()
