"""The one HTTP session factory, retries with backoff, TLS options and credential redaction.

Every request has a timeout.  5xx answers and connection errors are retried
with exponential backoff; 4xx answers, certificate errors and refused
redirects are final.  :func:`redact` and :func:`redact_text` are the one
place that hides ``user:password@`` in URLs, for logs, messages and mails.

requests is imported by the functions that use it, not by this module:
the reporter imports the redaction on every start, and a no-op ``doit
update`` never needs a session (see :func:`quick_head`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

from . import __version__
from .errors import DownloadError

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)
T = TypeVar("T")

# Up to the last "@" before the host, so a password holding "@" is hidden whole.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]*@(?=[^/\s@]*(?:[/\s]|$))")


class ServerError(Exception):
    """A 5xx answer, worth retrying."""


class TransferBroken(Exception):
    """A body cut short or otherwise damaged in transit, worth retrying (resuming)."""


def redact_text(text: str) -> str:
    """Hide ``user:password@`` in every URL inside ``text``."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def redact(url: str) -> str:
    """Return ``url`` with any user:password removed, safe to log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def _headers() -> dict[str, str]:
    """What every request sends, through a session or :func:`quick_head`."""
    # Accept-Encoding: the digest we check must be of the bytes on the server, not a re-encoding.
    return {"User-Agent": f"pvwtasks/{__version__}", "Accept-Encoding": "identity"}


@functools.cache
def _session_class() -> type:
    """The requests.Session subclass below, defined on first use (importing requests then)."""
    import requests

    class _Session(requests.Session):
        """A session that refuses an https -> http redirect unless told otherwise."""

        allow_http_redirect = False
        ca_file: str | None = None

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if self.ca_file:  # [source] ca_file wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
                settings["verify"] = self.ca_file
            return settings

        def get_redirect_target(self, resp):
            target = super().get_redirect_target(resp)
            if target and not self.allow_http_redirect:
                new = urlsplit(urljoin(resp.url, target)).scheme.lower()
                if urlsplit(resp.url).scheme.lower() == "https" and new != "https":
                    raise DownloadError(
                        f"{redact(resp.url)} redirects to {new}:// ({redact(urljoin(resp.url, target))}); refusing "
                        f"to leave https (set [source] allow_http_redirect = true to allow it)")
            return target

    return _Session


def new_session(ca_file: str | Path | None = None, allow_http_redirect: bool = False) -> requests.Session:
    """Return a session that asks for the bytes exactly as stored on the server.

    ``ca_file`` (a PEM bundle) replaces the system's CA list; an https ->
    http redirect raises DownloadError unless ``allow_http_redirect``.
    """
    session = _session_class()()
    session.allow_http_redirect = allow_http_redirect
    session.headers.update(_headers())
    if ca_file:
        session.verify = session.ca_file = str(ca_file)
    return session


def _retryable() -> tuple[type[BaseException], ...]:
    import requests

    return requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError


def raise_for_status(response: requests.Response) -> None:
    """Raise ServerError for 5xx (retryable) and DownloadError for 4xx (final)."""
    if response.status_code >= 500:
        raise ServerError(f"HTTP {response.status_code} from {redact(response.url)}")
    if response.status_code >= 400:
        raise DownloadError(f"HTTP {response.status_code} {response.reason} for {redact(response.url)}")


def with_retries(attempt: Callable[[], T], what: str, retries: int, backoff: float) -> T:
    """Call ``attempt`` until it succeeds, retrying 5xx and connection errors.

    A certificate error is never retried (it will not heal by itself).
    Raises DownloadError naming ``what`` once ``retries`` extra tries are spent.
    """
    import requests

    retryable = _retryable()
    for number in range(retries + 1):
        try:
            return attempt()
        except requests.exceptions.SSLError as err:
            raise DownloadError(f"{what} failed: {describe(err)}") from None
        except (ServerError, TransferBroken, *retryable) as err:
            last = err
            if number == retries:
                break
            delay = min(backoff * 2**number, 60.0)
            log.warning("%s failed (%s); retry %d/%d in %.1f s", what, describe(err), number + 1, retries, delay)
            time.sleep(delay)
    raise DownloadError(f"{what} failed after {retries + 1} tries: {describe(last)}")


_CERT_REASON = r"certificate verify failed: ([^()'\"\]]+?)\s*(?:\(_ssl|['\")\]]|$)"  # compiled on first use


def describe(err: BaseException) -> str:
    """One readable line for a requests/urllib3 error, whole, without credentials."""
    import requests

    text = redact_text(str(err))
    if isinstance(err, requests.exceptions.SSLError):
        found = re.search(_CERT_REASON, text)
        if found:
            return (f"TLS certificate not trusted: certificate verify failed: {found.group(1).strip()} "
                    f"(set [source] ca_file to trust a site CA)")
        return f"TLS error: {' '.join(text.split())}"
    if isinstance(err, requests.ConnectionError):
        if "Connection refused" in text:
            return "connection refused"
        if "Name or service not known" in text or "Failed to resolve" in text:
            return "host name not found"
        if "IncompleteRead" in text or "Connection broken" in text:
            return "connection broken mid-transfer"
    if isinstance(err, requests.Timeout):
        return "timed out"
    return " ".join(text.split()) if text else type(err).__name__


# -- one plain HEAD without a session ---------------------------------------------------------------

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def _needs_session(parts) -> bool:
    """True when a request to ``parts`` involves what only a requests session does the requests way.

    Credentials in the URL or in a netrc file, a proxy from the environment,
    characters requests would re-quote: the caller then asks through
    :func:`new_session`.
    """
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return True
    if parts.username is not None or parts.password is not None:
        return True
    url = urlunsplit(parts)
    if not url.isascii() or any(char.isspace() or char in '"<>\\^`{|}' for char in url):
        return True
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES):
        return True
    netrc = os.environ.get("NETRC")
    return any(os.path.exists(os.path.expanduser(path)) for path in ([netrc] if netrc else ["~/.netrc", "~/_netrc"]))


def _tls_context(ca_file: str | None):
    """The trust a session would use: ``ca_file``, else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else certifi's."""
    import ssl

    where = ca_file or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not where:
        import certifi

        where = certifi.where()
    if os.path.isdir(where):
        return ssl.create_default_context(capath=where)
    return ssl.create_default_context(cafile=where)


