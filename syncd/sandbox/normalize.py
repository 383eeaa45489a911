"""A server that stores something else than it was sent, on request: for truthfulness tests.

Real servers trim names, append "/" to URLs, lower-case addresses or ignore a
field they do not support. A client that compares what it sent with what it
wanted, and not with what the server kept, writes the same change for ever.
`--normalize FIELD=RULE` (or `normalize` in a reset body) makes the sandbox
do so, for a profile field or for `email` (the addresses added):

    strip   trim surrounding whitespace
    slash   append "/" to a non-empty value that does not end with one
    lower   lower-case the value
    ignore  accept the field and keep the old value (profile fields only)
    untag   drop a "+tag" from the local part of an address (email only)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from syncd.core.fields import PROFILE_FIELDS

EMAIL: Final = "email"
PROFILE_RULES: Final = ("strip", "slash", "lower", "ignore")
EMAIL_RULES: Final = ("strip", "lower", "untag")


def check_rules(data: object) -> dict[str, str]:
    """The rules of a reset body or the command line; ValueError names what is wrong."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError("normalize: expected an object of field: rule")
    rules = {}
    for field, rule in data.items():
        if field not in (*PROFILE_FIELDS, EMAIL):
            raise ValueError(f"normalize: unknown field {str(field)[:100]!r}")
        allowed = EMAIL_RULES if field == EMAIL else PROFILE_RULES
        if rule not in allowed:
            raise ValueError(f"normalize: {field}: the rules are {', '.join(allowed)}")
        rules[str(field)] = str(rule)
    return rules


def _apply(rule: str, value: str) -> str:
    if rule == "strip":
        return value.strip()
    if rule == "slash":
        return value if not value or value.endswith("/") else value + "/"
    if rule == "lower":
        return value.lower()
    if rule == "untag":
        local, at, domain = value.partition("@")
        return local.split("+", 1)[0] + at + domain
    return value


def profile_changes(rules: Mapping[str, str], changes: Mapping[str, str]) -> dict[str, str]:
    """The profile changes as this server keeps them: some changed, some dropped."""
    kept = {}
    for field, value in changes.items():
        rule = rules.get(field)
        if rule == "ignore":
            continue
        kept[field] = value if rule is None else _apply(rule, value)
    return kept


def address(rules: Mapping[str, str], value: str) -> str:
    """An added address as this server keeps it."""
    rule = rules.get(EMAIL)
    return value if rule is None else _apply(rule, value)
