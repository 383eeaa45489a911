"""The sandbox's accounts and the API's rules for them; no HTTP here.

Owns the in-memory state (accounts, their addresses, the tokens granted to
them), who may do what (`Principal.may`), the validation of PATCH and email
bodies, and the user object the API returns. The HTTP layer (`app`) maps the
exceptions below to statuses: `UnknownUser` and `UnknownAddress` are 404,
`InvalidInput` is 400. Writes are passed to an optional `Journal` (the SQLite
file of `--db`) after they succeed, so the file always mirrors memory.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from syncd.core import fields
from syncd.sandbox import normalize

PROFILE_READ: Final = "profile_read"
PROFILE_WRITE: Final = "profile_write"
EMAIL_READ: Final = "email_read"
EMAIL_WRITE: Final = "email_write"
ALL_SCOPES: Final = frozenset({PROFILE_READ, PROFILE_WRITE, EMAIL_READ, EMAIL_WRITE})
#: What the API grants a token issued without an explicit scope.
DEFAULT_SCOPES: Final = frozenset({PROFILE_READ, EMAIL_READ})

_TEXT_FIELDS: Final = frozenset({"full_name", "location", "company"})
# A lone surrogate (possible through a JSON "\ud800" escape) cannot be encoded as
# UTF-8, so storing one would break every later answer and the SQLite file.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_EPOCH: Final = datetime(2014, 2, 12, 17, 58, 1, 431312, tzinfo=UTC)


class StoreError(Exception):
    """A request that the rules refuse; the message is safe to show the client."""


class UnknownUser(StoreError):
    pass


class UnknownAddress(StoreError):
    pass


class InvalidInput(StoreError):
    pass


def forbidden_message(scope: str) -> str:
    """The API's 403 text (from the original English document)."""
    return (
        "authenticated user must be the user whose data is being requested or updated; "
        f"OAuth access tokens must have the {scope} scope"
    )


def date_joined_for(account_id: int) -> str:
    """A deterministic join date: one hour after the previous account's."""
    joined = _EPOCH + timedelta(hours=account_id - 1)
    return joined.isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Email:
    address: str
    verified: bool = False
    primary: bool = False

    def as_json(self) -> dict[str, object]:
        return {"email": self.address, "verified": self.verified, "primary": self.primary}


@dataclass(slots=True)
class Account:
    id: int
    username: str
    #: "" means the deterministic date of `date_joined_for(id)`, computed when
    #: shown: formatting 100,000 dates would double the time to generate them.
    date_joined: str = ""
    full_name: str = ""
    location: str = ""
    company: str = ""
    profile_url: str = ""
    gravatar_email: str = ""
    is_active: bool = True
    password: str | None = None
    emails: list[Email] = field(default_factory=list)

    def copy(self) -> Account:
        # Hand-written rather than copy.deepcopy: restoring 100,000 accounts on
        # every reset has to stay well under a second.
        return Account(
            self.id,
            self.username,
            self.date_joined,
            self.full_name,
            self.location,
            self.company,
            self.profile_url,
            self.gravatar_email,
            self.is_active,
            self.password,
            [Email(e.address, e.verified, e.primary) for e in self.emails],
        )

    def primary_address(self) -> str:
        return next((e.address for e in self.emails if e.primary), "")

    def find_email(self, address: str) -> Email | None:
        key = fields.email_key(address)
        return next((e for e in self.emails if fields.email_key(e.address) == key), None)

    def user_object(self, base_url: str) -> dict[str, object]:
        """The user object of GET and PATCH: the 12 fields of fields.USER_OBJECT_FIELDS.

        `gravatar_email` is write-only (the API stopped returning it in 2014):
        only the `gravatar_url` derived from it is shown.
        """
        gravatar = fields.gravatar_url(self.gravatar_email) if self.gravatar_email else ""
        return {
            "id": self.id,
            "username": self.username,
            "url": f"{base_url}/api/v1.1/users/{self.username}/",
            "date_joined": self.date_joined or date_joined_for(self.id),
            "type": "User",
            "full_name": self.full_name,
            "location": self.location,
            "company": self.company,
            "profile_url": self.profile_url,
            "gravatar_url": gravatar,
            "email": self.primary_address(),
            "is_active": self.is_active,
        }


@dataclass(frozen=True, slots=True)
class Grant:
    """A bearer token issued to an account, with its scopes."""

    token: str
    username: str
    scopes: frozenset[str] = DEFAULT_SCOPES


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A whole state, as seeded, generated or loaded: what `Store` starts from."""

    accounts: tuple[Account, ...] = ()
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is authenticated as. `username` is None for the staff token."""

    username: str | None
    scopes: frozenset[str]

    def may(self, scope: str, username: str) -> bool:
        """An account acts only on itself, within its scopes; the staff token on anyone."""
        if self.username is None:
            return True
        return self.username == username and scope in self.scopes


ADMIN: Final = Principal(None, ALL_SCOPES)


class Journal(Protocol):
    """Where successful writes are mirrored (the SQLite file of `--db`)."""

    def replace(self, snapshot: Snapshot) -> None: ...
    def save_profile(self, account: Account) -> None: ...
    def add_email(self, account: Account, email: Email) -> None: ...
    def delete_email(self, account: Account, email: Email) -> None: ...


