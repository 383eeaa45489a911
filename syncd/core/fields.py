"""The vocabulary of the accounts API: field names and the rules for their values.

Shared by the desired-state loader, the planner and the sandbox so that all three
agree on what a valid username, email address or URL is, and on how
`gravatar_url` encodes `gravatar_email`.
"""

from __future__ import annotations

import hashlib
import re
import string
from typing import Final

#: Profile fields that PATCH accepts, in the order the API document lists them.
PROFILE_FIELDS: Final = ("full_name", "location", "company", "profile_url", "gravatar_email")

#: Fields of the user object that GET returns.
USER_OBJECT_FIELDS: Final = (
    "id",
    "username",
    "url",
    "date_joined",
    "type",
    "full_name",
    "location",
    "company",
    "profile_url",
    "gravatar_url",
    "email",
    "is_active",
)

USERNAME_PATTERN: Final = re.compile(r"[a-z0-9_]{4,30}")
#: Names of groups in the desired state (design.md section 2.1).
GROUP_PATTERN: Final = re.compile(r"[a-z0-9_-]{1,64}")

# Deliberately plain: one "@", no whitespace, a dot in the domain, no empty
# labels. Stricter RFC 5322 parsing would reject addresses the API accepts.
_EMAIL_PATTERN: Final = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}"
)
_URL_PATTERN: Final = re.compile(r"https?://[^\s/?#@]+\.[^\s/?#@]+(:[0-9]{1,5})?([/?#]\S*)?")

MAX_EMAIL_LENGTH: Final = 254
MAX_URL_LENGTH: Final = 2048
MAX_TEXT_LENGTH: Final = 255

GRAVATAR_URL_TEMPLATE: Final = "https://secure.gravatar.com/avatar/{digest}.jpg?s=80&r=g&d=mm"
_GRAVATAR_DIGEST: Final = re.compile(
    r"/avatar/([0-9a-f]{32}|[0-9a-f]{64})(?:[./?]|$)", re.IGNORECASE
)
# The digests of "": what a server may show for "no Gravatar address set".
_EMPTY_DIGESTS: Final = frozenset(
    {hashlib.md5(b"", usedforsecurity=False).hexdigest(), hashlib.sha256(b"").hexdigest()}
)


def is_valid_username(username: str) -> bool:
    return USERNAME_PATTERN.fullmatch(username) is not None


def is_valid_email(address: str) -> bool:
    return (
        len(address) <= MAX_EMAIL_LENGTH
        and ".." not in address
        and _EMAIL_PATTERN.fullmatch(address) is not None
    )


def is_valid_url(url: str) -> bool:
    return len(url) <= MAX_URL_LENGTH and _URL_PATTERN.fullmatch(url) is not None


_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_fold(text: str) -> str:
    """`text` with A-Z lower-cased and nothing else changed.

    Not `str.lower()`: that folds KELVIN SIGN onto "k" (and İ onto "i̇"), so a live
    address or username that differs from the desired one would count as equal.
    """
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def email_key(address: str) -> str:
    """The form in which two addresses are compared: the API treats them case-insensitively,
    as the domain's case rule does (ASCII only). Never stripped: a live address with
    spaces is another address."""
    return ascii_fold(address)


def unstorable(value: str) -> str | None:
    """Why `value` is text that syncd cannot keep or read back, or None if it can.

    The one rule for both sides: the live reader refuses such a value (a NUL or a
    lone surrogate, JSON's "\\ud800", made a write's outcome fail to be recorded,
    after the write: SQLite's driver cannot encode a surrogate, PostgreSQL refuses
    NUL in text), so the desired state must never ask for one.
    """
    if "\x00" in value:
        return "holds a NUL character"
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate (not text)"
    return None


def gravatar_digest(address: str, algorithm: str = "md5") -> str:
    """Hex digest of a Gravatar address, as Gravatar defines it (trimmed, lower-cased)."""
    # Gravatar's identifier, not a security use of MD5.
    form = address.strip().lower().encode()
    return hashlib.new(algorithm, form, usedforsecurity=False).hexdigest()


def gravatar_url(address: str) -> str:
    """The `gravatar_url` that the API derives from a `gravatar_email` (MD5, as in 2014)."""
    return GRAVATAR_URL_TEMPLATE.format(digest=gravatar_digest(address))


def gravatar_matches(address: str, url: str) -> bool:
    """Whether `url` is the Gravatar of `address`: MD5 for 32 hex digits, SHA-256 for 64.

    An empty address matches a URL without a digest (no Gravatar set).
    """
    match = _GRAVATAR_DIGEST.search(url)
    digest = None if match is None else match.group(1).lower()
    if digest is None or digest in _EMPTY_DIGESTS:  # the URL names no address
        return not address.strip()
    algorithm = "md5" if len(digest) == 32 else "sha256"
    return bool(address.strip()) and gravatar_digest(address, algorithm) == digest
