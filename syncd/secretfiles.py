"""Reading a secret from a file, checked as ssh checks a private key.

A credential file that others may read is a secret already shared, and one
that is not a regular file is no credential at all: a FIFO would hang the run,
/dev/zero fill the memory, a link send whatever file it points to as a
password. So a secret (a user's token or password, the fallback token, the git
credential) is read only from

- a regular file of at most MAX_SECRET_BYTES,
- that belongs to the running user or to root,
- that neither its group nor others may read. An access control list counts:
  systemd grants a service's user read access to its credentials with one, and
  then the group bits of the mode show the list's mask, not what a group may do,
- and that is not a symbolic link, unless every link on the way to the file
  belongs to the running user or to root, the file lies inside the credentials
  directory that holds the link, and every directory looked in on the way is
  checked as the credentials directory is (the links a Kubernetes Secret's
  volume is made of, `token -> ..data/token`, `..data -> ..2026_…/`, all
  root's, pass; a link through a directory others may write does not: they
  could point it at another user's file).

A file read with its credentials directory is read only if nobody else may
change that directory, as ssh's StrictModes asks of ~/.ssh: it belongs to the
running user or to root, and neither its group nor others may write it.
Whoever may write there can swap one user's credential for another's (a link
named `bob.token` to `jane.password` sends Jane's password as Bob's token).
A read-only mount changes nothing: a read-only bind of a directory others
may write is read-only only where it is mounted, and they swap the files at
its source. So a Kubernetes volume (an emptyDir is 2777 with fsGroup, a
Secret's volume 1777) is refused as it is: copy the files into a 0700
directory of your own in it, as deploy/kubernetes does.

An empty file is refused too: a file named for a secret says which one the
operator meant, so neither a fallback nor an empty secret may stand in for it.

A refusal is a CredentialError that names the file (or the directory) and the
reason, never what is in it. Shared by syncd.api (the accounts' credentials)
and syncd.desired (the git credential), so it sits at the top beside
syncd.errors.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

from syncd.errors import CredentialError, SettingsError

#: Largest credential file read: a token or a password is a line, not a file.
MAX_SECRET_BYTES = 64 * 1024

_READ = 4
# The POSIX ACL as Linux stores it in the system.posix_acl_access attribute:
# a version, then (tag, permissions, id) for each entry.
_ACL_ATTRIBUTE = "system.posix_acl_access"
_ACL_HEADER = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = 0x02, 0x04, 0x08, 0x10, 0x20


class _Refused(Exception):
    """Why a file may not hold a secret, as a clause: "it is a symbolic link"."""


class _Unreadable(Exception):
    """Why a file could not be read, as a clause: the system's words."""


def read_secret_file(
    path: str | os.PathLike[str],
    directory: Path | None = None,
    *,
    what: str = "credential",
    refused_then: str = "nothing was sent with it",
) -> str:
    """The secret in `path`, stripped; `directory` is the credentials directory that holds it.

    Raises CredentialError when the file is refused or cannot be read, naming it
    as `what` ("UI token file"), and for a refusal saying `refused_then` (what
    came of it) after the reason, if anything.
    """
    shown = os.fspath(path)
    try:
        return _read_secret(shown, directory)
    except _Refused as reason:
        then = f"; {refused_then}" if refused_then else ""
        raise CredentialError(f"{what} {shown} refused: {reason}{then}") from None
    except _Unreadable as cause:
        raise CredentialError(f"cannot read {what} {shown}: {cause}") from None


def check_credentials_directory(directory: str | os.PathLike[str]) -> None:
    """Refuse, as a CredentialError of one line, a credentials directory that someone
    but the running user or root may change (a SettingsError: one that is not there)."""
    shown = os.fspath(directory)
    if not os.path.isdir(shown):
        raise SettingsError(f"credentials directory {shown}: no such directory")
    try:
        problem = _directory_problem(shown)
    except OSError as error:
        raise CredentialError(
            f"cannot read credentials directory {shown}: {error.strerror}"
        ) from None
    if problem is not None:
        raise CredentialError(f"credentials directory {shown} refused: {problem}")


