"""One extraction into a folder: the members it created, its fast and slow paths.

A regular file or folder whose parent is a folder this extraction created
itself, and whose name nothing has claimed yet, cannot resolve anywhere but
``dest/name``: for it the walks of :mod:`.safety` are skipped and the same
mode rules are applied directly (:func:`.safety.data_mode`).  Every other
member (links, duplicates, anything below a symlink) is checked against the
disk by :meth:`.safety.Rules.check_member`, after all earlier writes have
landed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from typing import Callable

from . import safety
from .safety import refused
from .tarstream import ForwardReader
from .writers import ASYNC_MAX_FILE, COPY_CHUNK, WRITE_FLAGS, WriteFailed, Writers

BLOCK = 4096  # what one folder, link or empty file costs the disk at least
_ENTRY = 64  # plus its name: what an entry costs its folder (ext4 needs 8 + the name, rounded up to 4)


class ExpansionLimitReached(Exception):
    """An extraction under a budget gave up: the archive writes more than allowed before it is verified."""


class Tree:
    """The state of one extraction into ``dest``: what it created, and its writer threads.

    Use as a context manager; :meth:`add` each member, then :meth:`finish`.
    Every failure is a PvwError naming the member.  With ``budget``, every
    member is charged what it costs the disk (its size in whole blocks, at
    least one block, and its entry in its folder), and ExpansionLimitReached stops the extraction before
    the total passes ``budget()``.
    """

    def __init__(self, dest: str, budget: Callable[[], int | None] | None = None) -> None:
        self.dest = os.path.realpath(dest)
        self.budget = budget  # the most bytes the disk may be charged now (None: no limit)
        self.charged = BLOCK  # dest itself
        self.rules = safety.Rules(self.dest)
        # Fast path only into an empty folder: then nothing exists that this extraction did not make.
        fresh = not os.listdir(self.dest)
        self.real_dirs: set[str] = {""} if fresh else set()  # folders we made, reached through folders only
        self.claimed: set[str] = {""}  # names (resolved, relative to dest) that exist because of us
        self.made_dirs: set[str] = {self.dest}
        self._tops: set[str] = set()
        self.links: list[str] = []  # every symlink made (member names), checked again at the end
        self.writers = Writers()

    def __enter__(self) -> "Tree":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._barrier()
        finally:
            if exc_type is not None:  # skip queued files: the caller discards dest
                self.writers.cancel(exc or RuntimeError("extraction stopped"))
            self.writers.close()

    def _barrier(self) -> None:
        try:
            self.writers.barrier()
        except WriteFailed as failed:
            raise safety.write_error(failed.name, failed.cause) from None

    def tops(self) -> list[str]:
        return sorted(self._tops)

    def add(self, tar: tarfile.TarFile, reader: ForwardReader, member: tarfile.TarInfo) -> None:
        """Check and create one member (raises UnsafeArchive or InstallError naming it)."""
        name = safety.checked_name(member)
        if not name:
            return
        member.name = name
        try:
            self._add(tar, reader, member, name)
        except (OSError, ValueError, OverflowError) as err:
            raise safety.write_error(name, err) from None

    def _charge(self, name: str, size: int) -> None:
        """Charge ``size`` bytes (whole blocks, at least one) for member ``name``; ExpansionLimitReached past budget."""
        self.charged += max(BLOCK, -(-size // BLOCK) * BLOCK) + _ENTRY + len(name) - name.rfind("/")
        limit = self.budget() if self.budget is not None else None
        if limit is not None and self.charged > limit:
            raise ExpansionLimitReached(
                f"member {name!r} would take the tree past {limit} bytes on disk before verification")

    def _add(self, tar: tarfile.TarFile, reader: ForwardReader, member: tarfile.TarInfo, name: str) -> None:
        self._charge(name, member.size if member.isreg() else 0)
        self._tops.add(name.split("/", 1)[0])
        parent = name.rpartition("/")[0]
        if name not in self.claimed and self._real_parent(parent):
            if member.isdir():
                os.mkdir(os.path.join(self.dest, name))
                self.real_dirs.add(name)
                self.claimed.add(name)
                return
            if member.isreg():
                self.claimed.add(name)
                self._write_regular(reader, member, os.path.join(self.dest, name))
                return
            if member.issym():
                # Nothing is (or is being written) at this name, and the target check
                # only resolves links and folders, which are never written late.
                member = self.rules.check_member(member)
                os.symlink(member.linkname, os.path.join(self.dest, name))
                self.claimed.add(name)
                self.links.append(name)
                return
        # Everything else: hard links, duplicates, names under a symlink.  The
        # checks look at the disk, so let every earlier write land first.
        self._barrier()
        member = self.rules.check_member(member)
        target = os.path.join(self.dest, name)
        self._write_member(tar, member, target)
        self._claim(target)
        if member.issym():
            self.links.append(name)

    def finish(self) -> list[str]:
        """Wait for the writers, check every symlink again; return the top-level names.

        Each link was checked when it was made, but a later member can
        replace a link that an earlier one goes through (``a -> b/../..``
        made while ``b`` pointed two folders down, then ``b -> .``).
        Nothing is written through such a link (every write is checked
        when it happens), but the tree must not keep it either.
        """
        self._barrier()
        for name in self.links:
            self.rules.check_final_link(name)
        return self.tops()

    def _real_parent(self, parent: str) -> bool:
        """True when ``parent`` is (or can be made as) a real folder of ours: no symlink on the way.

        Missing folders that nothing has claimed are created here, as
        ``makedirs`` would; an archive need not list every folder.
        """
        if parent in self.real_dirs:
            return True
        missing = []
        while parent not in self.real_dirs:
            if parent in self.claimed:  # a link, a file or a folder reached through a link
                return False
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        for folder in reversed(missing):
            self._charge(folder, 0)
            os.mkdir(os.path.join(self.dest, folder))
            self.real_dirs.add(folder)
            self.claimed.add(folder)
        return True

    def _claim(self, target: str) -> None:
        """Record where a slow-path member landed (and the folders above it) as taken."""
        resolved = os.path.join(os.path.realpath(os.path.dirname(target)), os.path.basename(target))
        rel = os.path.relpath(resolved, self.dest)
        if rel == ".." or rel.startswith("../"):
            return
        while rel and rel != "." and rel not in self.claimed:
            self.claimed.add(rel)
            rel = os.path.dirname(rel)

    def _write_regular(self, reader: ForwardReader, member: tarfile.TarInfo, target: str) -> None:
        mode = safety.data_mode(member.mode)
        mode = 0o644 if mode is None else mode
        reader.seek(member.offset_data)
        if member.size <= ASYNC_MAX_FILE:
            data = reader.read(member.size)
            if len(data) != member.size:
                raise tarfile.ReadError("unexpected end of data")
            self.writers.submit(member.name, target, data, mode, member.mtime)
            return
        fd = os.open(target, WRITE_FLAGS, mode)
        try:
            left = member.size
            while left:
                data = reader.read(min(COPY_CHUNK, left))
                if not data:
                    raise tarfile.ReadError("unexpected end of data")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                left -= len(data)
            os.fchmod(fd, mode)
            if member.mtime:
                os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def _make_dirs(self, name: str, path: str, member_is_dir: bool = False) -> None:
        """``makedirs(path)`` without recursion; UnsafeArchive if a part of it is not a folder."""
        missing = []
        folder = path
        while folder not in self.made_dirs and not os.path.isdir(folder):
            if os.path.lexists(folder):
                if folder == path and member_is_dir:
                    raise refused(name, "a file or link of the same name exists; a folder cannot replace it")
                raise refused(name, f"{os.path.relpath(folder, self.dest)!r} on its path is not a folder")
            missing.append(folder)
            folder = os.path.dirname(folder)
        for folder in reversed(missing):
            self._charge(folder, 0)
            os.mkdir(folder)
        self.made_dirs.add(path)

    def _write_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
        name = member.name
        if member.isdir():
            self._make_dirs(name, target, member_is_dir=True)
            return
        self._make_dirs(name, os.path.dirname(target))
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(info.st_mode):
                raise refused(name, "it would replace a folder of the same name")
            os.unlink(target)  # a later duplicate wins, as with tar
        if member.isreg():
            mode = member.mode if member.mode is not None else 0o644
            source = tar.extractfile(member)
            fd = os.open(target, WRITE_FLAGS, mode)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, COPY_CHUNK)
                out.flush()  # before utime, or the last buffered write stamps the file "now"
                os.fchmod(out.fileno(), mode)
                if member.mtime:
                    os.utime(out.fileno(), (member.mtime, member.mtime))
        elif member.issym():
            os.symlink(member.linkname, target)
        elif member.islnk():
            os.link(os.path.join(self.dest, member.linkname), target, follow_symlinks=False)
        else:  # checked_name already refuses every other kind
            raise refused(name, "it is not a file, folder or link")

