"""What a pydantic validation error means, said at its file:line:col in the operator's words.

The loader validates the desired state with pydantic models; their errors name
a `loc` in the data and a terse type. Here each becomes a Problem at the place
in the YAML where that value was written, with what was expected and a hint
for a value YAML read as a number.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Final

from pydantic_core import ErrorDetails

from syncd.core.desired import Location
from syncd.desired.fileformat import SAID
from syncd.desired.yaml_compose import REFUSED, Loc
from syncd.desired.yaml_positions import YamlDocument
from syncd.errors import Problem


def explain_all(errors: list[ErrorDetails], document: YamlDocument) -> Iterator[Problem]:
    """A problem for each error, but those of a type in SAID: the reader reports those itself."""
    for error in errors:
        if error["type"] in SAID:
            continue
        if error["input"] is not REFUSED:  # else the reader has already said why
            mark, message = _explain(error, document)
            yield Problem(document.path, mark.line, mark.column, message)


def _explain(error: ErrorDetails, document: YamlDocument) -> tuple[Location, str]:
    # No error is about a key: the reader refuses unknown keys and bad names by
    # fileformat.SHAPE, so pydantic never sees the one and SAID skips the other.
    loc: Loc = tuple(error["loc"])
    kind, value = error["type"], error["input"]
    if kind == "missing":  # never 'users', optional to pydantic: DesiredStateFile says so
        missing = "missing 'version: 1'" if loc == ("version",) else f"missing {loc[-1]!r}"
        return document.value_mark(loc[:-1]), missing
    if kind == "syncd_ignored_and_set":  # the user's error, said where it says ignore
        return document.value_mark((*loc, "ignore", error["ctx"]["index"])), error["msg"]
    mark = document.value_mark(loc)
    subject, expected = _expectation(loc)
    if kind.startswith("syncd_"):
        message = error["msg"]
        return mark, message if len(loc) != 3 else f"{loc[2]}: {message}"
    if kind == "string_too_long":
        limit = error.get("ctx", {}).get("max_length")
        return mark, f"{subject} is {len(value)} characters long; the limit is {limit}"
    if kind.endswith("_type") and loc == ("version",):
        text = f"the string {value!r}" if isinstance(value, str) else document.scalar_text(loc)
        text = "null" if value is None else text
        return mark, f"version must be the number 1, not {text}"
    if kind.endswith("_type"):
        message = f"{subject} must be {expected}, not {_describe(value)}"
        if kind == "list_type" and value is None and loc[-1] == "emails":
            message += ": write 'emails: []' to keep only the primary address"
        elif kind == "list_type" and value is None:
            message += f": write '{loc[-1]}: []' or leave the key out for none"
        elif isinstance(value, int | float | date) and not isinstance(value, bool):
            text = document.scalar_text(loc)
            message += f' (quote it to mean the text: "{text}")'
        return mark, message
    return mark, f"{subject}: {error['msg']}"


#: The forms docs/desired-state.md gives for `suspend:` and its end.
_SUSPEND_FORMS: Final = (
    "a mapping with a reason and, optionally, an end: "
    "{reason: INC-123} or {reason: INC-123, until: 2027-01-31}"
)
_UNTIL_FORMS: Final = (
    "a date (2027-01-31) or an ISO datetime with a zone (2027-01-31T18:00:00+01:00)"
)


def _expectation(loc: Loc) -> tuple[str, str]:
    """What the value at `loc` is called, and what it must be."""
    match loc:
        case ():
            return "the top level", "a mapping with 'version: 1' and 'users'"
        case ("users",):
            return "'users'", "a mapping of usernames to their settings"
        case ("users", username):
            return f"user {username!r}", "a mapping of settings (or empty)"
        case ("users", _, "emails"):
            return "emails", "a list of addresses"
        case ("users", _, "emails", _):
            return "an email address", "a string"
        case ("users", _, "groups" | "ignore" as key):
            return str(key), "a list of names"
        case ("users", _, "groups" | "ignore", _):
            return "a name", "a string"
        case ("users", _, "suspend"):
            return "suspend", _SUSPEND_FORMS
        case ("users", _, "suspend", "reason"):
            return "suspend.reason", "a string (an incident, a ticket)"
        case ("users", _, "suspend", "until"):
            return "suspend.until", _UNTIL_FORMS
        case ("defaults",):
            return "'defaults'", "a mapping of keys every user takes"
        case ("groups",):
            return "'groups'", "a mapping of group names to their keys"
        case ("groups", name):
            return f"group {name!r}", "a mapping of keys (or empty)"
        case ("users", _, name) | ("defaults", name) | ("groups", _, name):
            return str(name), 'a string ("" or null for empty)'
    return ".".join(map(str, loc)), "valid"


# The exact types that syncd.desired.yaml_compose puts in the data.
_KINDS: Final[dict[type, str]] = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
    date: "a date",
    datetime: "a date",
}


def _describe(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)
