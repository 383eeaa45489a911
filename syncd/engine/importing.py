"""`syncd import`: a desired-state file written from the live accounts.

So a team can start from what exists: every readable profile field and every
address of each user, primary first. `gravatar_email` cannot be read back (the
API returns only its URL), so the file says so instead of guessing. The text is
checked by the loader before it is written: an import is always a valid file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from syncd.api.client import AccountsClient
from syncd.api.pool import for_each
from syncd.core.fields import is_valid_username
from syncd.core.live import READABLE_PROFILE_FIELDS, LiveAccount
from syncd.errors import ApiError, SyncdError, UsageError
from syncd.visible import visible

_NAMES_SHOWN = 5

HEADER = """\
# Desired state imported by `syncd import` from the live accounts.
# Every stated field is managed: delete a line to leave that field alone.
# gravatar_email is write-only in the API (only gravatar_url is returned), so it
# cannot be imported: add it by hand where you want syncd to manage it.
version: 1
users:
"""


def _scalar(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar: no quoting surprises.
    # What JSON leaves raw and does not print (DEL, C1 controls, invisible
    # characters) is escaped too: YAML reads \x, \u and \U escapes, and refuses
    # most of these characters raw.
    return visible(json.dumps(value, ensure_ascii=False))


def render_desired(accounts: Iterable[LiveAccount]) -> str:
    lines = [HEADER.rstrip("\n")]
    for account in sorted(accounts, key=lambda a: a.username):
        lines.append(f"  {account.username}:")
        if account.profile is not None:
            for field in READABLE_PROFILE_FIELDS:
                lines.append(f"    {field}: {_scalar(account.profile.value(field))}")
        if account.emails is not None:
            ordered = sorted(account.emails, key=lambda e: (not e.primary, e.email.lower()))
            if ordered:
                lines.append("    emails:")
                for email in ordered:
                    note = "  # primary" if email.primary else ""
                    lines.append(f"      - {_scalar(email.email)}{note}")
            else:
                lines.append("    emails: []")
    return "\n".join(lines) + "\n"


def check_usernames(usernames: Iterable[str], where: str) -> None:
    """Refuse any name that is not a username, before a URL is built from it.

    A credentials file named `..token` made the name ".", and the URL of its
    user `GET /api/v1.1/users/./`, which is `GET /api/v1.1/`.
    """
    invalid = sorted({name for name in usernames if not is_valid_username(name)})
    if invalid:
        names = ", ".join(repr(visible(name)) for name in invalid[:_NAMES_SHOWN])
        more = f" and {len(invalid) - _NAMES_SHOWN} more" if len(invalid) > _NAMES_SHOWN else ""
        raise UsageError(
            f"{where}: not a username (4 to 30 of a-z, 0-9 and _): {names}{more}; "
            "nothing imported, nothing sent"
        )


async def read_accounts(
    client: AccountsClient, usernames: list[str], concurrency: int
) -> list[LiveAccount]:
    """Profile and addresses of each user (names checked by check_usernames), in no order.

    Every failure is reported, then the import stops."""
    accounts: list[LiveAccount] = []
    failures: list[str] = []

    async def read(username: str) -> None:
        try:
            profile = await client.get_user(username)
            emails = await client.get_emails(username)
        except ApiError as error:
            failures.append(str(error))
        else:
            accounts.append(LiveAccount(username, profile, emails))

    await for_each(usernames, min(concurrency, len(usernames)), read)
    if failures:
        raise SyncdError(
            "nothing imported: some users could not be read:\n  " + "\n  ".join(sorted(failures))
        )
    return accounts
