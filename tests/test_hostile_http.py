"""Downloads against a misbehaving HTTP server (raw sockets on loopback): issue 10's HTTP cases.

Every case installs 5.13.0 from a correct server, then serves a rebuilt
5.13.1 at the same URL and misbehaves.  Each test asserts three things:
the live release is untouched (or, where pvwtasks could complete the
download correctly, replaced only by the verified new build); nothing
unverified went live; a following run against a correct server succeeds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from conftest import build_release, run_doit, write_config
from pvwtasks import fetch, verify
from pvwtasks.doit_adapter import ProgressBar
from pvwtasks.errors import DownloadError
from pvwtasks.layout import PartRecord
from support.hostile_http import Conn, HostileServer, Request, gzip_bytes, strong_etag

INSTALL = ("install", "publish_hash")  # runs lock, download, verify, install, publish_hash


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Case:
    server: HostileServer
    config: Path
    root: Path
    name: str
    old_live: str
    old_sha: str
    new: bytes

    @property
    def downloads(self) -> Path:
        return self.root / "autodeploy" / "downloads"

    @property
    def part(self) -> Path:
        return self.downloads / f"{self.name}.part"

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def live(self) -> str:
        return os.readlink(self.root / "autodeploy" / "paraview")

    def installed_sha(self) -> str:
        return json.loads((self.root / "autodeploy" / "installed.json").read_text())["sha256"]

    def published_sha(self) -> str:
        return json.loads((self.root / "www" / "hash.json").read_text())["sha256"]


@pytest.fixture
def hostile(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    with HostileServer(served) as server:
        yield server


def _deployed(tmp_path: Path, server: HostileServer, source_extra: str = "", pin_new: bool = False,
              config_url: str | None = None) -> Case:
    """5.13.0 installed from the (correct) server, then a rebuilt 5.13.1 served at the same URL."""
    old = build_release(server.root, "5.13.0")
    root = tmp_path / "root"
    config = write_config(tmp_path / "pvw.toml", config_url or server.url(old.name), root, source_extra=source_extra)
    first = run_doit(config, *INSTALL)
    assert first.returncode == 0, first.output
    case = Case(server, config, root, old.name, "", _sha(old.read_bytes()), b"")
    case.old_live = case.live()
    build_release(server.root, "5.13.1", name=old.name)
    os.utime(server.root / old.name, (2e9, 2e9))  # a distinct Last-Modified too
    case.new = (server.root / old.name).read_bytes()
    if pin_new:
        text = config.read_text().replace("[source]\n", f'[source]\nsha256 = "{_sha(case.new)}"\n', 1)
        config.write_text(text)
    server.requests.clear()  # from here on, only the case's own requests
    return case


def _assert_safe(case: Case, result, *, failed: bool, message: str = "") -> None:
    """The first two of the three checks: live untouched (or the verified new build), nothing unverified live."""
    live = case.live()
    if failed:
        assert result.returncode != 0, result.output
        assert message in result.stderr, result.stderr
        assert live == case.old_live, "the live release changed after a failed run"
        assert case.published_sha() == case.old_sha
    else:
        assert result.returncode == 0, result.output
    # Nothing unverified went live: the live tree is a whole release built from bytes upstream really served.
    assert case.installed_sha() in (case.old_sha, _sha(case.new))
    assert live.endswith(case.installed_sha()[:12])
    assert (case.root / "autodeploy" / live / "bin" / "pvpython").is_file()
    assert not any(p.name.startswith(".incoming-") and not p.name.startswith(".incoming-staged-")
                   for p in (case.root / "autodeploy" / "versions").iterdir())


def _assert_recovers(case: Case, *args: str) -> None:
    """The third check: with the server behaving again, the next run installs the new build."""
    case.server.handler = None
    result = run_doit(case.config, *INSTALL, *args)
    assert result.returncode == 0, result.output
    assert case.installed_sha() == _sha(case.new) == case.published_sha()
    assert case.live().endswith(_sha(case.new)[:12])
    assert not case.part.exists()


def _save_part(case: Case, data: bytes, *, etag: str | None = None, last_modified: str | None = None,
               size: int | None = None) -> None:
    case.downloads.mkdir(parents=True, exist_ok=True)
    case.part.write_bytes(data)
    PartRecord(case.url, etag, last_modified, size).save(case.downloads / f"{case.name}.part.json")


def _ranged_gets(server: HostileServer, name: str) -> list[Request]:
    return [r for r in server.gets(name) if "range" in r.headers]


def _assert_if_range_rules(server: HostileServer, name: str) -> None:
    """Range is never sent without If-Range, and If-Range never holds a weak ETag."""
    for request in _ranged_gets(server, name):
        assert "if-range" in request.headers, request.headers
        assert not request.headers["if-range"].startswith("W/"), request.headers


# -- 1. a .part at or above the remote size -------------------------------------------


@pytest.mark.parametrize("head_size", [True, False], ids=["HEAD-announces-size", "HEAD-without-size"])
def test_complete_part_left_by_a_kill_is_verified_not_wedged(tmp_path, hostile, head_size):
    case = _deployed(tmp_path, hostile, pin_new=True)
    etag, modified = hostile.validators(case.name)
    _save_part(case, case.new, etag=etag, last_modified=modified)  # a record from before sizes were saved

    def handler(request: Request, conn: Conn) -> None:
        if request.method == "HEAD" and not head_size:
            conn.head("200 OK", [("ETag", etag), ("Last-Modified", modified), ("Transfer-Encoding", "chunked")])
            return
        hostile.correct(request, conn)

    hostile.handler = handler
    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=False)
    assert case.installed_sha() == _sha(case.new)
    assert not [r for r in hostile.gets(case.name) if "range" not in r.headers]  # never downloaded again
    if head_size:
        assert not hostile.gets(case.name)  # the .part already had HEAD's size: no GET at all
    else:
        assert hostile.gets(case.name)[-1].headers["range"] == f"bytes={len(case.new)}-"  # answered 416 */N
    _assert_if_range_rules(hostile, case.name)
    _assert_recovers(case)


@pytest.mark.parametrize("kind", ["longer-than-file", "416-names-another-size"])
def test_part_that_cannot_belong_to_the_file_is_discarded_and_downloaded_again(tmp_path, hostile, kind):
    case = _deployed(tmp_path, hostile, pin_new=True)
    etag, modified = hostile.validators(case.name)
    if kind == "longer-than-file":
        _save_part(case, case.new + b"x" * 100, etag=etag, last_modified=modified, size=len(case.new))
    else:
        _save_part(case, case.new[:-10] + b"0123456789", etag=etag, last_modified=modified)

    def handler(request: Request, conn: Conn) -> None:
        if request.method == "HEAD":
            conn.head("200 OK", [("ETag", etag), ("Last-Modified", modified), ("Transfer-Encoding", "chunked")])
        elif "range" in request.headers:
            conn.send("416 Range Not Satisfiable", [("Content-Range", f"bytes */{len(case.new) + 7}")])
        else:
            hostile.correct(request, conn)

    hostile.handler = handler
    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=False)
    assert case.installed_sha() == _sha(case.new)
    assert [r for r in hostile.gets(case.name) if "range" not in r.headers]  # started over
    _assert_recovers(case)


# -- 2. Content-Encoding ----------------------------------------------------------------


def test_content_encoding_label_on_a_tarball_keeps_the_bytes_as_sent(tmp_path, hostile):
    """Apache's ``AddEncoding x-gzip .gz`` labels a .tar.gz ``Content-Encoding: gzip``: the bytes are the file."""
    case = _deployed(tmp_path, hostile, pin_new=True)

    def handler(request: Request, conn: Conn) -> None:
        etag, modified = hostile.validators(case.name)
        conn.send("200 OK", [("ETag", etag), ("Last-Modified", modified), ("Content-Encoding", "gzip")],
                  case.new, request.method)

    hostile.handler = handler
    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=False)
    assert case.installed_sha() == _sha(case.new)  # not un-gzipped into a .tar
    _assert_recovers(case)


