"""The users of desired-state files already found valid, kept by content.

Reading and checking a file of 10,000 users takes ~0.3 s on a small machine,
and a plan reads the same file again and again while the operator works on
their accounts. The state directory keeps the users of each file that was part
of a valid desired state, under the sha256 of its bytes, much as Python keeps
bytecode beside a module. An entry is used only if the file's bytes are the
same and so is everything that decides what those bytes mean: the source of
syncd's loader and the versions of pydantic and PyYAML (the fingerprint).
Anything else reads the file again; so does any entry that cannot be read.

An entry is JSON lines: the fingerprint and the number of users, then one
user a line, so that neither writing nor reading 100,000 users holds them
twice in memory, and an entry cut short is seen as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from functools import cache
from pathlib import Path

from syncd.desired import DesiredUser, Location

#: The modules whose code decides what a file means.
_LOADER_MODULES = ("desired.py", "fields.py", "loading.py", "yaml_compose.py", "yaml_positions.py")
#: Entries kept: one per file version, so a few branches can be switched between.
KEPT = 16


@cache
def fingerprint() -> str | None:
    """What the meaning of a file depends on besides its bytes; None if it cannot be told."""
    import pydantic
    import yaml

    digest = hashlib.sha256(f"pydantic {pydantic.VERSION} pyyaml {yaml.__version__}".encode())
    try:
        for name in _LOADER_MODULES:
            digest.update((Path(__file__).parent / name).read_bytes())
    except OSError:
        return None  # installed without sources: no way to tell a stale entry
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
            with open(self.directory / f"{sha256}.jsonl", encoding="utf-8") as lines:
                head = json.loads(next(lines, "null"))
                if not isinstance(head, dict) or head.get("fingerprint") != expected:
                    return None
                users = [_user(json.loads(line), path) for line in lines]
        except (OSError, ValueError, TypeError):
            return None
        # A file cut short at the end of a line must not lose the users after it.
        return users if len(users) == head.get("users") else None

    def keep(self, sha256: str, users: list[DesiredUser]) -> None:
        """Keep the users of a file that was part of a valid desired state.

        Best effort: the memo only saves time, so a failure to write it is ignored.
        """
        expected = fingerprint()
        if expected is None:
            return
        import tempfile

        with contextlib.suppress(OSError):
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
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

    def _prune(self) -> None:
        entries = sorted(self.directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
        for stale in entries[:-KEPT]:
            stale.unlink(missing_ok=True)


def _row(user: DesiredUser) -> list[object]:
    assert user.location is not None  # every loaded user has its place
    return [user.username, user.profile, user.emails, user.location.line, user.location.column]


def _user(row: list[object], path: str) -> DesiredUser:
    username, profile, emails, line, column = row
    if not (
        isinstance(username, str)
        and isinstance(profile, dict)
        and (emails is None or isinstance(emails, list))
        and isinstance(line, int)
        and isinstance(column, int)
    ):
        raise TypeError("not a remembered user")
    return DesiredUser(
        username,
        profile,
        None if emails is None else tuple(emails),
        Location(path, line, column),
    )
