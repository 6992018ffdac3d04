"""Check, before ``doit update`` changes anything, that the programs the deployment relies on exist.

The rendered crontab runs ``logrotate`` and the vhost is for Apache
(``[web] apachectl``, and ``apache2`` behind Debian's ``apache2ctl``).  A
missing one is an environment error: one line naming the program and the
config key, before any step runs.  The lookup uses ``PATH`` plus the sbin
folders, as the crontab line does.
"""

from __future__ import annotations

import os
import shlex

from . import programs
from .config import Settings
from .errors import ConfigError, MissingProgram


def required_programs(settings: Settings) -> dict[str, str]:
    """Program -> why it is needed (the config key or file that uses it).

    Empty when ``[deploy] require_programs`` is off (the demo on a machine without Apache).
    """
    if not settings.deploy.require_programs:
        return {}
    words = shlex.split(settings.web.apachectl)
    needed = {}
    if words:
        needed[words[0]] = "needed by [web] apachectl"
        if os.path.basename(words[0]) == "apache2ctl":
            needed["apache2"] = "the Apache server that [web] apachectl controls"
    needed["logrotate"] = "the crontab runs it to rotate the logs"
    if settings.deploy.supervisor == "systemd":
        needed["systemctl"] = "[deploy] supervisor = \"systemd\" installs and drives the units with it"
    else:
        needed[shlex.split(settings.cron.crontab or "crontab")[0]] = \
            "[deploy] supervisor = \"cron\": the crontab runs the update and the watchdog ([cron] crontab)"
    return needed


def missing_programs(settings: Settings) -> dict[str, str]:
    """The required programs that cannot be found, with why each is needed."""
    return {name: why for name, why in required_programs(settings).items() if programs.find(name) is None}


def check(settings: Settings) -> None:
    """Raise MissingProgram naming every missing program (ConfigError on a fleet front's config); touches nothing."""
    if settings.front_only:
        raise ConfigError(f"{settings.path}: a fleet front ([fleet] hosts, no [source]) serves no release: "
                          "run `doit install_front` and `doit status` here, and `update` on the hosts")
    missing = missing_programs(settings)
    if missing:
        what = "; ".join(f"{name} not found ({why})" for name, why in missing.items())
        raise MissingProgram(f"{settings.path}: {what}; install the package or fix the config")