def test_body_compressed_on_the_fly_fails_once_clearly(tmp_path, hostile):
    case = _deployed(tmp_path, hostile, pin_new=True)

    def handler(request: Request, conn: Conn) -> None:
        body = gzip_bytes(case.new)
        etag, modified = hostile.validators(case.name)
        conn.send("200 OK", [("ETag", etag), ("Last-Modified", modified), ("Content-Encoding", "gzip")],
                  body, request.method)

    hostile.handler = handler
    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=True, message="sha256 mismatch")
    assert len([r for r in hostile.gets(case.name)]) == 1  # one clear failure, no retry loop
    _assert_recovers(case)


# -- 3. short or corrupt downloads without a checksum ---------------------------------------


def test_short_chunked_body_is_never_verified(tmp_path, hostile):
    case = _deployed(tmp_path, hostile)

    def handler(request: Request, conn: Conn) -> None:
        etag, modified = hostile.validators(case.name)
        if request.method == "HEAD":
            hostile.correct(request, conn)
            return
        conn.head("200 OK", [("ETag", etag), ("Last-Modified", modified), ("Transfer-Encoding", "chunked")])
        conn.chunked(case.new[: len(case.new) // 2])  # a well-formed chunked body, half the file

    hostile.handler = handler
    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=True, message=f"of {len(case.new)} bytes")
    verified = json.loads((case.downloads / "verified.json").read_text())
    assert verified["sha256"] == case.old_sha  # the short file was never verified
    _assert_recovers(case)


def test_corrupt_archive_found_at_install_is_downloaded_again(tmp_path, hostile):
    """Same size, same ETag, spliced bytes: verified without a checksum, corrupt at install, fetched again."""
    case = _deployed(tmp_path, hostile)
    etag = strong_etag(case.new)
    middle = len(case.new) // 2
    spliced = case.new[:middle] + bytes(200) + case.new[middle + 200:]

    def handler(request: Request, conn: Conn) -> None:
        hostile.correct(request, conn, etag=etag, data=spliced)

    hostile.handler = handler
    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=True, message="ERROR: install:")
    assert not (case.downloads / "verified.json").exists()  # dropped: the next run downloads again
    gets = len(hostile.gets(case.name))
    _assert_recovers(case)
    assert len(hostile.gets(case.name)) == gets + 1


