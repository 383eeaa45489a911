"""Reading YAML files into plain data while remembering where each key and value was written.

The desired-state loader points every message at a file:line:col, and its input
comes from pull requests, so this reader is built for hostile text:

- libyaml (PyYAML's C parser) only turns the text into events. The data is
  composed here from those events, in one loop without recursion, along with
  the place of every value. No constructor ever runs, so a tag such as
  `!!python/object` can build nothing: any tag outside the plain YAML types
  (str, null, bool, int, float, timestamp, seq, map) is a problem.
- Plain scalars are typed here by the YAML 1.2 core schema, not by PyYAML's
  YAML 1.1 resolver: `yes`, `no`, `on`, `off` and dates are text (`!!timestamp`
  makes a date); null is `null`, `Null`, `NULL`, `~` or nothing. A quoted
  scalar is always text.
- Aliases (`*name`) are refused where they appear and nothing is expanded, so a
  "billion laughs" file costs no more than its own length. Anchors alone are
  harmless and ignored; merge keys (`<<`) are refused.
- A file over MAX_FILE_BYTES is refused before it is read, and content that is
  not UTF-8 before it is parsed.
- Nesting deeper than MAX_DEPTH stops the parse with a problem.
- Duplicate keys are kept out of the data (the first one wins) and returned
  with the place of every occurrence, so that the caller can report all of them.
  A value kept out of the data (under a repeated or refused key, or refused for
  its tag) is not looked into, except that its aliases are refused.

Why libyaml: ruamel.yaml's pure-Python parser took ~6 s to read a 10,000-user
file (30,000 lines); libyaml and this composer take ~0.2 s, and 2.5 s for
100,000 users. Without libyaml, PyYAML's pure-Python parser gives the same
events, slowly.

A directory is read as the `*.yaml`/`*.yml` files directly in it, by name;
hidden files are skipped. Mapping keys are taken as text: in `1234: {}` the key
is "1234", as it would be after a YAML-to-JSON conversion in an editor that
validates against a schema. Lines and columns are 1-based.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.reader import ReaderError

from syncd.errors import Problem

#: Largest file accepted; a bigger one is refused before it is decoded or parsed.
#: A 100,000-user file is about 10 MB.
MAX_FILE_BYTES: Final = 32 * 1024 * 1024

YAML_SUFFIXES: Final = (".yaml", ".yml")

#: Deepest nesting accepted. The desired state needs 5 levels (top, users, user,
#: emails, address); the margin leaves room for mistakes to be reported as such.
MAX_DEPTH: Final = 64

_LIBYAML: Final = bool(yaml.__with_libyaml__)
_LOADER: Final[Any] = yaml.CSafeLoader if _LIBYAML else yaml.SafeLoader

_STANDARD: Final = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP, _VALUE, _MERGE, _SEQ, _MAP = (
    _STANDARD + n
    for n in ("str", "null", "bool", "int", "float", "timestamp", "value", "merge", "seq", "map")
)
_SCALAR_TAGS: Final = frozenset({_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP, _VALUE})

# The YAML 1.2 core schema: its words, then its numbers. A plain scalar that
# starts with none of _TYPED_START is text at once: most are (names, addresses).
_WORDS: Final[dict[str, Any]] = {
    **dict.fromkeys(("null", "Null", "NULL", "~"), None),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **{s + "." + i: float(s + "inf") for s in ("", "+", "-") for i in ("inf", "Inf", "INF")},
    **dict.fromkeys((".nan", ".NaN", ".NAN"), float("nan")),
}
_INT_RE: Final = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_RE: Final = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_TYPED_START: Final = frozenset("0123456789+-.~nNtTfF")
# An explicit !!bool also takes the YAML 1.1 words, as ruamel.yaml did.
_TAGGED_BOOLS: Final = {
    **dict.fromkeys(("true", "yes", "on"), True),
    **dict.fromkeys(("false", "no", "off"), False),
}
_MISSING: Final = object()
_PLAIN_TYPES: Final = "strings, lists and mappings"
_STARTS: Final = frozenset({yaml.MappingStartEvent, yaml.SequenceStartEvent})
_NODES: Final = _STARTS | {yaml.ScalarEvent, yaml.AliasEvent}
_ENDS: Final = frozenset({yaml.MappingEndEvent, yaml.SequenceEndEvent})

Key = str | int
Loc = tuple[Key, ...]


class Refused:
    """Stands in the data where a value was refused (alias, tag); a problem says why."""

    def __repr__(self) -> str:
        return "<refused>"


REFUSED: Final = Refused()


@dataclass(frozen=True, order=True)
class Mark:
    line: int
    column: int


# Where a value was written: its key's line and column (0, 0 for a list item or
# the top level), its own, a scalar's text as written (None for a collection),
# and whether it was left out (`key:`). Plain tuples of atoms, which the cyclic
# collector stops tracking: at 100,000 users it would otherwise walk them often.
_Place = tuple[int, int, int, int, str | None, bool]
_Where = tuple[int, int, str | None, bool]  # a _Place without its key's place


@dataclass(frozen=True)
class Duplicate:
    """A key written more than once in the mapping at `parent`, with every place it appears."""

    parent: Loc
    key: str
    marks: tuple[Mark, ...]


@dataclass
class YamlDocument:
    """The plain data of one YAML file, and a way back from any part of it to its place.

    `data` holds dicts with str keys, lists, str, None, bool, int, float, dates and
    REFUSED. `parsed` is False when the text is not YAML (the problem says where);
    an empty file is parsed, with `root` (where the data starts) and `data` None.
    """

    path: str
    root: Mark | None = None
    data: Any = None
    parsed: bool = True
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    places: dict[Loc, _Place] = field(default_factory=dict, repr=False)

    def problem(self, mark: Mark, message: str) -> Problem:
        return Problem(self.path, mark.line, mark.column, message)

    def key_mark(self, loc: Loc) -> Mark:
        """Where the key that `loc` ends with was written (for a list item: the item)."""
        key_line, key_column, line, column, _, _ = self._find(loc)
        return Mark(key_line, key_column) if key_line else Mark(line, column)

    def value_mark(self, loc: Loc) -> Mark:
        """Where the value at `loc` was written; an empty value is placed at its key."""
        key_line, key_column, line, column, _, blank = self._find(loc)
        return Mark(key_line, key_column) if key_line and blank else Mark(line, column)

    def scalar_text(self, loc: Loc) -> str | None:
        """The text of the scalar at `loc` as written (before typing), or None."""
        return self._find(loc)[4]

    def _find(self, loc: Loc) -> _Place:
        # A place that does not exist (a missing key) resolves to its nearest existing parent.
        while loc not in self.places:
            if not loc:
                return (0, 0, 1, 1, None, False)  # an empty file
            loc = loc[:-1]
        return self.places[loc]


def read_yaml_files(path: str) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    """The content of a file, or of the YAML files directly in a directory, sorted by name."""
    try:
        if not os.path.isdir(path):
            return _read_file(path)
        names = sorted(
            entry.name
            for entry in os.scandir(path)
            # Hidden files are skipped so that pointing at a repository root does
            # not read .pre-commit-config.yaml and the like.
            if entry.name.endswith(YAML_SUFFIXES)
            and not entry.name.startswith(".")
            and entry.is_file()
        )
    except OSError as error:
        return [], [Problem(path, 1, 1, _os_message(error))]
    if not names:
        return [], [Problem(path, 1, 1, "no *.yaml or *.yml file in this directory")]
    files: list[tuple[str, bytes]] = []
    problems: list[Problem] = []
    for name in names:
        found, failed = _read_file(os.path.join(path, name))
        files += found
        problems += failed
    return files, problems


def _read_file(path: str) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            # Read one byte more than allowed: a pipe or a growing file has no true size.
            content = b"" if size > MAX_FILE_BYTES else stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        return [], [Problem(path, 1, 1, _os_message(error))]
    if size > MAX_FILE_BYTES or len(content) > MAX_FILE_BYTES:
        return [], [_too_large(path, max(size, len(content)))]
    return [(path, content)], []


def _os_message(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file or directory"
    return f"cannot read: {error.strerror or error}"


def read_yaml_bytes(path: str, content: bytes) -> YamlDocument:
    """Like read_yaml, after refusing content over MAX_FILE_BYTES or not UTF-8."""
    if len(content) > MAX_FILE_BYTES:
        return YamlDocument(path, parsed=False, problems=[_too_large(path, len(content))])
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"not valid UTF-8 (byte 0x{content[error.start]:02x} at offset {error.start})"
        return YamlDocument(path, parsed=False, problems=[Problem(path, 1, 1, message)])
    return read_yaml(path, text)


def _too_large(path: str, size: int) -> Problem:
    shown = f"{size / 2**20:.1f} MiB"
    if shown == f"{MAX_FILE_BYTES / 2**20:.1f} MiB":
        shown = f"{size} bytes"  # just over the limit: "32.0 MiB" would look allowed
    return Problem(path, 1, 1, f"file is {shown}; the limit is {MAX_FILE_BYTES // 2**20} MiB")


def read_yaml(path: str, text: str) -> YamlDocument:
    """Parse one YAML document; problems are collected in the result, never raised."""
    document = YamlDocument(path)
    composer = _Composer(document)
    try:
        with _collector_paused():
            composer.compose(yaml.parse(text, Loader=_LOADER))
    except _Stop as stop:
        return YamlDocument(path, parsed=False, problems=[stop.problem(path)])
    except yaml.YAMLError as error:
        return YamlDocument(path, parsed=False, problems=[_syntax_problem(path, text, error)])
    # Aliases first, as they were found while parsing; then what composing refused.
    document.problems = composer.aliases + composer.problems
    root = document.places.get(())
    if root is None or root[5]:  # nothing, or a document of only `---`
        document.places = {}
    else:
        document.root, document.data = Mark(root[2], root[3]), composer.document.values[0]
    return document


@contextmanager
def _collector_paused() -> Iterator[None]:
    # Hundreds of thousands of new objects, none of them garbage and none in a
    # cycle: the cyclic collector would only walk them again and again.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Stop(Exception):
    """A problem after which the rest of the text is not read."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark, self.message = mark, message

    def problem(self, path: str) -> Problem:
        return Problem(path, self.mark.line + 1, self.mark.column + 1, self.message)


