"""Finding and running the system programs pvwtasks drives (crontab, apache2ctl, apache2, logrotate).

Cron and a non-root login often leave the sbin folders out of ``PATH``,
while Apache and logrotate live there.  Every lookup goes through
:func:`find`, which searches ``PATH`` and then the sbin folders, and the
crontab lines get the same folders (:data:`SYSTEM_PATH`).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .errors import MissingProgram, ProgramError

# The PATH of the rendered crontab lines, after the venv's bin folder.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
SBIN = tuple(folder for folder in SYSTEM_PATH if folder.endswith("/sbin"))


def search_path() -> str:
    """``PATH`` with the sbin folders added at the end, like the rendered crontab's PATH."""
    parts = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p]
    return os.pathsep.join(parts + [p for p in SBIN if p not in parts])


def find(name: str) -> str | None:
    """Full path of the program ``name`` (looked up in :func:`search_path`); None when not installed."""
    return shutil.which(name, path=search_path())


def run(words: list[str], what: str, install_hint: str, stdin: str | None = None,
        timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``words`` (never through a shell) with its output captured as text.

    ``words[0]`` is looked up with :func:`find`.  Raises MissingProgram,
    saying how to install it (``install_hint``), when the program is not
    there, and ProgramError when it cannot be run or does not finish in
    ``timeout`` seconds.  ``env``: variables added to this process's environment.
    A non-zero exit is returned, not raised: the caller knows what it means.
    """
    program = find(words[0]) or words[0]
    try:
        return subprocess.run([program, *words[1:]], input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False, env={**os.environ, **env} if env else None)
    except FileNotFoundError:
        raise MissingProgram(f"{what}: the {os.path.basename(words[0])} program is missing "
                             f"({words[0]} is not in PATH or sbin); {install_hint}") from None
    except OSError as err:  # not executable, wrong format
        raise ProgramError(f"{what}: cannot run {words[0]}: {err.strerror}") from None
    except subprocess.TimeoutExpired:
        raise ProgramError(f"{what}: {' '.join(words)} did not finish in {timeout:g} s") from None