# -- 4. 206 validation --------------------------------------------------------------------


@pytest.mark.parametrize("lie", ["starts-at-zero", "other-total", "other-etag", "no-content-range"])
def test_invalid_206_is_not_appended_to_the_part(tmp_path, hostile, lie):
    case = _deployed(tmp_path, hostile)  # no checksum: only the 206 checks stand between us and a splice
    etag, modified = hostile.validators(case.name)
    have = len(case.new) // 3
    _save_part(case, case.new[:have], etag=etag, last_modified=modified, size=len(case.new))
    n = len(case.new)

    def handler(request: Request, conn: Conn) -> None:
        if "range" not in request.headers:
            hostile.correct(request, conn)
            return
        headers = [("ETag", etag), ("Last-Modified", modified)]
        if lie == "starts-at-zero":
            conn.send("206 Partial Content", [*headers, ("Content-Range", f"bytes 0-{n - 1}/{n}")], case.new)
        elif lie == "other-total":
            conn.send("206 Partial Content", [*headers, ("Content-Range", f"bytes {have}-{n + 99}/{n + 100}")],
                      case.new[have:] + bytes(100))
        elif lie == "other-etag":
            conn.send("206 Partial Content", [("ETag", '"another"'), ("Content-Range", f"bytes {have}-{n - 1}/{n}")],
                      bytes(n - have))
        else:
            conn.send("206 Partial Content", headers, case.new[have:])

    hostile.handler = handler
    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=False)
    assert case.installed_sha() == _sha(case.new)  # restarted from byte 0, never spliced
    assert [r for r in hostile.gets(case.name) if "range" not in r.headers]
    _assert_if_range_rules(hostile, case.name)
    _assert_recovers(case)