def quick_head(url: str, timeout: float, ca_file: str | None = None):
    """One HEAD of ``url`` asked with the stdlib only: ``(status, headers)``, or None before connecting.

    None means "ask through a session" (:func:`new_session`, which holds
    the rules): the request needs a proxy, credentials or re-quoting (see
    :func:`_needs_session`).  What to make of a status (a redirect, a
    refused method) is the caller's; status 0 is an answer this function
    does not parse (see :func:`_plain_head`), for the session to read.  It
    sends what a session sends (User-Agent, ``Accept-Encoding: identity``)
    and trusts what a session trusts (see :func:`_tls_context`).  Raises
    OSError (TLS errors included) when there is no answer.  This keeps
    requests out of a no-op ``doit update``, where importing it costs more
    than the rest of the checks.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if _needs_session(parts):
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {**_headers(), "Accept": "*/*"}
    if parts.scheme.lower() == "http":
        return _plain_head(parts.hostname, port or 80, path, headers, timeout)
    import http.client

    connection = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout, context=_tls_context(ca_file))
    try:
        connection.request("HEAD", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.msg
    except http.client.HTTPException as err:  # a malformed answer: no answer, as for a closed connection
        raise OSError(str(err) or type(err).__name__) from err
    finally:
        connection.close()


_MAX_HEAD = 1 << 16  # bytes of status line and headers read from a plain HEAD's answer


class _Headers(dict):
    """An answer's headers by lower-cased name (the first of repeated ones); ``get`` ignores case."""

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


def _plain_head(host: str, port: int, path: str, headers: dict[str, str], timeout: float) -> tuple[int, _Headers]:
    """A HEAD over plain HTTP/1.1 with the socket module alone: the status and headers of the answer.

    http.client would do the same, but importing it imports ssl (about a
    quarter of a no-op update's own work) even for an http URL.  A HEAD's
    answer is a status line and headers; one that is not plainly that
    (too long, folded or malformed lines) gives status 0, so the caller
    asks through the session instead.  Raises OSError when the connection
    fails, times out, or closes before the headers end.
    """
    import socket

    authority = f"[{host}]" if ":" in host else host  # as http.client writes Host
    request = [f"HEAD {path} HTTP/1.1", f"Host: {authority if port == 80 else f'{authority}:{port}'}",
               *(f"{name}: {value}" for name, value in headers.items()), "Connection: close", "", ""]
    data = b""
    # The host as ASCII bytes (the URL is ASCII, see _needs_session): a str would import the idna codec.
    with socket.create_connection((host.encode("ascii"), port), timeout=timeout) as sock:
        sock.sendall("\r\n".join(request).encode("ascii"))
        while (end := data.find(b"\r\n\r\n")) < 0 and len(data) <= _MAX_HEAD:
            chunk = sock.recv(1 << 14)
            if not chunk:
                raise ConnectionError("the server closed the connection without a complete answer")
            data += chunk
    if not 0 <= end <= _MAX_HEAD:
        return 0, _Headers()
    status_line, *lines = data[:end].decode("iso-8859-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not (version in ("HTTP/1.0", "HTTP/1.1") and code.isdigit() and rest[3:4] in ("", " ")):
        return 0, _Headers()
    found = _Headers()
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return 0, _Headers()
        found.setdefault(name.lower(), value.lstrip(" \t"))  # what http.client's header parser keeps
    return int(code), found
