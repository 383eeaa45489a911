"""Reading YAML files into plain data while remembering where each key and value was written.

The desired-state loader points every message at a file:line:col, and its input
comes from pull requests, so this reader is built for hostile text:

- It composes ruamel.yaml's round-trip node tree (YAML 1.2) and converts the
  nodes itself. No ruamel constructor runs on a mapping or a sequence, so a tag
  such as `!!python/object` can build nothing: any tag outside the plain YAML
  types (str, null, bool, int, float, timestamp, seq, map) is a problem.
- Aliases (`*name`) are refused where they appear, before anything is
  expanded, so a "billion laughs" file costs no more than its own length.
  Anchors alone are harmless and ignored; merge keys (`<<`) are refused.
- A file over MAX_FILE_BYTES is refused before it is read, and content that is
  not UTF-8 before it is parsed.
- Nesting deeper than MAX_DEPTH stops the parse with a problem instead of
  recursing towards a RecursionError.
- Duplicate keys are kept out of the data (the first one wins) and returned
  with the place of every occurrence, so that the caller can report all of them.

A directory is read as the `*.yaml`/`*.yml` files directly in it, by name;
hidden files are skipped. Mapping keys are taken as text: in `1234: {}` the key
is "1234", as it would be after a YAML-to-JSON conversion in an editor that
validates against a schema. Lines and columns are 1-based.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, MaxDepthExceededError
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from syncd.errors import Problem

#: Largest file accepted; a bigger one is refused before it is decoded or parsed.
MAX_FILE_BYTES: Final = 10 * 1024 * 1024

YAML_SUFFIXES: Final = (".yaml", ".yml")

#: Deepest nesting accepted. The desired state needs 5 levels (top, users, user,
#: emails, address); the margin leaves room for mistakes to be reported as such.
MAX_DEPTH: Final = 64

_STANDARD: Final = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP, _VALUE, _MERGE, _SEQ, _MAP = (
    _STANDARD + name
    for name in (
        "str",
        "null",
        "bool",
        "int",
        "float",
        "timestamp",
        "value",
        "merge",
        "seq",
        "map",
    )
)
_SCALAR_TAGS: Final = frozenset({_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP, _VALUE})
# The tag given to the placeholder node that stands where an alias was written.
_ALIAS: Final = "tag:syncd.invalid,2024:refused-alias"

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
    an empty file is parsed, with `root` and `data` None.
    """

    path: str
    root: Node | None = None
    data: Any = None
    parsed: bool = True
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    _keys: dict[int, dict[str, tuple[Node, Node]]] = field(default_factory=dict, repr=False)

    def problem(self, mark: Mark, message: str) -> Problem:
        return Problem(self.path, mark.line, mark.column, message)

    def key_mark(self, loc: Loc) -> Mark:
        """Where the key that `loc` ends with was written (for a list item: the item)."""
        key_node, value_node = self._find(loc)
        return _mark(key_node if key_node is not None else value_node)

    def value_mark(self, loc: Loc) -> Mark:
        """Where the value at `loc` was written; an empty value is placed at its key."""
        key_node, value_node = self._find(loc)
        if key_node is not None and isinstance(value_node, ScalarNode) and _is_blank(value_node):
            return _mark(key_node)
        return _mark(value_node)

    def scalar_text(self, loc: Loc) -> str | None:
        """The text of the scalar at `loc` as written (before typing), or None."""
        _, node = self._find(loc)
        return node.value if isinstance(node, ScalarNode) else None

    def _find(self, loc: Loc) -> tuple[Node | None, Node | None]:
        # Walks as far as `loc` leads: a place that does not exist (a missing key)
        # resolves to its nearest existing parent.
        key_node: Node | None = None
        node = self.root
        for key in loc:
            if isinstance(node, MappingNode) and isinstance(key, str):
                if key not in self._mapping_keys(node):
                    break
                key_node, node = self._mapping_keys(node)[key]
            elif isinstance(node, SequenceNode) and isinstance(key, int) and key < len(node.value):
                key_node, node = None, node.value[key]
            else:
                break
        return key_node, node

    def _mapping_keys(self, node: MappingNode) -> dict[str, tuple[Node, Node]]:
        keys = self._keys.get(id(node))
        if keys is None:
            keys = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and key_node.tag in _SCALAR_TAGS:
                    keys.setdefault(key_node.value, (key_node, value_node))
            self._keys[id(node)] = keys
        return keys