# -- 5. bounds on time, size and memory ------------------------------------------------------


def _trickling(hostile, case, rate: int):
    """A handler answering HEAD correctly and the GET at ``rate`` bytes/s, with the real validators."""

    def handler(request: Request, conn: Conn) -> None:
        if request.method == "HEAD":
            hostile.correct(request, conn)
            return
        etag, modified = hostile.validators(case.name)
        conn.head("200 OK", [("ETag", etag), ("Last-Modified", modified), ("Content-Length", str(len(case.new)))])
        conn.trickle(case.new, rate=rate)

    return handler


def test_trickling_body_fails_on_min_speed_and_releases_the_lock(tmp_path, hostile):
    case = _deployed(tmp_path, hostile, source_extra="min_speed = 1024")
    case.config.write_text(case.config.read_text().replace("timeout = 10", "timeout = 2"))

    hostile.handler = _trickling(hostile, case, rate=100)
    started = time.monotonic()
    result = run_doit(case.config, *INSTALL, timeout=60)
    took = time.monotonic() - started

    _assert_safe(case, result, failed=True, message="too slow")
    assert took < 20, took  # not "still downloading after 60 s"
    assert case.part.exists() and 0 < case.part.stat().st_size < len(case.new)  # kept for the next run
    _assert_recovers(case)


def test_transfer_deadline_bounds_a_whole_transfer(tmp_path, hostile):
    case = _deployed(tmp_path, hostile, source_extra="transfer_deadline = 2\nmin_speed = 0")

    hostile.handler = _trickling(hostile, case, rate=200)
    started = time.monotonic()
    result = run_doit(case.config, *INSTALL, timeout=60)

    _assert_safe(case, result, failed=True, message="took longer than 2 s")
    assert time.monotonic() - started < 20
    _assert_recovers(case)


def test_endless_body_without_length_stops_at_max_size(tmp_path, hostile):
    case = _deployed(tmp_path, hostile, source_extra="max_size_mib = 2")

    def handler(request: Request, conn: Conn) -> None:
        conn.head("200 OK", [("Content-Type", "application/octet-stream")])  # no length, no validators
        if request.method == "GET":
            block = os.urandom(64 * 1024)
            try:
                for _ in range(100_000):  # ~6 GiB if nothing stopped it
                    conn.raw(block)
            except OSError:
                pass

    hostile.handler = handler
    result = run_doit(case.config, *INSTALL, timeout=60)

    _assert_safe(case, result, failed=True, message="larger than [source] max_size_mib = 2")
    assert not case.part.exists()
    assert sum(p.stat().st_size for p in case.downloads.rglob("*") if p.is_file()) < 4 << 20
    _assert_recovers(case)


