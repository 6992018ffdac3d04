"""The pvwtasks demo trame app: a cone shown by a client-side VTK view (VtkLocalView, WebGL).

Started like every trame app behind the wslink launcher::

    python -m cone_viewer --host HOST --port PORT --authKey SECRET --server

(or ``pvpython --venv V -m cone_viewer ...``); trame-server prints ``App running at``
once it listens.  The ``resolution`` state value (slider and "+" button) is
handled by the server: it re-meshes the cone and answers with ``points``.
"""

from .app import main

__all__ = ["main"]
