"""``doit status`` on a fleet front: each host's version and health, read over HTTP.

Each host already publishes what the front needs through its own Apache:
``/hash.json`` (the live version and the archive's sha256), the landing
page's ``pvwtasks-last-result`` meta tag (the last update's result), and its
launcher answers ``GET /<endpoint>/pvwtasks-health`` (the URL the front's
mod_proxy_hcheck probes).  The front's own balancer-manager tells whether
the balancer sends users to a host (``Ok``) or not (``Dis``: taken out for
an upgrade, ``Err``/``HcFl``: failing).  Nothing is shared between hosts.
"""

from __future__ import annotations

import html
import json
import re
import time

import requests

from .config import Settings
from .errors import DeploymentUnhealthy

TIMEOUT = 5.0
_ROW = re.compile(r"<tr>\s*<td><a href=\"[^\"]*\">([^<]+)</a></td>(.*?)</tr>", re.S)
_CELL = re.compile(r"<td>(.*?)</td>", re.S)
_LAST_RESULT = re.compile(r'<meta name="pvwtasks-last-result" content="([a-z]+)">')


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=TIMEOUT)
    except requests.RequestException:
        return None


def host_state(url: str, health_path: str) -> dict:
    """One host as its Apache at ``url`` shows it: version, sha256, last update, launcher answering."""
    state: dict = {"url": url, "reachable": False, "version": None, "sha256": None, "last_result": None,
                   "answering": False}
    answer = _get(f"{url}/hash.json")
    if answer is None:
        return state  # unreachable: the page and the health probe would wait out the same timeout
    state["reachable"] = True
    if answer.status_code == 200:
        try:
            published = answer.json()
            state["version"], state["sha256"] = published.get("version"), published.get("sha256")
        except (ValueError, AttributeError):
            pass
    page = _get(f"{url}/")
    found = _LAST_RESULT.search(page.text) if page is not None and page.status_code == 200 else None
    state["last_result"] = found.group(1) if found else None
    probe = _get(url + health_path)
    state["answering"] = probe is not None and probe.status_code < 500
    return state


def balancer_members(settings: Settings) -> dict[str, str]:
    """Worker URL -> its status in this front's balancer-manager ("Init Ok", "Init Dis", ...); {} if unreadable."""
    answer = _get(f"http://127.0.0.1:{settings.web.http_port}/balancer-manager")
    if answer is None or answer.status_code != 200:
        return {}
    members = {}
    for url, cells in _ROW.findall(answer.text):
        values = [html.unescape(c).strip() for c in _CELL.findall(cells)]
        if len(values) >= 5:
            members[url.rstrip("/")] = values[4]  # Route, RouteRedir, Factor, Set, Status
    return members


def in_balancer(status: str | None) -> bool | None:
    """Whether the balancer sends new sessions to a member with this status (None: unknown)."""
    if status is None:
        return None
    words = status.split()
    return "Ok" in words and not {"Dis", "Stop", "Err", "HcFl", "Drn"} & set(words)


def collect(settings: Settings) -> dict:
    """Every host of ``[fleet] hosts`` (in name order), as plain data (what ``--json`` prints)."""
    from .render import health_uri

    members, health_path = balancer_members(settings), health_uri(settings)
    hosts = {}
    for name, host in sorted(settings.fleet.hosts.items()):
        url = host.url.rstrip("/")
        state = host_state(url, health_path)
        status = members.get(url)
        state.update(balancer=status, in_balancer=in_balancer(status),
                     healthy=state["answering"] and state["last_result"] == "ok")
        hosts[name] = state
    versions = sorted({h["version"] for h in hosts.values() if h["version"]})
    return {"front": f"http://{settings.web.server_name}:{settings.web.http_port}/", "checked_at":
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "hosts": hosts, "versions": versions}


def render_text(data: dict) -> str:
    """The human screen for :func:`collect`'s data: one line per host."""
    lines = [f"fleet front  {data['front']}  ({len(data['hosts'])} hosts, versions: "
             f"{', '.join(data['versions']) or 'none'})"]
    for name, host in data["hosts"].items():
        balancer = {True: "in balancer", False: "OUT of balancer", None: "balancer: unknown"}[host["in_balancer"]]
        health = "healthy" if host["healthy"] else (
            "UNREACHABLE" if not host["reachable"] else
            f"UNHEALTHY (launcher {'answering' if host['answering'] else 'not answering'}, "
            f"last update {host['last_result'] or 'unknown'})")
        lines.append(f"  {name:<12} {host['version'] or '-':<10} {health}, {balancer} "
                     f"({host['balancer'] or '-'})  {host['url']}")
    return "\n".join(lines)


def show(settings: Settings, as_json: bool = False) -> dict:
    """Print the fleet's status; DeploymentUnhealthy naming each host that is not healthy."""
    data = collect(settings)
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else render_text(data))
    sick = [name for name, host in data["hosts"].items() if not host["healthy"]]
    if sick:
        raise DeploymentUnhealthy(f"fleet hosts not healthy: {', '.join(sick)}")
    return {"status": "ok", "hosts": len(data["hosts"])}
