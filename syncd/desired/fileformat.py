"""The desired-state file format, defined once: its pydantic models, Shape and JSON Schema.

The models validate the data and give `syncd schema` its JSON Schema; the
reader keeps their key rules as it reads (SHAPE, see syncd.desired.yaml_shape),
with the same messages. design.md sections 2 and 2.1 say what each key means.
"""

from __future__ import annotations

import difflib
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from syncd.core.desired import EmailsMode
from syncd.core.fields import (
    GROUP_PATTERN,
    MAX_TEXT_LENGTH,
    PROFILE_FIELDS,
    USERNAME_PATTERN,
    is_valid_email,
    is_valid_url,
    is_valid_username,
)
from syncd.desired.inheritance import EMAILS_MODE
from syncd.desired.yaml_shape import Check, Shape

FORMAT_VERSION: Final = 1


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


def _email_or_empty_problem(address: str) -> str | None:
    return _email_problem(address) if address else None


def _checked(problem: Check, code: str) -> AfterValidator:
    def check(value: str) -> str:
        if (message := problem(value)) is not None:
            raise PydanticCustomError(code, message)
        return value

    return AfterValidator(check)


def _url_or_empty_problem(url: str) -> str | None:
    if not url or is_valid_url(url):
        return None
    return f'invalid URL {url!r}: expected http:// or https://, or "" for none'


Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
EmailAddress = Annotated[str, _checked(_email_problem, "syncd_email")]
EmailOrEmpty = Annotated[str, _checked(_email_or_empty_problem, "syncd_email")]
Username = Annotated[
    str,
    _checked(_username_problem, "syncd_username"),
    WithJsonSchema({"type": "string", "pattern": f"^{USERNAME_PATTERN.pattern}$"}),
]
_MODES: Final = tuple(mode.value for mode in EmailsMode)
_IGNORABLE: Final = (*PROFILE_FIELDS, "emails")


