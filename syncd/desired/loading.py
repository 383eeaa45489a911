"""Loading the desired state: YAML files in, a valid DesiredState out, or every problem at once.

The file format (design.md section 2) is defined once, by the pydantic models
below: they validate the data and give `syncd schema` its JSON Schema, and the
reader keeps their key rules as it reads (_SHAPE). The YAML itself is read by
`syncd.desired.yaml_positions`, which keeps the place of every key and value so
that each pydantic error's `loc` is reported at its file:line:col. What
pydantic cannot see (users repeated within a file and across files, repeated
keys and addresses) is found by `syncd.desired.duplicates`. A file shows at
most MAX_PROBLEMS problems: reading and checking stop there.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from syncd.core.desired import DesiredState, DesiredUser, Location, SourceFile
from syncd.core.fields import (
    MAX_TEXT_LENGTH,
    PROFILE_FIELDS,
    USERNAME_PATTERN,
    is_valid_email,
    is_valid_url,
    is_valid_username,
)
from syncd.core.suspension import Suspension
from syncd.desired import yaml_positions
from syncd.desired.duplicates import (
    Written,
    duplicate_emails,
    duplicate_keys,
    location_of,
)
from syncd.desired.problem_list import ProblemList
from syncd.desired.validation_messages import explain_all, unknown_key
from syncd.desired.yaml_compose import REFUSED
from syncd.desired.yaml_positions import (
    YamlDocument,
    collector_paused,
    read_yaml_bytes,
    read_yaml_files,
)
from syncd.desired.yaml_shape import Shape, one_of
from syncd.errors import DesiredStateError, Problem

if TYPE_CHECKING:
    from syncd.desired.memo import DesiredMemo

FORMAT_VERSION: Final = 1
# The reader's limits, named here for the loader's callers.
MAX_FILE_BYTES: Final = yaml_positions.MAX_FILE_BYTES
MAX_PROBLEMS: Final = yaml_positions.MAX_PROBLEMS
YAML_SUFFIXES: Final = yaml_positions.YAML_SUFFIXES
_CHUNK: Final = 1000  # users validated at once

# ---------------------------------------------------------------------------
# The format


def _check_version(version: int) -> int:
    if version != FORMAT_VERSION:
        raise PydanticCustomError(
            "syncd_version", f"unsupported version {version}: this syncd reads version 1"
        )
    return version


def _username_problem(name: str) -> str | None:
    if is_valid_username(name):
        return None
    message = f"invalid username {name!r}: 4 to 30 of lowercase a-z, 0-9 and '_'"
    if is_valid_username(name.lower()):
        message += f" (did you mean {name.lower()!r}?)"
    return message


def _email_problem(address: str) -> str | None:
    return None if is_valid_email(address) else f"invalid email address {address!r}"


def _check_username(name: str) -> str:
    if (problem := _username_problem(name)) is not None:
        raise PydanticCustomError("syncd_username", problem)
    return name


def _check_email(address: str) -> str:
    if (problem := _email_problem(address)) is not None:
        raise PydanticCustomError("syncd_email", problem)
    return address


def _check_email_or_empty(address: str) -> str:
    return address and _check_email(address)


def _check_url_or_empty(url: str) -> str:
    if url and not is_valid_url(url):
        raise PydanticCustomError(
            "syncd_url", f'invalid URL {url!r}: expected http:// or https://, or "" for none'
        )
    return url


def _check_until(text: str) -> str:
    try:
        moment = suspension_end(text)
    except ValueError:
        moment = None
    if moment is None:
        raise PydanticCustomError(
            "syncd_until",
            f"invalid end {text!r}: expected a date (2027-01-31) or an ISO datetime with a zone "
            "(2027-01-31T18:00:00+01:00)",
        )
    return text


def _check_reason(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError(
            "syncd_reason", "a suspension needs a reason (an incident, a ticket)"
        )
    return text.strip()


def suspension_end(text: str) -> float | None:
    """When a suspension written `until: text` ends, Unix time; None if it has no zone.

    A date ends at the start of that day, UTC: `until: 2027-01-31` means
    syncd manages the user again on the 31st.
    """
    if len(text) == len("2027-01-31"):
        return datetime.combine(date.fromisoformat(text), time(), UTC).timestamp()
    moment = datetime.fromisoformat(text)
    return None if moment.tzinfo is None else moment.timestamp()


Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
EmailAddress = Annotated[str, AfterValidator(_check_email)]
Username = Annotated[
    str,
    AfterValidator(_check_username),
    WithJsonSchema({"type": "string", "pattern": f"^{USERNAME_PATTERN.pattern}$"}),
]

_UNMANAGED = 'Absent: not managed. "" or null: must be empty.'


class SuspendSettings(BaseModel):
    """A user left alone for a while: neither read nor written, listed in the plan."""

    model_config = ConfigDict(extra="forbid", strict=True, title="Suspension")

    reason: Annotated[Text, AfterValidator(_check_reason)] = Field(
        description="Why (an incident, a ticket): shown in the plan, required."
    )
    until: Annotated[str, AfterValidator(_check_until)] | None = Field(
        None,
        description="When syncd manages the user again: a date (from the start of that day, "
        "UTC) or an ISO datetime with a zone. Absent: until the key is removed.",
    )


class UserSettings(BaseModel):
    """What syncd manages for one account: the settings written, and only those."""

    model_config = ConfigDict(extra="forbid", strict=True, title="User")

    full_name: Text | None = Field(None, description=f"Full name. {_UNMANAGED}")
    location: Text | None = Field(None, description=f"Location. {_UNMANAGED}")
    company: Text | None = Field(None, description=f"Company. {_UNMANAGED}")
    profile_url: Annotated[str, AfterValidator(_check_url_or_empty)] | None = Field(
        None, description=f"Profile URL, http:// or https://. {_UNMANAGED}"
    )
    gravatar_email: Annotated[str, AfterValidator(_check_email_or_empty)] | None = Field(
        None,
        description="Address whose Gravatar the profile shows. The API never returns it: "
        f"syncd compares its digest with the one in gravatar_url. {_UNMANAGED}",
    )
    emails: list[EmailAddress] = Field(
        default_factory=list,
        description="The exact set of addresses, compared case-insensitively: missing ones "
        "are added (unverified), unlisted ones deleted, except the primary address, which "
        "is never deleted. Absent: addresses not managed. []: none but the primary.",
    )
    suspend: SuspendSettings | None = Field(
        None, description="Leave this user alone for a while: not read, not written."
    )


class DesiredStateFile(BaseModel):
    """A syncd desired-state file: the accounts to keep in the state written here."""

    model_config = ConfigDict(extra="forbid", strict=True, title="syncd desired state")

    version: Annotated[
        int, AfterValidator(_check_version), WithJsonSchema({"type": "integer", "const": 1})
    ] = Field(description="Format version of this file: 1.")
    users: dict[Username, UserSettings | None] | None = Field(
        description="Managed accounts by username (4 to 30 of a-z, 0-9 and _). Accounts not "
        "listed are never touched; a user with no settings is listed but nothing is managed.",
    )


_TOP_KEYS: Final = tuple(DesiredStateFile.model_fields)
_USER_KEYS: Final = tuple(UserSettings.model_fields)
_SUSPEND_KEYS: Final = tuple(SuspendSettings.model_fields)
# The pydantic errors that the reader reports itself, by _SHAPE's `name` check.
_SAID: Final = frozenset({"syncd_username"})
# The same rules, kept as the file is read (see syncd.desired.yaml_shape).
_SHAPE: Final = Shape(
    key=one_of(_TOP_KEYS, partial(unknown_key, allowed=_TOP_KEYS, top=True)),
    under={
        "users": Shape(
            name=_username_problem,
            under_any=Shape(
                key=one_of(_USER_KEYS, partial(unknown_key, allowed=_USER_KEYS, top=False)),
                under={
                    "emails": Shape(item=_email_problem),
                    "suspend": Shape(
                        key=one_of(
                            _SUSPEND_KEYS, partial(unknown_key, allowed=_SUSPEND_KEYS, top=False)
                        )
                    ),
                },
            ),
        )
    },
)


def desired_state_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a desired-state file, for editors and CI."""
    schema = DesiredStateFile.model_json_schema()
    users = schema["properties"]["users"]
    for option in users["anyOf"]:
        # pydantic states key rules as patternProperties; propertyNames says
        # "every key must match", which is the rule (and lets editors complete keys).
        for pattern, value in option.pop("patternProperties", {}).items():
            option["propertyNames"] = {"pattern": pattern}
            option["additionalProperties"] = value
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# ---------------------------------------------------------------------------
# Loading


