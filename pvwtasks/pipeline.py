"""The steps of ``doit update`` that fetch, verify, install and publish a release.

Each step takes the Settings, checks the current state first and does
nothing when it is already right (saying so), so a step is safe to rerun
after a crash.  Records between steps are small JSON files under
``ROOT/autodeploy/downloads`` and ``ROOT/autodeploy``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

from . import apps, archive as extract, fetch, install, releases, verify
from .config import Layout, Settings, Source
from .errors import DownloadError, HashMismatch, InstallError
from .fsutil import read_json, remove_quietly, replace_symlink, write_json
from .layout import HashRecord
from .http import new_session, redact

log = logging.getLogger(__name__)


def download_record(layout: Layout) -> Path:
    return layout.downloads / "download.json"


def verified_record(layout: Layout) -> Path:
    return layout.downloads / "verified.json"


def compare_record(layout: Layout) -> Path:
    return layout.state / "compare.json"


def release_url(source: Source, session=None) -> str:
    """The archive URL: ``[source] url``, or the newest match in ``[source] listing``."""
    if source.url:
        return source.url
    text = fetch.read_text(source.listing, source.timeout, source.retries, source.backoff, session)
    return fetch.pick_from_listing(text, source.listing, source.pattern)


def _live_label(layout: Layout) -> str:
    return releases.live_name(layout) or "no release installed yet"


def upstream_unchanged(settings: Settings) -> bool:
    """True when the last verified download is on disk and upstream still serves the same file.

    Makes one quick request; any error answers False so the download step
    runs and reports it properly.
    """
    layout, source = settings.layout, settings.source
    record = read_json(verified_record(layout))
    if not record or not Path(record.get("path", "")).is_file():
        return False
    session = new_session()
    url = release_url(source, session)
    return fetch.remote_info(url, source.timeout, session).same_as(record)


def download_release(settings: Settings, progress: fetch.Progress | None = None) -> dict:
    """Download the release when upstream changed; record it in ``download.json``.

    Raises DownloadError naming the URL and the live version, which keeps serving.
    """
    layout, source = settings.layout, settings.source
    session = new_session()
    try:
        url = release_url(source, session)
        info = fetch.remote_info(url, source.timeout, session, source.retries, source.backoff)
    except DownloadError as err:
        raise DownloadError(f"{err}; still serving {_live_label(layout)}") from None
    verified = read_json(verified_record(layout))
    if info.same_as(verified) and Path(verified["path"]).is_file():
        log.info("upstream unchanged: %s already downloaded", verified["filename"])
        write_json(download_record(layout), verified)
        return {"downloaded": False, "url": redact(url)}
    log.info("downloading %s", redact(url))
    started = time.monotonic()
    try:
        # md5 only when a manifest may list md5 digests; unpack while downloading into a
        # hidden folder that the install step uses only once the bytes are verified.
        fetched = fetch.download(
            url, layout.downloads, timeout=source.timeout, retries=source.retries,
            backoff=source.backoff, progress=progress, session=session,
            md5=bool(source.checksums), unpack_into=layout.versions,
        )
    except DownloadError as err:
        raise DownloadError(f"{err}; still serving {_live_label(layout)}") from None
    log.info("downloaded %s: %d bytes in %.1f s, sha256 %s", fetched.filename, fetched.size,
             time.monotonic() - started, fetched.sha256)
    write_json(download_record(layout), fetched.to_json())
    return {"downloaded": True, "url": redact(url)}


def expected_digest(source: Source, filename: str, session=None) -> verify.Expected | None:
    """The digest the archive must have: the pinned sha256, else the manifest's entry."""
    if source.sha256:
        return verify.Expected("sha256", source.sha256.lower(), "[source] sha256")
    if source.checksums:
        return verify.parse_manifest(_manifest(source, session), filename, redact(source.checksums))
    return None


def _manifest(source: Source, session=None) -> str:
    return fetch.read_text(source.checksums, source.timeout, source.retries, source.backoff, session)


def verify_download(settings: Settings) -> dict:
    """Check the downloaded bytes' digest, then publish the archive and ``verified.json``.

    On a mismatch the download and its record are deleted (HashMismatch).
    """
    layout, source = settings.layout, settings.source
    data = read_json(download_record(layout))
    if not data:
        raise DownloadError(f"{download_record(layout)} missing; run the download step first")
    fetched = fetch.Fetched(**data)
    published = read_json(verified_record(layout))
    if (not Path(fetched.path).exists() and published and published.get("sha256") == fetched.sha256
            and Path(published["path"]).is_file()):
        # Published by a run killed before doit saved its state: check the published file.
        fetched = fetch.Fetched(**{**data, "path": published["path"]})
    expected = expected_digest(source, fetched.filename)
    if expected is not None and not getattr(fetched, expected.algorithm):
        fetched = _with_digest(fetched, expected.algorithm)  # downloaded before a manifest was configured
    try:
        verify.check(fetched, expected)
    except HashMismatch:
        remove_quietly(download_record(layout))
        shutil.rmtree(layout.staged_dir(fetched.sha256), ignore_errors=True)
        raise
    published = verify.publish(fetched, layout.downloads, verified_record(layout))
    return {"sha256": published.sha256, "filename": published.filename}


def _with_digest(fetched: fetch.Fetched, algorithm: str) -> fetch.Fetched:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(fetched.path, "rb") as handle:
        while chunk := handle.read(fetch.CHUNK):
            digest.update(chunk)
    return fetch.Fetched(**{**fetched.to_json(), algorithm: digest.hexdigest()})