class _Sequence:
    """A sequence being composed, at `loc` in the data; or the document (`loc` None),
    which holds the top-level value."""

    __slots__ = ("loc", "values")

    def __init__(self, loc: Loc | None, values: list[Any]) -> None:
        self.loc, self.values = loc, values

    def put(self, places: dict[Loc, _Place], where: _Where, data: Any) -> Loc:
        loc = () if self.loc is None else (*self.loc, len(self.values))
        places[loc] = (0, 0, *where)
        self.values.append(data)
        return loc


class _Mapping:
    """A mapping being composed: after a key (`expect_key` False) comes its value,
    which is kept out of the data while `key` is None (a repeated or refused key)."""

    __slots__ = ("expect_key", "fields", "key", "key_column", "key_line", "loc", "repeated")

    def __init__(self, loc: Loc, fields: dict[str, Any]) -> None:
        self.loc, self.fields = loc, fields
        self.expect_key = True
        self.key: str | None = None
        self.key_line = self.key_column = 0
        self.repeated: dict[str, list[Mark]] = {}

    def put(self, places: dict[Loc, _Place], where: _Where, data: Any) -> Loc:
        key = self.key
        assert key is not None, "a value kept out of the data is not put"
        loc = (*self.loc, key)
        places[loc] = (self.key_line, self.key_column, *where)
        self.fields[key] = data
        self.expect_key = True
        return loc


