"""The one HTTP session factory, and retry with backoff.

Every request has a timeout.  5xx answers and connection errors are retried
with exponential backoff; 4xx answers are final.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests

from . import __version__
from .errors import DownloadError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class ServerError(Exception):
    """A 5xx answer, worth retrying."""


def new_session() -> requests.Session:
    """Return a session that asks for the bytes exactly as stored on the server."""
    session = requests.Session()
    session.headers["User-Agent"] = f"pvwtasks/{__version__}"
    # The digest we check must be of the bytes on the server, not a re-encoding.
    session.headers["Accept-Encoding"] = "identity"
    return session


def redact(url: str) -> str:
    """Return ``url`` with any user:password removed, safe to log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def raise_for_status(response: requests.Response) -> None:
    """Raise ServerError for 5xx (retryable) and DownloadError for 4xx (final)."""
    if response.status_code >= 500:
        raise ServerError(f"HTTP {response.status_code} from {redact(response.url)}")
    if response.status_code >= 400:
        raise DownloadError(f"HTTP {response.status_code} {response.reason} for {redact(response.url)}")


def with_retries(attempt: Callable[[], T], what: str, retries: int, backoff: float) -> T:
    """Call ``attempt`` until it succeeds, retrying 5xx and connection errors.

    Raises DownloadError naming ``what`` once ``retries`` extra tries are spent.
    """
    for number in range(retries + 1):
        try:
            return attempt()
        except (ServerError, *RETRYABLE) as err:
            last = err
            if number == retries:
                break
            delay = min(backoff * 2**number, 60.0)
            log.warning("%s failed (%s); retry %d/%d in %.1f s", what, _short(err), number + 1, retries, delay)
            time.sleep(delay)
    raise DownloadError(f"{what} failed after {retries + 1} tries: {_short(last)}")


def _short(err: Exception) -> str:
    """One readable line for a requests/urllib3 error, without credentials."""
    text = str(err)
    if isinstance(err, requests.ConnectionError):
        if "Connection refused" in text:
            return "connection refused"
        if "Name or service not known" in text or "Failed to resolve" in text:
            return "host name not found"
        if "IncompleteRead" in text or "Connection broken" in text:
            return "connection broken mid-transfer"
    if isinstance(err, requests.Timeout):
        return "timed out"
    return text.splitlines()[0][:300] if text else type(err).__name__
