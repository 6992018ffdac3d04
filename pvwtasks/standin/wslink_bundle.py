"""The stand-in's "bundled" wslink: loads wslink and its dependencies from the host Python.

A ParaView release of 5.6 - 5.12 ships wslink (and 5.10 - 5.12 aiohttp, yarl,
multidict) in its site-packages.  The stand-in cannot ship compiled copies, so
this module, imported by a .pth file of the release's site-packages, lets the
stand-in's pvpython import exactly those top-level packages from the
site-packages of the Python that built it, and nothing else from there.

Filled in by pvwtasks.demo: the host site-packages and the allowed names.
"""
import importlib.machinery
import sys

HOST_SITE = "@HOST_SITE@"
ALLOWED = frozenset("@ALLOWED@".split())


class BundledFinder:
    """A meta path finder for the allowed top-level packages only."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if "." in name or name not in ALLOWED:
            return None
        return importlib.machinery.PathFinder.find_spec(name, [HOST_SITE])

    @classmethod
    def invalidate_caches(cls):
        pass


if not any(finder is BundledFinder or getattr(finder, "__name__", "") == "BundledFinder" for finder in sys.meta_path):
    sys.meta_path.insert(0, BundledFinder)