class _AliasRefusingComposer(Composer):
    """ruamel's composer, except that an alias becomes a placeholder instead of a shared node."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader=loader)
        self.warn_double_anchors = False  # anchors are never used, so a reused one is harmless
        self.aliases: list[Any] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.get_event()
            self.aliases.append(event)
            return ScalarNode(_ALIAS, event.anchor, event.start_mark, event.end_mark)
        return super().compose_node(parent, index)


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
        shown = f"{size} bytes"  # just over the limit: "10.0 MiB" would look allowed
    return Problem(path, 1, 1, f"file is {shown}; the limit is {MAX_FILE_BYTES // 2**20} MiB")


def read_yaml(path: str, text: str) -> YamlDocument:
    """Parse one YAML document; problems are collected in the result, never raised."""
    document = YamlDocument(path)
    yaml = YAML(typ="rt")
    yaml.Composer = _AliasRefusingComposer
    yaml.max_depth = MAX_DEPTH
    try:
        document.root = yaml.compose(text)
    except YAMLError as error:
        document.parsed = False
        document.problems.append(_syntax_problem(path, text, error))
        return document
    except RecursionError:
        # MAX_DEPTH should stop this first; kept so that no input can crash the caller.
        document.parsed = False
        document.problems.append(Problem(path, 1, 1, "nested too deeply to read"))
        return document
    for event in yaml.composer.aliases:
        document.problems.append(
            document.problem(
                _mark(event),
                f"YAML aliases are not allowed ('*{event.anchor}'): write the value out",
            )
        )
    if document.root is not None and not _is_blank(document.root):
        document.data = _Converter(document, yaml).convert(document.root, ())
    else:
        document.root = None
    return document


class _Converter:
    def __init__(self, document: YamlDocument, yaml: YAML) -> None:
        self.document = document
        # Only its scalar methods are used; the loader gives it the document's YAML version.
        self.scalars = SafeConstructor(loader=yaml)

    def convert(self, node: Node, loc: Loc) -> Any:
        tag = node.tag
        if tag == _ALIAS:
            return REFUSED  # reported from the composer's list
        if isinstance(node, ScalarNode) and tag in _SCALAR_TAGS:
            return self.scalar(node)
        if isinstance(node, SequenceNode) and tag == _SEQ:
            return [self.convert(item, (*loc, index)) for index, item in enumerate(node.value)]
        if isinstance(node, MappingNode) and tag == _MAP:
            return self.mapping(node, loc)
        self.refuse_tag(node)
        return REFUSED

    def mapping(self, node: MappingNode, loc: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        places: dict[str, list[Mark]] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node)
            if key is None:
                continue
            places.setdefault(key, []).append(_mark(key_node))
            if key not in result:
                result[key] = self.convert(value_node, (*loc, key))
        for key, marks in places.items():
            if len(marks) > 1:
                self.document.duplicates.append(Duplicate(loc, key, tuple(marks)))
        return result

    def key(self, node: Node) -> str | None:
        problem = self.document.problem
        if node.tag == _ALIAS:
            return None
        if node.tag == _MERGE:
            message = "merge keys ('<<') are not allowed: write the keys out"
        elif isinstance(node, ScalarNode) and node.tag in _SCALAR_TAGS:
            return str(node.value)
        elif isinstance(node, ScalarNode):
            self.refuse_tag(node)
            return None
        else:
            kind = "list" if isinstance(node, SequenceNode) else "mapping"
            message = f"a key must be a plain value, not a {kind}"
        self.document.problems.append(problem(_mark(node), message))
        return None

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag or ""
        if tag in (_STR, _VALUE):
            return node.value
        if tag == _NULL:
            return None
        construct = {
            _BOOL: self.scalars.construct_yaml_bool,
            _INT: self.scalars.construct_yaml_int,
            _FLOAT: self.scalars.construct_yaml_float,
            _TIMESTAMP: self.scalars.construct_yaml_timestamp,
        }[tag]
        try:
            return construct(node)
        except (YAMLError, ValueError, KeyError, IndexError):
            # Only an explicit tag can put such text here (`!!int abc`).
            kind = tag.removeprefix(_STANDARD)
            message = f"{node.value!r} is not a valid !!{kind}"
            self.document.problems.append(self.document.problem(_mark(node), message))
            return REFUSED

    def refuse_tag(self, node: Node) -> None:
        tag = node.ctag
        shown = f"{tag.handle}{tag.suffix}" if tag.handle else f"!<{tag}>"
        message = (
            f"YAML tag '{shown}' is not allowed: the desired state holds only "
            "strings, lists and mappings"
        )
        self.document.problems.append(self.document.problem(_mark(node), message))


def _is_blank(node: Node) -> bool:
    """An empty plain scalar: a value left out (`key:`), or a document of only `---`."""
    return (
        isinstance(node, ScalarNode)
        and node.tag == _NULL
        and node.value == ""
        and node.style is None
    )


def _mark(where: Any) -> Mark:
    start = where.start_mark
    return Mark(start.line + 1, start.column + 1)


def _syntax_problem(path: str, text: str, error: YAMLError) -> Problem:
    if isinstance(error, ReaderError):
        line, column = _position(text, error.position)
        message = f"character U+{error.character:04X} is not allowed in YAML text"
        return Problem(path, line, column, message)
    if not isinstance(error, MarkedYAMLError):
        return Problem(path, 1, 1, f"invalid YAML: {error}")
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    if isinstance(error, MaxDepthExceededError):
        message = f"nested more than {MAX_DEPTH} levels deep: the desired state needs 5"
    elif error.context == "expected a single document in the stream":
        message = "a second YAML document ('---') is not allowed: one document per file"
    else:
        message = f"invalid YAML: {error.problem or error.context}"
        if error.problem and error.context and error.context_mark is not None:
            where = f"{error.context_mark.line + 1}:{error.context_mark.column + 1}"
            message += f" ({error.context} at {where})"
        if "'\\t'" in message:
            message += "; indent with spaces, YAML does not allow tabs there"
    return Problem(path, line, column, message)


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character index."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1