class _Composer:
    """Composes the data and its places from the events of one document, without recursion.

    The collections being composed are on `stack`; `skipped` counts those open
    inside a value kept out of the data, which are only counted against
    MAX_DEPTH and searched for aliases.
    """

    def __init__(self, document: YamlDocument) -> None:
        self.path, self.places = document.path, document.places
        self.duplicates = document.duplicates
        self.aliases: list[Problem] = []
        self.problems: list[Problem] = []
        self.limit = MAX_DEPTH  # read at each parse, so that a test can change it
        self.document = _Sequence(None, [])
        self.top: _Sequence | _Mapping = self.document
        self.stack: list[_Sequence | _Mapping] = [self.document]
        self.skipped = 0

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
                    raise _Stop(event.start_mark, message)
                documents += 1

    def node(self, event: Any, kind: type) -> None:
        """A scalar, an alias or the start of a collection: a key, a value, or passed."""
        start, top = event.start_mark, self.top
        line, column = start.line + 1, start.column + 1
        collection = kind in _STARTS
        if kind is yaml.AliasEvent:
            message = f"YAML aliases are not allowed ('*{event.anchor}'): write the value out"
            self.aliases.append(Problem(self.path, line, column, message))
        elif len(self.stack) + self.skipped > self.limit:
            raise _Stop(
                start, f"nested more than {MAX_DEPTH} levels deep: the desired state needs 5"
            )
        if self.skipped:
            self.skipped += collection
            return
        if isinstance(top, _Mapping):
            if top.expect_key:
                top.expect_key, top.key_line, top.key_column = False, line, column
                top.key = self.key(top, event, kind, line, column)
                self.skipped = collection  # a collection as a key is refused, and passed
                return
            if top.key is None:  # the value of a refused or repeated key: passed
                top.expect_key, self.skipped = True, collection
                return
        where = (line, column, None, False)
        if kind is yaml.ScalarEvent:
            data, blank = self.scalar(event, line, column)
            top.put(self.places, (line, column, event.value, blank), data)
        elif kind is yaml.AliasEvent:
            top.put(self.places, (line, column, event.anchor, False), REFUSED)
        elif event.tag not in (None, "!", _MAP if kind is yaml.MappingStartEvent else _SEQ):
            self.refuse(line, column, _tag_message(event.tag))
            top.put(self.places, where, REFUSED)
            self.skipped = 1  # what a refused collection holds is not looked into
        elif kind is yaml.MappingStartEvent:
            fields: dict[str, Any] = {}
            self.top = _Mapping(top.put(self.places, where, fields), fields)
            self.stack.append(self.top)
        else:
            values: list[Any] = []
            self.top = _Sequence(top.put(self.places, where, values), values)
            self.stack.append(self.top)

    def end(self) -> None:
        if self.skipped:
            self.skipped -= 1
            return
        done = self.stack.pop()
        self.top = self.stack[-1]
        if isinstance(done, _Mapping) and done.repeated:
            # In the order of the keys' first places, as the mapping was written.
            for key, marks in sorted(done.repeated.items(), key=lambda item: item[1][0]):
                self.duplicates.append(Duplicate(done.loc, key, tuple(marks)))

    def key(self, top: _Mapping, event: Any, kind: type, line: int, column: int) -> str | None:
        """The text of a key; None if it is refused or repeated, and its value is passed."""
        if kind is yaml.AliasEvent:
            return None  # already refused
        if kind is not yaml.ScalarEvent:
            what = "mapping" if kind is yaml.MappingStartEvent else "list"
            self.refuse(line, column, f"a key must be a plain value, not a {what}")
            return None
        tag: str | None = event.tag
        text: str = event.value
        if (tag is None and event.implicit[0] and text == "<<") or tag == _MERGE:
            self.refuse(line, column, "merge keys ('<<') are not allowed: write the keys out")
            return None
        if tag not in (None, "!") and tag not in _SCALAR_TAGS:
            self.refuse(line, column, _tag_message(tag))
            return None
        if text not in top.fields:
            return text
        marks = top.repeated.get(text)
        if marks is None:
            first = self.places[(*top.loc, text)]
            marks = top.repeated[text] = [Mark(first[0], first[1])]
        marks.append(Mark(line, column))
        return None  # the first one wins

    def scalar(self, event: Any, line: int, column: int) -> tuple[Any, bool]:
        """A scalar's value, and whether it was left out (`key:`, `key: !!null`)."""
        tag, text = event.tag, event.value
        if tag is not None:
            value = self.tagged(tag, text, line, column)
            return value, not text and tag == _NULL and not event.style
        if not event.implicit[0]:
            return text, False  # quoted, or a block scalar: text
        if not text:
            return None, True
        if text[0] not in _TYPED_START:
            return text, False
        try:
            return _typed(text), False
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return self.invalid(text, _INT, line, column), False

    def tagged(self, tag: str, text: str, line: int, column: int) -> Any:
        """A scalar with an explicit tag: one of the plain types, or refused."""
        if tag in ("!", _STR, _VALUE):
            return text
        if tag == _NULL:
            return None
        if tag not in _SCALAR_TAGS:
            self.refuse(line, column, _tag_message(tag))
            return REFUSED
        value: Any = None
        try:
            if tag == _BOOL:
                value = _TAGGED_BOOLS.get(text.lower())
            elif tag == _INT:
                value = _typed(text)
                if type(value) is not int:  # Python's forms too, as ruamel.yaml took them
                    value = int(text, 0)  # `0b101`, `+0x1F`, `1_000`
            elif tag == _FLOAT:
                value = _typed(text.replace("_", ""))
                value = float(value) if type(value) in (int, float) else None
            elif SafeConstructor.timestamp_regexp.match(text):
                value = SafeConstructor().construct_yaml_timestamp(yaml.ScalarNode(tag, text))
        except ValueError:
            value = None
        return self.invalid(text, tag, line, column) if value is None else value

    def invalid(self, text: str, tag: str, line: int, column: int) -> Refused:
        self.refuse(line, column, f"{text!r} is not a valid !!{tag.removeprefix(_STANDARD)}")
        return REFUSED

    def refuse(self, line: int, column: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, column, message))


