"""The fast extraction paths (issue 6) keep filter="data" semantics: same tree as tar, same refusals."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import build_release
from support.tarbuild import build_tar as _tar
from pvwtasks import archive as extract
from pvwtasks import demo
from pvwtasks.errors import InstallError, UnsafeArchive

TOP = "ParaView-6.0.0-MPI-Linux-Python3.11-x86_64"


def _snapshot(root: Path) -> dict:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", oct(info.st_mode & 0o7777), int(info.st_mtime),
                            hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def _tar_x(archive: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(["tar", "xf", str(archive), "-C", str(dest)], check=True)


def test_release_extracts_exactly_like_tar(tmp_path):
    release = build_release(tmp_path, "6.0.0", filler_files=450, filler_bytes=3_000_000)
    ours, theirs = tmp_path / "ours", tmp_path / "tar"
    assert extract.extract(release, ours) == [release.name.removesuffix(".tar.gz").replace("6.0.0", "6.0.0")]
    _tar_x(release, theirs)
    mine, reference = _snapshot(ours), _snapshot(theirs)
    assert len(mine) > 450
    assert any(kind == ("link",) or kind[0] == "link" for kind in mine.values())
    assert mine == reference


def test_stream_extractor_builds_the_same_tree_from_chunks(tmp_path):
    release = build_release(tmp_path, "6.0.0", filler_files=120, filler_bytes=2_000_000)
    streamed, reference = tmp_path / "streamed", tmp_path / "file"
    extractor = extract.StreamExtractor(streamed, release.name)
    data = release.read_bytes()
    for start in range(0, len(data), 7_777):  # odd chunk sizes: headers straddle chunks
        extractor.feed(data[start:start + 7_777])
    assert extractor.finish() == [f"ParaView-6.0.0-MPI-Linux-Python{build_release.__globals__['demo'].PYTHON_TAG}-x86_64"]
    extract.extract(release, reference)
    assert _snapshot(streamed) == _snapshot(reference)


def test_missing_folder_entries_are_created(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [(f"{TOP}/deep/er/file.txt", "file"), (f"{TOP}/bin/pvpython", "file")])
    extract.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / TOP / "deep" / "er" / "file.txt").read_bytes() == f"data of {TOP}/deep/er/file.txt".encode()


@pytest.mark.parametrize("mode, expected", [(0o777, 0o755), (0o666, 0o644), (0o4755, 0o755), (0o000, 0o600),
                                            (0o640, 0o640), (0o2711, 0o711)])
def test_modes_follow_the_data_filter(tmp_path, mode, expected):
    archive = _tar(tmp_path / "a.tar.gz", [(f"{TOP}/x", "file", b"x", mode)])
    extract.extract(archive, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out" / TOP / "x").stat().st_mode) == expected
    member = tarfile.TarInfo("x")
    member.mode = mode
    assert tarfile.data_filter(member, str(tmp_path)).mode == expected


def test_files_under_an_inside_symlink_land_where_tar_puts_them(tmp_path):
    members = [(f"{TOP}/real", "dir"), (f"{TOP}/alias", "sym", "real"), (f"{TOP}/alias/f", "file"),
               (f"{TOP}/real/g", "file"), (f"{TOP}/lib.so", "sym", "real/g")]
    archive = _tar(tmp_path / "a.tar.gz", members)
    extract.extract(archive, tmp_path / "ours")
    _tar_x(archive, tmp_path / "tar")
    assert _snapshot(tmp_path / "ours") == _snapshot(tmp_path / "tar")
    assert (tmp_path / "ours" / TOP / "real" / "f").is_file()


def test_duplicates_and_a_file_replacing_a_symlink_match_tar(tmp_path):
    members = [(f"{TOP}/dup", "file", b"first"), (f"{TOP}/dup", "file", b"second"),
               (f"{TOP}/target", "file", b"keep me"), (f"{TOP}/swap", "sym", "target"),
               (f"{TOP}/swap", "file", b"now a file")]
    archive = _tar(tmp_path / "a.tar.gz", members)
    extract.extract(archive, tmp_path / "ours")
    _tar_x(archive, tmp_path / "tar")
    assert _snapshot(tmp_path / "ours") == _snapshot(tmp_path / "tar")
    assert (tmp_path / "ours" / TOP / "target").read_bytes() == b"keep me"


def test_hardlink_to_a_file_written_by_a_writer_thread(tmp_path):
    members = [(f"{TOP}/f{n}", "file") for n in range(50)] + [(f"{TOP}/hard", "hard", f"{TOP}/f49")]
    archive = _tar(tmp_path / "a.tar.gz", members)
    extract.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / TOP / "hard").read_bytes() == f"data of {TOP}/f49".encode()
    assert (tmp_path / "out" / TOP / "hard").stat().st_ino == (tmp_path / "out" / TOP / "f49").stat().st_ino


def _overflow_members(top: str = "") -> list[tuple]:
    long_dir, steps, members, path = "d" * 247, "abcdefghijklmnop", [], top
    for step in steps:
        members += [(os.path.join(path, long_dir), "dir"), (os.path.join(path, step), "sym", long_dir)]
        path = os.path.join(path, long_dir)
    deep_link = os.path.join(top, *steps, "l" * 254)
    return members + [(deep_link, "sym", os.path.join(*[".."] * len(steps))),
                      (os.path.join(top, "escape"), "sym", deep_link.removeprefix(top).lstrip("/") + "/../canary"),
                      (os.path.join(top, "escape", "pwned.txt"), "file")]


HOSTILE = {
    "dotdot": [(f"{TOP}/../escaped.txt", "file")],
    "absolute": [("/tmp/pvw-fast-abs.txt", "file")],
    "symlink_out": [(f"{TOP}/lib", "sym", "../../../../../../etc")],
    "symlink_abs_then_write": [(f"{TOP}/evil", "sym", "/tmp"), (f"{TOP}/evil/pvw-fast-through.txt", "file")],
    "symlink_chain_out": [(f"{TOP}/a", "dir"), (f"{TOP}/a/up", "sym", ".."), (f"{TOP}/a/up/up2", "sym", "../.."),
                          (f"{TOP}/a/up/up2/x", "file")],
    "hardlink_abs": [(f"{TOP}/passwd", "hard", "/etc/passwd")],
    "hardlink_dotdot": [(f"{TOP}/passwd", "hard", "../../etc/passwd")],
    "device": [(f"{TOP}/null", "chr")],
    # A hard link to an inside symlink would copy its text to another folder, where it points out.
    "hardlink_to_symlink": [(f"{TOP}/a", "dir"), (f"{TOP}/a/s", "sym", "../../canary"), (f"{TOP}/h", "hard",
                                                                                        f"{TOP}/a/s")],
    # CVE-2025-4517: past PATH_MAX a non-strict realpath goes lexical while the kernel follows the links.
    "realpath_overflow": _overflow_members(),
    "realpath_overflow_in_top": _overflow_members(TOP),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_members_are_refused_by_both_paths(tmp_path, kind):
    members = [(f"{TOP}/bin/pvpython", "file")] + [(f"{TOP}/ok{n}", "file") for n in range(20)] + HOSTILE[kind]
    archive = _tar(tmp_path / "hostile.tar.gz", members)
    box = tmp_path / "box"
    box.mkdir()
    with pytest.raises(UnsafeArchive):
        extract.extract(archive, box / "out")
    streamed = box / "streamed"
    extractor = extract.StreamExtractor(streamed)
    extractor.feed(archive.read_bytes())
    assert extractor.finish() is None
    assert isinstance(extractor.error, UnsafeArchive)
    assert not streamed.exists()
    assert sorted(p.name for p in box.iterdir()) == ["out"]
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/pvw-fast-abs.txt").exists()
    assert not Path("/tmp/pvw-fast-through.txt").exists()
    assert not (box.parent / "canary").exists() and not (tmp_path / "canary").exists()


def test_sparse_members_and_giant_headers_are_refused(tmp_path):
    source = tmp_path / "src" / TOP
    source.mkdir(parents=True)
    with (source / "sparse.bin").open("wb") as handle:
        handle.write(b"head")
        handle.seek(64 << 20)
        handle.write(b"tail")
    sparse = tmp_path / "sparse.tar.gz"
    subprocess.run(["tar", "--sparse", "-czf", str(sparse), "-C", str(tmp_path / "src"), TOP], check=True)
    with pytest.raises(UnsafeArchive, match="sparse"):
        extract.extract(sparse, tmp_path / "out-sparse")

    info = tarfile.TarInfo(f"{TOP}/f")
    info.size = 1
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "A" * (64 << 20)}) as tar:
        tar.addfile(info, io.BytesIO(b"x"))
    giant = tmp_path / "giant.tar.gz"
    import gzip

    giant.write_bytes(gzip.compress(raw.getvalue(), 1))
    with pytest.raises(UnsafeArchive, match="header"):
        extract.extract(giant, tmp_path / "out-giant")


def test_truncated_and_corrupt_archives_fail_cleanly(tmp_path):
    release = build_release(tmp_path, "6.0.0", filler_files=30, filler_bytes=500_000)
    data = release.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InstallError, match="corrupt or truncated"):
        extract.extract(cut, tmp_path / "a")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(data[:100] + bytes(256) + data[356:])
    with pytest.raises(InstallError):
        extract.extract(bad, tmp_path / "b")
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(b"not an archive at all")
    with pytest.raises(InstallError, match="not a .tar.gz"):
        extract.extract(plain, tmp_path / "c")


def test_abort_stops_a_stream_extraction_and_removes_its_folder(tmp_path):
    release = build_release(tmp_path, "6.0.0", filler_files=60, filler_bytes=1_000_000)
    dest = tmp_path / "partial"
    extractor = extract.StreamExtractor(dest, depth=2)
    data = release.read_bytes()
    extractor.feed(data[: len(data) // 3])
    extractor.abort()
    assert not dest.exists()


def test_xz_and_concatenated_gzip_members(tmp_path):
    xz = build_release(tmp_path, "6.0.0", name="r.tar.xz")
    assert extract.extract(xz, tmp_path / "xz") == [xz_top := demo.top_folder("6.0.0")]
    assert (tmp_path / "xz" / xz_top / "bin" / "pvpython").read_bytes().startswith(b"#!")
    # pigz / cat a.gz b.gz: a gzip file of several members is one stream.
    import gzip
    raw = gzip.decompress(build_release(tmp_path, "6.0.0", name="r.tar.gz").read_bytes())
    half = len(raw) // 2
    multi = tmp_path / "multi.tar.gz"
    multi.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    extract.extract(multi, tmp_path / "multi")
    assert _snapshot(tmp_path / "multi") == _snapshot(tmp_path / "xz")


def test_install_uses_the_tree_unpacked_while_downloading(deployment):
    from support.doit import run_doit

    result = run_doit(deployment["config"], "install", "publish_hash")
    assert result.returncode == 0, result.output
    assert "using the tree unpacked while downloading" in result.stderr
    versions = deployment["root"] / "autodeploy" / "versions"
    assert not [p.name for p in versions.iterdir() if p.name.startswith(".")]
    live = deployment["root"] / "autodeploy" / "paraview"
    reference = deployment["root"].parent / "reference"
    extract.extract(deployment["release"], reference)
    assert _snapshot(live / ".") == _snapshot(reference / os.readlink(live).split("/")[-1].rsplit("-", 1)[0])


def test_checksum_mismatch_leaves_no_unpacked_tree(deployment):
    from support.doit import run_doit

    config = deployment["config"]
    config.write_text(config.read_text().replace("[source]\n", f'[source]\nsha256 = "{"0" * 64}"\n'))
    result = run_doit(config, "install", "publish_hash")
    assert result.returncode != 0 and "mismatch" in result.stderr
    versions = deployment["root"] / "autodeploy" / "versions"
    assert not versions.exists() or not list(versions.iterdir())


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_long_names_and_big_files_match_tar(tmp_path, fmt):
    long_dir = f"{TOP}/" + "/".join(["a-rather-long-folder-name-" + str(n) for n in range(6)])
    big = os.urandom(extract.ASYNC_MAX_FILE + 123_457)  # written by the parsing thread, in chunks
    archive = tmp_path / "long.tar.gz"
    with tarfile.open(archive, "w:gz", format=fmt) as tar:
        for name, data in ((f"{long_dir}/{'x' * 120}.txt", b"long name"), (f"{TOP}/big.bin", big),
                           (f"{long_dir}/after-big", b"still aligned")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    extract.extract(archive, tmp_path / "ours")
    _tar_x(archive, tmp_path / "tar")
    assert _snapshot(tmp_path / "ours") == _snapshot(tmp_path / "tar")
    assert (tmp_path / "ours" / TOP / "big.bin").read_bytes() == big


def test_a_link_retargeted_outside_by_a_later_member_is_refused(tmp_path):
    # "a" is checked while "b" points two folders down (a resolves inside); then "b" becomes ".",
    # so "a" would point above the destination.  tarfile's data filter alone lets the tree keep it.
    members = [(f"{TOP}/d1/d2", "dir"), (f"{TOP}/b", "sym", "d1/d2"), (f"{TOP}/a", "sym", "b/../.."),
               (f"{TOP}/b", "sym", ".")]
    archive = _tar(tmp_path / "retarget.tar.gz", members)
    with pytest.raises(UnsafeArchive, match="outside the tree"):
        extract.extract(archive, tmp_path / "box" / "out")
    extractor = extract.StreamExtractor(tmp_path / "box" / "streamed")
    extractor.feed(archive.read_bytes())
    assert extractor.finish() is None and isinstance(extractor.error, UnsafeArchive)


def test_links_that_stay_inside_are_kept(tmp_path):
    members = [(f"{TOP}/d1/d2", "dir"), (f"{TOP}/b", "sym", "d1/d2"), (f"{TOP}/a", "sym", "b/.."),
               (f"{TOP}/dangling", "sym", "not/there"), (f"{TOP}/loop", "sym", "loop")]
    archive = _tar(tmp_path / "fine.tar.gz", members)
    extract.extract(archive, tmp_path / "out")
    assert os.readlink(tmp_path / "out" / TOP / "a") == "b/.."


def test_plain_tar_extracts_like_the_gzipped_one(tmp_path):
    import gzip

    release = build_release(tmp_path, "6.0.0", filler_files=20, filler_bytes=200_000)
    plain = tmp_path / "release.tar"
    plain.write_bytes(gzip.decompress(release.read_bytes()))
    assert extract.extract(plain, tmp_path / "plain") == extract.extract(release, tmp_path / "gz")
    assert _snapshot(tmp_path / "plain") == _snapshot(tmp_path / "gz")
    extractor = extract.StreamExtractor(tmp_path / "streamed", plain.name)
    extractor.feed(plain.read_bytes()[:200])  # shorter than the header that tells a plain tar
    extractor.feed(plain.read_bytes()[200:])
    assert extractor.finish() is not None
    assert _snapshot(tmp_path / "streamed") == _snapshot(tmp_path / "gz")