def check_profile_value(name: str, value: object) -> str:
    """A PATCH value, or InvalidInput. "" clears a field, so it is always valid."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: must be a string")
    if _SURROGATE.search(value):
        raise InvalidInput(f"{name}: not valid Unicode text")
    if value == "":
        return value
    if name == "profile_url" and not fields.is_valid_url(value):
        raise InvalidInput(f"profile_url: not a valid URL: {value[:100]!r}")
    if name == "gravatar_email" and not fields.is_valid_email(value):
        raise InvalidInput(f"gravatar_email: not a valid email address: {value[:100]!r}")
    if name in _TEXT_FIELDS and len(value) > fields.MAX_TEXT_LENGTH:
        raise InvalidInput(f"{name}: longer than {fields.MAX_TEXT_LENGTH} characters")
    return value


def check_profile(body: Mapping[str, object]) -> dict[str, str]:
    """The changes of a PATCH body, or InvalidInput for an unknown field or a bad value."""
    unknown = sorted(set(body) - set(fields.PROFILE_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field: {unknown[0][:100]!r}")
    return {name: check_profile_value(name, value) for name, value in body.items()}


def check_address(body: Mapping[str, object]) -> str:
    """The address of a POST or DELETE emails body, or InvalidInput."""
    unknown = sorted(set(body) - {"email"})
    if unknown:
        raise InvalidInput(f"unknown field: {unknown[0][:100]!r}")
    if "email" not in body:
        raise InvalidInput("email: this field is required")
    address = body["email"]
    if not isinstance(address, str):
        raise InvalidInput("email: must be a string")
    if _SURROGATE.search(address) or not fields.is_valid_email(address):
        raise InvalidInput(f"email: not a valid email address: {address[:100]!r}")
    return address


class Store:
    """The live accounts of a sandbox and the operations of the API on them."""

    def __init__(self, snapshot: Snapshot, journal: Journal | None = None) -> None:
        self._journal = journal
        #: What this server does to values before it keeps them (sandbox.normalize).
        self.normalize: Mapping[str, str] = {}
        self._load(snapshot)

    def _load(self, snapshot: Snapshot) -> None:
        # Copy-on-write: accounts are shared with the snapshot until the first
        # change (`_writable`), so that starting or resetting 100,000 accounts
        # costs one dict, and the snapshot stays intact for the next reset.
        self._accounts: dict[str, Account] = {a.username: a for a in snapshot.accounts}
        self._owned: set[str] = set()
        self._grants: dict[str, Grant] = {g.token: g for g in snapshot.grants}

    def _writable(self, account: Account) -> Account:
        if account.username not in self._owned:
            account = account.copy()
            self._accounts[account.username] = account
            self._owned.add(account.username)
        return account

    def replace(self, snapshot: Snapshot) -> None:
        """Start over from `snapshot` (a reset), rewriting the journal too."""
        self._load(snapshot)
        if self._journal is not None:
            self._journal.replace(snapshot)

    def __len__(self) -> int:
        return len(self._accounts)

    # Authentication.

    def principal_for_token(self, token: str) -> Principal | None:
        grant = self._grants.get(token)
        if grant is None:
            return None
        return Principal(grant.username, grant.scopes)

    def principal_for_password(self, username: str, password: str) -> Principal | None:
        account = self._accounts.get(username)
        if account is None or account.password is None:
            return None
        if not _same(account.password, password):
            return None
        # A password is the account itself: every scope.
        return Principal(username, ALL_SCOPES)

    # The five calls of the API.

    def account(self, username: str) -> Account:
        account = self._accounts.get(username)
        if account is None:
            raise UnknownUser(f"no such user: {username}")
        return account

    def update_profile(self, username: str, body: Mapping[str, object]) -> Account:
        account = self.account(username)
        changes = normalize.profile_changes(self.normalize, check_profile(body))
        if not changes:
            return account
        account = self._writable(account)
        for name, value in changes.items():
            setattr(account, name, value)
        if self._journal is not None:
            self._journal.save_profile(account)
        return account

    def emails(self, username: str) -> list[Email]:
        return self.account(username).emails

    def add_email(self, username: str, body: Mapping[str, object]) -> Email:
        account = self.account(username)
        address = normalize.address(self.normalize, check_address(body))
        if account.find_email(address) is not None:
            raise InvalidInput(f"email: the user already has this address: {address}")
        # The API adds addresses unverified and never makes them primary.
        email = Email(address, verified=False, primary=False)
        account = self._writable(account)
        account.emails.append(email)
        if self._journal is not None:
            self._journal.add_email(account, email)
        return email

    def delete_email(self, username: str, body: Mapping[str, object]) -> None:
        account = self.account(username)
        address = check_address(body)
        email = account.find_email(address)
        if email is None:
            raise UnknownAddress(f"the user has no such address: {address}")
        if email.primary:
            raise InvalidInput(f"email: the primary address cannot be deleted: {address}")
        account = self._writable(account)
        account.emails = [e for e in account.emails if e.address != email.address]
        if self._journal is not None:
            self._journal.delete_email(account, email)


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())