def load_desired(path: str | os.PathLike[str], memo: DesiredMemo | None = None) -> DesiredState:
    """The desired state in a file, or in the `*.yaml`/`*.yml` files directly in a directory.

    Raises DesiredStateError carrying every problem of every file (at most
    MAX_PROBLEMS for each). With a `memo`, a file already found valid is not
    read again, and the files of a valid state are remembered.
    """
    files, problems = read_yaml_files(os.fspath(path))
    return _assemble(files, problems, revision=None, memo=memo)


def parse_desired(files: Iterable[tuple[str, bytes]], revision: str | None = None) -> DesiredState:
    """The desired state in already-read files (path for messages, content), e.g. from git."""
    return _assemble(list(files), [], revision)


# ---------------------------------------------------------------------------
# Checking


def _assemble(
    files: list[tuple[str, bytes]],
    read_problems: list[Problem],
    revision: str | None,
    memo: DesiredMemo | None = None,
) -> DesiredState:
    users: list[DesiredUser] = []
    written = Written()
    problems = ProblemList(read_problems)
    sources = tuple(
        SourceFile(path, hashlib.sha256(content).hexdigest()) for path, content in files
    )
    read: list[tuple[str, str, list[DesiredUser]]] = []  # to remember, if all is valid
    # Hundreds of thousands of new objects, none of them garbage: the cyclic
    # collector would only walk them again and again (~1.3 s at 100,000 users).
    with collector_paused():
        for (path, content), source in zip(files, sources, strict=True):
            known = memo.recall(source.sha256, path) if memo else None
            if known is None:
                known = _load_file(path, content, written, problems)
                read.append((source.sha256, path, known))
            else:
                # Still checked against the other files: a user in two files.
                for user in known:
                    assert user.location is not None  # a remembered user has its place
                    written.add(user.username, user.location)
            users += known
        problems.extend(written.duplicate_users())
    if problems:
        raise DesiredStateError(problems.shown())
    # Only now: a file valid alone may repeat a user of its own, which only
    # the whole state's check finds.
    if memo is not None:
        for sha256, path, known in read:
            memo.keep(sha256, path, known)
    return DesiredState(tuple(users), sources, revision)


