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

from . import fetch, releases, verify  # apps, archive and install: imported by the steps that use them
from .config import Layout, Settings, Source
from .errors import DownloadError, HashMismatch, InstallError, UnsafeArchive
from .fsutil import remove_quietly, replace_symlink
from .layout import INCOMING_PREFIX, CompareRecord, DownloadRecord, HashRecord
from .net import redact

log = logging.getLogger(__name__)


def release_url(source: Source, session=None) -> str:
    """The archive URL: ``[source] url``, or the newest usable match in ``[source] listing``."""
    if source.url:
        return source.url
    options = fetch.Options.of(source)
    text = fetch.read_text(source.listing, options, session)
    return fetch.pick_from_listing(text, source.listing, source.pattern, options)


def _live_label(layout: Layout) -> str:
    return releases.live_name(layout) or "no release installed yet"


def upstream_unchanged(settings: Settings) -> bool:
    """True when the last verified download is on disk and upstream still serves the same file.

    Makes one quick request; any error answers False so the download step
    runs and reports it properly.
    """
    layout, source = settings.layout, settings.source
    record = DownloadRecord.load(layout.verified_record)
    if record is None or not Path(record.path).is_file():
        return False
    options = fetch.Options.of(source)
    url = source.url or release_url(source, options.session())
    return fetch.quick_remote_info(url, options).same_as(record)


def download_release(settings: Settings, progress: fetch.Progress | None = None) -> dict:
    """Download the release when upstream changed; record it in ``download.json``.

    Raises DownloadError naming the URL and the live version, which keeps serving.
    """
    layout, source = settings.layout, settings.source
    options = fetch.Options.of(source)
    session = options.session()
    try:
        url = release_url(source, session)
        info = fetch.remote_info(url, options, session)
    except DownloadError as err:
        raise DownloadError(f"{err}; still serving {_live_label(layout)}") from None
    verified = DownloadRecord.load(layout.verified_record)
    if verified is not None and info.same_as(verified) and Path(verified.path).is_file():
        log.info("upstream unchanged: %s already downloaded", verified.filename)
        verified.save(layout.download_record)
        return {"downloaded": False, "url": redact(url)}
    log.info("downloading %s", redact(url))
    started = time.monotonic()
    try:
        name = fetch.filename_of(url)
        # md5 only when a manifest may list md5 digests; unpack while downloading into a
        # hidden folder that the install step uses only once the bytes are verified.
        fetched = fetch.download(
            url, layout.part_file(name), layout.part_record(name), options=options, progress=progress,
            session=session, md5=bool(source.checksums), unpack_into=layout.versions,
            info=info,
        )
    except DownloadError as err:
        raise DownloadError(f"{err}; still serving {_live_label(layout)}") from None
    log.info("downloaded %s: %d bytes in %.1f s, sha256 %s", fetched.filename, fetched.size,
             time.monotonic() - started, fetched.sha256)
    fetched.save(layout.download_record)
    return {"downloaded": True, "url": redact(url)}


def expected_digest(source: Source, filename: str, session=None, url: str = "") -> verify.Expected | None:
    """The digest the archive must have: the pinned sha256, else the manifest's entry."""
    if source.sha256:
        return verify.Expected("sha256", source.sha256.lower(), "[source] sha256")
    if source.checksums:
        return verify.parse_manifest(_manifest(source, session), filename, redact(source.checksums),
                                     url, source.checksums)
    return None


def _manifest(source: Source, session=None) -> str:
    return fetch.read_text(source.checksums, fetch.Options.of(source), session)


def verify_download(settings: Settings) -> dict:
    """Check the downloaded bytes' size and digest, then publish the archive and ``verified.json``.

    On a mismatch the download and its record are deleted (HashMismatch).
    """
    layout, source = settings.layout, settings.source
    fetched = DownloadRecord.load(layout.download_record)
    if fetched is None:
        raise DownloadError(f"{layout.download_record} missing; run the download step first")
    published = DownloadRecord.load(layout.verified_record)
    if (not Path(fetched.path).exists() and published is not None and published.sha256 == fetched.sha256
            and Path(published.path).is_file()):
        # Published by a run killed before doit saved its state: check the published file.
        fetched = fetched.replace(path=published.path)
    expected = expected_digest(source, fetched.filename, url=fetched.url)
    if expected is not None and not getattr(fetched, expected.algorithm):
        fetched = _with_digest(fetched, expected.algorithm)  # downloaded before a manifest was configured
    try:
        verify.check(fetched, expected)
    except HashMismatch:
        remove_quietly(layout.download_record)
        shutil.rmtree(layout.staged_dir(fetched.sha256), ignore_errors=True)
        raise
    published = verify.publish(fetched, layout.downloads, layout.verified_record)
    return {"sha256": published.sha256, "filename": published.filename}


def _with_digest(fetched: DownloadRecord, algorithm: str) -> DownloadRecord:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(fetched.path, "rb") as handle:
        while chunk := handle.read(fetch.CHUNK):
            digest.update(chunk)
    return fetched.replace(**{algorithm: digest.hexdigest()})


def _forget_download(layout: Layout, record: DownloadRecord) -> None:
    """Drop a verified archive the install step found corrupt, so the next run downloads it again."""
    remove_quietly(layout.verified_record)
    remove_quietly(layout.download_record)
    remove_quietly(Path(record.path))


