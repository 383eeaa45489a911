"""Files that only their owner may touch: the state directory and what syncd keeps in it.

The state directory holds the audit trail, the cache that plans trust, the
memo of desired-state files already found valid and the git mirror: whoever
can write there can choose what a plan shows or rewrite history, and a link
planted there can turn syncd's own writes against any file its user may
write. So, as ssh's StrictModes does for ~/.ssh:

- a directory is created 0700, and an existing one is used only if it belongs
  to the running user and is not writable by group or others. The state
  directory itself may be a symbolic link to such a directory (systemd's
  `DynamicUser=` makes /var/lib/syncd one); the directories inside it may not,
  nor may the state directory when it lies in a directory that others may
  write (a Kubernetes emptyDir is root's, 0777 or 2777; /tmp is 1777): anyone
  could have planted the link there;
- a file is created 0600 and opened with O_NOFOLLOW: a symbolic link is
  refused, never followed (a `syncd.lock` link would truncate its target, a
  dangling `syncd.db` link create the database wherever it points). An
  existing file is used only if it is a regular file that belongs to the
  running user and is not writable by group or others;
- what group or others may only read (a directory made 0755 by hand, a
  database copied in as 0644) is made private, 0700 or 0600, with a warning
  that names it: it is syncd's own, it holds the audit trail and every
  address, and nothing of syncd's is shared through these modes (`syncd
  status` reads as the service's user or as root, a standby through
  PostgreSQL). What others may write is refused instead: they may have
  changed it already.

Once the directory is known to be private, nobody else can swap what is in
it between a check and the open that follows. (In a parent that others may
write and that is not sticky, they could still rename the directory itself
away and put another in its place: give syncd a volume of its own, as the
Kubernetes manifests do, which only its pod's containers write.) A refusal is a StateError of
one line that names the path and the reason.

Shared by the layers that keep files there (syncd.state, syncd.desired,
syncd.engine), so it sits at the top beside syncd.errors. It imports nothing
else of syncd.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

import structlog

from syncd.errors import StateError

log = structlog.get_logger("syncd.privatefiles")

#: Permission bits that let someone else change a file or a directory's entries.
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
#: Permission bits of group and others: none stays on what syncd keeps.
_OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO
#: The flags of every open of a private file. O_NONBLOCK: a FIFO planted in
#: place of a file must be refused, not wait for a writer.
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def private_directory(path: Path, *, create: bool = True, follow: bool = True) -> None:
    """Make sure `path` is a directory only its owner, the running user, can change.

    Created 0700 when missing (its missing parents as the umask says) unless
    not `create`, when a missing directory raises FileNotFoundError and
    another kind of file NotADirectoryError. With `follow` False, or in a
    parent that others may write, the directory must not be a symbolic link
    itself.
    """
    try:
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(path) if follow and not _open_to_others(path.parent) else os.lstat(path)
    except FileNotFoundError:
        if create:
            raise StateError(f"cannot create the directory {path}: no such directory") from None
        raise
    except FileExistsError:  # mkdir's word for another kind of file there
        raise StateError(f"{path} is not a directory") from None
    except OSError as error:
        raise StateError(f"cannot use the directory {path}: {error.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise StateError(_link_refused(path))
    if not stat.S_ISDIR(info.st_mode):
        if not create:  # as good as missing, for a caller that only reads
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
        raise StateError(f"{path} is not a directory")
    _check_owner_and_mode(path, info, "directory")
    _make_private(path, info, path)


def private_file(path: Path, *, create: bool = True) -> None:
    """Make sure `path` is a regular file only its owner, the running user, can change.

    For files that another library opens by name (SQLite's database and its
    -wal and -shm files): nothing is opened here, since closing a descriptor
    would drop the POSIX locks that a connection of this process holds on the
    file. Created empty with mode 0600 when missing and `create`; else a
    missing file raises FileNotFoundError. The directory must be private
    already (private_directory), so that the file checked is the file opened.
    """
    try:
        if create:
            # O_EXCL: a link that is there, even dangling, is not followed but refused below.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600))
        info = os.lstat(path)
    except FileNotFoundError:
        if create:
            raise StateError(f"cannot create {path}: no such directory") from None
        raise
    except OSError as error:
        raise StateError(f"cannot use {path}: {error.strerror}") from None
    _check_file(path, info)
    # By name: the directory is private, so the file checked is the file changed.
    _make_private(path, info, path)


def open_private(path: Path, flags: int, *, create: bool = True) -> int:
    """A descriptor on a file only its owner can change; created 0600 when missing.

    Without `create`, a missing file raises FileNotFoundError. The directory
    must be private already (private_directory).
    """
    try:
        descriptor = os.open(path, flags | _OPEN_FLAGS | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        if create:
            raise StateError(f"cannot create {path}: no such directory") from None
        raise
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StateError(_link_refused(path)) from None
        raise StateError(f"cannot open {path}: {error.strerror}") from None
    try:
        info = os.fstat(descriptor)
        _check_file(path, info)
        _make_private(path, info, descriptor)
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _open_to_others(directory: Path) -> bool:
    """Whether someone else may put a link of their own in `directory`: writable
    by group or others. Sticky or not: /tmp's sticky bit keeps others from
    renaming what is ours, not from planting a link before we come."""
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return False  # the check that follows names what is wrong with the path
    return bool(mode & _WRITABLE_BY_OTHERS)


def _check_file(path: Path, info: os.stat_result) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise StateError(_link_refused(path))
    if not stat.S_ISREG(info.st_mode):
        raise StateError(f"{path} is not a regular file: refused")
    _check_owner_and_mode(path, info, "file")


def _check_owner_and_mode(path: Path, info: os.stat_result, kind: str) -> None:
    user = os.geteuid()
    if info.st_uid != user:
        raise StateError(
            f"{path} belongs to uid {info.st_uid}, not to the user running syncd "
            f"(uid {user}): refused"
        )
    if info.st_mode & _WRITABLE_BY_OTHERS:
        mode = stat.S_IMODE(info.st_mode)
        fix = "700" if kind == "directory" else "600"
        raise StateError(
            f"{path} is writable by group or others (mode {mode:04o}): refused; "
            f"chmod {fix} it if nobody else changed it"
        )


def _make_private(path: Path, info: os.stat_result, file: Path | int) -> None:
    """Take group's and others' bits off `file` (a path or a descriptor), saying so."""
    mode = stat.S_IMODE(info.st_mode)
    if not mode & _OPEN_BITS:
        return
    private = mode & ~_OPEN_BITS
    try:
        os.chmod(file, private)
    except OSError as error:  # a read-only file system: nobody writes, and we said it
        log.warning(
            "state_readable_by_others",
            path=str(path),
            mode=f"{mode:04o}",
            error=f"cannot chmod {private:04o}: {error.strerror}",
        )
        return
    log.warning(
        "state_made_private",
        path=str(path),
        mode=f"{private:04o}",
        was=f"{mode:04o}",
        reason="group or others could read it",
    )


def _link_refused(path: Path) -> str:
    return f"{path} is a symbolic link: refused (syncd does not follow links here)"
