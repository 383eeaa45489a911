"""What each part of a document may hold, so that the composer refuses the rest as it reads.

Unknown keys, invalid usernames and invalid addresses used to be found only by
pydantic, after the whole file had been composed into data: a 15 MB file of
unknown keys took 34.6 s and 1.35 GB before it was rejected, since only the
composer stops at the problem limit. Given a Shape, the composer reports such a
key or item where it reads it, as it refuses an alias: a problem at its place,
counted, so that reading stops at the problem limit. The
shape comes from the format's models (syncd.desired.loading), and its messages
are those that pydantic's errors were turned into, so a file's problems read
the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: What is wrong with a key or an item, or None when nothing is.
Check = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class Shape:
    """What a mapping or a list may hold.

    `key` checks each key of a mapping: a key it refuses is kept out of the
    data with its value, as an unknown field. `name` checks each key of a
    mapping whose keys are names (usernames): a bad name is reported, and its
    value is still composed and checked, so that its own problems are found
    too (pydantic's own error for the name is then left out: see
    syncd.desired.validation_messages). `under` gives the shape of the value
    under a key, `under_any` that of the values under every other key; `item`
    checks each string in a list (other values are left to the models), and
    an item it refuses is REFUSED in the data.
    """

    key: Check | None = None
    name: Check | None = None
    under: Mapping[str, Shape] = field(default_factory=dict)
    under_any: Shape | None = None
    item: Check | None = None

    def child(self, key: str) -> Shape | None:
        """The shape of the value written under `key`, if there is one."""
        return self.under.get(key, self.under_any)
