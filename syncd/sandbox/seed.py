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

The file is read by the desired state's own YAML reader (syncd.desired.yaml_positions):
YAML 1.2 types (`yes` is text), no aliases, no tags but the plain ones, no
duplicate keys. Any problem stops the sandbox with one line, `file:line: where:
message`.

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
from syncd.desired.yaml_compose import Loc
from syncd.desired.yaml_positions import YamlDocument, collector_paused, read_yaml_bytes
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


def generated_token(username: str) -> str:
    """The deterministic token of a generated user (a sandbox, not a secret)."""
    return "sbx_" + hashlib.sha256(f"syncd-sandbox:{username}".encode()).hexdigest()[:32]


def generate(count: int) -> Snapshot:
    """`count` deterministic users, `user000001` onwards, ids 1 to `count`."""
    if not 0 <= count <= MAX_GENERATED:
        raise SyncdError(f"generate: between 0 and {MAX_GENERATED} users")
    accounts = []
    grants = []
    # Hundreds of thousands of new objects, none of them garbage.
    with collector_paused():
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
    try:
        content = path.read_bytes()
    except OSError as error:
        raise SyncdError(f"{path}: cannot read the seed file: {error.strerror}") from None
    # The desired state's reader: the same YAML 1.2 typing, refusals and limits.
    document = read_yaml_bytes(str(path), content)
    if document.problems:
        first = min(document.problems)
        raise SyncdError(f"{path}:{first.line}: {first.message}")
    if document.duplicates:
        duplicate = document.duplicates[0]
        where = _where((*duplicate.parent, duplicate.key))
        line = duplicate.marks[1].line
        raise SyncdError(
            f"{path}:{line}: {where}: duplicate key, first at line {duplicate.marks[0].line}"
        )
    return _SeedReader(str(path), generated, document).read(document.data)


def snapshot_from_mapping(data: object, source: str = "seed", generated: int = 0) -> Snapshot:
    """The state of a seed given as plain data (the body of a reset)."""
    return _SeedReader(source, generated).read(data)


def combine(generated: Snapshot, seeded: Snapshot) -> Snapshot:
    return Snapshot(generated.accounts + seeded.accounts, generated.grants + seeded.grants)


