"""Demo trame apps shipped with pvwtasks (not part of pvwtasks' own code).

``cone_viewer/`` is a pip-installable folder: the companion venv of the demo
installs it like a lab's own app.  Its requirements add ``vtk`` because the
stand-in release has no VTK; a real ParaView release must never get ``vtk``
in its venv (ParaView brings its own).
"""

from __future__ import annotations

from pathlib import Path

CONE_VIEWER = Path(__file__).resolve().parent / "cone_viewer"
CONE_VIEWER_APP = "cone_viewer"  # launcher app name and page name (www/cone_viewer.html)
CONE_VIEWER_MODULE = "cone_viewer"
CONE_VIEWER_CLIENT = "vue3"
CONE_VIEWER_WWW_MODULES = ("vtk", "vuetify3")  # trame.tools.www modules of its client
READY_LINE = "App running at"
# The [apps] requirements common to trame apps, pinned.
TRAME_REQUIREMENTS = ("trame==4.0.0", "trame-vtk==2.11.17", "trame-vuetify==3.3.0")
# Demo only (stand-in release without VTK): never for real ParaView.
DEMO_ONLY_REQUIREMENTS = ("vtk==9.5.2",)


def cone_viewer_requirements() -> tuple[str, ...]:
    """Everything the demo venv needs: the trame pins, vtk (demo only) and the app's folder."""
    return (*TRAME_REQUIREMENTS, *DEMO_ONLY_REQUIREMENTS, str(CONE_VIEWER))


def app_command(python: list[str], module: str = CONE_VIEWER_MODULE) -> list[str]:
    """Kitware's trame app command line, with the launcher's placeholders."""
    return [*python, "-m", module, "--host", "${host}", "--port", "${port}", "--authKey", "${secret}", "--server"]
