"""Mail notifications of `doit update` and `doit notify_test`, against real aiosmtpd servers on loopback."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import stat
from pathlib import Path

import pytest
import trustme

from conftest import build_release, write_config
from support.doit import run_doit
from support.ports import free_port
from unattended_support import MailServer, live_name, notify_toml

HOST = socket.getfqdn()


@pytest.fixture
def launchers(cleanup):
    """Configs whose launcher gets stopped at teardown (`doit update` may start one)."""
    return cleanup


@pytest.fixture
def smtp():
    servers: list[MailServer] = []

    def make(**kwargs) -> MailServer:
        server = MailServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca, tmp_path) -> Path:
    path = tmp_path / "site-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _deploy(tmp_path, http_server, launchers, notify: str, version: str = "5.13.0") -> tuple[Path, Path, Path]:
    release = build_release(http_server.root, version)
    config = write_config(tmp_path / "pvw.toml", http_server.url(release.name), tmp_path / "root", extra=notify)
    launchers.append(config)
    return config, tmp_path / "root", release


# -- which mail, when -----------------------------------------------------------


def test_failure_mail_names_task_error_host_time_live_version_and_log_tail(tmp_path, http_server, smtp, launchers):
    mail = smtp()
    config, root, first = _deploy(tmp_path, http_server, launchers, notify_toml(mail.port, log_tail_lines=5))
    assert run_doit(config, "update").returncode == 0
    live_before = live_name(root)
    assert mail.mails == []  # a first install is a success: off by default

    second = build_release(http_server.root, "5.13.1", name=first.name)  # new bytes, same URL
    http_server.faults.errors[f"/{second.name}"] = [503] * 40
    run = run_doit(config, "update")

    assert run.returncode == 1, run.output
    assert live_name(root) == live_before
    (received,) = mail.wait_for(1)
    assert received.recipients == ["admin@test.invalid", "oncall@test.invalid"]
    assert received.subject.startswith("[pvw-test] FAILED on ")
    assert "download" in received.subject
    body = received.body
    assert "Failed task: download" in body
    assert "HTTP 503" in body
    assert HOST in body
    assert f"Live version (still serving): {live_before}" in body
    tail = [line for line in body.split("Last 5 lines of", 1)[1].splitlines()[1:] if line]
    assert len(tail) == 5
    assert "failed download: " in tail[-1]
    assert "run download" in tail[-2]


def test_unchanged_mail_is_on_by_default_and_names_the_archive(tmp_path, http_server, smtp, launchers):
    mail = smtp()
    config, root, release = _deploy(tmp_path, http_server, launchers, notify_toml(mail.port))
    assert run_doit(config, "update").returncode == 0
    assert mail.mails == []

    run = run_doit(config, "update")

    assert run.returncode == 0, run.output
    (received,) = mail.wait_for(1)
    assert "unchanged" in received.subject
    assert release.name in received.body
    assert hashlib.sha256(release.read_bytes()).hexdigest() in received.body
    assert "nightly build broke upstream" in received.body


def test_no_unchanged_mail_when_turned_off(tmp_path, http_server, smtp, launchers):
    mail = smtp()
    config, _, _ = _deploy(tmp_path, http_server, launchers, notify_toml(mail.port, on_unchanged=False))
    assert run_doit(config, "update").returncode == 0
    assert run_doit(config, "update").returncode == 0
    assert mail.wait_for(1, timeout=1) == []


def test_success_mail_when_enabled_gives_version_hash_and_what_changed(tmp_path, http_server, smtp, launchers):
    mail = smtp()
    config, root, release = _deploy(tmp_path, http_server, launchers, notify_toml(mail.port, on_success=True,
                                                                                  on_unchanged=False))
    run = run_doit(config, "update")

    assert run.returncode == 0, run.output
    (received,) = mail.wait_for(1)
    assert received.subject == f"[pvw-test] updated {HOST} to 5.13.0"
    body = received.body
    assert hashlib.sha256(release.read_bytes()).hexdigest() in body
    assert f"Live version: 5.13.0 ({live_name(root)})" in body
    assert "Re-rendered: vhost, launcher, start, logrotate, cron, index" in body

    assert run_doit(config, "update").returncode == 0  # unchanged, and on_unchanged is off
    assert len(mail.wait_for(2, timeout=1)) == 1


# -- transports ------------------------------------------------------------------


def test_starttls_login_with_password_from_env(tmp_path, smtp, ca, ca_file):
    mail = smtp(starttls=_server_context(ca), accept=("pvw", "s3cret-env"))
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=notify_toml(mail.port, security="starttls", user="pvw",
                                            password_env="PVW_TEST_SMTP_PASSWORD", ca_file=str(ca_file)))
    run = run_doit(config, "notify_test", env={"PVW_TEST_SMTP_PASSWORD": "s3cret-env"})

    assert run.returncode == 0, run.output
    (received,) = mail.wait_for(1)
    assert mail.auth_attempts == [("pvw", "s3cret-env")]
    assert received.subject == f"[pvw-test] test mail from {HOST}"
    assert received.sender == "pvwtasks@test.invalid"
    assert "s3cret-env" not in run.output
    assert not (tmp_path / "root" / "logs").exists()  # a test mail writes no update.log


def test_implicit_tls_login_with_password_from_file(tmp_path, smtp, ca, ca_file):
    mail = smtp(implicit_tls=_server_context(ca), accept=("pvw", "s3cret-file"))
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret-file\n")
    secret.chmod(0o600)
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=notify_toml(mail.port, security="tls", user="pvw", password_file=str(secret),
                                            ca_file=str(ca_file)))
    run = run_doit(config, "notify_test")

    assert run.returncode == 0, run.output
    assert len(mail.wait_for(1)) == 1
    assert mail.auth_attempts == [("pvw", "s3cret-file")]
    assert "s3cret-file" not in run.output


def test_untrusted_certificate_is_a_clear_error(tmp_path, smtp, ca):
    mail = smtp(starttls=_server_context(ca))
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=notify_toml(mail.port, security="starttls"))  # system CAs only
    run = run_doit(config, "notify_test")

    assert run.returncode != 0
    (line,) = run.error_lines()
    assert f"SMTP server 127.0.0.1:{mail.port}: TLS failed: CERTIFICATE_VERIFY_FAILED" in line
    assert mail.mails == []


def test_refused_login_is_one_clear_line_for_notify_test(tmp_path, smtp, ca, ca_file):
    mail = smtp(starttls=_server_context(ca), refuse_auth=True)
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=notify_toml(mail.port, security="starttls", user="pvw", password_env="PVW_PW",
                                            ca_file=str(ca_file)))
    run = run_doit(config, "notify_test", env={"PVW_PW": "wrong-one"})

    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line == f"ERROR: notify_test: SMTP server 127.0.0.1:{mail.port}: login as 'pvw' refused: " \
                   "535 5.7.8 Authentication credentials invalid"
    assert "wrong-one" not in run.output
    assert mail.auth_attempts and set(mail.auth_attempts) == {("pvw", "wrong-one")}  # smtplib tries PLAIN, LOGIN


def test_notify_test_unreachable_server_fails_with_one_line(tmp_path):
    port = free_port()  # nothing listens there
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=notify_toml(port))
    run = run_doit(config, "notify_test")

    assert run.returncode == 1
    assert run.error_lines() == [f"ERROR: notify_test: SMTP server 127.0.0.1:{port}: connection refused"]
    assert "Traceback" not in run.output


def test_notify_test_with_mail_off_says_how_to_turn_it_on(tmp_path):
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root")
    run = run_doit(config, "notify_test")

    assert run.returncode == 1
    (line,) = run.error_lines()
    assert "[notify] method is 'none'" in line


def test_missing_password_variable_is_named_not_guessed(tmp_path, smtp):
    mail = smtp(accept=("pvw", "x"))
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=notify_toml(mail.port, user="pvw", password_env="PVW_UNSET_PASSWORD"))
    env = {k: v for k, v in os.environ.items() if k != "PVW_UNSET_PASSWORD"}
    run = run_doit(config, "notify_test", env=env)

    assert run.returncode == 1
    assert run.error_lines() == ["ERROR: notify_test: [notify] password_env: environment variable "
                                 "PVW_UNSET_PASSWORD is not set"]


def test_sendmail_method_pipes_the_mail_to_the_binary_without_a_shell(tmp_path, http_server, launchers):
    folder = tmp_path / "bin dir; touch pwned"  # a shell would split this path
    folder.mkdir()
    captured = tmp_path / "captured.eml"
    fake = folder / "sendmail"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{captured}.args'\ncat > '{captured}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    config, _, _ = _deploy(tmp_path, http_server, launchers,
                           notify_toml(25, method="sendmail", sendmail=str(fake), on_success=True))
    run = run_doit(config, "update")

    assert run.returncode == 0, run.output
    assert (tmp_path / f"{captured.name}.args").read_text().split() == ["-t", "-oi"]
    text = captured.read_text()
    assert "To: admin@test.invalid, oncall@test.invalid" in text
    assert "Subject: [pvw-test] updated" in text
    assert not (tmp_path / "pwned").exists()


# -- a mail failure never changes the run's result -----------------------------------


def test_refused_login_during_update_is_a_warning_and_exit_code_stays_0(tmp_path, http_server, smtp, ca, ca_file,
                                                                       launchers):
    mail = smtp(starttls=_server_context(ca), refuse_auth=True)
    config, root, _ = _deploy(tmp_path, http_server, launchers,
                              notify_toml(mail.port, security="starttls", user="pvw", password_env="PVW_PW",
                                          ca_file=str(ca_file), on_success=True))
    run = run_doit(config, "update", env={"PVW_PW": "hunter2-pw"})

    assert run.returncode == 0, run.output
    assert live_name(root) is not None
    assert "WARNING could not send the success mail: SMTP server" in run.stderr
    assert "login as 'pvw' refused: 535" in run.stderr
    assert "hunter2-pw" not in run.output
    assert "hunter2-pw" not in (root / "logs" / "autodeploy" / "update.log").read_text()


def test_mail_server_down_keeps_exit_codes_of_success_and_failure(tmp_path, http_server, launchers):
    port = free_port()  # nothing listens
    config, root, release = _deploy(tmp_path, http_server, launchers, notify_toml(port, on_success=True))
    ok = run_doit(config, "update")
    assert ok.returncode == 0, ok.output
    assert f"could not send the success mail: SMTP server 127.0.0.1:{port}: connection refused" in ok.stderr

    build_release(http_server.root, "5.13.1", name=release.name)
    http_server.faults.errors[f"/{release.name}"] = [500] * 40
    failed = run_doit(config, "update")
    assert failed.returncode == 1
    assert "ERROR: download:" in failed.stderr
    assert "could not send the failure mail" in failed.stderr
    assert "end: failed" in (root / "logs" / "autodeploy" / "update.log").read_text().splitlines()[-1]


# -- config ----------------------------------------------------------------------


def test_password_in_the_toml_is_refused_without_echoing_it(tmp_path):
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=notify_toml(25, user="pvw", password_env="X") + 'password = "toml-secret"\n')
    run = run_doit(config, "update")

    assert run.returncode == 3
    assert run.error_lines() == [f"ERROR: {config}: [notify] password: unknown key (did you mean 'password_env'?)"]
    assert "toml-secret" not in run.output


def test_login_without_a_password_source_is_a_config_error(tmp_path):
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=notify_toml(25, user="pvw"))
    run = run_doit(config, "update")

    assert run.returncode == 3
    (line,) = run.error_lines()
    assert f"{config}: [notify] user: needs password_env or password_file" in line
    assert not (tmp_path / "root").exists()


def _config_it_cannot_load(tmp_path, smtp_port: int):
    """A config that mails through ``smtp_port`` and has one unknown key ([deploy] kepe)."""
    config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                          extra=notify_toml(smtp_port))
    config.write_text(config.read_text().replace("keep = 2", "kepe = 2"))
    return config


@pytest.mark.parametrize("args, mailed", [
    (("update",), True),
    ((), True),  # update is the default task
    (("run", "-v", "2", "update"), True),
    (("info", "update"), False),
    (("notify_test",), False),
])
def test_only_update_mails_a_config_it_cannot_load(tmp_path, smtp, args, mailed):
    mail = smtp()
    config = _config_it_cannot_load(tmp_path, mail.port)

    run = run_doit(config, *args)

    assert run.returncode == 3
    assert run.output.strip().splitlines() == [f"ERROR: {config}: [deploy] kepe: unknown key (did you mean 'keep'?)"]
    assert len(mail.wait_for(1, timeout=5 if mailed else 1)) == (1 if mailed else 0)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("args, code", [(("status", "--json"), 1), (("stop_launcher",), 0)])
def test_status_and_stop_launcher_run_on_a_bad_config_without_mailing(tmp_path, smtp, args, code):
    """They still run with what the config says (issue 13), warn with the error, and mail nothing."""
    mail = smtp()
    config = _config_it_cannot_load(tmp_path, mail.port)

    run = run_doit(config, *args)

    assert run.returncode == code, run.output
    warning = f"WARNING: {config}: [deploy] kepe: unknown key (did you mean 'keep'?)"
    assert run.stderr.splitlines()[0].startswith(warning)
    assert mail.wait_for(1, timeout=1) == []


def test_notify_test_silent_server_times_out_with_one_line(tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        config = write_config(tmp_path / "pvw.toml", "http://127.0.0.1:9/x.tar.gz", tmp_path / "root",
                              extra=notify_toml(port, timeout=1))
        run = run_doit(config, "notify_test")

    assert run.returncode == 1
    assert run.error_lines() == [f"ERROR: notify_test: SMTP server 127.0.0.1:{port}: no answer within 1 s"]