def _directory_problem(directory: str) -> str | None:
    """Why nobody should trust what is in `directory`, as a clause; None: nothing."""
    info = os.stat(directory)
    if info.st_uid not in (os.geteuid(), 0):
        return (
            f"it belongs to uid {info.st_uid}, neither the running user nor root, who may "
            "swap any credential in it; chown it to one of them"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        return (
            f"group or others may write it (mode {mode:04o}), and so swap any credential "
            f"in it; chmod go-w {directory}"
        )
    return None


def _read_secret(path: str, directory: Path | None) -> str:
    if directory is not None:
        try:
            problem = _directory_problem(os.fspath(directory))
        except OSError as error:
            raise _Unreadable(f"credentials directory {directory}: {error.strerror}") from None
        if problem is not None:
            raise _Refused(f"its credentials directory {directory} is refused: {problem}")
    target = _target(path, directory)
    try:
        descriptor = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _Refused("it is a symbolic link") from None
        raise _Unreadable(error.strerror) from None
    try:
        _check(descriptor)
        with open(descriptor, "rb", closefd=False) as file:  # read() loops to the limit or EOF
            content = file.read(MAX_SECRET_BYTES + 1)
    except OSError as error:
        raise _Unreadable(error.strerror) from None
    finally:
        os.close(descriptor)
    if len(content) > MAX_SECRET_BYTES:  # it grew after fstat
        raise _Refused(f"it is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        secret = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _Unreadable("not UTF-8 text") from None
    if not secret:  # a copy cut short, an unset variable printed: never "no secret"
        raise _Refused("it is empty (nothing but white space)")
    return secret


def _target(path: str, directory: Path | None) -> str:
    """What to open: the file itself, or where a link inside the directory leads."""
    try:
        info = os.lstat(path)
    except OSError as error:
        raise _Unreadable(error.strerror) from None
    if not stat.S_ISLNK(info.st_mode):
        return path
    if directory is None:
        raise _Refused("it is a symbolic link")
    root = os.path.realpath(directory)
    resolved, looked_in = _follow(
        os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path)
    )
    if os.path.commonpath([resolved, root]) != root or resolved == root:
        raise _Refused("it is a symbolic link to a file outside the credentials directory")
    for passed in looked_in:
        try:
            problem = _directory_problem(passed)
        except OSError as error:
            raise _Unreadable(f"{passed}: {error.strerror}") from None
        if problem is not None:
            raise _Refused(f"it is a symbolic link through {passed}, which is refused: {problem}")
    return resolved


#: Links followed for one file before it counts as a loop, as Linux's MAXSYMLINKS.
_MAX_LINKS = 40


def _follow(start: str, name: str) -> tuple[str, list[str]]:
    """Where `name` in the directory `start` leads, one link at a time, and the
    directories looked in on the way (the one that holds the file last).

    Not realpath: each link is someone's word for where the secret is, so each
    must be ours or root's; and the caller checks each directory looked in as it
    checks the credentials directory, else whoever may write one points a link
    in it at another user's file.
    """
    resolved, pending, followed = start, [name], 0
    looked_in: list[str] = []
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            resolved = os.path.dirname(resolved)
            continue
        if resolved not in looked_in:
            looked_in.append(resolved)
        candidate = os.path.join(resolved, part)
        try:
            info = os.lstat(candidate)
        except OSError as error:
            raise _Unreadable(f"{candidate}: {error.strerror}") from None
        if not stat.S_ISLNK(info.st_mode):
            resolved = candidate
            continue
        if info.st_uid not in (os.geteuid(), 0):  # someone else's word for where it is
            which = "it is" if followed == 0 else f"{candidate}, on the way, is"
            raise _Refused(
                f"{which} a symbolic link that belongs to uid {info.st_uid}, "
                "neither the running user nor root"
            )
        followed += 1
        if followed > _MAX_LINKS:
            raise _Refused("it is a loop of symbolic links")
        link = os.readlink(candidate)
        if os.path.isabs(link):
            resolved = "/"
        pending.extend(reversed(link.split("/")))
    return resolved, looked_in


def _check(descriptor: int) -> None:
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        raise _Refused("it is not a regular file")
    if info.st_size > MAX_SECRET_BYTES:
        raise _Refused(f"it is larger than {MAX_SECRET_BYTES // 1024} KiB")
    user = os.geteuid()
    if info.st_uid not in (user, 0):
        raise _Refused(f"it belongs to uid {info.st_uid}, neither the running user nor root")
    if _readable_by_others(descriptor, info, user):
        mode = stat.S_IMODE(info.st_mode)
        raise _Refused(f"group or others may read it (mode {mode:04o}); chmod 600 it")


def shared_mode(path: str | os.PathLike[str]) -> int | None:
    """The mode of the file at `path` when anyone but its owner and the running user
    may read it (its mode or an ACL says so), else None.

    For a file read for more than a secret, when it holds one: a settings file.
    """
    info = os.stat(path)
    if _readable_by_others(os.fspath(path), info, os.geteuid()):
        return stat.S_IMODE(info.st_mode)
    return None


def _readable_by_others(file: int | str, info: os.stat_result, user: int) -> bool:
    """Whether anyone but the owner and `user` may read the file (a descriptor or a path)."""
    if info.st_mode & stat.S_IROTH:
        return True
    if not info.st_mode & stat.S_IRGRP:
        return False
    # The group bits are the ACL's mask when the file has one: who does it let read?
    try:
        acl = os.getxattr(file, _ACL_ATTRIBUTE)
    except OSError:
        return True  # no ACL: the group may read it
    entries = [
        _ACL_ENTRY.unpack_from(acl, offset)
        for offset in range(_ACL_HEADER.size, len(acl) - _ACL_ENTRY.size + 1, _ACL_ENTRY.size)
    ]
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), 7)
    for tag, perm, who in entries:
        granted = perm & mask & _READ
        if tag in (_ACL_GROUP_OBJ, _ACL_GROUP) and granted:
            return True
        if tag == _ACL_USER and granted and who != user:
            return True
        if tag == _ACL_OTHER and perm & _READ:
            return True
    return False
