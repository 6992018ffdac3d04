"""Real parts for the unattended-operation tests: SMTP servers, a slow HTTP server, doit killed or without programs.

Also runnable as a script: ``python unattended_support.py kill-at EVENT NEEDLE COUNT -- DOIT ARGS``
runs doit like ``python -m doit`` and SIGKILLs itself just before the
COUNT-th audit event EVENT whose arguments contain NEEDLE (for example the
``os.rename`` that switches the live symlink).  That is a real ``kill -9``
at a precise point of a real run, with no change to the code under test.
"""

from __future__ import annotations

import os
import signal
import sys

if __name__ == "__main__" and sys.argv[1:2] == ["hide"]:
    # Run inside `unshare --mount --propagation private`: cover /usr/sbin with a tmpfs of links to
    # the real programs, leaving out the hidden ones, so only this process tree sees them missing.
    import subprocess as _sp

    _hidden, _scratch = set(sys.argv[2].split(",")), sys.argv[3]
    _args = sys.argv[sys.argv.index("--") + 1:]
    _real = os.path.join(_scratch, "real-sbin")
    os.makedirs(_real, exist_ok=True)
    _sp.run(["mount", "--bind", "/usr/sbin", _real], check=True)
    _sp.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/usr/sbin"], check=True)
    for _name in os.listdir(_real):
        if _name not in _hidden:
            os.symlink(os.path.join(_real, _name), os.path.join("/usr/sbin", _name))
    sys.argv = ["doit", *_args]
    from doit.doit_cmd import DoitMain

    sys.exit(DoitMain().run(_args))

if __name__ == "__main__" and sys.argv[1:2] == ["kill-at"]:  # keep the script path free of test imports
    _event, _needle, _count = sys.argv[2], sys.argv[3], int(sys.argv[4])
    _args = sys.argv[sys.argv.index("--") + 1:]
    _seen = 0

    def _hook(name, args):
        global _seen
        if name == _event and _needle in " ".join(map(str, args)):
            _seen += 1
            if _seen >= _count:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.argv = ["doit", *_args]
    sys.addaudithook(_hook)
    from doit.doit_cmd import DoitMain

    sys.exit(DoitMain().run(_args))

import email
import email.policy
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from conftest import FileServer
from support.doit import DODO, DoitRun, doit_env
from support.ports import free_port



# -- SMTP ------------------------------------------------------------------------


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: email.message.EmailMessage
    raw: bytes

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return self.message.get_content()


class _Handler:
    def __init__(self, sink: "MailServer") -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.sink.mails.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, raw))
        return "250 OK"


class MailServer:
    """An aiosmtpd server on 127.0.0.1: plain, STARTTLS or implicit TLS, with optional AUTH.

    ``accept`` is the (user, password) pair that may log in; ``refuse_auth``
    refuses every login (535).  Received mails are in ``mails``.
    """

    def __init__(self, *, starttls: ssl.SSLContext | None = None, implicit_tls: ssl.SSLContext | None = None,
                 accept: tuple[str, str] | None = None, refuse_auth: bool = False) -> None:
        self.mails: list[Received] = []
        self.auth_attempts: list[tuple[str, str]] = []
        self.port = free_port()  # aiosmtpd 1.4.6 cannot bind port 0 itself (FACTS.md)
        kwargs = {}
        if starttls is not None:
            kwargs.update(tls_context=starttls, require_starttls=True)
        if accept is not None or refuse_auth:
            # aiosmtpd 1.4 counts only STARTTLS as TLS for AUTH; implicit TLS is TLS too.
            kwargs.update(authenticator=self._authenticate, auth_require_tls=starttls is not None)
        self.accept, self.refuse_auth = accept, refuse_auth
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     ssl_context=implicit_tls, **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            self.auth_attempts.append((user, password))
            if not self.refuse_auth and (user, password) == self.accept:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> "MailServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.mails) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.mails


