"""Loading the desired state: YAML files in, a valid DesiredState out, or every problem at once.

The file format is defined once, by the models of `syncd.desired.fileformat`.
The YAML is read by `syncd.desired.yaml_positions`, which keeps the place of
every key and value so that each pydantic error's `loc` is reported at its
file:line:col. What pydantic cannot see (users repeated within a file and
across files, repeated keys and addresses) is found by
`syncd.desired.duplicates`; what users inherit from defaults and groups, and
its problems, by `syncd.desired.inheritance`, once every file is read. A file
shows at most MAX_PROBLEMS problems: reading and checking stop there.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from syncd.core.desired import DesiredState, DesiredUser, EmailsMode, Location, SourceFile
from syncd.core.fields import GROUP_PATTERN, PROFILE_FIELDS
from syncd.core.suspension import Suspension
from syncd.desired import yaml_positions
from syncd.desired.duplicates import (
    Written,
    duplicate_emails,
    duplicate_keys,
)
from syncd.desired.fileformat import (
    FORMAT_VERSION,
    LAYER_VALUES,
    SHAPE,
    DesiredStateFile,
    ProfileSettings,
    suspension_end,
)
from syncd.desired.inheritance import DEFAULTS, EMAILS_MODE, Layer, Layers, Locate, Naming
from syncd.desired.problem_list import ProblemList
from syncd.desired.sourcefiles import read_yaml_files
from syncd.desired.validation_messages import explain_all
from syncd.desired.yaml_compose import REFUSED
from syncd.desired.yaml_positions import YamlDocument, collector_paused, read_yaml_bytes
from syncd.errors import DesiredStateError, Problem

if TYPE_CHECKING:
    from syncd.desired.memo import DesiredMemo

# The reader's limits, named here for the loader's callers.
MAX_FILE_BYTES: Final = yaml_positions.MAX_FILE_BYTES
MAX_PROBLEMS: Final = yaml_positions.MAX_PROBLEMS
_CHUNK: Final = 1000  # users validated at once

# ---------------------------------------------------------------------------
# Loading


def load_desired(path: str | os.PathLike[str], memo: DesiredMemo | None = None) -> DesiredState:
    """The desired state in a file, or in the `*.yaml`/`*.yml` files in a directory's tree.

    Raises DesiredStateError carrying every problem of every file (at most
    MAX_PROBLEMS for each). With a `memo`, a file already found valid is not
    read again, and the files of a valid state are remembered.
    """
    files, problems = read_yaml_files(os.fspath(path))
    return _assemble(files, problems, revision=None, memo=memo)


def parse_desired(
    files: Iterable[tuple[str, bytes]],
    revision: str | None = None,
    read_problems: Iterable[Problem] = (),
) -> DesiredState:
    """The desired state in already-read files (path for messages, content), e.g. from git,
    with the problems of the files that could not be read."""
    return _assemble(list(files), list(read_problems), revision)


# ---------------------------------------------------------------------------
# Checking


def _assemble(
    files: list[tuple[str, bytes]],
    read_problems: list[Problem],
    revision: str | None,
    memo: DesiredMemo | None = None,
) -> DesiredState:
    users: list[DesiredUser] = []
    namings: list[Naming] = []  # the users of files that are not valid, for their groups
    written = Written()
    layers = Layers()
    layers.complete = not read_problems
    problems = ProblemList(read_problems)
    sources = tuple(
        SourceFile(path, hashlib.sha256(content).hexdigest()) for path, content in files
    )
    read: list[tuple[str, str, list[DesiredUser]]] = []  # to remember, if all is valid
    # Hundreds of thousands of new objects, none of them garbage: the cyclic
    # collector would only walk them again and again, for seconds at 100,000 users.
    with collector_paused():
        for (path, content), source in zip(files, sources, strict=True):
            known = memo.recall(source.sha256, path) if memo else None
            if known is None:
                declared = len(layers.declared)
                known = _load_file(path, content, written, layers, problems, namings)
                # The memo keeps users only: a file that declares defaults or
                # groups is read each time (they are usually a small file).
                if len(layers.declared) == declared:
                    read.append((source.sha256, path, known))
            else:
                # Still checked against the other files: a user in two files.
                for user in known:
                    assert user.location is not None  # a remembered user has its place
                    written.add(user.username, user.location)
            users += known
        problems.extend(written.duplicate_users())
        problems.extend(layers.duplicates())
        # Resolved even when there are problems: what users name is known at once.
        locate = _group_places(files)
        resolved, unresolved = layers.resolve(users, locate)
        problems.extend(unresolved)
        problems.extend(layers.problems_of(namings, locate))
    if problems:
        raise DesiredStateError(problems.shown())
    # Only now: a file valid alone may repeat a user of its own, which only
    # the whole state's check finds.
    if memo is not None:
        for sha256, path, known in read:
            memo.keep(sha256, path, known)
    return DesiredState(tuple(resolved), sources, revision, tuple(sorted(layers.groups)))


def _group_places(files: list[tuple[str, bytes]]) -> Locate:
    """Where a user wrote the n-th of its groups: its file read again, once, for messages."""
    contents, documents = dict(files), dict[str, YamlDocument]()

    def locate(username: str, place: Location | None, index: int) -> Location | None:
        if place is None or place.path not in contents:
            return None
        path = place.path
        if path not in documents:
            documents[path] = read_yaml_bytes(path, contents[path])
        document = documents[path]
        return document.value_mark(("users", username, "groups", index))

    return locate


def own_places(
    state: DesiredState, files: Iterable[tuple[str, bytes]] = ()
) -> Callable[[DesiredUser, str], Location | None]:
    """Where each user wrote its own keys, for `render --explain`: its file read again,
    from `files` (a git source's, at its revision) or else from disk, if it has the same
    bytes; else None."""
    digests = {source.path: source.sha256 for source in state.sources}
    given = dict(files)
    documents: dict[str, YamlDocument | None] = {}

    def place(user: DesiredUser, key: str) -> Location | None:
        path = user.location.path if user.location else None
        if path is None or path not in digests:
            return None
        if path not in documents:
            content = given.get(path)
            if content is None:
                read, problems = read_yaml_files(path)
                content = None if problems else read[0][1]
            documents[path] = None
            if content is not None and hashlib.sha256(content).hexdigest() == digests[path]:
                documents[path] = read_yaml_bytes(path, content)
        document = documents[path]
        if document is None:
            return None
        return document.value_mark(("users", user.username, key))

    return place


def _load_file(
    path: str,
    content: bytes,
    written: Written,
    layers: Layers,
    problems: ProblemList,
    namings: list[Naming],
) -> list[DesiredUser]:
    """The users of one file, as written, if it has no problem; its problems go to `problems`.

    Its defaults and groups go to `layers`; if it has a problem, what its users
    name to `namings`.
    """
    document = read_yaml_bytes(path, content, SHAPE)
    before = len(problems)
    problems.extend(document.problems)
    if not document.parsed:
        layers.complete = False  # the groups it declares are not known
        problems.extend(duplicate_keys(document, written))  # those found before it stopped
        return []
    if document.root is None:
        problems.extend([Problem(path, 1, 1, "empty file: expected 'version: 1' and 'users'")])
        return []
    places = dict(document.key_marks(("users",)))
    for username, place in places.items():
        written.add(username, place)
    _add_layers(document, layers)
    users = _validate(document, places, problems)
    problems.extend(duplicate_keys(document, written))
    problems.extend(duplicate_emails(document))
    if users is None and len(problems) == before:
        # Every refusal is reported where it is made; should one ever not be,
        # the file must still count as invalid, not as a file without users.
        problems.extend([Problem(path, 1, 1, "not a valid desired state")])
    if users is not None and len(problems) == before:
        return users
    namings += _namings(document, places)
    return []


def _validate(
    document: YamlDocument, places: dict[str, Location], problems: ProblemList
) -> list[DesiredUser] | None:
    """The users of a file if it is valid by DesiredStateFile, else None and its problems.

    The users are validated a chunk at a time, and built from a chunk's models
    before the next is validated: 100,000 models at once took ~67 MB beside the
    data. pydantic validates each user on its own, and the file's other keys are
    only in the first chunk, so the errors are those of the whole file at once.
    """
    if document.data is REFUSED:
        return None
    users: list[DesiredUser] | None = []
    for chunk in _chunks(document.data):
        if problems.full(document.path):
            # As reading stops at the problem limit, so does checking: nobody reads
            # further, and 15 MB of wrong types took 26 s to check to the end.
            problems.stop(document.path)
            return None
        try:
            model = DesiredStateFile.model_validate(chunk)
        except ValidationError as error:
            errors = error.errors(include_url=False)
            problems.extend(explain_all(errors, document))
            users = None
        else:
            if users is not None:
                users += _users(model, places)
    return users


def _chunks(data: Any) -> Iterator[Any]:
    """The data; or with its first _CHUNK users, then each next _CHUNK users alone."""
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict) or len(users) <= _CHUNK:
        yield data
        return
    items = iter(users.items())
    yield {**data, "users": dict(islice(items, _CHUNK))}
    while chunk := dict(islice(items, _CHUNK)):
        yield {"version": FORMAT_VERSION, "users": chunk}


def _users(model: DesiredStateFile, places: dict[str, Location]) -> list[DesiredUser]:
    users = []
    shared: dict[tuple[str, ...], tuple[str, ...]] = {(): ()}  # users in the same groups
    for username, settings in (model.users or {}).items():
        where = places[username]
        if settings is None:
            users.append(DesiredUser(username, {}, None, where))
            continue
        stated = settings.model_fields_set
        profile: dict[str, str] = {
            name: getattr(settings, name) or "" for name in PROFILE_FIELDS if name in stated
        }
        emails = tuple(settings.emails) if "emails" in stated else None
        mode = EmailsMode(settings.emails_mode) if settings.emails_mode else None
        groups, ignore = tuple(settings.groups), tuple(settings.ignore)
        groups, ignore = shared.setdefault(groups, groups), shared.setdefault(ignore, ignore)
        suspend = None
        if settings.suspend is not None:
            until = settings.suspend.until
            end = None if until is None else suspension_end(until)
            suspend = Suspension(settings.suspend.reason, end, str(where))
        users.append(
            DesiredUser(username, profile, emails, where, mode, groups, ignore, suspend=suspend)
        )
    return users


def _add_layers(document: YamlDocument, layers: Layers) -> None:
    """The file's defaults and groups, each with the place of every key it sets.

    Each is validated on its own, so that those of a file with problems are
    known too; one that is not valid is known by its name only.
    """
    data = document.data
    groups = data.get("groups") if isinstance(data, dict) else None
    again = any(d.parent == () and d.key == "groups" for d in document.duplicates)
    if again or not isinstance(data, dict) or not isinstance(groups, dict | None):
        layers.complete = False  # which groups it meant to declare is not known
        return
    found: list[tuple[str, tuple[str, ...], Any]] = [
        (name, ("groups", name), settings) for name, settings in (groups or {}).items()
    ]
    if "defaults" in data:
        found.insert(0, (DEFAULTS, ("defaults",), data["defaults"]))
    for key, loc, raw in found:
        declared = document.key_mark(loc)
        try:
            settings = ProfileSettings.model_validate({} if raw is None else raw)
        except ValidationError:
            layers.add(key, None, declared)
            continue
        stated = settings.model_fields_set
        values: dict[str, str] = {
            name: getattr(settings, name) or "" for name in LAYER_VALUES if name in stated
        }
        if settings.emails_mode is None:
            values.pop(EMAILS_MODE, None)  # null: not set, as on a user
        places: dict[str, Location] = {name: document.value_mark((*loc, name)) for name in values}
        layer_name = "defaults" if key == DEFAULTS else f"group {key}"
        layers.add(key, Layer.of(layer_name, values, places), declared)


def _namings(document: YamlDocument, places: dict[str, Location]) -> Iterator[Naming]:
    """What each user of a file that is not valid names under `groups`, and what it sets."""
    data = document.data
    users = data.get("users") if isinstance(data, dict) else None
    for username, settings in users.items() if isinstance(users, dict) else ():
        groups = settings.get("groups") if isinstance(settings, dict) else None
        if not isinstance(groups, list) or username not in places:
            continue
        # An item that is not a valid name is refused where it is written.
        names = tuple(
            name if isinstance(name, str) and GROUP_PATTERN.fullmatch(name) else None
            for name in groups
        )
        own = {key for key in PROFILE_FIELDS if key in settings}
        if settings.get(EMAILS_MODE) is not None:
            own.add(EMAILS_MODE)
        ignored = settings.get("ignore")
        if isinstance(ignored, list):
            own.update(key for key in ignored if isinstance(key, str))
        yield Naming(username, places[username], names, frozenset(own))
