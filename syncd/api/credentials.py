"""Credentials: which secret authenticates the calls for each account.

Each account acts only on itself: `<username>.token` (bearer) or
`<username>.password` (Basic) in the credentials directory, else the fallback
token or user and password. The directory is listed once; a file is read only
when its user is called, and checked first as ssh checks a key
(syncd.secretfiles). A Credential never shows its secret.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

from syncd.errors import CredentialError
from syncd.redaction import scrub
from syncd.secretfiles import check_credentials_directory, read_secret_file
from syncd.settings import Settings


@dataclass(frozen=True)
class Credential:
    """How to authenticate; `source` says where it came from, never what it is."""

    scheme: str  # "Bearer" or "Basic"
    source: str
    _secret: str = field(repr=False)
    _password: str = field(default="", repr=False)  # Basic's, in _secret encoded

    def authorization(self) -> str:
        return f"{self.scheme} {self._secret}"

    def scrub(self, text: str, also: tuple[str, ...] = ()) -> str:
        """`text` (a server's, a proxy's) without what this credential and `also` sent."""
        return scrub(text, self._secret, self._password, *also)


def bearer(token: str, source: str) -> Credential:
    if token[:7].lower() == "bearer ":  # copied whole from an Authorization header
        raise CredentialError(f"credential {source}: drop the 'Bearer ' prefix: syncd adds it")
    # A token travels in a header: anything but visible ASCII would make httpx
    # fail with an error that quotes the header, secret included.
    if not token.isascii() or not token.isprintable() or " " in token:
        raise CredentialError(f"credential {source}: a token must be one line of visible ASCII")
    return Credential("Bearer", source, token)


def basic(username: str, password: str, source: str) -> Credential:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return Credential("Basic", source, pair, password)


class CredentialStore:
    """Resolves the credential of each user, per design.md section 1."""

    def __init__(self, directory: Path | None, fallback: Credential | None, prefix: str) -> None:
        self.directory = directory
        self.fallback = fallback
        self.prefix = prefix
        # File names, not Paths: a Path per entry was much of a warm plan's start-up.
        self._files: dict[str, str] = {}
        self._names: list[str] = []
        self._near_misses: dict[str, str] | None = None  # made when a user first lacks a file
        if directory is not None:
            check_credentials_directory(directory)  # refused once here, not once a user
            self._names = os.listdir(directory)
            for name in self._names:
                # LoadCredential=ID:DIR names each file ID_<name>: see credentials_prefix.
                if not name.startswith(prefix):
                    continue
                username, _, kind = name[len(prefix) :].rpartition(".")
                if kind == "token" or (kind == "password" and username not in self._files):
                    self._files[username] = name
        self._cache: dict[str, Credential | None] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialStore:
        fallback = None
        if settings.token is not None:
            fallback = bearer(settings.token.get_secret_value(), "SYNCD_TOKEN")
        elif settings.token_file is not None:
            secret = read_secret_file(settings.token_file, settings.credentials_dir)
            fallback = bearer(secret, str(settings.token_file))
        elif settings.username and settings.password is not None:
            password = settings.password.get_secret_value()
            fallback = basic(settings.username, password, "SYNCD_USERNAME")
        return cls(settings.credentials_dir, fallback, settings.credentials_prefix)

    def usernames(self) -> list[str]:
        """The users that have a file of their own in the credentials directory."""
        return sorted(self._files)

    def has(self, username: str) -> bool:
        return username in self._files or self.fallback is not None

    def why_missing(self, username: str) -> str:
        """Why `username` has no credential: where syncd looked, and a file meant for it."""
        if self.directory is None:
            return "no credentials directory (SYNCD_CREDENTIALS_DIR) and no fallback token"
        stem = f"{self.prefix}{username}"
        why = f"no {stem}.token or {stem}.password in {self.directory} and no fallback token"
        if self._near_misses is None:  # the first name of the listing wins
            names = reversed(self._names)
            self._near_misses = {key: n for n in names for key in _near_keys(n, self.prefix)}
        if (near := self._near_misses.get(username)) is not None:
            why += f" ({near} is there: misnamed?)"
        return why

    def for_user(self, username: str) -> Credential | None:
        """The credential to use for `username`, or None when there is none usable."""
        if username not in self._cache:
            self._cache[username] = self._resolve(username)
        return self._cache[username]

    def _resolve(self, username: str) -> Credential | None:
        name = self._files.get(username)
        if name is None or self.directory is None:
            return self.fallback
        path = os.path.join(self.directory, name)
        secret = read_secret_file(path, self.directory)
        return bearer(secret, path) if name.endswith(".token") else basic(username, secret, path)


def _near_keys(name: str, prefix: str) -> list[str]:
    """The usernames a file `name` that syncd did not take looks meant for: its stem in
    lower case without the prefix (`JaneDoe.token`, `janedoe.token.txt`, `-` as `_`),
    and each part after an underscore, for another prefix (`syncd_janedoe.token`)."""
    stem = name.lower().removeprefix(prefix.lower()).partition(".")[0].replace("-", "_")
    parts = stem.split("_")
    return [key for i in range(len(parts)) if len(key := "_".join(parts[i:])) >= 4]