def test_endless_listing_is_capped(tmp_path, hostile):
    old = build_release(hostile.root / "files", "5.13.0")
    (hostile.root / "files" / "listing.txt").write_text(f"{old.name}\n")
    pattern = r"ParaView-(?P<version>\d+\.\d+\.\d+)-MPI.*\.tar\.gz$"
    extra = f'listing = "{hostile.url("files/listing.txt")}"\npattern = \'{pattern}\'\nmax_listing_mib = 1'
    root = tmp_path / "root"
    config = write_config(tmp_path / "pvw.toml", "unused", root, source_extra=extra)
    config.write_text(config.read_text().replace('url = "unused"\n', ""))
    assert run_doit(config, *INSTALL).returncode == 0
    case = Case(hostile, config, root, f"files/{old.name}", "", _sha(old.read_bytes()), b"")
    case.old_live = case.live()
    new = build_release(hostile.root / "files", "5.13.1")
    case.new = new.read_bytes()

    def handler(request: Request, conn: Conn) -> None:
        if request.name != "files/listing.txt":
            hostile.correct(request, conn)
            return
        conn.head("200 OK", [("Content-Type", "text/plain")])
        try:
            for _ in range(1_000_000):
                conn.raw(b"ParaView-9.9.9-MPI-x.tar.gz\n" * 1000)
        except OSError:
            pass

    hostile.handler = handler
    (hostile.root / "files" / "listing.txt").write_text(f"{old.name}\n{new.name}\n")
    result = run_doit(config, *INSTALL, timeout=60)

    _assert_safe(case, result, failed=True, message="is larger than 1 MiB")
    hostile.handler = None
    again = run_doit(config, *INSTALL)
    assert again.returncode == 0, again.output
    assert case.installed_sha() == _sha(case.new) == case.published_sha()


# -- 7. listing entries ---------------------------------------------------------------------


def _listing_case(tmp_path: Path, hostile: HostileServer, entries: list[str]) -> tuple[Path, Path]:
    pattern = r"ParaView-(?P<version>\d+\.\d+\.\d+)-MPI.*\.tar\.gz$"
    listing = hostile.root / "files" / "listing.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join(entries) + "\n")
    extra = f'listing = "{hostile.url("files/listing.txt")}"\npattern = \'{pattern}\''
    config = write_config(tmp_path / "pvw.toml", "unused", tmp_path / "root", source_extra=extra)
    config.write_text(config.read_text().replace('url = "unused"\n', ""))
    return config, listing


def test_listing_entries_off_host_outside_the_folder_or_local_are_never_used(tmp_path, hostile):
    good = build_release(hostile.root / "files" / "v5.13", "5.13.0")
    local = build_release(tmp_path / "elsewhere", "9.9.9")  # a file on the server machine
    above = build_release(hostile.root, "9.9.8")  # served, but outside the listing's folder
    config, listing = _listing_case(tmp_path, hostile, [
        f"v5.13/{good.name}", local.as_uri(), f"../{above.name}",
        f"http://localhost:{hostile.port}/files/{build_release(tmp_path / 'x', '9.9.7').name}",
        f"%2e%2e/{above.name}",
    ])
    root = tmp_path / "root"

    first = run_doit(config, *INSTALL)

    assert first.returncode == 0, first.output
    installed = json.loads((root / "autodeploy" / "installed.json").read_text())
    assert installed["version"] == "5.13.0" and installed["sha256"] == _sha(good.read_bytes())
    assert "listing entry skipped" in first.stderr
    assert not hostile.gets(above.name)

    # Only hostile entries: a clear failure, the live release untouched, then a sound listing works.
    live = os.readlink(root / "autodeploy" / "paraview")
    newer = build_release(tmp_path / "elsewhere", "9.9.10")
    listing.write_text(f"{newer.as_uri()}\n../{above.name}\n")
    refused = run_doit(config, *INSTALL)
    assert refused.returncode != 0 and "no usable file" in refused.stderr, refused.output
    assert os.readlink(root / "autodeploy" / "paraview") == live
    assert json.loads((root / "www" / "hash.json").read_text())["sha256"] == installed["sha256"]
    new = build_release(hostile.root / "files" / "v5.13", "5.13.1")
    listing.write_text(f"v5.13/{good.name}\nv5.13/{new.name}\n")
    fixed = run_doit(config, *INSTALL)
    assert fixed.returncode == 0, fixed.output
    assert json.loads((root / "www" / "hash.json").read_text())["sha256"] == _sha(new.read_bytes())


