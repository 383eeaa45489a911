"""Reading YAML files into plain data while remembering where each key and value was written.

The desired-state loader points every message at a file:line:col, and its input
comes from pull requests, so this reader is built for hostile text. This module
owns reading (the limits, libyaml's syntax errors; which files is
syncd.desired.sourcefiles), the document
handed to the loader with `Places`, and its way back from any part of the data
to its place (syncd.desired.problem_list shows at most MAX_PROBLEMS problems a file).
`syncd.desired.yaml_compose` composes the data from libyaml's events:

- libyaml (PyYAML's C parser) only turns the text into events. No constructor
  ever runs, so a tag such as `!!python/object` can build nothing: any tag
  outside the plain YAML types (str, null, bool, int, float, timestamp, seq,
  map) is a problem.
- Plain scalars are typed by the YAML 1.2 core schema (syncd.desired.yaml_scalars),
  not by PyYAML's YAML 1.1 resolver; `!!timestamp` makes a date, and a quoted
  scalar is always text.
- Aliases (`*name`) are refused where they appear and nothing is expanded, so a
  "billion laughs" file costs no more than its own length. Anchors alone are
  harmless and ignored; merge keys (`<<`) are refused.
- Content over MAX_FILE_BYTES is refused before it is decoded, and content that
  is not UTF-8 (at the line and column of its first bad byte) before it is
  parsed. Nesting deeper than MAX_DEPTH stops the parse with a problem, and so
  does the MAX_PROBLEMS-th problem.
- Duplicate keys are kept out of the data (the first one wins) and returned
  with the place of every occurrence, so that the caller can report all of them.
  A value kept out of the data (under a repeated or refused key, or refused for
  its tag) is not looked into, except that its aliases are refused.

Why libyaml: a pure-Python parser (ruamel.yaml's, PyYAML's own) reads a file of
thousands of users some thirty times slower. Without libyaml, PyYAML's
pure-Python parser gives the same events, slowly.

Mapping keys are taken as text: in `1234: {}` the key is "1234", as it would
be after a YAML-to-JSON conversion in an editor that validates against a schema.
Lines and columns are 1-based.
"""

from __future__ import annotations

import gc
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import yaml
from yaml.reader import ReaderError

from syncd.core.desired import Location
from syncd.desired.yaml_compose import PLACE_BITS, Composer, Duplicate, Key, Loc, Stopped, mark_at
from syncd.desired.yaml_shape import Shape
from syncd.errors import Problem

#: Largest file accepted; a bigger one is refused before it is decoded or parsed.
#: A 100,000-user file is about 10 MB.
MAX_FILE_BYTES: Final = 32 * 1024 * 1024

#: Deepest nesting accepted. The desired state needs 5 levels (top, users, user,
#: emails, address); the margin leaves room for mistakes to be reported as such.
MAX_DEPTH: Final = 64

#: Most problems reported for one file, the last of which may say that there
#: were more: nobody reads further, and a hostile file could make millions.
MAX_PROBLEMS: Final = 1000

_LIBYAML: Final = bool(yaml.__with_libyaml__)
_LOADER: Final[Any] = yaml.CSafeLoader if _LIBYAML else yaml.SafeLoader
_SCAN: Final = 8  # mappings up to this size are searched; larger ones get an index
_START: Final = 1 << PLACE_BITS | 1  # line 1, column 1: where an empty file is
# libyaml reads YAML 1.1, where NEL, LS and PS break lines; YAML 1.2, editors,
# terminals and review pages do not. A key after one, in what shows as a comment,
# would be read and applied unseen: such a file is refused. With its escape, for
# a double-quoted value that means the character.
_HIDDEN_BREAKS: Final = {"\x85": "\\N", "\u2028": "\\L", "\u2029": "\\P"}