class _SeedReader:
    """Walks the seed data, reporting the first problem with its line when known.

    Every message names the place as a path (`users.janedoe.emails[1]`), and,
    for a seed file, the line where that path was written; plain data from a
    reset body has no lines.
    """

    def __init__(self, source: str, generated: int, document: YamlDocument | None = None) -> None:
        self.source = source
        self.generated = generated
        self.document = document
        self.accounts: list[Account] = []
        self.grants: list[Grant] = []
        self.tokens: set[str] = set()

    def fail(self, loc: Loc, message: str) -> NoReturn:
        place = self.source
        if self.document is not None:
            place += f":{self.document.key_mark(loc).line}"
        raise SyncdError(f"{place}: {_where(loc)}: {message}")

    def quote_it(self, value: object, loc: Loc) -> str:
        """What a number written for a string should be, as the desired-state reader says:
        the text as written (YAML reads 0123 as 83)."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return ""
        text = self.document.scalar_text(loc) if self.document is not None else None
        return f' (quote it to mean the text: "{text or value}")'

    def read(self, data: object) -> Snapshot:
        if data is None:
            return Snapshot()
        if not isinstance(data, Mapping):
            line = self.document.root.line if self.document and self.document.root else 1
            raise SyncdError(f"{self.source}:{line}: expected a mapping")
        for key in data:
            if key != "users":
                self.fail((str(key),), "unknown key (expected users)")
        users = data.get("users")
        if users is None:
            return Snapshot()
        if not isinstance(users, Mapping):
            self.fail(("users",), "expected a mapping of username to user")
        for username, user in users.items():
            self.read_user(str(username), user)
        return Snapshot(tuple(self.accounts), tuple(self.grants))

    def read_user(self, username: str, user: object) -> None:
        here: Loc = ("users", username)
        if not fields.is_valid_username(username):
            self.fail(here, "username must be 4-30 of a-z, 0-9 and _")
        taken = _GENERATED_NAME.fullmatch(username)
        if taken and 1 <= int(taken.group(1)) <= self.generated:
            self.fail(here, "clashes with a generated user")
        if user is None:
            user = {}
        if not isinstance(user, Mapping):
            self.fail(here, "expected a mapping")
        account_id = self.generated + len(self.accounts) + 1
        account = Account(account_id, username)
        for key, value in user.items():
            if key not in _USER_KEYS:
                self.fail((*here, str(key)), "unknown key")
            if key in fields.PROFILE_FIELDS:
                try:
                    setattr(account, key, check_profile_value(key, "" if value is None else value))
                except InvalidInput as error:
                    self.fail((*here, key), str(error).partition(": ")[2])
            elif key == "password":
                if not isinstance(value, str) or not value:
                    self.fail(
                        (*here, key),
                        "must be a non-empty string" + self.quote_it(value, (*here, key)),
                    )
                account.password = value
        self.read_tokens(user, here)
        account.emails = self.read_emails(user, here)
        self.accounts.append(account)

    def read_tokens(self, user: Mapping[object, object], where: Loc) -> None:
        tokens = user.get("tokens")
        if tokens is None:
            return
        if not isinstance(tokens, list):
            self.fail((*where, "tokens"), "expected a list")
        for index, item in enumerate(tokens):
            here: Loc = (*where, "tokens", index)
            scopes: object = sorted(DEFAULT_SCOPES)
            if isinstance(item, Mapping):
                for key in item:
                    if key not in _TOKEN_KEYS:
                        self.fail((*here, str(key)), "unknown key (token, scopes)")
                token = item.get("token")
                scopes = item.get("scopes", scopes)
            else:
                token = item
            if not isinstance(token, str) or not _TOKEN_PATTERN.fullmatch(token):
                self.fail(here, "token must be printable ASCII without spaces")
            if token in self.tokens:
                self.fail(here, "token already granted to another user")
            if not isinstance(scopes, list) or not all(
                isinstance(s, str) and s in ALL_SCOPES for s in scopes
            ):
                known = ", ".join(sorted(ALL_SCOPES))
                self.fail((*here, "scopes"), f"expected a list of: {known}")
            self.tokens.add(token)
            self.grants.append(Grant(token, str(where[-1]), frozenset(scopes)))

    def read_emails(self, user: Mapping[object, object], where: Loc) -> list[Email]:
        items = user.get("emails")
        if items is None:
            return []
        if not isinstance(items, list):
            self.fail((*where, "emails"), "expected a list")
        emails: list[Email] = []
        for index, item in enumerate(items):
            here: Loc = (*where, "emails", index)
            email = self.read_email(item, here)
            if any(fields.email_key(e.address) == fields.email_key(email.address) for e in emails):
                self.fail(here, f"duplicate address {email.address}")
            if email.primary and any(e.primary for e in emails):
                self.fail(here, "more than one primary address")
            emails.append(email)
        if emails and not any(e.primary for e in emails):
            emails[0].primary = True
        return emails

    def read_email(self, item: object, here: Loc) -> Email:
        address, verified, primary = item, False, False
        if isinstance(item, Mapping):
            for key in item:
                if key not in _EMAIL_KEYS:
                    self.fail((*here, str(key)), "unknown key (email, verified, primary)")
            address, verified, primary = (
                item.get("email"),
                item.get("verified", False),
                item.get("primary", False),
            )
            for key, flag in (("verified", verified), ("primary", primary)):
                if not isinstance(flag, bool):
                    self.fail((*here, key), "must be true or false")
        if not isinstance(address, str) or not fields.is_valid_email(address):
            self.fail(here, f"not a valid email address: {address!r}")
        return Email(address, verified, primary)


def _where(loc: Loc) -> str:
    """A place as a path: `users.janedoe.emails[1]`."""
    where = ""
    for key in loc:
        where += f"[{key}]" if isinstance(key, int) else f".{key}" if where else str(key)
    return where


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
