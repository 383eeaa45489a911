"""A desired-state memo entry changed as the memo itself would write it (with its digest),
so that a test can tell whether a load read the entry or the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from syncd.desired.memo import encode


def rewrite(entry: Path, old: str, new: str) -> None:
    """Replace `old` by `new` in the entry's users, and give it the digest of its new lines."""
    head, *users, _ = entry.read_bytes().splitlines(keepends=True)
    users = [line.replace(old.encode(), new.encode()) for line in users]
    digest = hashlib.sha256(b"".join(users)).hexdigest()
    entry.write_bytes(head + b"".join(users) + encode({"sha256": digest}))
