"""The sandbox's starting state: read from a seed file, or generated.

Seed file format (YAML; the same mapping is accepted as `"seed"` in the body
of `POST /_sandbox/reset`)::

    users:
      janedoe:
        full_name: Jane Doe          # optional: full_name, location, company,
        location: Private Island     #   profile_url, gravatar_email (strings,
        company: Retired             #   checked as a PATCH would check them)
        profile_url: https://jane.example.com/
        gravatar_email: jane@example.com
        password: s3cret             # optional, for Basic auth (all scopes)
        tokens:                      # optional bearer tokens
          - token: abc123
            scopes: [profile_read, profile_write, email_read, email_write]
          - def456                   # shorthand: default scopes
        emails:                      # optional; first is primary unless one says primary: true
          - {email: jane@example.com, verified: true, primary: true}
          - jane.other@example.com   # shorthand: unverified, not primary

- Usernames are 4–30 characters of `[a-z0-9_]`; an empty user (`janedoe:` or
  `janedoe: {}`) has no profile, no credentials and no address (`email` "").
- A token without `scopes` carries the API's default `profile_read email_read`;
  `scopes: []` authenticates but may do nothing (useful for 403 tests).
- Tokens are unique across users; addresses are unique within a user
  (compared case-insensitively); at most one address says `primary: true`.
- `verified` and `primary` default to false, except that the first address is
  primary when none says so.
- Accounts get ids 1, 2, … in file order (after any generated accounts) and a
  deterministic `date_joined`.

Any problem stops the sandbox with one line, `file:line: where: message`.

Generated state (`--generate N`): users `user000001` … `user{N:06d}`, each with a
verified primary address `<username>@example.com`, a deterministic profile
and a deterministic bearer token with all four scopes. `write_credentials`
writes the credentials of every account as a credentials directory
(`<username>.token`, else `<username>.password`; files mode 0600).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final, NoReturn

from syncd.core import fields
from syncd.desired.yaml_positions import collector_paused
from syncd.errors import SyncdError
from syncd.sandbox.store import (
    ALL_SCOPES,
    DEFAULT_SCOPES,
    Account,
    Email,
    Grant,
    InvalidInput,
    Snapshot,
    check_profile_value,
)

_USER_KEYS: Final = frozenset({*fields.PROFILE_FIELDS, "password", "tokens", "emails"})
_TOKEN_KEYS: Final = frozenset({"token", "scopes"})
_EMAIL_KEYS: Final = frozenset({"email", "verified", "primary"})
# Printable ASCII without spaces: anything else cannot travel in a header.
_TOKEN_PATTERN: Final = re.compile(r"[\x21-\x7e]{1,512}")
_GENERATED_NAME: Final = re.compile(r"user([0-9]{6})")

_LOCATIONS: Final = ("Berlin", "Lisbon", "Osaka", "San Francisco, CA", "Toronto", "")
_COMPANIES: Final = ("Success, Inc.", "Retired", "Example Corp", "")

MAX_GENERATED: Final = 999_999


class SeedError(SyncdError):
    """A seed that cannot be used; the message is one line naming the place."""


def generated_token(username: str) -> str:
    """The deterministic token of a generated user (a sandbox, not a secret)."""
    return "sbx_" + hashlib.sha256(f"syncd-sandbox:{username}".encode()).hexdigest()[:32]


def generate(count: int) -> Snapshot:
    """`count` deterministic users, `user000001` onwards, ids 1 to `count`."""
    if not 0 <= count <= MAX_GENERATED:
        raise SeedError(f"generate: between 0 and {MAX_GENERATED} users")
    # Hundreds of thousands of new objects, none of them garbage.
    with collector_paused():
        return _generate(count)


def _generate(count: int) -> Snapshot:
    accounts = []
    grants = []
    for i in range(1, count + 1):
        username = f"user{i:06d}"
        address = f"{username}@example.com"
        accounts.append(
            Account(
                id=i,
                username=username,
                full_name=f"User {i}",
                location=_LOCATIONS[i % len(_LOCATIONS)],
                company=_COMPANIES[i % len(_COMPANIES)],
                profile_url=f"https://example.com/{username}/" if i % 3 else "",
                gravatar_email=address if i % 2 else "",
                emails=[Email(address, verified=True, primary=True)],
            )
        )
        grants.append(Grant(generated_token(username), username, ALL_SCOPES))
    return Snapshot(tuple(accounts), tuple(grants))


def load_seed_file(path: Path, generated: int = 0) -> Snapshot:
    """The state of a seed file, after `generated` generated users (ids continue)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SeedError(f"{path}: cannot read the seed file: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SeedError(f"{path}: the seed file is not UTF-8 text") from None
    try:
        data = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = (error.problem or error.context or "invalid YAML").strip()
        raise SeedError(f"{path}{line}: {problem}") from None
    except YAMLError as error:
        raise SeedError(f"{path}: invalid YAML: {str(error).splitlines()[0]}") from None
    return _SeedReader(str(path), generated).read(data)


def snapshot_from_mapping(data: object, source: str = "seed", generated: int = 0) -> Snapshot:
    """The state of a seed given as plain data (the body of a reset)."""
    return _SeedReader(source, generated).read(data)


def combine(generated: Snapshot, seeded: Snapshot) -> Snapshot:
    return Snapshot(generated.accounts + seeded.accounts, generated.grants + seeded.grants)


class _SeedReader:
    """Walks the seed data, reporting the first problem with its line when known.

    Data from ruamel's round-trip loader remembers the line of every key and
    item (`.lc`); plain data from a reset body does not, so every message also
    names the place as a path (`users.janedoe.emails[1]`).
    """

    def __init__(self, source: str, generated: int) -> None:
        self.source = source
        self.generated = generated
        self.accounts: list[Account] = []
        self.grants: list[Grant] = []
        self.tokens: set[str] = set()

    def fail(self, container: object, key: object, where: str, message: str) -> NoReturn:
        line = _line_of(container, key)
        place = f"{self.source}:{line}" if line else self.source
        raise SeedError(f"{place}: {where}: {message}")

    def read(self, data: object) -> Snapshot:
        if data is None:
            return Snapshot()
        if not isinstance(data, Mapping):
            raise SeedError(f"{self.source}:{_line_of(data, None) or 1}: expected a mapping")
        for key in data:
            if key != "users":
                self.fail(data, key, str(key), "unknown key (expected users)")
        users = data.get("users")
        if users is None:
            return Snapshot()
        if not isinstance(users, Mapping):
            self.fail(data, "users", "users", "expected a mapping of username to user")
        for username, user in users.items():
            self.read_user(users, username, user)
        return Snapshot(tuple(self.accounts), tuple(self.grants))

    def read_user(self, users: Mapping[object, object], username: object, user: object) -> None:
        where = f"users.{username}"
        if not isinstance(username, str) or not fields.is_valid_username(username):
            self.fail(users, username, where, "username must be 4-30 of a-z, 0-9 and _")
        taken = _GENERATED_NAME.fullmatch(username)
        if taken and 1 <= int(taken.group(1)) <= self.generated:
            self.fail(users, username, where, "clashes with a generated user")
        if user is None:
            user = {}
        if not isinstance(user, Mapping):
            self.fail(users, username, where, "expected a mapping")
        account_id = self.generated + len(self.accounts) + 1
        account = Account(account_id, username)
        for key, value in user.items():
            if key not in _USER_KEYS:
                self.fail(user, key, f"{where}.{key}", "unknown key")
            if key in fields.PROFILE_FIELDS:
                try:
                    setattr(account, key, check_profile_value(key, "" if value is None else value))
                except InvalidInput as error:
                    self.fail(user, key, f"{where}.{key}", str(error).partition(": ")[2])
            elif key == "password":
                if not isinstance(value, str) or not value:
                    self.fail(user, key, f"{where}.password", "must be a non-empty string")
                account.password = value
        self.read_tokens(user, username, where)
        account.emails = self.read_emails(user, where)
        self.accounts.append(account)

    def read_tokens(self, user: Mapping[object, object], username: str, where: str) -> None:
        tokens = user.get("tokens")
        if tokens is None:
            return
        if not isinstance(tokens, list):
            self.fail(user, "tokens", f"{where}.tokens", "expected a list")
        for index, item in enumerate(tokens):
            here = f"{where}.tokens[{index}]"
            scopes: object = sorted(DEFAULT_SCOPES)
            if isinstance(item, Mapping):
                for key in item:
                    if key not in _TOKEN_KEYS:
                        self.fail(item, key, f"{here}.{key}", "unknown key (token, scopes)")
                token = item.get("token")
                scopes = item.get("scopes", scopes)
            else:
                token = item
            if not isinstance(token, str) or not _TOKEN_PATTERN.fullmatch(token):
                self.fail(tokens, index, here, "token must be printable ASCII without spaces")
            if token in self.tokens:
                self.fail(tokens, index, here, "token already granted to another user")
            if not isinstance(scopes, list) or not all(s in ALL_SCOPES for s in scopes):
                known = ", ".join(sorted(ALL_SCOPES))
                self.fail(tokens, index, f"{here}.scopes", f"expected a list of: {known}")
            self.tokens.add(token)
            self.grants.append(Grant(token, username, frozenset(scopes)))

    def read_emails(self, user: Mapping[object, object], where: str) -> list[Email]:
        items = user.get("emails")
        if items is None:
            return []
        if not isinstance(items, list):
            self.fail(user, "emails", f"{where}.emails", "expected a list")
        emails: list[Email] = []
        for index, item in enumerate(items):
            here = f"{where}.emails[{index}]"
            email = self.read_email(items, index, item, here)
            if any(fields.email_key(e.address) == fields.email_key(email.address) for e in emails):
                self.fail(items, index, here, f"duplicate address {email.address}")
            if email.primary and any(e.primary for e in emails):
                self.fail(items, index, here, "more than one primary address")
            emails.append(email)
        if emails and not any(e.primary for e in emails):
            emails[0].primary = True
        return emails

    def read_email(self, items: list[object], index: int, item: object, here: str) -> Email:
        address, verified, primary = item, False, False
        if isinstance(item, Mapping):
            for key in item:
                if key not in _EMAIL_KEYS:
                    self.fail(item, key, f"{here}.{key}", "unknown key (email, verified, primary)")
            address, verified, primary = (
                item.get("email"),
                item.get("verified", False),
                item.get("primary", False),
            )
            if not isinstance(verified, bool):
                self.fail(item, "verified", f"{here}.verified", "must be true or false")
            if not isinstance(primary, bool):
                self.fail(item, "primary", f"{here}.primary", "must be true or false")
        if not isinstance(address, str) or not fields.is_valid_email(address):
            self.fail(items, index, here, f"not a valid email address: {address!r}")
        return Email(address, verified, primary)


def _line_of(container: object, key: object) -> int | None:
    """The 1-based line of `key` inside a round-trip-loaded container, if known."""
    lc = getattr(container, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return int(lc.line) + 1
        position = lc.item(key) if isinstance(key, int) else lc.key(key)
        return int(position[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return int(lc.line) + 1


def write_credentials(snapshot: Snapshot, directory: Path) -> int:
    """Write each account's credential as a credentials directory; the count written.

    The first token of an account goes to `<username>.token`; an account with
    no token but a password gets `<username>.password`. Files are mode 0600.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    first_token: dict[str, str] = {}
    for grant in snapshot.grants:
        first_token.setdefault(grant.username, grant.token)
    written = 0
    for account in snapshot.accounts:
        token = first_token.get(account.username)
        if token is not None:
            _write_secret(directory / f"{account.username}.token", token)
        elif account.password is not None:
            _write_secret(directory / f"{account.username}.password", account.password)
        else:
            continue
        written += 1
    return written


def _write_secret(path: Path, secret: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # An existing file keeps its mode through O_TRUNC: tighten it too.
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, f"{secret}\n".encode())
    finally:
        os.close(descriptor)
