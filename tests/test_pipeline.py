"""The update pipeline against a real loopback HTTP server: download, verify, install, hash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import build_release, write_config
from support.doit import run_doit
from pvwtasks import demo
from support.tarbuild import build_tar

INSTALL = ("install", "publish_hash")  # runs lock, download, verify, install, publish_hash


def live_target(root: Path) -> str:
    return os.readlink(root / "autodeploy" / "paraview")


def version_dirs(root: Path) -> list[str]:
    versions = root / "autodeploy" / "versions"
    return sorted(p.name for p in versions.iterdir() if p.is_dir())


def ran(result, task: str) -> bool:
    return f".  {task}\n" in result.stdout


def skipped(result, task: str) -> bool:
    return f"-- {task}\n" in result.stdout


def test_first_install_deploys_release_and_publishes_hash(deployment):
    root, release = deployment["root"], deployment["release"]
    result = run_doit(deployment["config"], *INSTALL)
    assert result.returncode == 0, result.output

    sha = hashlib.sha256(release.read_bytes()).hexdigest()
    top = release.name.removesuffix(".tar.gz")
    assert live_target(root) == f"versions/{top}-{sha[:12]}"
    tree = root / "autodeploy" / "paraview"
    assert os.access(tree / "bin" / "pvpython", os.X_OK)
    hash_json = json.loads((root / "www" / "hash.json").read_text())
    assert hash_json["sha256"] == sha
    assert hash_json["version"] == "5.13.0"
    assert hash_json["size"] == release.stat().st_size
    assert hash_json["url"] == deployment["server"].url(release.name)
    assert hash_json["installed_at"].endswith("Z")
    installed = json.loads((root / "autodeploy" / "installed.json").read_text())
    assert installed["site_packages"].startswith("lib/python3.") and installed["site_packages"].endswith("site-packages")
    # The archive is published under its own name only once verified; no .part is left.
    downloads = root / "autodeploy" / "downloads"
    assert (downloads / release.name).is_file()
    assert not list(downloads.glob("*.part"))
    # doit's state belongs to the deployment.
    assert (root / ".pvwtasks" / "doit-deps.sqlite3").is_file()


def test_rerun_with_nothing_new_downloads_and_extracts_nothing(deployment):
    server, root = deployment["server"], deployment["root"]
    assert run_doit(deployment["config"], *INSTALL).returncode == 0
    gets_before = len(server.gets(deployment["release"].name))
    tree_mtime = (root / "autodeploy" / "versions").stat().st_mtime_ns

    again = run_doit(deployment["config"], *INSTALL)
    assert again.returncode == 0, again.output
    for task in ("download", "verify", "install", "publish_hash"):
        assert skipped(again, task), again.stdout
    assert len(server.gets(deployment["release"].name)) == gets_before
    assert (root / "autodeploy" / "versions").stat().st_mtime_ns == tree_mtime


def test_new_upstream_build_is_installed_switched_and_old_ones_pruned(deployment, tmp_path):
    server, root, config = deployment["server"], deployment["root"], deployment["config"]
    name = deployment["release"].name
    assert run_doit(config, *INSTALL).returncode == 0
    first = live_target(root)
    for version in ("5.13.1", "5.13.2"):
        os.utime(build_release(server.root, version, name=name), (1e9, 1e9 + len(version)))
        result = run_doit(config, *INSTALL)
        assert result.returncode == 0, result.output
        assert ran(result, "install")
    live = live_target(root)
    assert live != first and "5.13.2" in live
    # keep = 2: the live one and the one before it.
    assert len(version_dirs(root)) == 2
    assert not (root / "autodeploy" / first).exists()
    previous = json.loads((root / "www" / "hash.json.previous").read_text())
    assert previous["version"] == "5.13.1"


def test_server_errors_are_retried_until_success(deployment):
    server, name = deployment["server"], deployment["release"].name
    server.faults.errors[f"/{name}"] = [503, 502]
    result = run_doit(deployment["config"], *INSTALL)
    assert result.returncode == 0, result.output
    assert (deployment["root"] / "www" / "hash.json").is_file()
    assert "retry" in result.stderr


def _big_release(folder: Path) -> Path:
    """A release of about 6 MB, so a cut lands after several whole download chunks."""
    return build_release(folder, filler_files=40, filler_bytes=12_000_000)


def _range_start(headers: dict) -> int:
    return int(headers["Range"].removeprefix("bytes=").rstrip("-"))


def test_truncated_transfer_is_resumed_with_a_range_request(tmp_path, http_server):
    release = _big_release(http_server.root)
    cut = release.stat().st_size * 3 // 4
    config = write_config(tmp_path / "pvw.toml", http_server.url(release.name), tmp_path / "root")
    http_server.faults.truncate[f"/{release.name}"] = cut

    result = run_doit(config, *INSTALL)
    assert result.returncode == 0, result.output
    gets = http_server.gets(release.name)
    assert len(gets) == 2
    assert 0 < _range_start(gets[1]) <= cut
    hash_json = json.loads((tmp_path / "root" / "www" / "hash.json").read_text())
    assert hash_json["sha256"] == hashlib.sha256(release.read_bytes()).hexdigest()


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path, http_server):
    release = _big_release(http_server.root)
    cut = release.stat().st_size * 3 // 4
    config = write_config(tmp_path / "pvw.toml", http_server.url(release.name), tmp_path / "root")
    config.write_text(config.read_text().replace("retries = 3", "retries = 0"))
    http_server.faults.truncate[f"/{release.name}"] = cut
    failed = run_doit(config, *INSTALL)
    assert failed.returncode != 0
    assert "still serving" in failed.stderr
    part = tmp_path / "root" / "autodeploy" / "downloads" / f"{release.name}.part"
    kept = part.stat().st_size
    assert 0 < kept <= cut

    result = run_doit(config, *INSTALL)
    assert result.returncode == 0, result.output
    assert _range_start(http_server.gets(release.name)[-1]) == kept
    hash_json = json.loads((tmp_path / "root" / "www" / "hash.json").read_text())
    assert hash_json["sha256"] == hashlib.sha256(release.read_bytes()).hexdigest()


def test_checksum_mismatch_keeps_previous_version_live(deployment, tmp_path):
    server, root, config = deployment["server"], deployment["root"], deployment["config"]
    name = deployment["release"].name
    assert run_doit(config, *INSTALL).returncode == 0
    live_before = live_target(root)
    hash_before = (root / "www" / "hash.json").read_text()

    build_release(server.root, "5.14.0", name=name)
    actual = hashlib.sha256((server.root / name).read_bytes()).hexdigest()
    wrong = "0" * 64
    text = config.read_text().replace("[source]\n", f'[source]\nsha256 = "{wrong}"\n')
    config.write_text(text)
    result = run_doit(config, *INSTALL)

    assert result.returncode != 0
    assert wrong in result.stderr and actual in result.stderr
    assert live_target(root) == live_before
    assert (root / "www" / "hash.json").read_text() == hash_before
    assert not list((root / "autodeploy" / "downloads").glob("*.part"))


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_checksum_manifest_is_checked_by_digest_length(tmp_path, http_server, algorithm):
    release = build_release(http_server.root)
    digest = hashlib.new(algorithm, release.read_bytes()).hexdigest()
    (http_server.root / "md5sum.txt").write_text(f"{'f' * len(digest)}  v5.12/other.tar.gz\n{digest}  v5.13/{release.name}\n")
    config = write_config(tmp_path / "pvw.toml", http_server.url(release.name), tmp_path / "root",
                          source_extra=f'checksums = "{http_server.url("md5sum.txt")}"')
    result = run_doit(config, *INSTALL)
    assert result.returncode == 0, result.output
    assert f"{algorithm} matches" in result.stderr

    (http_server.root / "md5sum.txt").write_text(f"{'a' * len(digest)}  v5.13/{release.name}\n")
    build_release(http_server.root, "5.13.9", name=release.name)
    bad = run_doit(config, *INSTALL)
    assert bad.returncode != 0
    assert f"{algorithm} mismatch" in bad.stderr


def test_unreachable_server_keeps_serving_and_fails(deployment):
    config, root = deployment["config"], deployment["root"]
    assert run_doit(config, *INSTALL).returncode == 0
    live = live_target(root)
    deployment["server"].httpd.shutdown()
    deployment["server"].httpd.server_close()

    result = run_doit(config, *INSTALL)
    assert result.returncode != 0
    assert "still serving" in result.stderr and live.split("/")[-1] in result.stderr
    assert live_target(root) == live


def test_listing_picks_newest_matching_version_numerically(tmp_path, http_server):
    files = http_server.root / "files"
    (files / "v5.9").mkdir(parents=True)
    (files / "v5.10").mkdir()
    build_release(files / "v5.9", "5.9.1")
    build_release(files / "v5.10", "5.10.1")
    tag = build_release(files / "v5.10", "5.10.1").name.split("Python")[1].split("-")[0]
    (files / "v5.10" / "ParaView-5.11.0-osmesa-Linux-x86_64.tar.gz").write_bytes(b"not it")
    listing = "\n".join([
        f"v5.9/ParaView-5.9.1-MPI-Linux-Python{tag}-x86_64.tar.gz 123",
        f"v5.10/ParaView-5.10.1-MPI-Linux-Python{tag}-x86_64.tar.gz 456",
        "v5.10/ParaView-5.11.0-osmesa-Linux-x86_64.tar.gz 789",
        "v5.10/md5sum.txt 1",
    ])
    (files / "listing.txt").write_text(listing + "\n")
    config = tmp_path / "pvw.toml"
    write_config(config, "unused", tmp_path / "root")
    text = config.read_text().replace('url = "unused"', (
        f'listing = "{http_server.url("files/listing.txt")}"\n'
        "pattern = 'ParaView-(?P<version>[0-9.]+)-MPI-Linux-Python3\\.[0-9]+-x86_64\\.tar\\.gz$'"))
    config.write_text(text)

    result = run_doit(config, *INSTALL)
    assert result.returncode == 0, result.output
    assert json.loads((tmp_path / "root" / "www" / "hash.json").read_text())["version"] == "5.10.1"


def test_xz_release_installs(tmp_path, http_server):
    release = build_release(http_server.root, name=f"ParaView-5.13.0-MPI-Linux-Python{demo.PYTHON_TAG}-x86_64.tar.xz")
    config = write_config(tmp_path / "pvw.toml", http_server.url(release.name), tmp_path / "root")
    result = run_doit(config, *INSTALL)
    assert result.returncode == 0, result.output
    assert (tmp_path / "root" / "autodeploy" / "paraview" / "bin" / "pvpython").exists()


def test_plain_path_source_relative_to_config_folder(tmp_path):
    (tmp_path / "releases").mkdir()
    release = build_release(tmp_path / "releases")
    config = write_config(tmp_path / "pvw.toml", f"releases/{release.name}", Path("deploy"))
    result = run_doit(config, *INSTALL)
    assert result.returncode == 0, result.output
    assert (tmp_path / "deploy" / "www" / "hash.json").is_file()
    again = run_doit(config, *INSTALL)
    assert skipped(again, "download"), again.stdout


def _hostile(path: Path, kind: str) -> Path:
    top = "ParaView-6.6.6-MPI-Linux-Python3.11-x86_64"
    members = {
        "dotdot": [(f"{top}/../../escaped.txt", "file")],
        "absolute": [("/tmp/pvwtasks-absolute-escape.txt", "file")],
        "symlink": [(f"{top}/lib", "sym", "../../../../../../etc")],
        "symlink_then_write": [(f"{top}/evil", "sym", "/tmp"), (f"{top}/evil/pvwtasks-through-link.txt", "file")],
        "hardlink": [(f"{top}/passwd", "hard", "/etc/passwd")],
        "hardlink_dotdot": [(f"{top}/passwd", "hard", "../../etc/passwd")],
        "device": [(f"{top}/null", "chr")],
    }[kind]
    return build_tar(path, [(f"{top}/bin/pvpython", "file", b"#!/bin/sh\n", 0o755)] + members)


@pytest.mark.parametrize("kind, reason", [
    ("dotdot", "contains '..'"),
    ("absolute", "has an absolute path"),
    ("symlink", "outside the tree"),
    ("symlink_then_write", "outside the tree"),
    ("hardlink", "outside the tree"),
    ("hardlink_dotdot", "outside the tree"),
    ("device", "is a special file"),
])
def test_hostile_tarball_is_rejected_and_tree_unchanged(deployment, kind, reason):
    server, root, config = deployment["server"], deployment["root"], deployment["config"]
    name = deployment["release"].name
    assert run_doit(config, *INSTALL).returncode == 0
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".pvwtasks" not in p.parts
                    and "downloads" not in p.parts)
    live = live_target(root)

    _hostile(server.root / name, kind)
    result = run_doit(config, *INSTALL)

    assert result.returncode != 0
    assert "ERROR: install:" in result.stderr and reason in result.stderr
    assert live_target(root) == live
    after = sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".pvwtasks" not in p.parts
                   and "downloads" not in p.parts)
    assert after == before
    assert not Path("/tmp/pvwtasks-absolute-escape.txt").exists()
    assert not Path("/tmp/pvwtasks-through-link.txt").exists()
    assert not (root.parent / "escaped.txt").exists()


def _archive(path: Path, files: dict[str, bytes]) -> Path:
    return build_tar(path, [(name, "file", data) for name, data in files.items()])


def test_docs_and_data_archives_are_extracted_beside_the_release(tmp_path, http_server):
    release = build_release(http_server.root)
    _archive(http_server.root / "docs.tar.gz", {"ParaViewWeb-docs/index.html": b"<h1>docs</h1>"})
    _archive(http_server.root / "data.tar.gz", {"data/can.ex2": b"mesh"})
    config = write_config(tmp_path / "pvw.toml", http_server.url(release.name), tmp_path / "root",
                          source_extra=f'docs_url = "{http_server.url("docs.tar.gz")}"\n'
                                       f'data_url = "{http_server.url("data.tar.gz")}"')
    result = run_doit(config, "extras")
    assert result.returncode == 0, result.output
    assert ".  extras:docs" in result.stdout and ".  extras:data" in result.stdout, result.output
    autodeploy = tmp_path / "root" / "autodeploy"
    assert (autodeploy / "docs" / "ParaViewWeb-docs" / "index.html").read_bytes() == b"<h1>docs</h1>"
    assert (autodeploy / "data" / "data" / "can.ex2").read_bytes() == b"mesh"

    again = run_doit(config, "extras")
    assert "-- extras:docs" in again.stdout and "-- extras:data" in again.stdout

    _archive(http_server.root / "docs.tar.gz", {"ParaViewWeb-docs/index.html": b"<h1>new docs</h1>"})
    os.utime(http_server.root / "docs.tar.gz", (2e9, 2e9))
    third = run_doit(config, "extras")
    assert ".  extras:docs" in third.stdout and "-- extras:data" in third.stdout
    assert (autodeploy / "docs" / "ParaViewWeb-docs" / "index.html").read_bytes() == b"<h1>new docs</h1>"
    assert len(list(autodeploy.glob("docs-*"))) == 1


def test_rerun_after_losing_doit_state_post_publish_succeeds(deployment):
    """kill -9 after verify published the archive, before doit saved its state: every step reruns."""
    root, config = deployment["root"], deployment["config"]
    assert run_doit(config, *INSTALL).returncode == 0
    record_path = root / "autodeploy" / "downloads" / "download.json"
    record = json.loads(record_path.read_text())
    record["path"] = str(root / "autodeploy" / "downloads" / f"{record['filename']}.part")
    record_path.write_text(json.dumps(record))
    (root / ".pvwtasks" / "doit-deps.sqlite3").unlink()

    stale_link = root / "autodeploy" / ".paraview.99999.link"  # a switch killed before its os.replace
    stale_link.symlink_to("versions/nowhere")

    result = run_doit(config, *INSTALL)
    assert result.returncode == 0, result.output
    assert ran(result, "verify") and ran(result, "install")
    assert not stale_link.is_symlink()
    assert (root / "autodeploy" / "downloads" / record["filename"]).is_file()
