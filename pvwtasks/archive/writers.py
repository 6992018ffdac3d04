"""Writer threads: creating many small files costs the kernel far more than parsing them."""

from __future__ import annotations

import os
import queue
import threading

COPY_CHUNK = 1 << 20
ASYNC_MAX_FILE = 4 << 20  # bigger files are written by the parsing thread itself
WRITE_BUDGET = 32 << 20  # bytes queued for the writer threads at most (about two folders of ParaView files)
_JOB_COST = 1024  # bookkeeping per queued file, so many empty files stay bounded too
# Files of one folder always go to the same writer: creations in one folder serialize on
# its lock in the kernel, and threads fighting for it burned more sys time than they saved.
WRITERS = 4
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class WriteFailed(Exception):
    """A writer thread could not write a member: ``name`` is the member, ``cause`` the error."""

    def __init__(self, name: str, cause: Exception) -> None:
        super().__init__(name, cause)
        self.name, self.cause = name, cause


class Writers:
    """Threads that create small regular files; a file's failure comes back as WriteFailed."""

    def __init__(self, count: int = WRITERS) -> None:
        self._queues: list[queue.Queue] = [queue.Queue() for _ in range(count)]  # one per writer
        self._writer_of: dict[str, int] = {}
        self._cond = threading.Condition()
        self._pending = 0  # jobs queued or running
        self._bytes = 0
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._run, args=(self._queues[n],), name=f"extract-writer-{n}",
                                          daemon=True) for n in range(count)]
        for thread in self._threads:
            thread.start()

    def submit(self, name: str, path: str, data: bytes, mode: int, mtime: float) -> None:
        """Queue member ``name`` for writing at ``path`` (blocks while WRITE_BUDGET bytes are queued)."""
        cost = len(data) + _JOB_COST
        with self._cond:
            while self._pending and self._bytes + cost > WRITE_BUDGET and self._error is None:
                self._cond.wait()
            self._raise()
            self._pending += 1
            self._bytes += cost
        folder = os.path.dirname(path)
        writer = self._writer_of.get(folder)
        if writer is None:  # folders in archive order take turns: neighbours write in parallel
            writer = self._writer_of[folder] = len(self._writer_of) % len(self._queues)
        self._queues[writer].put((name, path, data, mode, mtime, cost))

    def _run(self, jobs: queue.Queue) -> None:
        while (job := jobs.get()) is not None:
            name, path, data, mode, mtime, cost = job
            try:
                if self._error is None:
                    write_file(path, data, mode, mtime)
            except BaseException as err:  # noqa: BLE001 - handed to the parsing thread
                with self._cond:
                    if self._error is None:
                        self._error = WriteFailed(name, err) if isinstance(err, Exception) else err
            finally:
                with self._cond:
                    self._pending -= 1
                    self._bytes -= cost
                    self._cond.notify_all()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def barrier(self) -> None:
        """Wait until every queued file is written; raise the first writer error."""
        with self._cond:
            while self._pending:
                self._cond.wait()
            self._raise()

    def cancel(self, reason: BaseException) -> None:
        """Skip the files still queued (the caller discards the tree)."""
        with self._cond:
            self._error = self._error or reason

    def close(self) -> None:
        """Stop the threads (after the queued jobs; a failure skips them)."""
        for number in range(len(self._threads)):
            self._queues[number].put(None)
        for thread in self._threads:
            thread.join()


def write_file(path: str, data: bytes, mode: int, mtime: float) -> None:
    """Create ``path`` (never through a symlink, never over an existing file) holding ``data``."""
    fd = os.open(path, WRITE_FLAGS, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        if mtime:
            os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)