def test_other_hosts_are_allowed_only_when_configured():
    options = fetch.Options(allow_other_hosts=True)
    listing = "https://www.paraview.org/files/listing.txt"
    assert fetch.entry_allowed("https://mirror.example.org/pv/x.tar.gz", listing, options) is None
    assert fetch.entry_allowed("file:///etc/x.tar.gz", listing, options)
    assert fetch.entry_allowed("http://www.paraview.org/files/x.tar.gz", listing, options)  # https -> http
    assert fetch.entry_allowed("https://mirror.example.org/pv/x.tar.gz", listing, fetch.Options())
    assert fetch.entry_allowed("https://www.paraview.org/files/v5.13/x.tar.gz", listing, fetch.Options()) is None


# -- 8. version order ---------------------------------------------------------------------------


def test_prereleases_sort_below_finals_and_numbers_break_ties():
    names = ["ParaView-5.10.0-RC1-MPI-Linux-Python3.9-x86_64.tar.gz",
             "ParaView-5.10.0-MPI-Linux-Python3.9-x86_64.tar.gz",
             "ParaView-5.10.0-MPI-Linux-Python3.10-x86_64.tar.gz",
             "ParaView-5.9.1-MPI-Linux-Python3.9-x86_64.tar.gz",
             "ParaView-5.10.0-RC2-MPI-Linux-Python3.10-x86_64.tar.gz"]
    listing = "\n".join(names)
    loose = r"ParaView-(?P<version>\d+\.\d+\.\d+).*\.tar\.gz$"
    base = "https://example.org/files/listing.txt"
    assert fetch.pick_from_listing(listing, base, loose).endswith(names[2])
    assert fetch.pick_from_listing(listing, base, r"ParaView-.*RC.*\.tar\.gz$").endswith(names[4])
    assert fetch.version_key("5.10.0-RC1") < fetch.version_key("5.10.0") < fetch.version_key("5.10.1-beta1")
    assert fetch.version_key("5.10") == fetch.version_key("5.10.0")
    assert fetch.version_key("6.0.0-dev1") < fetch.version_key("6.0.0a1") < fetch.version_key("6.0.0b2") \
        < fetch.version_key("6.0.0rc1") < fetch.version_key("6.0.0")


# -- 9. weak and strong ETags ---------------------------------------------------------------------


def test_weak_etag_on_get_and_strong_on_head_counts_as_unchanged(tmp_path, hostile):
    """Apache answers W/"x" for a file changed within the last second, "x" later: the same file."""
    served = hostile.root
    release = build_release(served, "5.13.0")
    etag = strong_etag(release.read_bytes())

    def handler(request: Request, conn: Conn) -> None:
        hostile.correct(request, conn, etag=etag if request.method == "HEAD" else "W/" + etag)

    hostile.handler = handler
    config = write_config(tmp_path / "pvw.toml", hostile.url(release.name), tmp_path / "root")
    case = Case(hostile, config, tmp_path / "root", release.name, "", _sha(release.read_bytes()), b"")
    first = run_doit(config, *INSTALL)
    assert first.returncode == 0, first.output
    case.old_live = case.live()
    gets = len(hostile.gets(release.name))

    second = run_doit(config, *INSTALL)

    assert "-- download" in second.stdout, second.output  # up to date: no new download
    assert len(hostile.gets(release.name)) == gets
    _assert_safe(case, second, failed=False)
    assert case.live() == case.old_live
    case.new = build_release(served, "5.13.1", name=release.name).read_bytes()
    os.utime(release, (2e9, 2e9))
    _assert_recovers(case)


def test_weak_etag_is_never_sent_in_if_range(tmp_path, hostile):
    case = _deployed(tmp_path, hostile)
    etag, modified = hostile.validators(case.name)
    have = len(case.new) // 2
    _save_part(case, case.new[:have], etag="W/" + etag, last_modified=modified, size=len(case.new))
    hostile.handler = lambda request, conn: hostile.correct(request, conn, etag="W/" + etag)

    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=False)
    (ranged,) = _ranged_gets(hostile, case.name)
    assert ranged.headers["if-range"] == modified  # the date vouches, never the weak tag
    _assert_if_range_rules(hostile, case.name)
    _assert_recovers(case)


