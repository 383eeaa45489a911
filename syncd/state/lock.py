"""One writer per state directory (`syncd run` or `syncd apply`): an flock on `syncd.state.lock`,
and one write at a time: an flock on `syncd.write.lock`, taken for each cycle or apply.

Two daemons on one state directory would apply the same plan twice and
interleave their audit trails. The kernel releases an flock when its holder
dies, even by kill -9, so a stale lock file never blocks a restart; the pid
written inside only serves to name the holder in the refusal.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from syncd.errors import DaemonError
from syncd.privatefiles import open_private, private_directory
from syncd.state.backend import LockHeld, refusal_way_on

LOCK_NAME = "syncd.state.lock"
#: The writers' lock: `apply`, and the daemon during each cycle only, so that an
#: `apply --lock-timeout` can write between two cycles of a daemon that keeps
#: LOCK_NAME for its life.
WRITE_LOCK_NAME = "syncd.write.lock"


class InstanceLock(LockHeld):
    """The held lock; released by `release()` or when the process ends."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            # Closing drops the flock; the file stays, empty of meaning without it.
            os.close(self._descriptor)
            self._descriptor = None


def acquire(state_dir: Path, purpose: str = "run") -> InstanceLock:
    """Take the state directory for this process, or raise DaemonError naming the holder
    (and, to an `apply`, the way on)."""
    path = state_dir / LOCK_NAME
    private_directory(state_dir)
    # Never through a link: a `syncd.state.lock` link would be truncated below.
    descriptor = open_private(path, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(descriptor)
        os.close(descriptor)
        holder = f"pid {pid}" if pid else "another process"
        raise DaemonError(
            f"another syncd ({holder}) holds {path}: one run or apply per state directory"
            f" ({purpose} refused){refusal_way_on(purpose)}"
        ) from None
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    except OSError as error:  # a full disk: the lock is held, but cannot say by whom
        os.close(descriptor)
        raise DaemonError(f"cannot write the lock file {path}: {error.strerror}") from None
    return InstanceLock(path, descriptor)


def try_write_lock(state_dir: Path) -> InstanceLock | None:
    """The writers' lock of the state directory, or None while another writer holds it."""
    private_directory(state_dir)
    descriptor = open_private(state_dir / WRITE_LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return InstanceLock(state_dir / WRITE_LOCK_NAME, descriptor)


def holder(state_dir: Path) -> int | None:
    """The pid of the running `syncd run` of this state directory (0: unreadable), or None."""
    path = state_dir / LOCK_NAME
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # also a link: whatever it points to, it is no lock of ours
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(descriptor) or 0
    finally:
        os.close(descriptor)  # also drops the shared lock if it was granted
    return None


def _read_pid(descriptor: int) -> int | None:
    text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
