"""The static web client of trame apps, and one page per app under ``www/``.

Kitware builds it with two tools of the ``trame`` package, run by a Python
that sees the companion venv:

* ``python -m trame.tools.www --output DIR --client-type vue2|vue3 MODULES``
  copies the client (``index.html``, ``assets/`` or ``js/``, ``vue.global.js``,
  ``loading.tpl``) and each module's served folder (``__trame_vtk/``, ...)
  into DIR.  It overwrites DIR's ``index.html`` and merely prints
  ``Error: Skipping module X`` for a module it cannot import.
* ``python -m trame.tools.app --input DIR/index.html --name APP`` writes
  ``DIR/APP.html``, the same page with ``data-app-name="APP"``.

Here the client goes to ``www/trame/<key>/`` (key = client type + hash of
the modules and the trame packages' versions), built beside and renamed into
place, its record written last: the same key is reused with no Python run.
Each app's page is ``www/<app>.html`` (never ``www/index.html``), with
``<base href="trame/<key>/">`` so the client's relative paths load from the
shared folder, and ``data-session-manager-url`` set to the launcher's
endpoint (``/paraview/``): without it the client would POST to
``<baseURI>paraview/``, i.e. under ``trame/<key>/``.  A ``?sessionManagerURL=``
query still overrides it, as in every trame client.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

from .errors import WebClientError
from .frozen import Frozen
from .fsutil import atomic_write_text
from .fsutil import du
from .layout import ClientRecord, Layout, finished_builds

log = logging.getLogger(__name__)

CLIENT_TYPES = ("vue2", "vue3")
BUILDING_PREFIX = ".building-"
TOOL_TIMEOUT = 600
# Patterns, compiled (and cached) by re on first use: every update imports this module.
# trame.tools.app finds the name again with data-app-name="\w+"; "index" would be www/index.html.
APP_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_BASE = r"(?i)<base\s[^>]*>"
_HTML = r"(?i)<html\b[^>]*>"
_APP_ATTR = r'data-app-name="\w+"'  # trame.tools.app's own pattern
_SM_ATTR = r'(?i)\sdata-session-manager-url="[^"]*"'


class ClientResult(Frozen):
    """What :func:`ensure_client` answered: the client's record, its folder, built or reused."""

    record: ClientRecord
    path: Path
    action: str  # "reused" | "built"


def trame_packages(packages: Sequence[str]) -> list[str]:
    """The trame distributions (``trame``, ``trame-*``) of a venv's resolved ``name==version`` lines, sorted."""
    return sorted(line.split()[0] for line in packages
                  if re.match(r"trame([-_.]|==)", line.split()[0].lower()))


def client_key(client_type: str, modules: Sequence[str], packages: Sequence[str]) -> str:
    """``<client type>-<hash of the modules and the trame packages' versions>``."""
    blob = json.dumps({"modules": list(modules), "packages": trame_packages(packages)}, sort_keys=True)
    return f"{client_type}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def check_app_name(app: str) -> None:
    """Raise WebClientError unless ``app`` can name a page and a launcher app."""
    if not re.fullmatch(APP_NAME, app) or app == "index":
        raise WebClientError(f"trame app name {app!r} must be letters, digits and _ (and not 'index')")


def built_clients(layout: Layout) -> dict[str, ClientRecord]:
    """The finished clients: key -> record (a folder without its record, or its index.html, does not count)."""
    return finished_builds(layout.trame_clients, layout.client_record, ClientRecord,
                           lambda folder, record: (folder / "index.html").is_file())