def _choice_problem(value: str, choices: tuple[str, ...], what: str) -> str | None:
    if value in choices:
        return None
    close = difflib.get_close_matches(value.lower(), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{what} {value!r}{hint}; expected one of: {', '.join(choices)}"


_mode_problem = partial(_choice_problem, choices=_MODES, what="unknown mode")
_ignore_problem = partial(_choice_problem, choices=_IGNORABLE, what="cannot ignore")


def _group_problem(name: str) -> str | None:
    if GROUP_PATTERN.fullmatch(name):
        return None
    return f"invalid group name {name!r}: 1 to 64 of lowercase a-z, 0-9, '_' and '-'"


Mode = Annotated[
    str, _checked(_mode_problem, "syncd_mode"), WithJsonSchema({"enum": list(_MODES)})
]
Ignorable = Annotated[
    str, _checked(_ignore_problem, "syncd_ignore"), WithJsonSchema({"enum": list(_IGNORABLE)})
]
GroupName = Annotated[
    str,
    _checked(_group_problem, "syncd_group"),
    WithJsonSchema({"type": "string", "pattern": f"^{GROUP_PATTERN.pattern}$"}),
]

_UNMANAGED = 'Absent: not managed. "" or null: must be empty.'


def _until_problem(text: str) -> str | None:
    if suspension_end(text) is not None:
        return None
    return (
        f"invalid end {text!r}: expected a date (2027-01-31) or an ISO datetime with a zone "
        "(2027-01-31T18:00:00+01:00)"
    )


def _check_reason(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError(
            "syncd_reason", "a suspension needs a reason (an incident, a ticket)"
        )
    return text.strip()


def suspension_end(text: str) -> float | None:
    """When a suspension written `until: text` ends, Unix time; None if it is no date
    nor an ISO datetime with a zone.

    A date ends at the start of that day, UTC: `until: 2027-01-31` means
    syncd manages the user again on the 31st.
    """
    try:
        if len(text) == len("2027-01-31"):
            return datetime.combine(date.fromisoformat(text), time(), UTC).timestamp()
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return None if moment.tzinfo is None else moment.timestamp()


class SuspendSettings(BaseModel):
    """A user left alone for a while: neither read nor written, listed in the plan."""

    model_config = ConfigDict(extra="forbid", strict=True, title="Suspension")

    reason: Annotated[Text, AfterValidator(_check_reason)] = Field(
        description="Why (an incident, a ticket): shown in the plan, required."
    )
    until: Annotated[str, _checked(_until_problem, "syncd_until")] | None = Field(
        None,
        description="When syncd manages the user again: a date (from the start of that day, "
        "UTC) or an ISO datetime with a zone. Absent: until the key is removed.",
    )


class ProfileSettings(BaseModel):
    """The keys a user, a group and the defaults may all set."""

    model_config = ConfigDict(extra="forbid", strict=True, title="Group")

    full_name: Text | None = Field(None, description=f"Full name. {_UNMANAGED}")
    location: Text | None = Field(None, description=f"Location. {_UNMANAGED}")
    company: Text | None = Field(None, description=f"Company. {_UNMANAGED}")
    profile_url: Annotated[str, _checked(_url_or_empty_problem, "syncd_url")] | None = Field(
        None, description=f"Profile URL, http:// or https://. {_UNMANAGED}"
    )
    gravatar_email: EmailOrEmpty | None = Field(
        None,
        description="Address whose Gravatar the profile shows. The API never returns it: "
        f"syncd compares its digest with the one in gravatar_url. {_UNMANAGED}",
    )
    emails_mode: Mode | None = Field(
        None,
        description="How 'emails' is read. exact (the default): the listed set, nothing else "
        "but the primary. additive: missing addresses are added, none deleted. owned: missing "
        "addresses are added; only those syncd owns (it added them, or they were listed while "
        "it read them on the account) are deleted.",
    )


class UserSettings(ProfileSettings):
    """What syncd manages for one account: the settings written, and only those."""

    model_config = ConfigDict(extra="forbid", strict=True, title="User")

    emails: list[EmailAddress] = Field(
        default_factory=list,
        description="The addresses, compared case-insensitively, read as emails_mode says: "
        "missing ones are added (unverified); by default unlisted ones are deleted, except the "
        "primary address, which is never deleted. Absent: addresses not managed. []: none but "
        "the primary.",
    )
    groups: list[GroupName] = Field(
        default_factory=list,
        description="Groups whose keys this user takes where it does not set them itself; "
        "they take precedence over 'defaults'. Two groups that set a key differently are an "
        "error, unless the user ignores it.",
    )
    ignore: list[Ignorable] = Field(
        default_factory=list,
        description="Keys (profile keys or 'emails') never managed for this user, whatever "
        "the defaults or its groups say.",
    )
    suspend: SuspendSettings | None = Field(
        None, description="Leave this user alone for a while: not read, not written."
    )

    @model_validator(mode="after")
    def _not_both_set_and_ignored(self) -> UserSettings:
        both = [index for index, key in enumerate(self.ignore) if key in self.model_fields_set]
        if both:
            message = f"{', '.join(self.ignore[i] for i in both)}: both set and ignored; keep one"
            # The error is the user's; `index` is the ignore entry it is said at.
            raise PydanticCustomError("syncd_ignored_and_set", message, {"index": both[0]})
        return self


class DesiredStateFile(BaseModel):
    """A syncd desired-state file: the accounts to keep in the state written here."""

    model_config = ConfigDict(extra="forbid", strict=True, title="syncd desired state")

    version: Annotated[
        int, AfterValidator(_check_version), WithJsonSchema({"type": "integer", "const": 1})
    ] = Field(description="Format version of this file: 1.")
    defaults: ProfileSettings | None = Field(
        None,
        description="Keys every user takes where neither it nor one of its groups sets them. "
        "Declared once across all the files.",
    )
    groups: dict[GroupName, ProfileSettings | None] | None = Field(
        None,
        description="Named sets of keys that users take by listing the group under their "
        "'groups'. Each group is declared once across all the files.",
    )
    users: dict[Username, UserSettings | None] | None = Field(
        None,
        description="Managed accounts by username (4 to 30 of a-z, 0-9 and _). Accounts not "
        "listed are never touched; a user with no settings is listed but nothing is managed. "
        "Required, unless the file holds only defaults or groups.",
    )

    @model_validator(mode="after")
    def _users_or_layers(self) -> DesiredStateFile:
        if not self.model_fields_set & {"users", "defaults", "groups"}:
            raise PydanticCustomError("syncd_missing_users", _MISSING_USERS)
        return self


_MISSING_USERS: Final = "missing 'users' (a mapping of usernames; 'users: {}' for none)"
LAYER_VALUES: Final = (*PROFILE_FIELDS, EMAILS_MODE)
# The pydantic errors that the reader reports itself, by SHAPE's `name` check.
SAID: Final = frozenset({"syncd_username", "syncd_group"})


def _only(model: type[BaseModel], *, top: bool = False) -> Check:
    """A check that takes the keys of `model` and names the near miss of any other."""
    keys = tuple(model.model_fields)
    allowed = frozenset(keys)

    def unknown(key: str) -> str | None:
        if key in allowed:
            return None
        close = difflib.get_close_matches(key.lower(), keys, n=1)
        if close:
            return f"unknown key {key!r} (did you mean {close[0]!r}?)"
        if top and is_valid_username(key):
            return f"unknown key {key!r} (users go under 'users:')"
        return f"unknown key {key!r}; expected one of: {', '.join(keys)}"

    return unknown


def _layer_key(where: str) -> Check:
    """The keys a group or `defaults` may set: not `emails`, which are personal (design.md 2.1)."""
    only = _only(ProfileSettings)
    personal = f"'emails' cannot be set {where}: addresses are personal; set them on each user"
    return lambda key: personal if key == "emails" else only(key)


# The same rules, kept as the file is read (see syncd.desired.yaml_shape).
SHAPE: Final = Shape(
    key=_only(DesiredStateFile, top=True),
    under={
        "defaults": Shape(key=_layer_key("in 'defaults'")),
        "groups": Shape(name=_group_problem, under_any=Shape(key=_layer_key("by a group"))),
        "users": Shape(
            name=_username_problem,
            under_any=Shape(
                key=_only(UserSettings),
                under={
                    "emails": Shape(item=_email_problem),
                    "ignore": Shape(item=_ignore_problem),
                    "groups": Shape(item=_group_problem),
                    "suspend": Shape(key=_only(SuspendSettings)),
                },
            ),
        ),
    },
)


def desired_state_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a desired-state file, for editors and CI."""
    schema = DesiredStateFile.model_json_schema()
    for name in ("users", "groups"):
        for option in schema["properties"][name]["anyOf"]:
            # pydantic states key rules as patternProperties; propertyNames says
            # "every key must match", which is the rule (and lets editors complete keys).
            for pattern, value in option.pop("patternProperties", {}).items():
                option["propertyNames"] = {"pattern": pattern}
                option["additionalProperties"] = value
    schema["anyOf"] = [{"required": [key]} for key in ("users", "defaults", "groups")]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
