"""5. Trame apps: cold build of the companion venv and client, and an upgrade with unchanged requirements.

    .venv/bin/python bench/bench_trame.py [--rounds 3] [--pip-cache DIR]

Side "trame": a 6.1 stand-in with the demo cone viewer ([apps], vtk allowed:
the stand-in has no VTK).  Its first ``doit update`` is the cold build (with
an empty pip cache unless --pip-cache names one: the wheels come from PyPI,
so that figure depends on the network).  Then each round upgrades it to the
next 6.1.x with the same requirements, alternating with side "no trame": a
5.12 stand-in with its bundled wslink apps upgraded to the next 5.12.x.
Target: the trame upgrade runs no pip and takes at most 1.1x the other's
median wall time.  Both sides restart the launcher and run its health check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import common


def _env(pip_cache: Path) -> dict:
    return {"PIP_CACHE_DIR": str(pip_cache), "PATH": str(Path(sys.executable).parent) + ":" + os.environ["PATH"],
            "DISPLAY": ""}


def _trame_apps() -> str:
    from pvwtasks import demo_apps

    own = [*demo_apps.DEMO_ONLY_REQUIREMENTS, str(demo_apps.CONE_VIEWER)]
    return (f"[apps]\nrequirements = {json.dumps(list(demo_apps.TRAME_REQUIREMENTS))}\nallow_vtk = true\n\n"
            f"[apps.{demo_apps.CONE_VIEWER_APP}]\nmodule = \"{demo_apps.CONE_VIEWER_MODULE}\"\n"
            f"requirements = {json.dumps(own)}\nclient = \"{demo_apps.CONE_VIEWER_CLIENT}\"\n"
            f"client_modules = {json.dumps(list(demo_apps.CONE_VIEWER_WWW_MODULES))}\n")


def _release(served: Path, version: str, family: str) -> Path:
    from pvwtasks import demo

    tag = f"{sys.version_info.major}.{sys.version_info.minor}"
    out = served / demo.release_file_name(version, family, "", tag)
    return demo.build_release(out, version, family=family, python_tag=tag)


def _update(config: Path, url: str, env: dict) -> common.Sample:
    text = config.read_text()
    start = text.index('url = "') + len('url = "')
    config.write_text(text[:start] + url + text[text.index('"', start):])
    return common.run([*common.DOIT, "update", f"config={config}"], cwd=config.parent, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=common.WORK / "trame")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--pip-cache", type=Path, default=None, help="pip cache to use (default: a fresh one)")
    args = parser.parse_args()
    common.print_machine()

    served = common.fresh_served_folder(args.work)
    with common.LoopbackServer(served) as server:
        return _measure(args, served, server)


def _measure(args, served: Path, server) -> int:
    from pvwtasks import appvenv
    from pvwtasks.layout import ClientRecord, Layout, ReleaseRecord

    scratch = Path(tempfile.mkdtemp(prefix="pvwtasks-bench-pip-"))
    pip_cache = args.pip_cache or scratch
    env = _env(pip_cache)
    configs = {}
    try:
        for side, family, first, extra in (("trame", "6.1", "6.1.0", _trame_apps()),
                                           ("no trame", "5.12", "5.12.1", "")):
            folder = args.work / side.replace(" ", "_")
            rel = _release(served, first, family)
            configs[side] = common.write_config(folder / "pvw.toml", server.url(rel.name), folder / "root",
                                                extra=extra)
        common.progress("cold update of the trame side (venv, client, pages)")
        cold = _update(configs["trame"], server.url(_release(served, "6.1.0", "6.1").name), env)
        layout = Layout(args.work / "trame" / "root")
        live = ReleaseRecord.load(layout.installed_record)
        venv = appvenv.built_venvs(layout)[live.venv]
        clients = [ClientRecord.load(p) for p in layout.trame_clients.glob("*/pvwtasks-client.json")]
        _update(configs["no trame"], server.url(_release(served, "5.12.1", "5.12").name), env)
        sides = {"trame": common.Side("trame upgrade 6.1.x"), "no trame": common.Side("no-trame upgrade 5.12.x")}
        pip_runs = 0
        health = {"trame": [], "no trame": []}
        for round_ in range(args.rounds):
            for side, family, version in (("trame", "6.1", f"6.1.{round_ + 1}"),
                                          ("no trame", "5.12", f"5.12.{round_ + 2}")):
                common.progress(f"round {round_ + 1}: {side} upgrade to {version}")
                sample = _update(configs[side], server.url(_release(served, version, family).name), env)
                sides[side].samples.append(sample)
                came_up = re.search(r"health check ok: \S+ session came up in ([\d.]+) s", sample.output)
                health[side].append(float(came_up.group(1)) if came_up else 0.0)
                if side == "trame":
                    pip_runs += sample.output.count("INFO pip ")
        ratio = sides["trame"].med("wall") / sides["no trame"].med("wall")
        apps_start = {side: common.median(values) for side, values in health.items()}
        cpu = {side: sides[side].med("user") + sides[side].med("sys") for side in sides}
        lines = [
            "### Cold build (first `doit update` of the 6.1 stand-in with the cone viewer)",
            "",
            f"- pip cache: {'given (' + str(args.pip_cache) + ')' if args.pip_cache else 'empty: wheels from PyPI'}",
            f"- whole `doit update`: {cold.wall:.1f} s wall",
            f"- companion venv ({venv.mode} of Python {venv.python_version}, {len(venv.packages)} packages, vtk "
            f"included for the stand-in): {venv.seconds:.1f} s, {common.human(venv.size)} on disk",
            *(f"- static client {c.key}: {c.seconds:.2f} s, {common.human(c.size)} on disk" for c in clients),
            "",
            "### Upgrade with unchanged requirements vs an upgrade without trame apps",
            "",
            *common.summary_table(list(sides.values())),
            "",
            f"- pip runs during the trame upgrades: **{pip_runs}** (target 0): {'met' if pip_runs == 0 else 'NOT met'}",
            common.verdict("wall time, trame upgrade / no-trame upgrade", ratio, 1.10),
            f"- pvwtasks' own CPU (user + sys of `doit update`), trame / no trame: "
            f"**{cpu['trame'] / cpu['no trame']:.2f}x**; the rest of the wall time is the launcher step (restart, health-check session of the app, its end): "
            f"health-check session up in a median {apps_start['trame']:.2f} s (cone viewer: trame + vtk) vs "
            f"{apps_start['no trame']:.2f} s (5.12 stand-in's echo app)",
        ]
        common.report("trame", "5. Trame apps: cold venv + client, upgrade with unchanged requirements", lines,
                      args.results)
    finally:
        for config in configs.values():
            common.doit(config, "stop_launcher", check=False)
        common.rmtree(scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
