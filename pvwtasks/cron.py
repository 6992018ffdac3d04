"""The crontab: the command lines cron runs, and this deployment's marked block in the user's crontab.

``doit render_cron`` renders ``conf/crontab`` (see render.py); ``install_cron``
puts its lines between ``# BEGIN pvwtasks ROOT`` and ``# END pvwtasks ROOT``
in the user's crontab, and ``uninstall_cron`` takes them out again.  Lines
outside the block, other deployments' blocks included, are never changed.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from . import programs
from .config import Settings
from .errors import RenderError
from .layout import Layout

log = logging.getLogger(__name__)

_INSTALL_HINT = "install it with `apt-get install cron`, or point [cron] crontab at it"


# --- the lines cron runs

def doit_command() -> list[str]:
    """How cron runs this venv's doit: its ``bin/doit``, else ``python -m doit``."""
    doit = Path(sys.executable).parent / "doit"
    return [str(doit)] if doit.is_file() else [sys.executable, "-m", "doit"]


def watchdog_command(settings: Settings) -> list[str]:
    """The watchdog's command: this venv's Python running ``pvwtasks.watchdog`` on the config."""
    return [sys.executable, "-m", "pvwtasks.watchdog", str(settings.path)]


def cron_path() -> str:
    """PATH for the crontab lines: the venv first, then the system folders (logrotate is in sbin)."""
    return ":".join([str(Path(sys.executable).parent), *programs.SYSTEM_PATH])


def command_line(words: list[str], append_to: Path | None = None) -> str:
    """One crontab command: ``PATH=... words`` quoted for /bin/sh, output appended to ``append_to``."""
    command = f"PATH={shlex.quote(cron_path())} " + " ".join(shlex.quote(str(w)) for w in words)
    if append_to is not None:
        command += f" >> {shlex.quote(str(append_to))} 2>&1"
    # cron turns a bare % into a newline.
    return command.replace("%", "\\%")


# --- the marked block in the user's crontab

def cron_markers(layout: Layout) -> tuple[str, str]:
    """The lines around this deployment's block in the user's crontab."""
    return f"# BEGIN pvwtasks {layout.root}", f"# END pvwtasks {layout.root}"


def _crontab_command(settings: Settings) -> list[str]:
    words = shlex.split(settings.cron.crontab)
    if not words:
        raise RenderError(f"{settings.path}: [cron] crontab: empty; expected the crontab program")
    return words


def _read_crontab(settings: Settings) -> list[str]:
    crontab = _crontab_command(settings)
    proc = programs.run([*crontab, "-l"], "reading the crontab", _INSTALL_HINT)
    if proc.returncode != 0:
        if "no crontab" in proc.stderr.lower():
            return []
        raise RenderError(f"`{' '.join(crontab)} -l` failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout.splitlines()


def _write_crontab(settings: Settings, lines: list[str]) -> None:
    crontab = _crontab_command(settings)
    text = "\n".join(lines) + "\n" if lines else ""
    proc = programs.run([*crontab, "-"], "writing the crontab", _INSTALL_HINT, stdin=text)
    if proc.returncode != 0:
        raise RenderError(f"`{' '.join(crontab)} -` refused the new crontab: {proc.stderr.strip() or proc.returncode}")


def _split_block(lines: list[str], layout: Layout) -> tuple[list[str], list[str], list[str]]:
    """(before, our block, after); RenderError on a BEGIN without its END."""
    begin, end = cron_markers(layout)
    if begin not in lines:
        return lines, [], []
    start = lines.index(begin)
    try:
        stop = lines.index(end, start)
    except ValueError:
        raise RenderError(f"the crontab has '{begin}' but no '{end}'; fix it with `crontab -e`") from None
    return lines[:start], lines[start:stop + 1], lines[stop + 1:]


def install_cron(settings: Settings) -> None:
    """Add or replace this deployment's marked block in the user's crontab.

    Other lines, other deployments' blocks included, stay as they are.
    Does nothing when the block is already current.  Raises RenderError
    when conf/crontab is missing or the crontab program fails, and
    MissingProgram when there is no crontab program.
    """
    layout = settings.layout
    rendered = layout.crontab_file
    try:
        body = [line for line in rendered.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        raise RenderError(f"{rendered} is missing; run `doit render_cron` first") from None
    begin, end = cron_markers(layout)
    block = [begin, *body, end]
    before, current, after = _split_block(_read_crontab(settings), layout)
    if current == block:
        log.info("crontab block for %s already installed", layout.root)
        return
    _write_crontab(settings, [*before, *block, *after])
    log.info("%s the crontab block for %s", "replaced" if current else "installed", layout.root)


def uninstall_cron(settings: Settings) -> None:
    """Remove this deployment's marked block from the user's crontab (other lines stay)."""
    layout = settings.layout
    before, current, after = _split_block(_read_crontab(settings), layout)
    if not current:
        log.info("no crontab block for %s; nothing to remove", layout.root)
        return
    _write_crontab(settings, [*before, *after])
    log.info("removed the crontab block for %s", layout.root)


def block_state(settings: Settings) -> str:
    """Whether this deployment's block is in the user's crontab: "installed", "outdated" or "not installed".

    "outdated" when the block differs from conf/crontab.  Raises RenderError
    or MissingProgram when the crontab cannot be read.
    """
    layout = settings.layout
    _, current, _ = _split_block(_read_crontab(settings), layout)
    if not current:
        return "not installed"
    try:
        body = [line for line in layout.crontab_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return "installed"
    return "installed" if current[1:-1] == body else "outdated"
