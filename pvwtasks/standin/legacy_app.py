"""Stand-in ParaViewWeb app of the pvwtasks legacy demo release: a wslink echo server.

Installed as ``site-packages/paraview/web/pv_web_*.py``, the layout of
ParaView 4.x.  Filled in by pvwtasks.demo: the values below.
"""
import argparse
import sys

from wslink import register as exportRpc
from wslink import server
from wslink.websocket import LinkProtocol, ServerProtocol

BROKEN = "@BROKEN@"
VERSION = "@VERSION@"


class Echo(LinkProtocol):
    @exportRpc("test.echo")
    def echo(self, x):
        return {"echo": x}

    @exportRpc("demo.version")
    def version(self):
        return {"version": VERSION}


class App(ServerProtocol):
    authKey = "wslink-secret"

    @staticmethod
    def configure(options):
        App.authKey = options.authKey

    def initialize(self):
        self.registerLinkProtocol(Echo())
        self.updateSecret(App.authKey)


if __name__ == "__main__":
    if BROKEN == "crash":
        sys.exit("demo release built broken: crashing at start")
    if BROKEN == "hang":
        print("demo release built broken: never ready", flush=True)
        import time
        while True:
            time.sleep(3600)
    parser = argparse.ArgumentParser(description="pvwtasks demo app")
    server.add_arguments(parser)
    parser.add_argument("--data-dir", default=".")
    parser.add_argument("-f", "--force-flush", action="store_true")
    args = parser.parse_args()
    App.configure(args)
    server.start_webserver(options=args, protocol=App)
