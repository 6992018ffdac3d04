"""The exceptions pvwtasks raises for expected failures.

Each one carries a message meant for a sysadmin: it names the cause and,
where it helps, what was left untouched.
"""

from __future__ import annotations


class PvwError(Exception):
    """Base of every expected pvwtasks failure (shown as one line, no traceback)."""


class ConfigError(PvwError):
    """The TOML configuration is missing, unreadable or invalid."""


class DownloadError(PvwError):
    """A release, listing or checksum manifest could not be fetched."""


class HashMismatch(PvwError):
    """The downloaded bytes do not match the expected digest."""


class UnsafeArchive(PvwError):
    """A tarball holds a member that would escape or damage the install tree."""


class InstallError(PvwError):
    """A release could not be extracted, discovered or switched to."""


class RenderError(PvwError):
    """A configuration file could not be rendered or failed its check."""


class LauncherError(PvwError):
    """The launcher could not be started, stopped or health-checked."""


class DeploymentUnhealthy(PvwError):
    """``doit status`` found a problem: launcher down, another release served, a failed update, a bad config."""


class LockHeld(PvwError):
    """Another pvwtasks run holds the deployment's lock."""


class NotifyError(PvwError):
    """A notification mail could not be sent."""


class ProgramError(PvwError):
    """A system program pvwtasks runs (crontab, apachectl, logrotate) could not be run to the end."""


class MissingProgram(ProgramError):
    """A program the deployment needs is not installed."""


class VenvError(PvwError):
    """A trame app's companion venv could not be resolved or built."""


class WebClientError(PvwError):
    """A trame static web client or app page could not be built."""


class NoWebApps(InstallError):
    """The release ships no web apps (5.13 and 6.x) and none is configured."""


class FamilyMismatch(InstallError):
    """An app's command needs a file or module the release does not have."""


class PortBusy(LauncherError):
    """The launcher's port is held by a process that is not this deployment's."""


class AccountError(LauncherError):
    """The launcher may not run as root, or its service account does not exist (a config problem)."""


class SystemdError(PvwError):
    """systemctl failed, or a unit could not be installed."""
