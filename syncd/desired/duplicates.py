"""What pydantic cannot see: users, keys and addresses written more than once.

A user may be repeated within a file or across files, a key within a mapping,
an address (compared case-insensitively) within a user's list. Each is a
problem at every place it is written, naming a few of the others
(_OTHERS_SHOWN): named in full, a key written 100,000 times would make 100,000
messages of 100,000 places each.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Final

from syncd.core.desired import Location
from syncd.core.fields import email_key
from syncd.desired.yaml_positions import YamlDocument
from syncd.errors import Problem

_OTHERS_SHOWN: Final = 5  # places named in a message about a duplicate


class Written:
    """Every place each username is written, in every file, to find duplicate users.

    Most usernames are written once: a list of places for each took ~9 MB at 100,000.
    """

    def __init__(self) -> None:
        self.first: dict[str, Location] = {}
        self.again: dict[str, list[Location]] = {}

    def add(self, username: str, place: Location) -> None:
        if username in self.first:
            self.again.setdefault(username, []).append(place)
        else:
            self.first[username] = place

    def duplicate_users(self) -> Iterator[Problem]:
        for username, again in self.again.items():
            yield from each_place(f"duplicate user {username!r}", [self.first[username], *again])


def duplicate_keys(document: YamlDocument, written: Written) -> Iterator[Problem]:
    """Problems for keys repeated in one mapping; records where repeated usernames are."""
    for duplicate in document.duplicates:
        places = list(duplicate.marks)
        if duplicate.parent != ("users",):
            yield from each_place(f"duplicate key {duplicate.key!r}", places)
        elif document.parsed:
            # the first place is already recorded; the user check names them all
            for place in places[1:]:
                written.add(duplicate.key, place)
        else:  # its other users are not known: not checked across files
            yield from each_place(f"duplicate user {duplicate.key!r}", places)


def duplicate_emails(document: YamlDocument) -> Iterator[Problem]:
    data = document.data
    users = data.get("users") if isinstance(data, dict) else None
    for username, settings in users.items() if isinstance(users, dict) else ():
        emails = settings.get("emails") if isinstance(settings, dict) else None
        if not isinstance(emails, list) or len(emails) < 2:
            continue
        by_key: dict[str, list[int]] = {}
        for index, address in enumerate(emails):
            if isinstance(address, str):
                by_key.setdefault(email_key(address), []).append(index)
        for indexes in by_key.values():
            if len(indexes) < 2:
                continue
            # Placed only now: most users have no duplicate address to place.
            loc = ("users", username, "emails")
            places = [document.value_mark((*loc, i)) for i in indexes]
            note = ""
            if len({emails[index] for index in indexes}) > 1:
                note = "; addresses compare case-insensitively"
            for index, place in zip(indexes, places, strict=True):
                message = f"duplicate email {emails[index]!r} (also at {_others(place, places)}"
                yield Problem(place.path, place.line, place.column, f"{message}{note})")


def each_place(what: str, places: list[Location]) -> Iterator[Problem]:
    """One problem at each place, naming the others."""
    for place in places:
        message = f"{what} (also at {_others(place, places)})"
        yield Problem(place.path, place.line, place.column, message)


def _others(place: Location, places: list[Location]) -> str:
    """The places other than `place`, the first _OTHERS_SHOWN of them by name."""
    others = (str(other) for other in places if other != place)
    shown = ", ".join(islice(others, _OTHERS_SHOWN))
    hidden = len(places) - 1 - _OTHERS_SHOWN
    return f"{shown} and {hidden:,} more" if hidden > 0 else shown
