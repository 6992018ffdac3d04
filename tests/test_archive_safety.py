"""Issue 10, archives: hostile tarballs through both entry points, and the bound on unpacking before verification."""

from __future__ import annotations

import gzip
import os
import re
import tarfile
import threading
import time
from pathlib import Path

import pytest

from conftest import build_release, run_doit
from pvwtasks import archive, fetch
from pvwtasks.errors import UnsafeArchive
from support.tarbuild import build_tar, gzip_bomb, member

TOP = "ParaView-6.0.0-MPI-Linux-Python3.11-x86_64"
DEEP = 1000  # missing path components: deeper than Python's recursion limit


def _outside(tmp_path: Path, box: Path) -> list[str]:
    """Everything under tmp_path except the box's extraction folders and the archives themselves."""
    found = []
    for folder, dirs, files in os.walk(tmp_path, followlinks=False):
        if Path(folder) == box:
            dirs[:] = [d for d in dirs if d not in ("out", "streamed")]
        for entry in dirs + files:
            rel = str((Path(folder) / entry).relative_to(tmp_path))
            if not rel.endswith((".tar.gz", ".tar")) and Path(folder, entry) != box:
                found.append(rel)
    return sorted(found)


def _both(tmp_path: Path, archive_path: Path) -> tuple[BaseException | list[str], BaseException | list[str]]:
    """Extract with extract() into box/out and with StreamExtractor into box/streamed (odd chunks)."""
    box = tmp_path / "box"
    box.mkdir(exist_ok=True)
    try:
        direct: BaseException | list[str] = archive.extract(archive_path, box / "out")
    except UnsafeArchive as err:
        direct = err
    extractor = archive.StreamExtractor(box / "streamed", archive_path.name)
    data = archive_path.read_bytes()
    for start in range(0, len(data), 4_099):
        extractor.feed(data[start:start + 4_099])
    tops = extractor.finish()
    streamed = tops if tops is not None else extractor.error
    if tops is None:
        assert not (box / "streamed").exists()
    return direct, streamed


def _refused(tmp_path: Path, members: list[tuple], name: str, rule: str) -> str:
    """Both entry points refuse ``members`` naming ``name`` and ``rule``; nothing lands outside dest."""
    path = build_tar(tmp_path / "hostile.tar.gz", [(f"{TOP}/bin/pvpython", "file")] + members)
    before = _outside(tmp_path, tmp_path / "box")
    direct, streamed = _both(tmp_path, path)
    for outcome in (direct, streamed):
        assert isinstance(outcome, UnsafeArchive), outcome
        message = str(outcome)
        assert f"member {name!r} refused" in message and rule in message, message
        assert message.startswith("hostile.tar.gz: "), message
        for bare in ("No such file or directory", "File exists", "Operation not permitted", "embedded null"):
            assert not message.endswith(bare) and "ValueError" not in message, message
    assert str(direct) == str(streamed)
    assert _outside(tmp_path, tmp_path / "box") == before == []
    return str(direct)


# -- links are judged by their target, and stay inside the top folder ----------------------------

def test_cve_2025_4138_link_through_a_later_link_is_refused(tmp_path):
    # Checked alone, "escape" looks inside ("link" is missing, so link/link/../.. cancels out);
    # once "link -> ." exists, escape points two folders up.
    _refused(tmp_path, [(f"{TOP}/escape", "sym", "link/link/../../x"), (f"{TOP}/link", "sym", "./")],
             f"{TOP}/escape", "leaves its top folder")


def test_cve_2025_4138_link_written_through_is_refused(tmp_path):
    _refused(tmp_path, [(f"{TOP}/escape", "sym", "link/link/../../x"), (f"{TOP}/link", "sym", "./"),
                        (f"{TOP}/escape/pwned", "file")], f"{TOP}/escape/pwned", "leaves its top folder")
    assert not (tmp_path / "box" / "x").exists() and not (tmp_path / "x").exists()


def test_link_leaving_the_top_folder_is_refused_although_inside_dest(tmp_path):
    # After install renames the top folder into versions/, ../.. would be versions/ itself.
    message = _refused(tmp_path, [(f"{TOP}/lib", "dir"), (f"{TOP}/lib/up", "sym", "../..")], f"{TOP}/lib/up",
                       "leaves its top folder")
    assert "outside the tree" in message


