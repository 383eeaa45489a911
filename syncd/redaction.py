"""Redaction: a URL's user and password, and the secrets syncd sent, kept out of what it shows.

A URL's user information is found as git, libpq and curl find it, not as urlsplit
does: urlsplit ends the authority at the first `/`, `?` or `#`, so it reads
`https://alice:a/b#c@host` as the host `alice` with the port `a`, and a check or a
redaction built on it misses the password `a/b#c`. Here everything between `://`
and the last `@` is the user information: a display may hide more than that
(`https://host/x?to=a@b` is shown `https://***@b`), never less.

`scrub` takes the secrets a request carried out of what a server, a proxy or git
said back, in the forms an answer may quote them.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, unquote, urlsplit

#: What to do about a URL whose user information urlsplit would misread.
MISREAD_ADVICE = (
    "percent-encode a '/', '?', '#' or '@' in the URL's user or password (%2F, %3F, %23, %40)"
)


def userinfo(url: str) -> str | None:
    """What `url` holds between `://` and its last `@`; None without an `@` after `://`."""
    _, scheme_end, rest = url.partition("://")
    if not scheme_end or "@" not in rest:
        return None
    return rest.rpartition("@")[0]


def has_password(url: str) -> bool:
    """Whether `url` holds `user:password@` (a `:` before the last `@`), however written."""
    return ":" in (userinfo(url) or "")


def misread(url: str) -> bool:
    """Whether urlsplit would not find the password of `url` whole: a `/`, `?` or `#`
    in it, which git and curl refuse anyway. (An `@` in a path without a password, as
    in `https://host/org/repo@v2.git`, is not a misread password.)"""
    found = userinfo(url)
    return found is not None and ":" in found and urlsplit(url).netloc.rpartition("@")[0] != found


def git_spec_url(spec: str) -> str:
    """The URL of a `git+URL#ref:path` desired state, without `git+` nor `#ref:path`.
    The fragment begins at the last `#`: its path may hold `:` and `@`, and only a
    password (then misread, and refused) puts a `#` before it."""
    url = spec.removeprefix("git+")
    return url.rpartition("#")[0] or url


def redacted(url: str, *, keep_user: bool = False) -> str:
    """`url` with its user information shown as `***`, for messages; with `keep_user`,
    the user name alone (as `user@`) when it is plainly one."""
    found = userinfo(url)
    if found is None:
        return url
    scheme, _, rest = url.partition("://")
    user = found.partition(":")[0]
    shown = user if keep_user and user and not any(c in user for c in "/?#") else "***"
    return f"{scheme}://{shown}@{rest.rpartition('@')[2]}"


def scrub(text: str, *secrets: str) -> str:
    """`text` with each of `secrets` (an empty one is none) as `***`: as sent, and as
    an answer may quote it percent-encoded or escaped in JSON (`\\/` included)."""
    for secret in filter(None, secrets):
        escaped = json.dumps(secret)[1:-1]
        forms = (secret, quote(secret, safe=""), escaped, escaped.replace("/", "\\/"))
        for form in dict.fromkeys(forms):
            text = text.replace(form, "***")
    return text


def basic_secrets(url: str | None) -> tuple[str, ...]:
    """What the user information of `url` is sent as (Basic auth, as httpx sends a
    proxy's): the password and the base64 `user:password`, to scrub from what is said."""
    user, colon, password = (userinfo(url or "") or "").partition(":")
    if not (user or colon):
        return ()
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    return unquote(password), base64.b64encode(pair).decode("ascii")
