"""A cone viewer: trame + trame-vtk (VtkLocalView) + trame-vuetify (vue3 client)."""

from __future__ import annotations

from trame.app import get_server
from trame.decorators import TrameApp, change
from trame.ui.vuetify3 import SinglePageLayout
from trame.widgets import html
from trame.widgets import vtk as vtk_widgets
from trame.widgets import vuetify3 as v3

from vtkmodules.vtkFiltersSources import vtkConeSource
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderer, vtkRenderWindow

# Registers the concrete render window classes; the window is only serialized, never rendered here.
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401

MIN_RESOLUTION, MAX_RESOLUTION, START = 3, 60, 6


@TrameApp()
class ConeViewer:
    def __init__(self, server=None):
        self.server = get_server(server, client_type="vue3")
        self.cone = vtkConeSource()
        self.cone.SetResolution(START)
        mapper = vtkPolyDataMapper()
        mapper.SetInputConnection(self.cone.GetOutputPort())
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(0.95, 0.45, 0.1)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.1, 0.2, 0.4)
        self.renderer.AddActor(actor)
        self.window = vtkRenderWindow()
        self.window.AddRenderer(self.renderer)
        self.window.SetOffScreenRendering(1)
        self.renderer.ResetCamera()
        self.state.resolution = START
        self.state.points = self._points()
        self.state.trame__title = "Cone viewer"
        self._ui()

    @property
    def state(self):
        return self.server.state

    @property
    def ctrl(self):
        return self.server.controller

    def _points(self) -> int:
        self.cone.Update()
        return int(self.cone.GetOutput().GetNumberOfPoints())

    @change("resolution")
    def _on_resolution(self, resolution, **_):
        value = max(MIN_RESOLUTION, min(MAX_RESOLUTION, int(resolution)))
        self.cone.SetResolution(value)
        self.state.points = self._points()
        self.ctrl.view_update()

    def _ui(self):
        with SinglePageLayout(self.server) as layout:
            layout.title.set_text("Cone viewer")
            with layout.toolbar:
                v3.VSpacer()
                v3.VSlider(v_model=("resolution", START), min=MIN_RESOLUTION, max=MAX_RESOLUTION, step=1,
                           hide_details=True, dense=True, style="max-width: 300px", id="resolution")
                html.Button("+", id="more", click="resolution = Math.min(resolution + 10, %d)" % MAX_RESOLUTION)
                html.Span("{{ resolution }} / {{ points }} points", id="points", style="margin: 0 1em")
            with layout.content:
                with v3.VContainer(fluid=True, classes="pa-0 fill-height"):
                    view = vtk_widgets.VtkLocalView(self.window)
                    self.ctrl.view_update = view.update
                    self.ctrl.view_reset_camera = view.reset_camera


def main(server=None, **kwargs):
    """Build the app and serve it (trame parses --host/--port/--authKey/--server)."""
    app = ConeViewer(server)
    app.server.start(**kwargs)


if __name__ == "__main__":
    main()