def test_link_that_climbs_out_and_back_into_the_top_folder_is_refused(tmp_path):
    _refused(tmp_path, [(f"{TOP}/lib", "dir"), (f"{TOP}/lib/back", "sym", f"../../{TOP}/bin/pvpython")],
             f"{TOP}/lib/back", "leaves its top folder")


def test_top_level_link_is_refused(tmp_path):
    _refused(tmp_path, [("latest", "sym", TOP)], "latest", "leaves its top folder")


def test_links_inside_the_top_folder_are_kept_by_both_paths(tmp_path):
    members = [(f"{TOP}/bin/pvpython", "file"), (f"{TOP}/lib/real", "dir"), (f"{TOP}/lib/ok", "sym", "../bin/pvpython"),
               (f"{TOP}/lib/alias", "sym", "real"), (f"{TOP}/lib/alias/inside", "file"),
               (f"{TOP}/later", "sym", "lib/not-yet/../real"), (f"{TOP}/lib/not-yet", "dir"),
               (f"{TOP}/self", "sym", ".")]
    direct, streamed = _both(tmp_path, build_tar(tmp_path / "fine.tar.gz", members))
    assert direct == streamed == [TOP]
    for tree in ("out", "streamed"):
        top = tmp_path / "box" / tree / TOP
        assert (top / "lib" / "ok").read_bytes() == f"data of {TOP}/bin/pvpython".encode()
        assert (top / "lib" / "real" / "inside").is_file()


# -- NUL bytes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, pax, rule", [
    ("file", {"path": f"{TOP}/a\x00b"}, "its name holds a NUL byte"),
    ("sym", {"linkpath": "bin\x00/pvpython"}, "target holds a NUL byte"),
    ("hard", {"linkpath": f"{TOP}/bin/pvpython\x00"}, "target holds a NUL byte"),
])
def test_nul_byte_in_a_pax_path_or_linkpath_is_a_clear_refusal(tmp_path, kind, pax, rule):
    spec = (f"{TOP}/n", kind, "bin/pvpython", pax) if kind != "file" else (f"{TOP}/n", kind, pax)
    name = pax["path"] if "path" in pax else f"{TOP}/n"
    _refused(tmp_path, [spec], name, rule)


# -- a thousand missing components: no RecursionError --------------------------------------------

def test_deep_missing_link_target_is_kept_inside(tmp_path):
    members = [(f"{TOP}/deep", "sym", "/".join(["a"] * DEEP) + "/x")]
    direct, streamed = _both(tmp_path, build_tar(tmp_path / "deep.tar.gz", members))
    assert direct == streamed == [TOP]
    assert os.readlink(tmp_path / "box" / "out" / TOP / "deep").startswith("a/a/")


def test_deep_missing_link_target_climbing_out_is_refused(tmp_path):
    target = "/".join(["a"] * 600 + [".."] * 601 + ["x"])  # under the 4095-byte link limit
    _refused(tmp_path, [(f"{TOP}/deep", "sym", target)], f"{TOP}/deep", "leaves its top folder")


def test_deep_missing_hard_link_source_is_refused(tmp_path):
    source = f"{TOP}/" + "/".join(["a"] * DEEP) + "/f"
    _refused(tmp_path, [(f"{TOP}/h", "hard", source)], f"{TOP}/h", "which no earlier member created")


def test_deep_name_below_a_symlink_is_refused_clearly(tmp_path):
    deep = "/".join(["a"] * DEEP)
    members = [(f"{TOP}/real", "dir"), (f"{TOP}/alias", "sym", "real"), (f"{TOP}/alias/{deep}/f", "file", b"deep")]
    _refused(tmp_path, members, f"{TOP}/alias/{deep}/f", "parts deep")


def test_a_name_landing_too_deep_through_a_symlink_is_refused(tmp_path):
    # Each name is short enough, but "alias" adds 100 folders: shutil.rmtree would recurse 200 deep.
    members = [(f"{TOP}/" + "/".join(["r"] * 100), "dir"), (f"{TOP}/alias", "sym", "/".join(["r"] * 100)),
               (f"{TOP}/alias/" + "/".join(["b"] * 100) + "/f", "file")]
    _refused(tmp_path, members, f"{TOP}/alias/" + "/".join(["b"] * 100) + "/f", "parts deep (through a symlink)")