def install_release(settings: Settings) -> dict:
    """Extract the verified archive (once) and switch the live symlink to it.

    A release marked failed by an earlier health check is not switched to
    again; the live one stays and a warning says why.
    """
    from . import apps, appvenv, install, trame

    layout = settings.layout
    record = DownloadRecord.load(layout.verified_record)
    if record is None:
        raise DownloadError(f"{layout.verified_record} missing; run the verify step first")
    # The release record feeds hash.json, status and mails: never with credentials.
    try:
        release = install.install(layout, Path(record.path), record.sha256, redact(record.url), record.size)
    except InstallError as err:
        if not isinstance(err, UnsafeArchive):  # corrupt: download it again next run, never "unchanged"
            _forget_download(layout, record)
            raise InstallError(f"{err}; the archive was dropped and will be downloaded again") from None
        raise
    failure = releases.failure_of(layout, release.name)
    if failure:
        log.warning("%s failed its health check (%s); staying on %s until upstream changes",
                    release.name, failure.get("reason", "?").splitlines()[0], _live_label(layout))
        live = releases.live_release(layout)
        if live:
            releases.switch_live(layout, live)
        return {"switched": False, "live": _live_label(layout)}
    # The trame apps' companion venv is ready before the switch: a failed pip run leaves
    # the live release and its venv as they were.
    release = trame.ensure_release_venv(settings, release)
    # What the launcher would serve from this release must exist in it (5.13+ ships no
    # web apps; 5.12's apps are not in a 5.13 tree): fail here, before any switch.
    apps.launcher_apps(settings, release, layout.release_dir(release.name))
    moved = releases.switch_live(layout, release)
    pruned = releases.prune(layout, settings.deploy.keep)
    result = {"switched": moved, "live": release.name, "pruned": pruned}
    if release.venv or trame.configured(settings):
        result["venv"] = release.venv
        result["pruned_venvs"] = appvenv.prune(layout, trame.kept_venvs(settings))
    return result


def clean_leftovers(settings: Settings) -> dict:
    """``doit clean``: delete partial downloads and unfinished extractions, nothing that serves.

    The live release, the rendered configs and the records stay: cleaning a
    running deployment must never break it.
    """
    from . import install

    layout = settings.layout
    removed = []
    if layout.downloads.is_dir():
        for leftover in sorted(layout.downloads.glob("*.part")) + sorted(layout.downloads.glob("*.part.json")):
            remove_quietly(leftover)
            removed.append(leftover.name)
    install.discard_incomplete(layout)
    log.info("removed %s", ", ".join(removed) if removed else "no partial downloads")
    return {"removed": removed}


def publish_hash(settings: Settings) -> dict:
    """Write ``www/hash.json`` for the live release; keep the old one as ``hash.json.previous``.

    Raises InstallError when no release is live yet.
    """
    from . import apps

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
    verified = DownloadRecord.load(layout.verified_record)
    last = CompareRecord.load(layout.compare_record)
    sha = verified.sha256 if verified else None
    filename = verified.filename if verified else None
    previous = last.sha256 if last else None
    unchanged = bool(sha) and sha == previous
    current = CompareRecord(result="unchanged" if unchanged else "changed", sha256=sha, previous_sha256=previous,
                            filename=filename, since=last.since if unchanged and last else time.time())
    if current != last:  # an unchanged upstream, run after run, leaves the record as it was
        current.save(layout.compare_record)
    if unchanged:
        log.info("unchanged: upstream still serves %s (sha256 %s)", filename, sha)
    else:
        log.info("changed: %s (sha256 %s), was %s", filename, sha, previous or "nothing")
    return {"result": "unchanged" if unchanged else "changed"}

def extra_unchanged(settings: Settings, kind: str, url: str) -> bool:
    """True when ``autodeploy/<kind>`` holds what upstream still serves at ``url``."""
    layout = settings.layout
    record = DownloadRecord.load(layout.extra_record(kind))
    if record is None or not layout.extra_link(kind).exists():
        return False
    return fetch.quick_remote_info(url, fetch.Options.of(settings.source)).same_as(record)


def install_extra(settings: Settings, kind: str, url: str) -> dict:
    """Download the docs or data archive and extract it to ``autodeploy/<kind>``.

    The archive is checked against the checksum manifest when it lists it.
    The new tree is extracted beside the old one and swapped in with a
    symlink, so readers never see a half-extracted folder.
    """
    from . import archive as extract

    layout, source = settings.layout, settings.source
    link = layout.extra_link(kind)
    releases.check_own_link(link)
    staging = layout.extra_staging(kind)
    name = fetch.filename_of(url)
    fetched = fetch.download(url, layout.extra_part_file(kind, name), layout.extra_part_record(kind, name),
                             options=fetch.Options.of(source), progress=None)
    expected = None
    if source.checksums:  # the pinned sha256 is the release's, not this archive's
        expected = verify.find_in_manifest(_manifest(source), fetched.filename, redact(source.checksums),
                                           url, source.checksums)
    verify.check(fetched, expected)
    tree_name = f"{kind}-{fetched.sha256[:12]}"
    tree = layout.autodeploy / tree_name
    incoming = layout.autodeploy / f"{INCOMING_PREFIX}{tree_name}"
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
    fetched.replace(path=str(tree)).save(layout.extra_record(kind))
    return {"tree": tree_name}
