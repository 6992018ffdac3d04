"""The rules a member must pass before anything is written for it.

At least as strict as ``tarfile``'s ``filter="data"`` (which every member
that takes the slow path also goes through), plus rules of ours:

- names: no absolute names, no ``..`` component, no NUL byte, at most
  MAX_DEPTH parts (also where a member lands through a symlink);
- kinds: regular files, folders, symlinks and hard links only (no devices,
  fifos or sparse files);
- confinement: everything a member's path, a symlink's target or a hard
  link's source reaches, following the links already on disk, stays inside
  the member's *top folder* at every step.  Only the top folder is kept
  (``install`` renames it into ``versions/``), so ``top/lib/up -> ../..``
  is refused although it points inside the extraction folder.  Missing
  parts are walked lexically, as the kernel will walk them once a later
  member (or program) creates them as folders (CVE-2025-4138);
- after the last member, every symlink is judged again by its target
  (a later member can retarget a link another one goes through).

Every refusal is an :class:`UnsafeArchive` that names the member and the
rule it broke.  Resolution is iterative (no recursion, whatever the depth)
and follows at most MAX_SYMLINKS links, like the kernel.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from pathlib import PurePosixPath

from ..errors import InstallError, PvwError, UnsafeArchive

MAX_SYMLINKS = 40  # links the kernel follows in one lookup before failing with ELOOP
# Folders a member may lie below (ParaView's deepest is about 15).  Deeper trees break tools that
# recurse per level, shutil.rmtree among them, which every cleanup of ours relies on.
MAX_DEPTH = 128


def refused(name: str, rule: str) -> UnsafeArchive:
    """The error for member ``name`` breaking ``rule``."""
    return UnsafeArchive(f"member {name!r} refused: {rule}")


def checked_name(member: tarfile.TarInfo) -> str:
    """The member's name, normalised (no ``.``, no empty parts); raise UnsafeArchive on a bad name or kind."""
    raw = member.name
    if "\x00" in raw:
        raise refused(raw, "its name holds a NUL byte")
    if raw.startswith("/") or PurePosixPath(raw).is_absolute():
        raise refused(raw, "it has an absolute path")
    parts = [p for p in raw.split("/") if p not in (".", "")]
    if ".." in parts:
        raise refused(raw, "its name contains '..'")
    name = "/".join(parts)
    if len(parts) > MAX_DEPTH:
        raise refused(raw, f"its name is {len(parts)} parts deep; at most {MAX_DEPTH} are allowed")
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hard link"
        target = member.linkname
        if "\x00" in target:
            raise refused(raw, f"the {kind}'s target holds a NUL byte")
        if not target:
            raise refused(raw, f"the {kind} has an empty target")
        if target.startswith("/"):
            raise refused(raw, f"{kind} to the absolute path {target!r}, outside the tree")
        if member.islnk() and ".." in PurePosixPath(target).parts:
            raise refused(raw, f"hard link to {target!r}, which contains '..' (outside the tree)")
    elif member.ischr() or member.isblk() or member.isfifo():
        raise refused(raw, "it is a special file (device or fifo); releases hold only files, folders and links")
    elif member.issparse():  # written out in full, a tiny archive could fill the disk
        raise refused(raw, "it is a sparse file; releases have none")
    elif not (member.isreg() or member.isdir()):
        raise refused(raw, f"it is of tar type {member.type!r}, not a file, folder or link")
    return name


def data_mode(mode: int | None) -> int | None:
    """The mode ``tarfile.data_filter`` gives a regular file (see ``_get_filtered_attrs``)."""
    if mode is None:
        return None
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


