"""pvwtasks: keep a ParaViewWeb server up to date with a doit task graph."""

__version__ = "0.1.0"