# -- 10. manifests ----------------------------------------------------------------------------------


def test_manifest_conflicts_are_errors_paths_match_best_first_and_a_bom_is_fine():
    name = "ParaView-5.13.0.tar.gz"
    a, b = "a" * 32, "b" * 32
    url, manifest = f"https://h/files/v5.13/{name}", "https://h/files/md5sum.txt"
    with pytest.raises(DownloadError, match="listed twice with different md5"):
        verify.find_in_manifest(f"{a}  {name}\n{b}  {name}\n", name, "m", url, manifest)
    assert verify.find_in_manifest(f"{a}  {name}\n{a}  {name}\n", name, "m").digest == a  # duplicates agree
    text = f"\ufeff{a}  v5.12/{name}\n{b}  v5.13/{name}\n"
    assert verify.find_in_manifest(text, name, "m", url, manifest).digest == b  # the archive's own folder wins
    assert verify.find_in_manifest(f"\ufeff{a} *./{name}\n", name, "m", url, manifest).digest == a
    with pytest.raises(DownloadError, match="listed twice"):  # two other folders, nothing better: ambiguous
        verify.find_in_manifest(f"{a}  v5.11/{name}\n{b}  v5.12/{name}\n", name, "m", url, manifest)


def test_manifest_with_bom_and_a_same_name_entry_elsewhere_verifies_the_right_file(tmp_path, hostile):
    case = _deployed(tmp_path, hostile)
    wrong = hashlib.md5(b"other").hexdigest()
    manifest = hostile.root / "md5sum.txt"
    right = hashlib.md5(case.new).hexdigest()
    text = case.config.read_text().replace("[source]\n", f'[source]\nchecksums = "{hostile.url("md5sum.txt")}"\n', 1)
    case.config.write_text(text)
    manifest.write_text(f"{wrong}  {case.name}\n{right}  {case.name}\n")  # conflicting: an error

    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=True, message="listed twice with different md5 digests")
    manifest.write_bytes(f"\ufeff{wrong}  v5.12/{case.name}\n{right}  {case.name}\n".encode())
    _assert_recovers(case)


# -- 11. TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def _tls_server(root: Path, ca: trustme.CA) -> HostileServer:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return HostileServer(root, tls=context).start()


def test_untrusted_certificate_fails_at_once_with_the_whole_cause_then_ca_file_works(tmp_path, ca):
    served = tmp_path / "served"
    server = _tls_server(served, ca)
    try:
        old = build_release(served, "5.13.0")
        ca_file = tmp_path / "site-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        config = write_config(tmp_path / "pvw.toml", server.url(old.name), tmp_path / "root",
                              source_extra=f'ca_file = "{ca_file}"')
        assert run_doit(config, *INSTALL).returncode == 0
        case = Case(server, config, tmp_path / "root", old.name, "", _sha(old.read_bytes()), b"")
        case.old_live = case.live()
        case.new = build_release(served, "5.13.1", name=old.name).read_bytes()
        os.utime(served / old.name, (2e9, 2e9))
        trusted = config.read_text()
        config.write_text(trusted.replace(f'ca_file = "{ca_file}"', "").replace("backoff = 0.05", "backoff = 1"))
        connections = server.connections
        started = time.monotonic()

        result = run_doit(config, *INSTALL)

        _assert_safe(case, result, failed=True, message="certificate verify failed: unable to get local issuer")
        assert "[source] ca_file" in result.stderr
        assert server.connections - connections <= 2  # the up-to-date check and the download: never retried
        assert time.monotonic() - started < 6
        config.write_text(trusted)
        _assert_recovers(case)
    finally:
        server.stop()