def test_a_name_below_a_symlink_lands_where_the_link_points(tmp_path):
    deep = "/".join(["a"] * 50)
    members = [(f"{TOP}/real", "dir"), (f"{TOP}/alias", "sym", "real"), (f"{TOP}/alias/{deep}/f", "file", b"deep")]
    direct, streamed = _both(tmp_path, build_tar(tmp_path / "deepname.tar.gz", members))
    assert direct == streamed == [TOP]
    for tree in ("out", "streamed"):
        assert (tmp_path / "box" / tree / TOP / "real" / deep / "f").read_bytes() == b"deep"


# -- clear messages: the member and the rule, never a bare errno ---------------------------------

@pytest.mark.parametrize("members, name, rule", [
    ([(f"{TOP}/h", "hard", f"{TOP}/missing")], f"{TOP}/h", "which no earlier member created"),
    ([(f"{TOP}/h", "hard", f"{TOP}/bin")], f"{TOP}/h", "not a regular file"),
    ([(f"{TOP}/f", "file"), (f"{TOP}/f", "dir")], f"{TOP}/f", "a folder cannot replace it"),
    ([(f"{TOP}/f", "file"), (f"{TOP}/f/g", "file")], f"{TOP}/f/g", "is not a folder"),
    ([(f"{TOP}/d", "sym", "missing"), (f"{TOP}/d/f", "file")], f"{TOP}/d/f", "is not a folder"),
    ([(f"{TOP}/sub", "dir"), (f"{TOP}/sub/x", "file"), (f"{TOP}/sub", "file")], f"{TOP}/sub",
     "would replace a folder"),
    ([(f"{TOP}/null", "chr")], f"{TOP}/null", "special file"),
    ([(f"{TOP}/pipe", "fifo")], f"{TOP}/pipe", "special file"),
    ([(f"{TOP}/t", "file", {"mtime": "inf"})], f"{TOP}/t", "a header value cannot be applied"),
    ([(f"{TOP}/t", "file"), (f"{TOP}/t", "file", {"mtime": "1e400"})], f"{TOP}/t", "a header value cannot"),
], ids=["hard-missing", "hard-to-folder", "dir-over-file", "file-under-file", "file-under-dangling-link",
        "file-over-folder", "device", "fifo", "mtime-inf", "mtime-inf-slow-path"])
def test_every_refusal_names_the_member_and_the_rule(tmp_path, members, name, rule):
    _refused(tmp_path, members, name, rule)


# -- gzip bomb while downloading (issue 10 item 6) ------------------------------------------------

def _du(folder: Path) -> int:
    """Bytes the files, folders and links under ``folder`` take on disk."""
    total = 0
    for root, dirs, files in os.walk(folder):
        for entry in dirs + files:
            try:
                total += os.lstat(os.path.join(root, entry)).st_blocks * 512
            except OSError:
                pass
    return total


