"""Composing plain data from libyaml's events, and the record of where each value was written.

This module owns what the data may hold and how it is built: one loop over the
events of one document, without recursion and without any constructor. Plain
scalars are typed by the YAML 1.2 core schema; tags outside the plain types,
aliases, merge keys and the keys and items that a Shape refuses are refused; a
repeated key is kept out of the data (the first one wins) and returned with all
its places; a value kept out of the data is not looked into, except for
aliases. Nesting past the depth limit stops the parse, and so does the problem
limit. `syncd.desired.yaml_positions` says why.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final

import yaml
from yaml.constructor import SafeConstructor

from syncd.core.desired import Location
from syncd.core.fields import unstorable
from syncd.desired.yaml_scalars import TYPED_START, typed
from syncd.desired.yaml_shape import Shape
from syncd.errors import Problem

_STANDARD: Final = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP, _VALUE, _MERGE, _SEQ, _MAP = (
    _STANDARD + n
    for n in ("str", "null", "bool", "int", "float", "timestamp", "value", "merge", "seq", "map")
)
_SCALAR_TAGS: Final = frozenset({_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP, _VALUE})

# An explicit !!bool also takes the YAML 1.1 words, as ruamel.yaml did.
_TAGGED_BOOLS: Final = {
    **dict.fromkeys(("true", "yes", "on"), True),
    **dict.fromkeys(("false", "no", "off"), False),
}
_PLAIN_TYPES: Final = "strings, lists and mappings"
_STARTS: Final = frozenset({yaml.MappingStartEvent, yaml.SequenceStartEvent})
_NODES: Final = _STARTS | {yaml.ScalarEvent, yaml.AliasEvent}
_ENDS: Final = frozenset({yaml.MappingEndEvent, yaml.SequenceEndEvent})
# How many distinct keys are shared between mappings: enough for every field
# name, which then exists once instead of once a user (~110 bytes each).
_SHARED_KEYS: Final = 256

Key = str | int
Loc = tuple[Key, ...]


class Refused:
    """Stands in the data where a value was refused (alias, tag); a problem says why."""

    def __repr__(self) -> str:
        return "<refused>"


REFUSED: Final = Refused()


@dataclass(frozen=True)
class Duplicate:
    """A key written more than once in the mapping at `parent`, with every place it appears."""

    parent: Loc
    key: str
    marks: tuple[Location, ...]


# A place is line << PLACE_BITS | column: lines and columns of a file of at
# most 32 MiB fit in 25 bits each. Each value is recorded as three integers,
# as yaml_positions.Places reads them.
PLACE_BITS: Final = 32
_COLUMN: Final = (1 << PLACE_BITS) - 1


def mark_at(path: str, place: int) -> Location:
    return Location(path, place >> PLACE_BITS, place & _COLUMN)


class Stopped(Exception):
    """A problem after which the rest of the text is not read; for the problem limit,
    with the problems and duplicates found before it."""

    def __init__(self, mark: Any, message: str, kept: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.mark, self.message, self.kept = mark, message, list(kept)
        self.duplicates: list[Duplicate] = []

    def problems(self, path: str) -> list[Problem]:
        stop = Problem(path, self.mark.line + 1, self.mark.column + 1, self.message)
        return [*self.kept, stop]


class _Sequence:
    """A sequence being composed; or the document, which holds the top-level value.

    `block` holds the entries of its values (see yaml_positions.Places) until it ends.
    """

    __slots__ = ("block", "shape", "values")

    def __init__(self, values: list[Any], shape: Shape | None = None) -> None:
        self.values, self.block, self.shape = values, array("q"), shape

    def put(self, place: int, extra: int, data: Any) -> None:
        self.block.extend((0, place, extra))
        self.values.append(data)

    def child(self) -> Key:
        return len(self.values) - 1


class _Mapping:
    """A mapping being composed: after a key (`expect_key` False) comes its value,
    which is kept out of the data while `key` is None (a repeated or refused key)."""

    __slots__ = ("block", "expect_key", "fields", "index", "key", "key_place", "repeated", "shape")

    def __init__(self, fields: dict[str, Any], shape: Shape | None) -> None:
        self.fields, self.block, self.shape = fields, array("q"), shape
        self.expect_key = True
        self.key: str | None = None
        self.key_place = 0
        self.repeated: dict[str, list[Location]] = {}
        self.index: dict[str, int] = {}  # built only once a key is repeated

    def put(self, place: int, extra: int, data: Any) -> None:
        key = self.key
        assert key is not None, "a value kept out of the data is not put"
        self.block.extend((self.key_place, place, extra))
        self.fields[key] = data
        self.expect_key = True

    def child(self) -> Key:
        assert self.key is not None, "a value kept out of the data is not composed"
        return self.key

    def first_place(self, key: str) -> int:
        """Where `key`, already in the mapping, was written."""
        # Indexed from where the index stopped: each key once, however many repeat.
        index = self.index
        for position, each in enumerate(islice(self.fields, len(index), None), len(index)):
            index[each] = position
        return self.block[3 * index[key]]


class Composer:
    """Composes the data and its places from the events of one document, without recursion.

    The collections being composed are on `stack`; `skipped` counts those open
    inside a value kept out of the data, which are only counted against the depth
    limit and searched for aliases. Reading stops at the `problem_limit`-th problem.
    """

    def __init__(
        self, path: str, depth_limit: int, problem_limit: int, shape: Shape | None = None
    ) -> None:
        self.path, self.depth_limit, self.problem_limit = path, depth_limit, problem_limit
        self.shape = shape  # of the top-level value (syncd.desired.yaml_shape)
        # The places of the values composed so far (see yaml_positions.Places).
        self.entries = array("q")
        self.texts: list[str] = []
        self.root = -1
        self.duplicates: list[Duplicate] = []
        self.aliases: list[Problem] = []
        self.problems: list[Problem] = []
        self.document = _Sequence([])
        self.top: _Sequence | _Mapping = self.document
        self.stack: list[_Sequence | _Mapping] = [self.document]
        self.skipped = 0
        self.found = 0  # problems, counting one at each place of a repeated key
        self.keys: dict[str, str] = {}

    def compose(self, events: Iterable[Any]) -> None:
        documents = 0
        for event in events:
            kind = event.__class__
            if kind in _NODES:
                self.node(event, kind)
            elif kind in _ENDS:
                self.end()
            elif kind is yaml.DocumentStartEvent:
                if documents:
                    message = (
                        "a second YAML document ('---') is not allowed: one document per file"
                    )
                    raise Stopped(event.start_mark, message)
                documents += 1
        if self.document.values:
            self.root = self.add_block(self.document.block)

    def node(self, event: Any, kind: type) -> None:
        """A scalar, an alias or the start of a collection: a key, a value, or passed."""
        start, top = event.start_mark, self.top
        line, column = start.line + 1, start.column + 1
        collection = kind in _STARTS
        if kind is yaml.AliasEvent:
            message = f"YAML aliases are not allowed ('*{event.anchor}'): write the value out"
            self.report(self.aliases, start, message)
        elif len(self.stack) + self.skipped > self.depth_limit:
            message = f"nested more than {self.depth_limit} levels deep: the desired state needs 5"
            raise Stopped(start, message)
        if self.skipped:
            self.skipped += collection
            return
        if isinstance(top, _Mapping):
            if top.expect_key:
                top.expect_key, top.key_place = False, line << PLACE_BITS | column
                top.key = self.key(top, event, kind, start)
                self.skipped = collection  # a collection as a key is refused, and passed
                return
            if top.key is None:  # the value of a refused or repeated key: passed
                top.expect_key, self.skipped = True, collection
                return
        place = (line << PLACE_BITS | column) << 1
        if kind is yaml.ScalarEvent:
            data, blank = self.scalar(event, start)
            item = top.shape and top.shape.item
            if item and type(data) is str and (problem := item(data)) is not None:
                self.refuse(start, problem)
                data = REFUSED
            top.put(place | blank, -1 if type(data) is str else self.text(event.value), data)
        elif kind is yaml.AliasEvent:
            top.put(place, self.text(event.anchor), REFUSED)
        elif event.tag not in (None, "!", _MAP if kind is yaml.MappingStartEvent else _SEQ):
            self.refuse(start, _tag_message(event.tag))
            top.put(place, -1, REFUSED)
            self.skipped = 1  # what a refused collection holds is not looked into
        else:
            # Its entry's last integer becomes the start of its values' entries at its end.
            container: _Sequence | _Mapping
            if isinstance(top, _Mapping):
                shape = top.shape.child(top.key) if top.shape and top.key is not None else None
            else:
                shape = self.shape if top is self.document else None
            if kind is yaml.MappingStartEvent:
                fields: dict[str, Any] = {}
                top.put(place, -1, fields)
                container = _Mapping(fields, shape)
            else:
                values: list[Any] = []
                top.put(place, -1, values)
                container = _Sequence(values, shape)
            self.top = container
            self.stack.append(container)

    def end(self) -> None:
        if self.skipped:
            self.skipped -= 1
            return
        done = self.stack.pop()
        self.top = self.stack[-1]
        # `done` is the last value its parent holds so far: its entry is the last.
        self.top.block[-1] = self.add_block(done.block)
        if isinstance(done, _Mapping) and done.repeated:
            self.duplicates += _duplicates(done, tuple(open_.child() for open_ in self.stack[1:]))

    def all_duplicates(self) -> list[Duplicate]:
        """The duplicates found so far, in the mappings still open too."""
        found = list(self.duplicates)
        for depth, open_ in enumerate(self.stack[1:], 1):
            if isinstance(open_, _Mapping):
                found += _duplicates(open_, tuple(each.child() for each in self.stack[1:depth]))
        return found

    def add_block(self, block: array[int]) -> int:
        """Adds the entries of one collection's values; returns where they start."""
        start = len(self.entries)
        self.entries.extend(block)
        return start

    def text(self, text: str) -> int:
        """Keeps the text of a scalar that is not a string; its number, as Places reads it."""
        self.texts.append(text)
        return -1 - len(self.texts)

    def key(self, top: _Mapping, event: Any, kind: type, start: Any) -> str | None:
        """The text of a key; None if it is refused or repeated, and its value is passed."""
        if kind is yaml.AliasEvent:
            return None  # already refused
        if kind is not yaml.ScalarEvent:
            what = "mapping" if kind is yaml.MappingStartEvent else "list"
            self.refuse(start, f"a key must be a plain value, not a {what}")
            return None
        tag: str | None = event.tag
        text: str = event.value
        if (tag is None and event.implicit[0] and text == "<<") or tag == _MERGE:
            self.refuse(start, "merge keys ('<<') are not allowed: write the keys out")
            return None
        if tag not in (None, "!") and tag not in _SCALAR_TAGS:
            self.refuse(start, _tag_message(tag))
            return None
        if event.style == '"' and not self.storable(text, start):
            return None
        shape = top.shape
        if shape and shape.key and (problem := shape.key(text)) is not None:
            self.refuse(start, problem)
            return None
        if shape and shape.name and (problem := shape.name(text)) is not None:
            self.refuse(start, problem)  # and its value is still composed
        if text not in top.fields:
            shared = self.keys.get(text)
            if shared is None and len(self.keys) < _SHARED_KEYS:
                shared = self.keys[text] = text
            return shared or text
        marks = top.repeated.get(text)
        self.count(start, 1 if marks else 2)  # a problem at each place, the first one too
        if marks is None:
            marks = top.repeated[text] = [mark_at(self.path, top.first_place(text))]
        marks.append(Location(self.path, start.line + 1, start.column + 1))
        return None  # the first one wins

    def scalar(self, event: Any, start: Any) -> tuple[Any, bool]:
        """A scalar's value, and whether it was left out (`key:`, `key: !!null`)."""
        tag, text = event.tag, event.value
        if event.style == '"' and not self.storable(text, start):
            return REFUSED, False
        if tag is not None:
            value = self.tagged(tag, text, start)
            return value, not text and tag == _NULL and not event.style
        if not event.implicit[0]:
            return text, False  # quoted, or a block scalar: text
        if not text:
            return None, True
        if text[0] not in TYPED_START:
            return text, False
        try:
            return typed(text), False
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return self.invalid(text, _INT, start), False

    def tagged(self, tag: str, text: str, start: Any) -> Any:
        """A scalar with an explicit tag: one of the plain types, or refused."""
        if tag in ("!", _STR, _VALUE):
            return text
        if tag == _NULL:
            return None
        if tag not in _SCALAR_TAGS:
            self.refuse(start, _tag_message(tag))
            return REFUSED
        value: Any = None
        try:
            if tag == _BOOL:
                value = _TAGGED_BOOLS.get(text.lower())
            elif tag == _INT:
                value = typed(text)
                if type(value) is not int:  # Python's forms too, as ruamel.yaml took them
                    value = int(text, 0)  # `0b101`, `+0x1F`, `1_000`
            elif tag == _FLOAT:
                value = typed(text.replace("_", ""))
                value = float(value) if type(value) in (int, float) else None
            elif SafeConstructor.timestamp_regexp.match(text):
                value = SafeConstructor().construct_yaml_timestamp(yaml.ScalarNode(tag, text))
        except ValueError:
            value = None
        return self.invalid(text, tag, start) if value is None else value

    def storable(self, text: str, start: Any) -> bool:
        """Whether `text` is what the live side can read back (syncd.core.fields.unstorable).

        Only a double-quoted scalar can hold anything else: its escapes ("\\0",
        "\\ud800" in the pure-Python parser); libyaml refuses a NUL written as such.
        """
        why = unstorable(text)
        if why is not None:
            self.refuse(start, f"this text {why}, which syncd could not read back from the API")
        return why is None

    def invalid(self, text: str, tag: str, start: Any) -> Refused:
        self.refuse(start, f"{text!r} is not a valid !!{tag.removeprefix(_STANDARD)}")
        return REFUSED

    def refuse(self, start: Any, message: str) -> None:
        self.report(self.problems, start, message)

    def report(self, problems: list[Problem], start: Any, message: str) -> None:
        self.count(start)
        problems.append(Problem(self.path, start.line + 1, start.column + 1, message))

    def count(self, start: Any, problems: int = 1) -> None:
        # A file of millions of aliases or repeated keys would make millions of
        # problems, which nobody reads: the problem_limit-th says where reading stopped.
        self.found += problems
        if self.found >= self.problem_limit:
            message = f"too many problems ({self.problem_limit:,}): stopped reading here"
            stop = Stopped(start, message, self.aliases + self.problems)
            stop.duplicates = self.all_duplicates()
            raise stop


def _duplicates(mapping: _Mapping, loc: Loc) -> list[Duplicate]:
    """The keys repeated in `mapping`, at `loc`, in the order of their first places."""
    repeated = sorted(mapping.repeated.items(), key=lambda item: item[1][0])
    return [Duplicate(loc, key, tuple(marks)) for key, marks in repeated]


def _tag_message(tag: str) -> str:
    # libyaml gives the tag resolved; it is shown as it is usually written.
    if tag.startswith(_STANDARD):
        tag = "!!" + tag.removeprefix(_STANDARD)
    elif not tag.startswith("!"):
        tag = f"!<{tag}>"
    return f"YAML tag '{tag}' is not allowed: the desired state holds only {_PLAIN_TYPES}"