class _Left(Exception):
    """A walk left its top folder, at ``where``."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class _Loop(Exception):
    """More than MAX_SYMLINKS links on the way: the kernel refuses the path (ELOOP)."""


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def walk(dest: str, rel: str, root: str, follow_last: bool = True) -> str:
    """Where ``dest/rel`` leads, following the symlinks on disk; raise _Left if a step leaves ``root``.

    ``dest`` must be a real path (no symlink in it) and ``rel`` starts with
    the top folder (``root`` is ``dest/<top>``).  Once a part is missing
    the rest is walked lexically (``..`` undoes a missing part; leaving the
    missing parts again resumes following links), which is what the kernel
    does once the missing parts exist as folders.  Raises _Loop past
    MAX_SYMLINKS links and OSError when the filesystem refuses an lstat
    (a path too long).
    """
    current = dest
    pending = rel.split("/")
    pending.reverse()  # a stack: the next part is last
    missing = 0  # parts appended lexically since the last one that exists
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            missing = max(0, missing - 1)
            current = os.path.dirname(current)
        elif missing:
            current = f"{current}/{part}"
            missing += 1
        else:
            candidate = f"{current}/{part}" if current != "/" else f"/{part}"
            try:
                info = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                current, missing = candidate, 1
            else:
                if stat.S_ISLNK(info.st_mode) and (pending or follow_last):
                    hops += 1
                    if hops > MAX_SYMLINKS:
                        raise _Loop()
                    target = os.readlink(candidate)
                    if target.startswith("/"):
                        raise _Left(target)
                    pending.extend(reversed(target.split("/")))
                    continue  # the link's parts are walked from its own folder, ``current``
                current = candidate
        if not _within(current, root):
            raise _Left(current)
    return current


class Rules:
    """The confinement rules for one extraction into the real folder ``dest``."""

    def __init__(self, dest: str) -> None:
        self.dest = dest

    def _shown(self, path: str) -> str:
        return os.path.relpath(path, self.dest) if _within(path, self.dest) else path

    def landing(self, name: str, rel: str, what: str, follow_last: bool = True) -> str:
        """Where ``rel`` (relative to dest) leads; UnsafeArchive naming ``name`` if it leaves its top folder.

        ``what`` says what is walked ("its path", "the symlink to 'x'"),
        for the message.  A path through a link loop is judged as written:
        the kernel will not follow it either.
        """
        top = name.split("/", 1)[0]
        root = f"{self.dest}/{top}"
        try:
            return walk(self.dest, rel, root, follow_last)
        except _Left as left:
            raise refused(name, f"{what} leaves its top folder {top!r}, outside the tree "
                                f"(it reaches {self._shown(left.where)!r})") from None
        except _Loop:
            path = os.path.normpath(os.path.join(self.dest, rel))
            if not _within(path, root):
                raise refused(name, f"{what} leaves its top folder {top!r}, outside the tree") from None
            return path
        except OSError as err:
            raise refused(name, f"{what} cannot be resolved safely ({err.strerror})") from None

    def check_symlink(self, name: str, linkname: str) -> None:
        """Refuse the symlink ``name -> linkname`` unless its target, from its own folder, stays in its top folder."""
        parent = name.rpartition("/")[0]
        self.landing(name, f"{parent}/{linkname}" if parent else linkname, f"the symlink to {linkname!r}")

    def check_member(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        """Check a member about to be written at ``dest/member.name`` with everything on disk now.

        Returns the member as ``tarfile.data_filter`` leaves it (modes).
        """
        name = member.name
        # A file or a link replaces whatever is at its name; a folder goes through a link there.
        landing = self.landing(name, name, "its path", follow_last=member.isdir())
        depth = landing.count("/") - self.dest.count("/")
        if depth > MAX_DEPTH:
            raise refused(name, f"it lands {depth} parts deep (through a symlink); at most {MAX_DEPTH} are allowed")
        if member.issym():
            self.check_symlink(name, member.linkname)
        elif member.islnk():
            source = self.landing(name, member.linkname, f"the hard link to {member.linkname!r}", follow_last=False)
            try:
                info = os.lstat(source)
            except OSError:
                raise refused(name, f"hard link to {member.linkname!r}, which no earlier member created") from None
            if stat.S_ISLNK(info.st_mode):  # os.link would copy the symlink's text to another folder
                raise refused(name, f"hard link to the symlink {member.linkname!r}")
            if not stat.S_ISREG(info.st_mode):
                raise refused(name, f"hard link to {member.linkname!r}, which is not a regular file")
        try:
            return tarfile.data_filter(member, self.dest)
        except tarfile.FilterError as err:
            raise refused(name, f"{err} (tarfile's data filter)") from None
        except (OSError, ValueError, RecursionError) as err:
            raise refused(name, f"tarfile's data filter cannot check it ({err})") from None

    def check_final_link(self, name: str) -> None:
        """After the last member: refuse the tree if the symlink ``name`` (if still one) now leads outside."""
        try:
            target = os.readlink(f"{self.dest}/{name}")
        except OSError:  # replaced by a later member, which was checked itself
            return
        self.check_symlink(name, target)


# What an OSError while creating a member means about the archive.  Anything else
# (a full disk, a read-only filesystem) is the machine's problem: InstallError.
_RULES = {
    errno.EEXIST: "something already exists at its name and cannot be replaced by it",
    errno.ENOENT: "a folder on its path is missing (a dangling symlink?)",
    errno.ENOTDIR: "a part of its path is not a folder",
    errno.EISDIR: "it would replace a folder",
    errno.ELOOP: "its path runs into a symlink loop",
    errno.EPERM: "the filesystem refuses to create it (a hard link to a folder?)",
    errno.EMLINK: "too many hard links to one file",
    errno.ENAMETOOLONG: "its name or path is too long",
    errno.EINVAL: "its name is not valid on this filesystem",
}


def write_error(name: str, err: Exception) -> PvwError:
    """The error for ``err`` raised while creating member ``name``: UnsafeArchive with the rule, or InstallError.

    A ValueError or OverflowError comes from a header value the system
    cannot apply (a pax mtime of ``inf``, say).
    """
    if isinstance(err, PvwError):
        return err
    if not isinstance(err, OSError):
        return refused(name, f"a header value cannot be applied ({type(err).__name__}: {err})")
    rule = _RULES.get(err.errno)
    if rule is not None:
        return refused(name, f"{rule} ({err.strerror})")
    return InstallError(f"cannot write member {name!r}: {err.strerror or err}")
