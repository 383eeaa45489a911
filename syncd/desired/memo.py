"""The users of desired-state files already found valid, kept by content, for dry runs.

Reading and checking the YAML is most of a warm plan of many users, and
`syncd plan` reads the same file again and again while the operator works on
their accounts. The state directory keeps the users of each file that was
part of a valid desired state, under the sha256 of its bytes, much as Python
keeps bytecode beside a module. An entry is used only if the file's bytes and
path are the same and so is everything that decides what those bytes mean:
syncd's own code, the Python, pydantic and PyYAML versions (the fingerprint).
Anything else parses the file again; so does an entry that cannot be read.

Only a dry run (`plan` without `--out`) reads the memo. `apply` and a saved
plan always parse the file: whoever can write the state directory must not be
able to choose what is written to the accounts. Nobody else can (see
syncd.privatefiles): the memo and its entries are refused if they are links or
could have been written by another user.

An entry is JSON lines: the fingerprint and the file's path, then one user a
line, so that neither writing nor reading 100,000 users holds them twice in
memory, and last the sha256 of the lines before it, so that an entry cut short
or changed is seen as such. A user is the values of the fields of
syncd.core.desired's dataclasses, nested ones included, rebuilt from their
type hints: a field added to the model needs nothing here, and changes the
fingerprint, which has the fields' names and types (`shape`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import os
import sys
import time
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from syncd.core.desired import DesiredUser
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
    digest = hashlib.sha256(f"{versions} {shape(DesiredUser)}".encode())
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
        decode = decoder(DesiredUser)
        users: list[DesiredUser] = []
        digest = hashlib.sha256()
        try:
            descriptor = self._open(f"{sha256}.jsonl")
            with open(descriptor, "rb") as lines:
                if json.loads(next(lines, b"null")) != {"fingerprint": expected, "path": path}:
                    return None  # or it was kept of a file elsewhere: its users' places differ
                last = None
                for line in lines:  # each line once the next is read: the last is the digest
                    if last is not None:
                        digest.update(last)
                        users.append(decode(json.loads(last.decode())))
                    last = line
                if last is None or json.loads(last) != {"sha256": digest.hexdigest()}:
                    return None
        except (OSError, ValueError, TypeError, KeyError):
            return None
        with contextlib.suppress(OSError):
            os.utime(self.directory / f"{sha256}.jsonl")  # used now: pruned last
        return users

    def keep(self, sha256: str, path: str, users: list[DesiredUser]) -> None:
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
                with open(descriptor, "wb") as handle:
                    handle.write(encode({"fingerprint": expected, "path": path}))
                    digest = hashlib.sha256()
                    for user in users:
                        line = encode(user)
                        digest.update(line)
                        handle.write(line)
                    handle.write(encode({"sha256": digest.hexdigest()}))
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


def encode(value: object) -> bytes:
    """One line of JSON: a dataclass as the list of its fields' values, nested ones included."""
    return json.dumps(value, default=_values, ensure_ascii=False).encode() + b"\n"


def _values(value: Any) -> list[Any]:
    # A list, not an object: it reads back in half the time, and `shape` names the fields.
    return [getattr(value, field.name) for field in dataclasses.fields(value)]


def shape(model: type) -> str:
    """The fields of a dataclass and of those nested in it, with their types."""
    hints = get_type_hints(model)
    nested = (shape(kind) for kind in _nested(hints.values()))
    return f"{model.__qualname__}({hints}){''.join(nested)}"


def _nested(kinds: Any) -> list[type]:
    found: list[type] = []
    for kind in kinds:
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            found.append(kind)
        found += _nested(get_args(kind))
    return found


@cache
def decoder(kind: Any) -> Callable[[Any], Any]:
    """How to rebuild a value of type `kind` (or None) from what `encode` wrote of it."""
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = get_type_hints(kind)
        parts = [
            _shared() if hints[field.name] is str else decoder(hints[field.name])
            for field in dataclasses.fields(kind)
        ]
        return lambda value: (
            None
            if value is None
            else kind(*[rebuild(each) for rebuild, each in zip(parts, value, strict=True)])
        )
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return lambda value: None if value is None else kind(value)
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):  # only `X | None` in the model: None passes
        (inner,) = (arg for arg in args if arg is not types.NoneType)
        return decoder(inner)
    if origin is tuple:  # a tuple[X, ...], which JSON writes as a list
        item = decoder(args[0])
        if item is _as_written:
            return lambda value: None if value is None else tuple(value)
        return lambda value: None if value is None else tuple(map(item, value))
    return _as_written  # text, numbers, a mapping of text: as JSON has them


def _as_written(value: Any) -> Any:
    return value


def _shared() -> Callable[[Any], Any]:
    """A text field's value, one string while it repeats: the path of every user's place."""
    last = None

    def share(value: Any) -> Any:
        nonlocal last
        if value == last:
            return last
        last = value
        return value

    return share
