"""The launcher's health check: open a real session of ``[launcher] health_app`` and end it.

POST a session to the launcher, open the app's websocket with aiohttp's
client (the handshake, 101 and Sec-WebSocket-Accept checked by aiohttp),
close it cleanly, DELETE the session, and make sure the app ended and its
line left proxy.txt.  The wslink launcher makes a client wait its whole
``timeout`` even for an app that crashed at start, so the launcher's new
children are watched while the POST waits.  With ``[web] manage_apache``
on, the check goes through the front: the POST and DELETE to Apache's
``http(s)://server_name:port/<endpoint>/`` and the websocket to the
``sessionURL`` it hands out (Apache's ``/proxy`` rewrite), so a broken
front fails it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psutil
import requests

from . import processes, proxyfile
from .config import Settings, loopback_host, url_host
from .errors import LauncherError
from .layout import load_json_object
from .runlog import tail

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 12
WEBSOCKET_TIMEOUT = 5.0


def one_line_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, joined on one line for an error message."""
    text = tail(path, lines).strip()
    if not text:
        return f"{path} is empty or missing"
    return f"last lines of {path}: " + " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _newest_session_log(settings: Settings, since: float) -> Path | None:
    folder = settings.layout.session_logs
    try:
        logs = [p for p in folder.glob("*.txt") if p.stat().st_mtime >= since - 1]
    except OSError:
        return None
    return max(logs, key=lambda p: p.stat().st_mtime, default=None)


def _where(settings: Settings, since: float) -> str:
    """The tail of the newest session log since ``since``, else of launcher.log."""
    session_log = _newest_session_log(settings, since)
    return one_line_tail(session_log or settings.layout.launcher_log)


def open_websocket(host: str, port: int, path: str, timeout: float = WEBSOCKET_TIMEOUT) -> None:
    """Open a websocket to ``host:port/path`` with aiohttp and close it cleanly (code 1000).

    Raises LauncherError when the server does not upgrade the connection
    (naming what it answered) or cannot be reached within ``timeout``.
    """
    url = f"ws://{url_host(loopback_host(host))}:{port}/{path.lstrip('/')}"
    open_websocket_url(url, f"websocket to {host}:{port}/{path}", timeout)


def front_url(settings: Settings) -> str:
    """The launcher's URL through Apache: ``http(s)://server_name[:port]/<endpoint>/``."""
    web = settings.web
    scheme, port, default = ("https", web.https_port, 443) if web.tls else ("http", web.http_port, 80)
    host = url_host(web.server_name) + ("" if port == default else f":{port}")
    return f"{scheme}://{host}{settings.launcher.endpoint_path}/"


def own_session_url(settings: Settings, session_url: str) -> str:
    """``session_url`` as this host's own Apache serves it.

    A fleet host's sessionURL goes through the fleet front
    (``…/node/<node_name>/proxy?…``); its health check must not depend on the
    front (which has taken the host out while it updates), so it goes to the
    host's own Apache, which the front's ``/node/<name>/`` forwards to.
    """
    node = settings.web.node_name
    parts = urlsplit(session_url)
    prefix = f"/node/{node}/"
    if not node or not parts.path.startswith(prefix):
        return session_url
    own = urlsplit(front_url(settings))
    scheme = "wss" if own.scheme == "https" else "ws"
    return urlunsplit((scheme, own.netloc, "/" + parts.path[len(prefix):], parts.query, ""))


def open_websocket_url(url: str, where: str, timeout: float = WEBSOCKET_TIMEOUT) -> None:
    """Open the websocket ``url`` (ws:// or wss://) with aiohttp and close it cleanly; LauncherError if not."""
    import aiohttp

    async def handshake() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.ws_connect(url, autoclose=False, autoping=False) as ws:
                await ws.close(code=aiohttp.WSCloseCode.OK)

    try:
        asyncio.run(handshake())
    except aiohttp.WSServerHandshakeError as err:
        answered = f"{err.status} {err.message}".strip() if err.status else "nothing"
        raise LauncherError(f"{where} answered {answered!r}, not 101") from None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
        raise LauncherError(f"{where} failed: {err or type(err).__name__}") from None


def _session_processes(launcher: psutil.Process | None, before: set[int], port: int) -> list[psutil.Process]:
    new = processes.new_children(launcher, before)
    holding = {pid for _p, pid in processes.listeners([port]).items() if pid}
    chosen = [c for c in new if c.pid in holding or str(port) in processes.cmdline(c)]
    return chosen or new


def app_name(settings: Settings) -> str:
    """The app the health check opens: ``[launcher] health_app``, else the first app of launch.json."""
    if settings.launcher.health_app:
        return settings.launcher.health_app
    apps = (load_json_object(settings.layout.launch_json) or {}).get("apps")
    return next(iter(apps), "") if isinstance(apps, dict) else ""