class Places:
    """Where every value of a document's data was written: three integers a value.

    An entry holds the place of the value's key (0 for a list item or the top
    level); the value's own place shifted left one bit, the low bit set when the
    value was left out (`key:`); and for a collection, the index of the first
    entry of its own values, which are contiguous and in the order of its keys
    or items; for a scalar that is not a string, -2 minus the index of its text
    in `texts` (a string is its own text); else -1. A place is
    line << PLACE_BITS | column. yaml_compose writes them; the entry of a path is
    found by walking the data along it.

    Why not a dict from each path to a tuple: at 100,000 users that held
    500,000 entries of ~230 bytes; this array takes 24 bytes a value.
    """

    __slots__ = ("entries", "indexes", "root", "texts")

    def __init__(
        self, entries: array[int] | None = None, texts: list[str] | None = None, root: int = -1
    ) -> None:
        self.entries = array("q") if entries is None else entries
        self.texts = texts or []
        self.root = root  # the entry of the top-level value; -1 for none
        # For a mapping too large to search, its keys' positions, by the mapping's
        # id(): it is part of the data, which lives as long as these places.
        self.indexes: dict[int, dict[str, int]] = {}

    def find(self, data: Any, loc: Loc, *, exact: bool = False) -> tuple[int, Any]:
        """The entry and the value at `loc`, or else at its nearest existing parent.

        The entry is -1 when there is no value at all (an empty file), or when
        `exact` and there is none at `loc`.
        """
        entry, node, entries = self.root, data, self.entries
        for key in loc if entry >= 0 else ():
            if type(node) is dict:
                index = self._index(node, key)
            elif type(node) is list and type(key) is int and 0 <= key < len(node):
                index = key
            else:
                index = -1
            if index < 0:
                return (-1, None) if exact else (entry, node)
            entry = entries[entry + 2] + 3 * index
            node = node[key]
        return entry, node

    def _index(self, mapping: dict[str, Any], key: Key) -> int:
        if not isinstance(key, str) or key not in mapping:
            return -1
        if len(mapping) <= _SCAN:
            return list(mapping).index(key)
        index = self.indexes.get(id(mapping))
        if index is None:
            index = self.indexes[id(mapping)] = {each: i for i, each in enumerate(mapping)}
        return index[key]

    def key_place(self, entry: int) -> int:
        """Where the key of the value at `entry` was written; 0 for a list item."""
        return self.entries[entry] if entry >= 0 else 0

    def key_places(self, entry: int, count: int) -> array[int]:
        """Where each key of the mapping of `count` keys at `entry` was written, in order."""
        start = self.entries[entry + 2]
        return self.entries[start : start + 3 * count : 3]

    def value_place(self, entry: int) -> tuple[int, bool]:
        """Where the value at `entry` was written, and whether it was left out."""
        if entry < 0:
            return _START, False  # an empty file
        place = self.entries[entry + 1]
        return place >> 1, bool(place & 1)

    def text(self, entry: int) -> str | None:
        """The text of the scalar at `entry` if it is not a string, as written."""
        extra = self.entries[entry + 2] if entry >= 0 else -1
        return self.texts[-2 - extra] if extra < -1 else None


@dataclass
class YamlDocument:
    """The plain data of one YAML file, and a way back from any part of it to its place.

    `data` holds dicts with str keys, lists, str, None, bool, int, float, dates and
    REFUSED. `parsed` is False when the text is not YAML or reading stopped (the
    last problem says where); an empty file is parsed, with `root` (where the data
    starts) and `data` None.
    """

    path: str
    root: Location | None = None
    data: Any = None
    parsed: bool = True
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    places: Places = field(default_factory=Places, repr=False)

    # A place that does not exist (a missing key) resolves to its nearest existing parent.

    def key_mark(self, loc: Loc) -> Location:
        """Where the key that `loc` ends with was written (for a list item: the item)."""
        entry, _ = self.places.find(self.data, loc)
        place = self.places.key_place(entry) or self.places.value_place(entry)[0]
        return mark_at(self.path, place)

    def value_mark(self, loc: Loc) -> Location:
        """Where the value at `loc` was written; an empty value is placed at its key."""
        entry, _ = self.places.find(self.data, loc)
        place, blank = self.places.value_place(entry)
        key = self.places.key_place(entry) if blank else 0
        return mark_at(self.path, key or place)

    def key_marks(self, loc: Loc) -> Iterator[tuple[str, Location]]:
        """Each key of the mapping at `loc` with where it was written, in order."""
        entry, mapping = self.places.find(self.data, loc, exact=True)
        if isinstance(mapping, dict):
            places = self.places.key_places(entry, len(mapping))
            yield from zip(mapping, map(partial(mark_at, self.path), places), strict=True)

    def scalar_text(self, loc: Loc) -> str | None:
        """The text of the scalar at `loc` as written (before typing), or None."""
        entry, value = self.places.find(self.data, loc)
        return value if isinstance(value, str) else self.places.text(entry)


def read_yaml_bytes(path: str, content: bytes, shape: Shape | None = None) -> YamlDocument:
    """Like read_yaml, after refusing content over MAX_FILE_BYTES or not UTF-8."""
    if len(content) > MAX_FILE_BYTES:
        return YamlDocument(path, parsed=False, problems=[file_too_large(path, len(content))])
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"not valid UTF-8 (byte 0x{content[error.start]:02x} at offset {error.start})"
        # Where the byte is, counted as libyaml counts: columns in characters (all
        # before the byte decode).
        before = content[: error.start].decode("utf-8")
        problem = Problem(path, *_position(before, len(before)), message)
        return YamlDocument(path, parsed=False, problems=[problem])
    return read_yaml(path, text, shape)


def file_too_large(path: str, size: int) -> Problem:
    """The problem of a file of `size` bytes, over MAX_FILE_BYTES."""
    shown = f"{size / 2**20:.1f} MiB"
    if shown == f"{MAX_FILE_BYTES / 2**20:.1f} MiB":
        shown = f"{size} bytes"  # just over the limit: "32.0 MiB" would look allowed
    return Problem(path, 1, 1, f"file is {shown}; the limit is {MAX_FILE_BYTES // 2**20} MiB")