def install_release(settings: Settings) -> dict:
    """Extract the verified archive (once) and switch the live symlink to it.

    A release marked failed by an earlier health check is not switched to
    again; the live one stays and a warning says why.
    """
    layout = settings.layout
    record = read_json(verified_record(layout))
    if not record:
        raise DownloadError(f"{verified_record(layout)} missing; run the verify step first")
    # The release record feeds hash.json, status and mails: never with credentials.
    release = install.install(layout, Path(record["path"]), record["sha256"], redact(record["url"]), record["size"])
    failure = releases.failure_of(layout, release.name)
    if failure:
        log.warning("%s failed its health check (%s); staying on %s until upstream changes",
                    release.name, failure.get("reason", "?").splitlines()[0], _live_label(layout))
        live = releases.live_release(layout)
        if live:
            releases.switch_live(layout, live)
        return {"switched": False, "live": _live_label(layout)}
    # What the launcher would serve from this release must exist in it (5.13+ ships no
    # web apps; 5.12's apps are not in a 5.13 tree): fail here, before any switch.
    apps.launcher_apps(settings, release, layout.release_dir(release.name))
    moved = releases.switch_live(layout, release)
    pruned = releases.prune(layout, settings.deploy.keep)
    return {"switched": moved, "live": release.name, "pruned": pruned}


def publish_hash(settings: Settings) -> dict:
    """Write ``www/hash.json`` for the live release; keep the old one as ``hash.json.previous``.

    Raises InstallError when no release is live yet.
    """
    layout = settings.layout
    live = releases.live_release(layout)
    if live is None:
        raise InstallError("no live release to publish; run the install step first")
    info = apps.release_info(live, layout.release_dir(live.name))
    current = HashRecord(
        sha256=live.sha256, version=live.version, name=live.name, url=redact(live.url), size=live.size,
        installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(live.installed_at)),
        family=info.family, paraview_version=info.paraview_version, python_version=info.python_version,
        variant=info.variant,
    )
    old = HashRecord.load(layout.hash_file)
    if old == current:
        return current.to_dict()
    if old and old.sha256 != current.sha256:
        old.save(layout.previous_hash_file)
    current.save(layout.hash_file)
    return current.to_dict()


def compare_hash(settings: Settings) -> dict:
    """Tell whether upstream produced a new archive since the last run: ``changed`` or ``unchanged``.

    Compares the sha256 of the archive bytes (not a tar of them, whose
    mtimes made the old recipe always report a change).
    """
    layout = settings.layout
    verified = read_json(verified_record(layout)) or {}
    last = read_json(compare_record(layout)) or {}
    sha = verified.get("sha256")
    result = "unchanged" if sha and sha == last.get("sha256") else "changed"
    since = last.get("since") if result == "unchanged" else time.time()
    write_json(compare_record(layout), {
        "result": result, "sha256": sha, "previous_sha256": last.get("sha256"),
        "filename": verified.get("filename"), "at": time.time(), "since": since,
    })
    if result == "unchanged":
        log.info("unchanged: upstream still serves %s (sha256 %s)", verified.get("filename"), sha)
    else:
        log.info("changed: %s (sha256 %s), was %s", verified.get("filename"), sha, last.get("sha256") or "nothing")
    return {"result": result}


def extra_record(layout: Layout, kind: str) -> Path:
    return layout.autodeploy / f"{kind}.json"


def extra_unchanged(settings: Settings, kind: str, url: str) -> bool:
    """True when ``autodeploy/<kind>`` holds what upstream still serves at ``url``."""
    layout = settings.layout
    record = read_json(extra_record(layout, kind))
    if not record or not (layout.autodeploy / kind).exists():
        return False
    return fetch.remote_info(url, settings.source.timeout).same_as(record)


def install_extra(settings: Settings, kind: str, url: str) -> dict:
    """Download the docs or data archive and extract it to ``autodeploy/<kind>``.

    The archive is checked against the checksum manifest when it lists it.
    The new tree is extracted beside the old one and swapped in with a
    symlink, so readers never see a half-extracted folder.
    """
    layout, source = settings.layout, settings.source
    link = layout.autodeploy / kind
    releases.check_own_link(link)
    staging = layout.autodeploy / f".{kind}-download"
    fetched = fetch.download(url, staging, timeout=source.timeout, retries=source.retries,
                             backoff=source.backoff, progress=None)
    if source.checksums:  # the pinned sha256 is the release's, not this archive's
        verify.check(fetched, verify.find_in_manifest(_manifest(source), fetched.filename, redact(source.checksums)))
    tree_name = f"{kind}-{fetched.sha256[:12]}"
    tree = layout.autodeploy / tree_name
    incoming = layout.autodeploy / f"{install.INCOMING_PREFIX}{tree_name}"
    shutil.rmtree(incoming, ignore_errors=True)
    try:
        if not tree.exists():
            extract.extract(Path(fetched.path), incoming)
            os.rename(incoming, tree)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    old = os.readlink(link) if link.is_symlink() else None
    replace_symlink(link, tree_name)
    if old and old != tree_name:
        shutil.rmtree(layout.autodeploy / old, ignore_errors=True)
    write_json(extra_record(layout, kind), {**fetched.to_json(), "path": str(tree)})
    return {"tree": tree_name}