def _post_watching_app(settings: Settings, app: str, url: str, launcher: psutil.Process | None, before: set[int],
                       since: float) -> requests.Response:
    """POST the health-check session while watching its app; fail at once when the app dies before ready."""
    cfg = settings.launcher
    outcome: dict = {}

    def post() -> None:
        try:
            outcome["answer"] = requests.post(url, json={"application": app}, timeout=(5, cfg.timeout + 15))
        except requests.RequestException as err:
            outcome["error"] = err

    thread = threading.Thread(target=post, name="pvwtasks-health-post", daemon=True)
    thread.start()
    seen: set[int] = set()
    dead_polls = 0
    while thread.is_alive():
        thread.join(0.1)
        if launcher is None or not thread.is_alive():
            continue
        new = processes.new_children(launcher, before)
        seen.update(c.pid for c in new)
        running = [c for c in new if processes.alive(c)]
        dead_polls = dead_polls + 1 if seen and not running else 0
        if dead_polls >= 3:
            raise LauncherError(f"health check: the {app} session's app exited before printing its "
                                f"ready line (POST {url}); {_where(settings, since)}")
    if "error" in outcome:
        where = " through the front (Apache)" if url != settings.launcher.url else ""
        raise LauncherError(f"health check{where}: POST {url} failed: {outcome['error']}")
    return outcome["answer"]


def check(settings: Settings, front: bool | None = None) -> dict:
    """POST a session of the health app (:func:`app_name`), open its websocket, then end it cleanly.

    Checks a 200 with ``sessionURL``, a websocket upgrade on the app's
    port, a DELETE of the session, that the app process ended and that its
    line left proxy.txt.  Returns the result (ok, at, app, timings).
    Raises LauncherError quoting the session's log when any step fails.
    Writes nothing but what ending the session changes in proxy.txt.
    ``front`` None goes through Apache when ``[web] manage_apache`` is on;
    False asks the launcher on its own port (a new slot the front does not
    reach yet); True goes through Apache.
    """
    cfg = settings.launcher
    front = settings.web.manage_apache if front is None else front
    url, app = (front_url(settings) if front else cfg.url), app_name(settings)
    launcher = processes.find_launcher(settings)
    try:
        before = {c.pid for c in launcher.children(recursive=True)} if launcher else set()
    except psutil.NoSuchProcess:
        launcher, before = None, set()
    started_wall, started = time.time(), time.monotonic()
    answer = _post_watching_app(settings, app, url, launcher, before, started_wall)
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code != 200 or not isinstance(body, dict) or "sessionURL" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        raise LauncherError(f"health check{' through the front (Apache)' if front else ''}: POST {url} "
                            f"{{application: {app}}} answered "
                            f"{answer.status_code} {error or answer.text[:200]!r}; {_where(settings, started_wall)}")
    session_id, host, port = body.get("id"), body.get("host") or cfg.host, int(body.get("port", 0))
    post_seconds = time.monotonic() - started
    apps = _session_processes(launcher, before, port)
    try:
        if front:  # Apache's /proxy rewrite, through proxy.txt, to the session's port
            ws_url = own_session_url(settings, body["sessionURL"])
            open_websocket_url(ws_url, f"websocket through the front {ws_url}")
        else:
            query = parse_qs(urlsplit(body["sessionURL"]).query)
            open_websocket(host, port, query.get("path", ["ws"])[0])
    finally:
        _end_session(settings, url, session_id, apps)
    log.info("health check ok%s: %s session came up in %.2f s and was ended",
             f" through the front {url}" if front else "", app, post_seconds)
    return {"ok": True, "at": time.time(), "app": app, "post_seconds": round(post_seconds, 3),
            "seconds": round(time.monotonic() - started, 3), "url": url}


def _end_session(settings: Settings, url: str, session_id: str | None, apps: list[psutil.Process]) -> None:
    """DELETE the health-check session; make sure its app ended and its proxy.txt line is gone."""
    deleted = False
    if session_id:
        try:
            deleted = requests.delete(url + session_id, timeout=10).status_code == 200
        except requests.RequestException as err:
            log.warning("health check: DELETE %s%s failed: %s", url, session_id, err)
        if not deleted:
            log.warning("health check: DELETE %s%s refused (is WSLINK_LAUNCHER_DELETE=1 exported by start.sh?); "
                        "ending the session's app directly", url, session_id)
    if deleted:  # the launcher SIGTERMs the app; give it the grace to go, then insist
        processes.end_processes(processes.wait_gone(apps, settings.launcher.stop_grace), 1.0)
    else:
        processes.end_processes([p for p in apps if processes.alive(p)], settings.launcher.stop_grace)
    if session_id:
        if not deleted:
            proxyfile.drop_session(settings, session_id)
        if any(s["id"] == session_id for s in proxyfile.sessions(settings)):
            raise LauncherError(f"health check: session {session_id} still listed in {settings.layout.proxy_file}")