class _Sampler:
    """Samples the bytes on disk under a folder every few milliseconds, in a thread."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak, self._stop = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _du(self.folder))
            time.sleep(0.005)

    def __enter__(self) -> "_Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _du(self.folder))


def test_gzip_bomb_stops_unpacking_within_the_bound_and_keeps_accepting_bytes(tmp_path):
    bomb = gzip_bomb(tmp_path / "bomb.tar.gz", f"{TOP}/share", 2048)
    data = bomb.read_bytes()
    assert 1_500_000 < len(data) < 3_000_000  # a 2 MB archive that inflates to 2 GiB
    dest = tmp_path / "stage" / "tree"
    extractor = archive.StreamExtractor(dest, bomb.name)
    fed = 0
    with _Sampler(tmp_path / "stage") as sampler:
        started = time.monotonic()
        for start in range(0, len(data), 64 << 10):
            extractor.feed(data[start:start + (64 << 10)])
            fed += len(data[start:start + (64 << 10)])
        took = time.monotonic() - started
    bound = archive.STREAM_RATIO * fed + archive.STREAM_SLACK
    assert extractor.gave_up and extractor.finish() is None
    assert "before verification" in str(extractor.error)
    assert extractor.unpacked <= bound
    assert 1 << 20 < sampler.peak <= bound, (sampler.peak, bound)
    assert not dest.exists()
    assert took < 30  # every byte was accepted; it did not inflate 2 GiB


def test_a_folder_bomb_is_charged_what_folders_cost_the_disk(tmp_path):
    # 512 tar bytes per folder inflate little, but each folder takes a 4 KiB block on disk.
    path = build_tar(tmp_path / "dirs.tar.gz", [(f"{TOP}/d{n}/e", "dir") for n in range(20_000)])
    data = path.read_bytes()
    extractor = archive.StreamExtractor(tmp_path / "stage" / "tree", path.name, max_bytes=8 << 20)
    with _Sampler(tmp_path / "stage") as sampler:
        for start in range(0, len(data), 16 << 10):
            extractor.feed(data[start:start + (16 << 10)])
    assert extractor.finish() is None and extractor.gave_up, extractor.error
    assert sampler.peak <= 8 << 20, sampler.peak
    assert not (tmp_path / "stage" / "tree").exists()


def test_a_ceiling_passed_by_the_caller_wins(tmp_path):
    release = build_release(tmp_path, "6.0.0", filler_files=40, filler_bytes=6_000_000)
    extractor = archive.StreamExtractor(tmp_path / "tree", release.name, max_bytes=2 << 20)
    extractor.feed(release.read_bytes())
    assert extractor.finish() is None and extractor.gave_up
    assert extractor.unpacked <= 2 << 20
    assert not (tmp_path / "tree").exists()
    assert archive.StreamExtractor(tmp_path / "t2", release.name).limit() > 2 << 20


def test_gzip_bomb_downloaded_over_http_writes_a_bounded_amount(tmp_path, http_server):
    bomb = gzip_bomb(http_server.root / "bomb.tar.gz", f"{TOP}/share", 2048)
    unpack_into = tmp_path / "versions"
    seen: list[int] = []

    def progress(done: int, total: int | None) -> None:
        seen.append(done)

    with _Sampler(unpack_into) as sampler:
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        fetched = fetch.download(http_server.url("bomb.tar.gz"), downloads / "bomb.tar.gz.part",
                                 downloads / "bomb.tar.gz.part.json", options=fetch.Options(timeout=10, retries=0,
                                                                                           backoff=0),
                                 progress=progress, unpack_into=unpack_into)
    assert fetched.size == bomb.stat().st_size and seen[-1] == fetched.size
    assert Path(fetched.path).read_bytes() == bomb.read_bytes()
    assert 1 << 20 < sampler.peak <= archive.STREAM_RATIO * fetched.size + archive.STREAM_SLACK, sampler.peak
    assert list(unpack_into.iterdir()) == []  # no staged tree: install will extract after verifying


def test_legit_archive_past_the_bound_installs_after_verification(deployment):
    # A real release plus a 64 MiB file of zeros at the front: inflates far more than 20x early on.
    release = deployment["release"]
    raw = gzip.decompress(release.read_bytes())
    top = raw[:100].split(b"\x00", 1)[0].decode().rstrip("/")
    zeros = member(f"{top}/share/zeros.bin", "file", bytes(0))
    zeros.size = 64 << 20
    lead = zeros.tobuf(tarfile.GNU_FORMAT) + bytes(zeros.size)  # a header and its data, no end-of-archive
    release.write_bytes(gzip.compress(lead + raw, 6))

    result = run_doit(deployment["config"], "install", "publish_hash")
    assert result.returncode == 0, result.output
    assert "unpacking while downloading stopped" in result.stderr and "before verification" in result.stderr
    assert "using the tree unpacked while downloading" not in result.stderr
    live = deployment["root"] / "autodeploy" / "paraview"
    assert (live / "share" / "zeros.bin").stat().st_size == 64 << 20
    assert (live / "bin" / "pvpython").is_file()
    versions = deployment["root"] / "autodeploy" / "versions"
    assert not [p.name for p in versions.iterdir() if p.name.startswith(".")]
    assert re.search(r"extracted .* into versions/", result.stderr), result.stderr
