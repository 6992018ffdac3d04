"""Mail the result of a run: a failure, an unchanged upstream, or (if enabled) a success.

Mail goes out through SMTP (``smtplib``; plain, STARTTLS or implicit TLS,
with an optional login) or through a local sendmail-compatible binary,
as ``[notify] method`` says.  The password comes from an environment
variable or a file, never from the TOML, and never appears in a message
or a log line.

A mail that cannot be sent is a logged warning: it never hides the run's
own result or changes its exit code.  Only ``doit notify_test`` fails on
it, since checking the settings is its whole job.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import releases
from .config import Notify, Settings
from .errors import NotifyError
from .layout import CompareRecord, HashRecord
from .runlog import RunRecord, redact_text, tail

if TYPE_CHECKING:  # smtplib, ssl, email and subprocess are imported when a mail is built or sent
    import ssl
    from email.message import EmailMessage

log = logging.getLogger(__name__)

def enabled(cfg: Notify) -> bool:
    """True when ``[notify]`` sends mail at all."""
    return cfg.method in ("smtp", "sendmail")


# -- sending -------------------------------------------------------------------


def password(cfg: Notify) -> str | None:
    """The SMTP password from ``password_env`` or ``password_file`` (None without a user).

    Raises NotifyError naming the variable or file, never the value.
    """
    if not cfg.user:
        return None
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise NotifyError(f"[notify] password_env: environment variable {cfg.password_env} is not set")
        return value
    if cfg.password_file:
        try:
            return Path(cfg.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as err:
            raise NotifyError(f"[notify] password_file: cannot read {cfg.password_file}: {err.strerror}") from None
    raise NotifyError("[notify] user is set but neither password_env nor password_file names a password")


def send(cfg: Notify, message: EmailMessage) -> None:
    """Send ``message`` to ``[notify] to`` by the configured method.

    Raises NotifyError with one line naming the server (or binary) and the cause.
    """
    if not enabled(cfg):
        raise NotifyError("[notify] method is 'none': set method = \"smtp\" or \"sendmail\" to send mail")
    if cfg.method == "sendmail":
        _send_sendmail(cfg, message)
    else:
        _send_smtp(cfg, message)


def _tls_context(cfg: Notify) -> ssl.SSLContext:
    import ssl

    try:
        return ssl.create_default_context(cafile=cfg.ca_file or None)
    except (OSError, ssl.SSLError) as err:
        raise NotifyError(f"[notify] ca_file: cannot load {cfg.ca_file}: {getattr(err, 'strerror', None) or err}") from None


def _send_smtp(cfg: Notify, message: EmailMessage) -> None:
    import smtplib
    import ssl

    where = f"SMTP server {cfg.host}:{cfg.port}"
    secret = password(cfg)
    context = _tls_context(cfg) if cfg.security != "none" else None
    try:
        if cfg.security == "tls":
            server = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            server = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        with server:
            if cfg.security == "starttls":
                server.starttls(context=context)
            if cfg.user:
                server.login(cfg.user, secret or "")
            server.send_message(message, from_addr=cfg.sender, to_addrs=list(cfg.to))
    except smtplib.SMTPAuthenticationError as err:
        raise NotifyError(f"{where}: login as {cfg.user!r} refused: {_reply(err.smtp_code, err.smtp_error)}") from None
    except smtplib.SMTPNotSupportedError as err:
        raise NotifyError(f"{where}: {_one_line(err)} (check [notify] security)") from None
    except smtplib.SMTPRecipientsRefused as err:
        refused = ", ".join(f"{addr} ({_reply(*reply)})" for addr, reply in err.recipients.items())
        raise NotifyError(f"{where}: recipients refused: {refused}") from None
    except smtplib.SMTPResponseException as err:
        raise NotifyError(f"{where}: {_reply(err.smtp_code, err.smtp_error)}") from None
    except ssl.SSLError as err:
        raise NotifyError(f"{where}: TLS failed: {err.reason or _one_line(err)} (check [notify] security/ca_file)") from None
    except (smtplib.SMTPException, OSError) as err:
        raise NotifyError(f"{where}: {_os_reason(err, cfg.timeout)}") from None


def _send_sendmail(cfg: Notify, message: EmailMessage) -> None:
    import subprocess

    binary = cfg.sendmail
    try:
        proc = subprocess.run([binary, "-t", "-oi"], input=message.as_bytes(), capture_output=True,
                              timeout=cfg.timeout, check=False)
    except FileNotFoundError:
        raise NotifyError(f"[notify] sendmail: {binary} not found") from None
    except PermissionError:
        raise NotifyError(f"[notify] sendmail: {binary} is not executable") from None
    except subprocess.TimeoutExpired:
        raise NotifyError(f"{binary}: no answer after {cfg.timeout:g} s") from None
    except OSError as err:
        raise NotifyError(f"{binary}: {err.strerror or err}") from None
    if proc.returncode != 0:
        said = _one_line(proc.stderr.decode(errors="replace") or proc.stdout.decode(errors="replace"))
        raise NotifyError(f"{binary} exited with status {proc.returncode}" + (f": {said}" if said else ""))


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return f"{code} {_one_line(str(text))}".strip()


def _one_line(value) -> str:
    text = redact_text(str(value)).strip()
    return " ".join(text.split())[:300]


def _os_reason(err: Exception, timeout: float) -> str:
    import smtplib

    if isinstance(err, TimeoutError) or (isinstance(err, smtplib.SMTPServerDisconnected) and "timed out" in str(err)):
        return f"no answer within {timeout:g} s"
    if isinstance(err, smtplib.SMTPServerDisconnected):
        return f"server closed the connection ({_one_line(err) or 'no reason given'})"
    if isinstance(err, socket.gaierror):
        return f"host name not found ({err.strerror})"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower() if err.strerror.startswith("Connection") else err.strerror
    return _one_line(err) or type(err).__name__


# -- composing -----------------------------------------------------------------


def _message(cfg: Notify, subject: str, body: str) -> EmailMessage:
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["Subject"] = redact_text(f"{cfg.subject_prefix} {subject}".strip())
    message["From"] = cfg.sender
    message["To"] = ", ".join(cfg.to)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=cfg.sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(redact_text(body))
    return message


def _when(stamp: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(stamp if stamp is not None else time.time()))


def live_description(settings: Settings) -> str:
    """One line about the live release, from the ``paraview`` link or ``www/hash.json``."""
    layout = settings.layout
    try:
        live = releases.live_release(layout)
    except OSError:
        live = None
    if live is not None:
        return f"{live.name} (version {live.version}, sha256 {live.sha256}, installed {_when(live.installed_at)})"
    published = HashRecord.load(layout.hash_file)
    if published is not None:
        return f"{published.name} (version {published.version}, sha256 {published.sha256})"
    return "no release installed yet"


def _log_tail(settings: Settings) -> str:
    lines = settings.notify.log_tail_lines
    text = tail(settings.layout.update_log, lines) if lines > 0 else ""
    return f"\nLast {lines} lines of {settings.layout.update_log}:\n\n{text}\n" if text else ""


def failure_message(settings: Settings, record: RunRecord) -> EmailMessage:
    """The mail telling that ``doit update`` failed: task, error, host, time, live version, log tail."""
    task, error = next(iter(record.failed.items()), ("?", "unknown error"))
    others = [name for name in record.failed if name != task]
    body = (
        f"doit update failed on {record.host} at {_when()}.\n\n"
        f"Failed task: {task}\n"
        f"Error: {error}\n"
        + (f"Also failed: {', '.join(others)}\n" if others else "")
        + f"\nLive version (still serving): {live_description(settings)}\n"
        f"Config: {settings.path}\n"
        f"Deployment: {settings.layout.root}\n"
        + _log_tail(settings)
    )
    return _message(settings.notify, f"FAILED on {record.host}: {task}: {_one_line(error)[:120]}", body)


def config_failure_message(cfg: Notify, config: Path, error: str, host: str, live: str = "") -> EmailMessage:
    """The mail telling that ``doit update`` could not even start (bad config, unusable ROOT)."""
    body = (
        f"doit update could not start on {host} at {_when()}.\n\n"
        f"Failed: loading the configuration\n"
        f"Error: {error}\n\n"
        f"Nothing was changed on disk.\n"
        + (f"Live version (still serving): {live}\n" if live else "")
        + f"Config: {config}\n"
    )
    return _message(cfg, f"FAILED on {host}: config: {_one_line(error)[:120]}", body)


def unchanged_message(settings: Settings, compare: CompareRecord, record: RunRecord) -> EmailMessage:
    """The mail telling that upstream produced nothing new since the last run."""
    since = compare.since
    body = (
        f"Upstream produced nothing new since the last run of doit update on {record.host} ({_when()}).\n\n"
        f"Upstream still serves: {compare.filename}\n"
        f"sha256: {compare.sha256}\n"
        + (f"Unchanged since: {_when(since)}\n" if since else "")
        + "\nFor a nightly channel this usually means the nightly build broke upstream.\n\n"
        f"Live version: {live_description(settings)}\n"
        f"Config: {settings.path}\n"
    )
    return _message(settings.notify, f"unchanged on {record.host}: upstream has nothing new", body)


def success_message(settings: Settings, compare: CompareRecord, record: RunRecord) -> EmailMessage:
    """The mail telling what a successful run installed, re-rendered and restarted."""
    layout = settings.layout
    live = releases.live_release(layout)
    # What each task is for the mail comes from dodo.py (the task's meta), never from its name.
    rendered = [record.label(name) for name in record.ran if record.role(name) == "rendered"]
    restarted = [name for name in record.ran if record.role(name) == "restart"]
    other = [name for name in record.ran if record.role(name) is None]
    version = f"{live.version} ({live.name})" if live else "none"
    body = (
        f"doit update finished on {record.host} at {_when()} in {record.duration():.1f} s.\n\n"
        f"Live version: {version}\n"
        f"sha256: {live.sha256 if live else compare.sha256}\n"
        + (f"From: {live.url}\n" if live else "")
        + (f"Previous sha256: {compare.previous_sha256}\n" if compare.previous_sha256 else "")
        + f"\nRe-rendered: {', '.join(rendered) or 'nothing'}\n"
        f"Restarted: {'the launcher' if restarted else 'nothing'}\n"
        f"Other steps that ran: {', '.join(other) or 'none'}\n"
        f"Up to date: {', '.join(n for n in record.skipped if record.role(n) != 'bookkeeping') or 'none'}\n"
        f"Config: {settings.path}\n"
    )
    return _message(settings.notify, f"updated {record.host} to {live.version if live else '?'}", body)


def test_message(settings: Settings) -> EmailMessage:
    """The mail ``doit notify_test`` sends."""
    host = socket.getfqdn()
    body = (
        f"This is a test mail from pvwtasks on {host} at {_when()}.\n\n"
        f"If you read this, the [notify] settings in {settings.path} work.\n"
        f"Live version: {live_description(settings)}\n"
    )
    return _message(settings.notify, f"test mail from {host}", body)


# -- the three entry points ------------------------------------------------------


def run_finished(settings: Settings, record: RunRecord) -> dict:
    """The ``notify`` step of ``doit update``: mail an unchanged upstream, or a success if enabled.

    Reads ``.pvwtasks/compare.json`` (written by the compare step).  A mail
    that cannot be sent is logged as a warning and does not fail the step.
    """
    cfg = settings.notify
    compare = CompareRecord.load(settings.layout.compare_record)
    result = compare.result if compare else None
    if result == "unchanged" and cfg.on_unchanged:
        kind, build = "unchanged", unchanged_message
    elif result == "changed" and cfg.on_success:
        kind, build = "success", success_message
    else:
        log.info("no mail for this run (upstream %s)", result or "not compared")
        return {"mail": None}
    if not enabled(cfg):
        log.info("no %s mail: [notify] method is 'none'", kind)
        return {"mail": None}
    try:
        send(cfg, build(settings, compare, record))
    except NotifyError as err:
        log.warning("could not send the %s mail: %s", kind, err)
        return {"mail": f"{kind} not sent"}
    except Exception as err:  # noqa: BLE001 - a mail must never fail the deployment
        log.warning("could not send the %s mail: %s", kind, _one_line(err))
        return {"mail": f"{kind} not sent"}
    log.info("sent the %s mail to %s", kind, ", ".join(cfg.to))
    return {"mail": kind}


def run_failed(settings: Settings, record: RunRecord) -> bool:
    """Mail that ``doit update`` failed; return True if sent.  Never raises."""
    cfg = settings.notify
    if not enabled(cfg):
        return False
    try:
        send(cfg, failure_message(settings, record))
    except Exception as err:  # noqa: BLE001 - the run's own failure must stay what is reported
        log.warning("could not send the failure mail: %s", _one_line(err))
        return False
    log.info("sent the failure mail to %s", ", ".join(cfg.to))
    return True


def config_failed(cfg: Notify, config: Path, error: str, live: str = "") -> bool:
    """Mail that ``doit update`` could not start (bad config, unusable ROOT).  Never raises."""
    if not enabled(cfg):
        return False
    try:
        send(cfg, config_failure_message(cfg, config, error, socket.getfqdn(), live))
    except Exception as err:  # noqa: BLE001 - the config error is what gets reported
        log.warning("could not send the failure mail: %s", _one_line(err))
        return False
    log.debug("sent the failure mail to %s", ", ".join(cfg.to))  # keep the config error the only line
    return True


def send_test(settings: Settings) -> None:
    """``doit notify_test``: send a test mail.  Raises NotifyError with one clear line."""
    cfg = settings.notify
    send(cfg, test_message(settings))
    log.info("test mail sent to %s via %s", ", ".join(cfg.to),
             cfg.sendmail if cfg.method == "sendmail" else f"{cfg.host}:{cfg.port}")
