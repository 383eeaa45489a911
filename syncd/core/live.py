"""The live state: what the accounts API says an account looks like now.

Values built from the API's JSON (or from the cache, which stores that JSON),
checked for shape here so that a malformed answer is an error for its user and
never data. Pure: the client and the cache call `parse_user` / `parse_emails`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from syncd.core.fields import ascii_fold, email_key, unstorable

#: The profile fields that GET returns and PATCH can set directly.
READABLE_PROFILE_FIELDS = ("full_name", "location", "company", "profile_url")


class ShapeError(ValueError):
    """An answer that is valid JSON but not what the API document promises."""


@dataclass(frozen=True, slots=True)
class LiveEmail:
    email: str
    verified: bool
    primary: bool


@dataclass(frozen=True, slots=True)
class LiveProfile:
    """The readable part of a user object (gravatar_email is write-only: only its URL is here)."""

    full_name: str
    location: str
    company: str
    profile_url: str
    gravatar_url: str
    email: str

    def value(self, field: str) -> str:
        value: str = getattr(self, field)
        return value


@dataclass(frozen=True, slots=True)
class LiveAccount:
    """What is known of one account; a part that was not fetched (not managed) is None."""

    username: str
    profile: LiveProfile | None = None
    emails: tuple[LiveEmail, ...] | None = None

    def with_email_added(self, added: LiveEmail) -> LiveAccount:
        if self.emails is None:
            return self
        if any(email_key(e.email) == email_key(added.email) for e in self.emails):
            return self
        return dataclasses.replace(self, emails=(*self.emails, added))

    @property
    def primary_unknown(self) -> bool:
        """Whether the address list marks no primary and only the unread profile can say."""
        return (
            self.profile is None
            and bool(self.emails)
            and not any(e.primary for e in self.emails or ())
        )

    def may_be_primary(self, address: str) -> bool:
        """Whether `address` is, or may be, the account's primary: never to be deleted.

        It is if the address list marks it primary or the profile's `email` (the
        primary, per the API document) names it: a server whose two answers
        disagree gets both kept. When the list marks no address primary and the
        profile was not read, any address may be the primary, so none is deleted;
        an account whose list marks none and whose profile names none has no primary.
        """
        key = email_key(address)
        named = self.profile.email if self.profile is not None else ""
        if named and email_key(named) == key:
            return True
        listed = self.emails or ()
        if any(e.primary for e in listed):
            return any(e.primary and email_key(e.email) == key for e in listed)
        return self.primary_unknown

    def with_email_removed(self, address: str) -> LiveAccount:
        # Only the spelling deleted: a list that holds one address in two spellings gets
        # a DELETE for each, and the cache must not call the other one gone.
        if self.emails is None:
            return self
        kept = tuple(e for e in self.emails if e.email != address)
        return dataclasses.replace(self, emails=kept)


_ABSENT: Final = object()


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, _ABSENT)
    if value is None:
        return ""  # null is a value: empty
    if not isinstance(value, str):
        # An absent key is no value: read as "" it would make a field never read compare
        # equal to a desired "", and an account whose profile names no primary lose it.
        if value is _ABSENT:
            raise ShapeError(f"user object without {key!r}")
        raise ShapeError(f"field {key!r} is {type(value).__name__}, expected a string")
    return _storable(value, key)


def _storable(value: str, key: str) -> str:
    """`value`, if it is text a state database can hold (syncd.core.fields.unstorable);
    no real profile or address holds anything else."""
    if (why := unstorable(value)) is not None:
        raise ShapeError(f"field {key!r} {why}")
    return value


def parse_user(username: str, data: object) -> LiveProfile:
    """The profile in a user object answered for `username`; ShapeError if it is not one.

    Each key LiveProfile holds must be there (null: empty): syncd compares them all, or
    decides by them (`email` says which address is the primary). The keys it never reads
    (`id`, `is_active`, ...) may be missing: no outcome depends on them.
    """
    if not isinstance(data, dict):
        raise ShapeError(f"expected a user object, got {type(data).__name__}")
    answered_for = data.get("username")
    if not isinstance(answered_for, str):
        raise ShapeError("user object without a 'username' string")
    # ASCII case only: Unicode folding would take an answer for "\u212aatek" (KELVIN
    # SIGN) as one for "katek".
    if ascii_fold(answered_for) != ascii_fold(username):
        raise ShapeError(f"asked for {username!r}, the answer is for {answered_for!r}")
    return LiveProfile(
        full_name=_text(data, "full_name"),
        location=_text(data, "location"),
        company=_text(data, "company"),
        profile_url=_text(data, "profile_url"),
        gravatar_url=_text(data, "gravatar_url"),
        email=_text(data, "email"),
    )


def parse_email(data: object) -> LiveEmail:
    if not isinstance(data, dict):
        raise ShapeError(f"expected an email object, got {type(data).__name__}")
    address, verified, primary = data.get("email"), data.get("verified"), data.get("primary")
    if not isinstance(address, str) or not address:
        raise ShapeError("email object without an 'email' string")
    _storable(address, "email")
    if not isinstance(verified, bool) or not isinstance(primary, bool):
        raise ShapeError(f"email object for {address!r} without boolean 'verified' and 'primary'")
    return LiveEmail(address, verified, primary)


def parse_emails(data: object) -> tuple[LiveEmail, ...]:
    if not isinstance(data, list):
        raise ShapeError(f"expected a list of email objects, got {type(data).__name__}")
    emails = tuple(parse_email(item) for item in data)
    if sum(e.primary for e in emails) > 1:
        raise ShapeError("more than one primary address")
    return emails