def read_yaml(path: str, text: str, shape: Shape | None = None) -> YamlDocument:
    """Parse one YAML document; problems are collected in the result, never raised.

    With a `shape`, what it refuses is refused as it is read (syncd.desired.yaml_shape).
    """
    # str.find, not a regular expression: ~0.1 ms for 8 MB instead of ~60.
    hidden = [index for char in _HIDDEN_BREAKS if (index := text.find(char)) >= 0]
    if hidden:
        char = text[min(hidden)]
        message = (
            f"character U+{ord(char):04X} is not allowed in YAML text: syncd's YAML reader "
            "would break the line there, where no viewer shows a break "
            f'(in a double-quoted value, write "{_HIDDEN_BREAKS[char]}")'
        )
        problem = Problem(path, *_position(text, min(hidden)), message)
        return YamlDocument(path, parsed=False, problems=[problem])
    # Read at each parse, so that a test can change them.
    composer = Composer(path, MAX_DEPTH, MAX_PROBLEMS, shape)
    try:
        with collector_paused():
            composer.compose(yaml.parse(text, Loader=_LOADER))
    except Stopped as stop:
        problems, duplicates = stop.problems(path), stop.duplicates
        return YamlDocument(path, parsed=False, problems=problems, duplicates=duplicates)
    except yaml.YAMLError as error:
        return YamlDocument(path, parsed=False, problems=_syntax_problems(path, text, error))
    # Aliases first, as they were found while parsing; then what composing refused.
    document = YamlDocument(
        path,
        problems=composer.aliases + composer.problems,
        duplicates=composer.duplicates,
    )
    places = Places(composer.entries, composer.texts, composer.root)
    place, blank = places.value_place(places.root)
    if places.root >= 0 and not blank:  # not nothing, nor a document of only `---`
        document.root, document.data = mark_at(path, place), composer.document.values[0]
        document.places = places
    return document


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector, if it runs, while reading a file."""
    # Hundreds of thousands of new objects, none of them garbage and none in a
    # cycle: the cyclic collector would only walk them again and again.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _syntax_problems(path: str, text: str, error: yaml.YAMLError) -> list[Problem]:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        if error.problem == "exceeded maximum nesting depth" and mark is not None:
            problem = Problem(path, mark.line + 1, mark.column + 1, "nested too deeply to read")
            return _too_deep(path, text[: mark.index]) or [problem]
    return [_syntax_problem(path, text, error)]


def _syntax_problem(path: str, text: str, error: yaml.YAMLError) -> Problem:
    if isinstance(error, ReaderError):
        index = error.position
        if _LIBYAML:  # a byte offset in the UTF-8 text, not a character's
            index = len(text.encode("utf-8")[:index].decode("utf-8", errors="ignore"))
        line, column = _position(text, index)
        message = f"character U+{error.character:04X} is not allowed in YAML text"
        return Problem(path, line, column, message)
    if not isinstance(error, yaml.MarkedYAMLError):
        return Problem(path, 1, 1, f"invalid YAML: {error}")
    mark, context = error.problem_mark or error.context_mark, error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = error.problem or error.context or "not YAML"
    if problem == "found character that cannot start any token" and mark is not None:
        # libyaml does not say which character; it helps to know (a tab, mostly).
        problem = (
            f"found character {text[mark.index : mark.index + 1]!r} that cannot start any token"
        )
    message = f"invalid YAML: {problem}"
    # libyaml often gives the problem's own place as its context: nothing to add then.
    if error.problem and error.context and context and mark and context.index != mark.index:
        message += f" ({error.context} at {context.line + 1}:{context.column + 1})"
    if "'\\t'" in message or "tab character" in message:
        message += "; indent with spaces, YAML does not allow tabs there"
    return Problem(path, line, column, message)


def _too_deep(path: str, text: str) -> list[Problem]:
    """Where MAX_DEPTH is passed in a text that libyaml found nested past its own limit.

    libyaml stops at 1,000 levels, which it may reach while it looks ahead for a
    key, before any event of the levels past MAX_DEPTH. The text up to there is
    composed again: it is cut short, which is a syntax error only at its end.
    """
    try:
        Composer(path, MAX_DEPTH, MAX_PROBLEMS).compose(yaml.parse(text, Loader=_LOADER))
    except Stopped as stop:
        return stop.problems(path)
    except yaml.YAMLError:
        pass
    return []


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character index, as a viewer counts them: only
    LF, CR LF and CR break lines."""
    # Counted, not listed: a file of 32 MiB made a list of millions of matches.
    crlf = text.count("\r\n", 0, index)
    breaks = text.count("\n", 0, index) + text.count("\r", 0, index) - crlf
    line_start = max(text.rfind("\n", 0, index), text.rfind("\r", 0, index)) + 1
    return breaks + 1, index - line_start + 1