def test_https_to_http_redirect_is_refused_unless_allowed(tmp_path, ca, hostile):
    tls_root = tmp_path / "tls-served"
    tls_root.mkdir()
    secure = _tls_server(tls_root, ca)
    try:
        ca_file = tmp_path / "site-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        old = build_release(hostile.root, "5.13.0")

        def to_plain(request: Request, conn: Conn) -> None:
            conn.send("302 Found", [("Location", hostile.url(request.name))], b"", request.method)

        secure.handler = to_plain
        # First deploy straight from the plain server, then point the config at the https URL.
        config = write_config(tmp_path / "pvw.toml", hostile.url(old.name), tmp_path / "root",
                              source_extra=f'ca_file = "{ca_file}"')
        assert run_doit(config, *INSTALL).returncode == 0
        case = Case(hostile, config, tmp_path / "root", old.name, "", _sha(old.read_bytes()), b"")
        case.old_live = case.live()
        case.new = build_release(hostile.root, "5.13.1", name=old.name).read_bytes()
        os.utime(hostile.root / old.name, (2e9, 2e9))
        config.write_text(config.read_text().replace(hostile.url(old.name), secure.url(old.name)))
        plain_gets = len(hostile.gets(old.name))

        result = run_doit(config, *INSTALL)

        _assert_safe(case, result, failed=True, message="refusing to leave https")
        assert len(hostile.gets(old.name)) == plain_gets  # the http URL was never fetched
        config.write_text(config.read_text().replace("[source]\n", "[source]\nallow_http_redirect = true\n", 1))
        _assert_recovers(case)
    finally:
        secure.stop()


# -- 12. HEAD 403 ----------------------------------------------------------------------------------------


def test_head_403_falls_back_to_get_like_presigned_urls_need(tmp_path, hostile):
    case = _deployed(tmp_path, hostile)

    def handler(request: Request, conn: Conn) -> None:
        if request.method == "HEAD":
            conn.send("403 Forbidden", [("Content-Type", "application/xml")], b"", "HEAD")
        else:
            hostile.correct(request, conn)

    hostile.handler = handler
    result = run_doit(case.config, *INSTALL)

    _assert_safe(case, result, failed=False)
    assert case.installed_sha() == _sha(case.new)
    again = run_doit(case.config, *INSTALL)
    assert again.returncode == 0 and "-- download" in again.stdout, again.output  # unchanged, via GET's headers
    _assert_recovers(case)


# -- 13. the progress bar -----------------------------------------------------------------------------------


def test_progress_shows_bytes_and_speed_without_length_and_ends_its_line_on_failure(tmp_path, hostile):
    data = os.urandom(300_000)
    (hostile.root / "blob.tar.gz").write_bytes(data)
    cut = {"at": None}

    def handler(request: Request, conn: Conn) -> None:
        if request.method == "HEAD":
            conn.head("200 OK", [("Transfer-Encoding", "chunked")])
            return
        conn.head("200 OK", [("Transfer-Encoding", "chunked")])
        if cut["at"] is None:
            conn.chunked(data, size=20_000)
        else:
            conn.raw(b"%x\r\n%s" % (cut["at"], data[: cut["at"] // 2]))  # dies mid-chunk

    hostile.handler = handler
    out = io.StringIO()
    options = fetch.Options(timeout=5, retries=0)
    bar = ProgressBar(out)
    got = fetch.download(hostile.url("blob.tar.gz"), tmp_path / "d" / "blob.part", tmp_path / "d" / "blob.json",
                         options=options, progress=bar)
    assert got.size == len(data) and got.sha256 == _sha(data)
    assert "MiB/s" in out.getvalue() and " 0.3 MiB " in out.getvalue() and out.getvalue().endswith("\n")

    cut["at"] = 100_000
    out.seek(0), out.truncate()
    with pytest.raises(DownloadError):
        fetch.download(hostile.url("blob.tar.gz"), tmp_path / "e" / "blob.part", tmp_path / "e" / "blob.json",
                       options=options, progress=ProgressBar(out))
    assert out.getvalue().endswith("\n")  # an error message never lands on the bar's line