def notify_toml(port: int, *, security: str = "none", user: str = "", password_env: str = "",
                password_file: str = "", ca_file: str = "", on_unchanged: bool = True, on_success: bool = False,
                method: str = "smtp", sendmail: str = "", log_tail_lines: int = 40, timeout: float = 5) -> str:
    """A [notify] section sending to a loopback server."""
    lines = [
        "[notify]",
        f'method = "{method}"',
        'host = "127.0.0.1"',
        f"port = {port}",
        f'security = "{security}"',
        'from = "pvwtasks@test.invalid"',
        'to = ["admin@test.invalid", "oncall@test.invalid"]',
        'subject_prefix = "[pvw-test]"',
        f"on_unchanged = {'true' if on_unchanged else 'false'}",
        f"on_success = {'true' if on_success else 'false'}",
        f"timeout = {timeout}",
        f"log_tail_lines = {log_tail_lines}",
    ]
    for key, value in (("user", user), ("password_env", password_env), ("password_file", password_file),
                       ("ca_file", ca_file), ("sendmail", sendmail)):
        if value:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


# -- a slow HTTP server ----------------------------------------------------------


class SlowServer(FileServer):
    """conftest's loopback file server (ETag, Range with If-Range) sending ``chunk`` bytes every ``delay`` s.

    Throttling applies while ``slow`` is set; ``log`` holds (method, path, headers) per request.
    """

    def __init__(self, root: Path, chunk: int = 64 * 1024, delay: float = 0.05) -> None:
        super().__init__(root, chunk=chunk, delay=delay)

    def ranges(self, name: str) -> list[str | None]:
        """The Range header of each GET of ``name`` so far (None for a full GET)."""
        return [h.get("Range") for h in self.gets(name)]

    def start(self) -> "SlowServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- doit processes killed at a point, or without some programs ---------------------


def doit_killed_at(config: Path, event: str, needle: str, count: int = 1, *args: str, env: dict | None = None,
                   timeout: float = 180) -> DoitRun:
    """Run ``doit update`` and SIGKILL it just before the COUNT-th audit event matching NEEDLE."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "kill-at", event, needle, str(count), "--",
           "-f", str(DODO), *(args or ("update",)), f"config={config}"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=doit_env(env), timeout=timeout, cwd=config.parent)
    return DoitRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def doit_without(config: Path, programs: list[str], scratch: Path, *args: str, env: dict | None = None,
                  timeout: float = 180) -> DoitRun:
    """Run ``doit ARGS`` in a private mount namespace where ``programs`` are missing from /usr/sbin."""
    import pytest

    unshare = "/usr/bin/unshare"
    if not os.access(unshare, os.X_OK):
        pytest.skip("unshare(1) is needed to hide a program from one process tree only")
    scratch.mkdir(parents=True, exist_ok=True)
    cmd = [unshare, "--mount", "--propagation", "private", sys.executable, str(Path(__file__).resolve()), "hide",
           ",".join(programs), str(scratch), "--", "-f", str(DODO), *args, f"config={config}"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=doit_env(env), timeout=timeout, cwd=config.parent)
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip(f"cannot make a private mount namespace: {proc.stderr.strip()}")
    return DoitRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


# -- the deployment's state ---------------------------------------------------------


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its type, size, mtime and link target."""
    snap = {}
    if not root.exists():
        return snap
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            target = os.readlink(path) if path.is_symlink() else None
            snap[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, target)
    return snap


def live_name(root: Path) -> str | None:
    try:
        return Path(os.readlink(root / "autodeploy" / "paraview")).name
    except OSError:
        return None


@dataclass
class Mounts:
    """Filesystems a test mounted; unmounted (by path) at teardown."""

    points: list[Path] = field(default_factory=list)

    def tmpfs(self, where: Path, size: str, read_only: bool = False) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if read_only else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return self._loop(where, size, read_only, proc.stderr.strip())
        self.points.append(where)
        return where

    def _loop(self, where: Path, size: str, read_only: bool, why: str) -> Path:
        import pytest

        image = where.with_name(where.name + ".img")
        megabytes = int(size.rstrip("mM"))
        with open(image, "wb") as handle:
            handle.truncate(max(megabytes, 2) << 20)
        steps = [["mkfs.ext4", "-q", "-F", "-m", "0", str(image)],
                 ["mount", "-o", "loop" + (",ro" if read_only else ""), str(image), str(where)]]
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.skip(f"cannot mount a small filesystem: tmpfs ({why}), loop ext4 ({proc.stderr.strip()})")
        self.points.append(where)
        return where

    def remount(self, where: Path, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True)

    def unmount_all(self) -> None:
        for point in reversed(self.points):
            subprocess.run(["umount", str(point)], capture_output=True)
            if os.path.ismount(point):
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
        self.points.clear()
