"""The users of desired-state files already found valid, kept by content, for dry runs.

Reading and checking a file of 10,000 users takes ~0.3 s on a small machine,
and `syncd plan` reads the same file again and again while the operator works
on their accounts. The state directory keeps the users of each file that was
part of a valid desired state, under the sha256 of its bytes, much as Python
keeps bytecode beside a module. An entry is used only if the file's bytes are
the same and so is everything that decides what those bytes mean: syncd's own
code, the Python, pydantic and PyYAML versions (the fingerprint). Anything
else parses the file again; so does an entry that cannot be read.

Only a dry run (`plan` without `--out`) reads the memo. `apply` and a saved
plan always parse the file: whoever can write the state directory must not be
able to choose what is written to the accounts. Nobody else can (see
syncd.privatefiles): the memo and its entries are refused if they are links or
could have been written by another user.

An entry is JSON lines: the fingerprint and the number of users, then one
user a line, so that neither writing nor reading 100,000 users holds them
twice in memory, and an entry cut short is seen as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

from syncd.core.desired import DesiredUser, Location
from syncd.core.fields import PROFILE_FIELDS
from syncd.privatefiles import open_private, private_directory

#: Entries kept: one per file version, so a few branches can be switched between.
KEPT = 16
#: Seconds after which a temporary entry file is taken as left by a killed process.
LEFTOVER_AGE = 3600


@cache
def fingerprint() -> str | None:
    """What the meaning of a file depends on besides its bytes; None if it cannot be told."""
    import pydantic
    import yaml

    versions = f"{sys.version} pydantic {pydantic.VERSION} pyyaml {yaml.__version__}"
    digest = hashlib.sha256(versions.encode())
    # All of syncd's modules, not a list of the loader's: a list would go stale
    # the day the loader imports a new one. Reading them takes about a millisecond.
    package = Path(__file__).parents[1]
    modules = sorted(package.rglob("*.py"))
    if package / "desired" / "loading.py" not in modules:
        return None  # installed without sources: no way to tell a stale entry
    try:
        for module in modules:
            name = module.relative_to(package).as_posix()
            digest.update(name.encode() + b"\0" + module.read_bytes())
    except OSError:
        return None
    return digest.hexdigest()


class DesiredMemo:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def recall(self, sha256: str, path: str) -> list[DesiredUser] | None:
        """The users of a file with these bytes, placed in `path`; None if not kept."""
        expected = fingerprint()
        if expected is None:
            return None
        try:
            descriptor = self._open(f"{sha256}.jsonl")
            with open(descriptor, encoding="utf-8") as lines:
                head = json.loads(next(lines, "null"))
                if not isinstance(head, dict) or head.get("fingerprint") != expected:
                    return None
                users = [_user(json.loads(line), path) for line in lines]
        except (OSError, ValueError, TypeError):
            return None
        # A file cut short at the end of a line must not lose the users after it.
        if len(users) != head.get("users"):
            return None
        with contextlib.suppress(OSError):
            os.utime(self.directory / f"{sha256}.jsonl")  # used now: pruned last
        return users

    def keep(self, sha256: str, users: list[DesiredUser]) -> None:
        """Keep the users of a file that was part of a valid desired state.

        Best effort: the memo only saves time, so a failure to write it is ignored.
        """
        expected = fingerprint()
        if expected is None:
            return
        import tempfile

        try:
            self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.directory.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return
        # Unlike a directory that cannot be written, one that someone else could
        # have written is refused loudly (StateError), as in the rest of the state.
        private_directory(self.directory.parent, create=False)
        private_directory(self.directory, create=False, follow=False)
        with contextlib.suppress(OSError):
            # mkstemp makes the file 0600; os.replace shows it whole or not at all.
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            try:
                with open(descriptor, "w", encoding="utf-8") as handle:
                    head = {"fingerprint": expected, "users": len(users)}
                    handle.write(json.dumps(head) + "\n")
                    handle.writelines(json.dumps(_row(user)) + "\n" for user in users)
                os.replace(temporary, self.directory / f"{sha256}.jsonl")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
            self._prune()

    def _open(self, name: str) -> int:
        """A descriptor on an entry; FileNotFoundError when it or the memo is missing."""
        private_directory(self.directory.parent, create=False)
        private_directory(self.directory, create=False, follow=False)
        return open_private(self.directory / name, os.O_RDONLY, create=False)

    def _prune(self) -> None:
        """Keep the KEPT entries used last; drop what a write cut off by a kill left."""
        entries = sorted(self.directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
        for stale in entries[:-KEPT]:
            stale.unlink(missing_ok=True)
        # An hour old, a temporary file is no concurrent writer's: its process is gone.
        cutoff = time.time() - LEFTOVER_AGE
        for leftover in self.directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()


def _row(user: DesiredUser) -> list[Any]:
    assert user.location is not None  # every loaded user has its place
    return [user.username, user.profile, user.emails, user.location.line, user.location.column]


def _user(row: list[Any], path: str) -> DesiredUser:
    """A remembered user, checked as closely as the loader's models would check its types."""
    username, profile, emails, line, column = row
    if not (
        type(username) is str
        and type(profile) is dict
        and all(key in PROFILE_FIELDS and type(value) is str for key, value in profile.items())
        and (emails is None or (type(emails) is list and all(type(e) is str for e in emails)))
        and type(line) is int
        and type(column) is int
    ):
        raise TypeError("not a remembered user")
    return DesiredUser(
        username,
        profile,
        None if emails is None else tuple(emails),
        Location(path, line, column),
    )