def _typed(text: str) -> Any:
    """A plain scalar's value by the YAML 1.2 core schema; ValueError for a huge integer."""
    value = _WORDS.get(text, _MISSING)
    if value is not _MISSING:
        return value
    if _INT_RE.fullmatch(text):
        # Not int(text, 0), which refuses leading zeros: "007" is 7.
        return (
            int(text[2:], 16 if text[1] == "x" else 8) if text[:2] in ("0x", "0o") else int(text)
        )
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return text


def _tag_message(tag: str) -> str:
    # libyaml gives the tag resolved; it is shown as it is usually written.
    if tag.startswith(_STANDARD):
        tag = "!!" + tag.removeprefix(_STANDARD)
    elif not tag.startswith("!"):
        tag = f"!<{tag}>"
    return f"YAML tag '{tag}' is not allowed: the desired state holds only {_PLAIN_TYPES}"


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
    if error.problem == "exceeded maximum nesting depth" and mark is not None:
        return _too_deep(path, text[: mark.index]) or Problem(
            path, line, column, "nested too deeply to read"
        )
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


def _too_deep(path: str, text: str) -> Problem | None:
    """Where MAX_DEPTH is passed in a text that libyaml found nested past its own limit.

    libyaml stops at 1,000 levels, which it may reach while it looks ahead for a
    key, before any event of the levels past MAX_DEPTH. The text up to there is
    composed again: it is cut short, which is a syntax error only at its end.
    """
    try:
        _Composer(YamlDocument(path)).compose(yaml.parse(text, Loader=_LOADER))
    except _Stop as stop:
        return stop.problem(path)
    except yaml.YAMLError:
        pass
    return None


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character index."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1