def _load_file(
    path: str, content: bytes, written: Written, problems: ProblemList
) -> list[DesiredUser]:
    """The users of one file, if it has no problem; its problems go to `problems`."""
    document = read_yaml_bytes(path, content, _SHAPE)
    before = len(problems)
    problems.extend(document.problems)
    if not document.parsed:
        problems.extend(duplicate_keys(document, written))  # those found before it stopped
        return []
    if document.root is None:
        problems.extend([Problem(path, 1, 1, "empty file: expected 'version: 1' and 'users'")])
        return []
    places = {name: location_of(document, mark) for name, mark in document.key_marks(("users",))}
    for username, place in places.items():
        written.add(username, place)
    users = _validate(document, places, problems)
    problems.extend(duplicate_keys(document, written))
    problems.extend(duplicate_emails(document))
    if users is None and len(problems) == before:
        # Every refusal is reported where it is made; should one ever not be,
        # the file must still count as invalid, not as a file without users.
        problems.extend([Problem(path, 1, 1, "not a valid desired state")])
    return users if users is not None and len(problems) == before else []


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
            problems.extend(explain_all(errors, document, _TOP_KEYS, _USER_KEYS, _SAID))
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
        suspend = None
        if settings.suspend is not None:
            until = settings.suspend.until
            end = None if until is None else suspension_end(until)
            suspend = Suspension(settings.suspend.reason, end, str(where))
        users.append(DesiredUser(username, profile, emails, where, suspend))
    return users
