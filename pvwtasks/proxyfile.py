"""``ROOT/proxy.txt``: the session -> host:port map the launcher writes and Apache reads.

The file belongs to ``[launcher] proxy_group`` with mode 0660, and the
launcher user and the web server user are members of that group.  The
wslink launcher leaves stale lines behind when it exits, so the file is
cleared on every (re)start, keeping its owner, group and mode.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import subprocess
import tempfile
import time
from pathlib import Path

from .config import Settings, current_user
from .errors import LauncherError
from .fsutil import atomic_write_text, remove_quietly

log = logging.getLogger(__name__)

PROXY_MODE = 0o660


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _members_wanted(settings: Settings) -> list[str]:
    users = [settings.launcher.user or current_user(), settings.web.user]
    return [u for i, u in enumerate(users) if u and u not in users[:i]]


def _is_member(user: str, group: str) -> bool:
    try:
        entry = grp.getgrnam(group)
        return user in entry.gr_mem or pwd.getpwnam(user).pw_gid == entry.gr_gid
    except KeyError:
        return False


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def fixes_needed(settings: Settings) -> list[list[str]]:
    """What is wrong with proxy.txt, as the commands that would put it right ([] when it is right).

    The one definition of "proxy.txt is right": the group exists, every
    wanted member (launcher user, web user) that exists is in it, and the
    file exists with that group and mode 0660.  Raises OSError when the
    file is missing.
    """
    path, group = settings.layout.proxy_file, settings.launcher.proxy_group
    fixes: list[list[str]] = []
    gid = _group_id(group)
    if gid is None:
        fixes.append(["groupadd", group])
    for user in _members_wanted(settings):
        if _user_exists(user) and not _is_member(user, group):
            fixes.append(["usermod", "-a", "-G", group, user])
    second = settings.for_slot("b").layout.proxy_file  # slot b's, once made: the same group and mode
    for each in (path, *([second] if second != path and second.exists() else [])):
        stat = each.stat()
        if gid is None or stat.st_gid != gid:
            fixes.append(["chgrp", group, str(each)])
        if stat.st_mode & 0o777 != PROXY_MODE:
            fixes.append(["chmod", "0660", str(each)])
    return fixes


def _run_admin(cmd: list[str]) -> None:
    """Run groupadd/usermod; a group another run just created is fine, a locked /etc/group is retried."""
    log.info("running %s", " ".join(cmd))
    for attempt in range(10):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode == 0 or (cmd[0] == "groupadd" and done.returncode == 9):  # 9: the group exists
            return
        if done.returncode != 10:  # 10: cannot lock or update /etc/group (another run holds it)
            break
        time.sleep(0.1 * (attempt + 1))
    raise LauncherError(f"{' '.join(cmd)} failed (status {done.returncode}): {done.stderr.strip()}")


def _apply(cmd: list[str], path: Path, is_root: bool) -> None:
    """Carry out one fix when this user may: account changes as root, chgrp/chmod by system call."""
    if cmd[0] in ("groupadd", "usermod"):
        if is_root:
            _run_admin(cmd)
        return
    try:
        if cmd[0] == "chgrp":
            gid = _group_id(cmd[1])
            if gid is not None:
                os.chown(cmd[-1], -1, gid)
        elif cmd[0] == "chmod":
            os.chmod(cmd[-1], PROXY_MODE)
    except PermissionError:
        pass


def ensure_proxy_file(settings: Settings, as_root: bool | None = None) -> dict:
    """Make ``ROOT/proxy.txt`` (and slot b's ``proxy-b.txt``) exist with group ``[launcher] proxy_group``, mode 0660.

    As root, creates the group when missing (groupadd) and adds the launcher
    user and the web server user to it (usermod -a -G).  As another user it
    logs the exact commands an admin must run and succeeds as long as the
    file exists and this user can read and write it.  Raises LauncherError
    when the file is unusable or an admin command fails.  ``as_root``
    overrides the euid check (tests use it to exercise the non-root path).
    """
    path, group = settings.layout.proxy_file, settings.launcher.proxy_group
    if not path.exists():
        atomic_write_text(path, "", PROXY_MODE)
        log.info("created %s", path)
    _ensure_second(settings)
    is_root = os.geteuid() == 0 if as_root is None else as_root
    for user in _members_wanted(settings):
        if not _user_exists(user):
            log.warning("user %s does not exist; not adding it to group %s", user, group)
    for cmd in fixes_needed(settings):
        _apply(cmd, path, is_root)
    admin = fixes_needed(settings)
    if admin:
        commands = " && ".join(" ".join(c) for c in admin)
        log.warning("proxy.txt needs an admin; run as root: %s", commands)
        if not os.access(path, os.R_OK | os.W_OK):
            raise LauncherError(f"{path}: not readable and writable by {current_user()}; run as root: {commands}")
        return {"proxy_file": str(path), "admin_needed": [" ".join(c) for c in admin]}
    log.info("%s: group %s, mode 0660", path, group)
    return {"proxy_file": str(path), "admin_needed": []}


def _ensure_second(settings: Settings) -> None:
    """Make slot b's proxy file exist too (Apache's /proxy rule looks sessions up in both)."""
    second = settings.for_slot("b")
    if not second.layout.proxy_file.exists():
        clear_proxy_file(second)


def proxy_file_ok(settings: Settings) -> bool:
    """True when proxy.txt exists and :func:`fixes_needed` finds nothing to fix.

    The ``uptodate`` check of ``doit proxy_file``: never raises.
    """
    try:
        return (settings.layout.proxy_file.exists() and settings.for_slot("b").layout.proxy_file.exists()
                and not fixes_needed(settings))
    except Exception as err:  # noqa: BLE001 - an uptodate check must answer, not raise
        log.info("proxy.txt check failed: %s", err)
        return False


def clear_proxy_file(settings: Settings) -> None:
    """Empty proxy.txt atomically, keeping its owner, group and mode.

    The launcher leaves stale session lines behind when it exits; Apache
    re-reads the file when it changes.
    """
    path = settings.layout.proxy_file
    try:
        stat = path.stat()
    except FileNotFoundError:
        try:  # slot b's file takes the owner, group and mode of proxy.txt (slot a's, set by `doit proxy_file`)
            _replace_keeping_owner(path, "", settings.layout.for_slot("a").proxy_file.stat())
        except FileNotFoundError:
            atomic_write_text(path, "", PROXY_MODE)
        return
    if stat.st_size == 0:
        return
    _replace_keeping_owner(path, "", stat)
    log.info("cleared stale lines from %s", path)


def _replace_keeping_owner(path: Path, text: str, stat: os.stat_result) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            for uid in (stat.st_uid, -1):  # keep owner and group; a non-root user can keep only its groups
                try:
                    os.fchown(handle.fileno(), uid, stat.st_gid)
                    break
                except PermissionError:
                    continue
            os.fchmod(handle.fileno(), stat.st_mode & 0o777)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(Path(tmp))
        raise


def drop_session(settings: Settings, session_id: str) -> None:
    """Remove ``session_id``'s line from proxy.txt (keeping owner, group and mode)."""
    path = settings.layout.proxy_file
    try:
        stat = path.stat()
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return
    kept = [line for line in lines if line.split(" ", 1)[0] != session_id]
    if len(kept) != len(lines):
        _replace_keeping_owner(path, "".join(kept), stat)


def sessions(settings: Settings) -> list[dict]:
    """The sessions listed in proxy.txt: id, host, port."""
    try:
        text = settings.layout.proxy_file.read_text(encoding="utf-8")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and ":" in parts[1]:
            host, _, port = parts[1].rpartition(":")
            if port.isdigit():
                found.append({"id": parts[0], "host": host, "port": int(port)})
    return found