def _run_tool(cmd: list[str], env: Mapping[str, str] | None, what: str) -> str:
    log.info("%s: %s", what, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False,
                              env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WebClientError(f"{what}: cannot run {cmd[0]}: {exc}") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        raise WebClientError(f"{what} failed (exit {proc.returncode}): {last.strip()[:300]}")
    return output


def ensure_client(layout: Layout, python: Sequence[str], client_type: str, modules: Sequence[str],
                  packages: Sequence[str], env: Mapping[str, str] | None = None) -> ClientResult:
    """The static trame client in ``www/trame/<key>/``: reused when built, else built with trame.tools.www.

    ``python`` is the command that runs a Python seeing the venv: ``[venv/bin/python]``
    or ``[pvpython, "--venv", venv]``.  ``packages`` are the venv's resolved
    ``name==version`` lines (only the trame ones count in the key).  ``modules``
    are trame module names (``vtk``, ``vuetify3``, ...: the modules the app's widgets use); ``www``, the client
    itself, is always first.  Raises
    WebClientError when the tool fails or skips a module; a failed build leaves
    nothing counted as built.
    """
    if client_type not in CLIENT_TYPES:
        raise WebClientError(f"trame client type {client_type!r} is not one of {', '.join(CLIENT_TYPES)}")
    if not trame_packages(packages):
        raise WebClientError("the companion venv holds no trame package: add trame to the apps' requirements")
    modules = ["www", *(m for m in modules if m != "www")]  # "www" is the client itself (trame_client)
    key = client_key(client_type, modules, packages)
    built = built_clients(layout)
    if key in built:
        return ClientResult(built[key], layout.client_dir(key), "reused")
    started = time.monotonic()
    final = layout.client_dir(key)
    tmp = layout.trame_clients / f"{BUILDING_PREFIX}{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    layout.trame_clients.mkdir(parents=True, exist_ok=True)
    try:
        output = _run_tool([*python, "-m", "trame.tools.www", "--output", str(tmp), "--client-type", client_type,
                            *modules], env, f"trame.tools.www ({client_type})")
        skipped = re.findall(r"Error: Skipping module (\S+)|Skipping module: (\S+)", output)
        if skipped:
            name = next(a or b for a, b in skipped)
            raise WebClientError(f"trame.tools.www ({client_type}) cannot import trame module {name!r}: "
                                 "is it in the apps' requirements?")
        if not (tmp / "index.html").is_file():
            raise WebClientError(f"trame.tools.www ({client_type}) wrote no index.html")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    record = ClientRecord(key=key, client_type=client_type, modules=list(modules),
                          packages=trame_packages(packages), built_at=time.time(),
                          seconds=round(time.monotonic() - started, 2), size=du(final))
    record.save(layout.client_record(key))  # the complete marker, written last
    log.info("built trame %s client %s (%.1f s)", client_type, key, record.seconds)
    return ClientResult(record, final, "built")


def page_html(template: str, base_href: str, session_manager_url: str) -> str:
    """``template`` (a trame.tools.app page) pointed at ``base_href`` and the session manager."""
    base = f'<base href="{base_href}" />'
    html, count = re.subn(_BASE, base, template, count=1)
    if count == 0:
        html = re.sub(r"<head>", f"<head>{base}", html, count=1, flags=re.I)
    match = re.search(_HTML, html)
    if match is None:
        raise WebClientError("the trame client's index.html has no <html> element")
    tag = re.sub(_SM_ATTR, "", match.group(0))
    tag = tag[:-1].rstrip() + f' data-session-manager-url="{session_manager_url}">'
    return html[:match.start()] + tag + html[match.end():]


def write_app_page(layout: Layout, client: ClientResult, app: str, python: Sequence[str],
                   session_manager_url: str = "/paraview/", env: Mapping[str, str] | None = None) -> bool:
    """Write ``www/<app>.html`` with trame.tools.app, served from the shared client folder.

    Answers whether the page changed; an unchanged page is recognised without
    running the tool.  Raises WebClientError for a bad name or a failed tool.
    """
    check_app_name(app)
    page = layout.app_page(app)
    rel = client.path.relative_to(layout.www).as_posix()
    try:  # already the page trame.tools.app would give: no Python run
        index = (client.path / "index.html").read_text(encoding="utf-8")
        named = re.sub(_APP_ATTR, f'data-app-name="{app}"', index)
        if page.read_text(encoding="utf-8") == page_html(named, f"{rel}/", session_manager_url):
            return False
    except OSError:
        pass
    with tempfile.TemporaryDirectory(prefix="pvwtasks-page-") as scratch:
        template = Path(scratch) / "index.html"
        shutil.copyfile(client.path / "index.html", template)
        _run_tool([*python, "-m", "trame.tools.app", "--input", str(template), "--name", app], env,
                  f"trame.tools.app ({app})")
        made = Path(scratch) / f"{app}.html"
        if not made.is_file():
            raise WebClientError(f"trame.tools.app ({app}) wrote no {app}.html")
        text = made.read_text(encoding="utf-8")
    if f'data-app-name="{app}"' not in text:
        raise WebClientError(f"trame.tools.app ({app}) did not name the app in its page")
    html = page_html(text, f"{rel}/", session_manager_url)
    try:
        if page.read_text(encoding="utf-8") == html:
            return False
    except OSError:
        pass
    atomic_write_text(page, html, mode=0o644)
    log.info("wrote %s (client %s)", page, client.record.key)
    return True


def prune_clients(layout: Layout, keep_keys: Sequence[str]) -> list[str]:
    """Delete clients not in ``keep_keys`` and unfinished builds; answers what was removed."""
    keep, removed = set(keep_keys), []
    complete = built_clients(layout)
    try:
        folders = list(layout.trame_clients.iterdir())
    except OSError:
        return []
    for folder in folders:
        if folder.name in keep and folder.name in complete:
            continue
        if folder.name.startswith(BUILDING_PREFIX):
            pid = folder.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and Path(f"/proc/{pid}").exists():
                continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def remove_stale_pages(layout: Layout, apps: Sequence[str]) -> list[str]:
    """Delete ``www/<name>.html`` pages made here for apps no longer in ``apps``; answers their names.

    A page counts as made here when it points at a ``trame/`` client folder;
    ``index.html`` and any other page are left alone.
    """
    keep, removed = set(apps), []
    for page in sorted(layout.www.glob("*.html")):
        name = page.stem
        if name == "index" or name in keep:
            continue
        try:
            head = page.read_text(encoding="utf-8", errors="replace")[:4096]
        except OSError:
            continue
        if re.search(r'<base href="trame/[^"]*"', head) and "data-session-manager-url" in head:
            page.unlink()
            removed.append(name)
    return removed
