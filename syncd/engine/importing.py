"""`syncd import`: a desired-state file written from the live accounts.

So a team can start from what exists: every readable profile field and every
address of each user, primary first. `gravatar_email` cannot be read back (the
API returns only its URL), so the file says so instead of guessing. The text is
checked by the loader before it is written: an import is always a valid file. A
live value that a desired state may not ask for (a `javascript:` URL the API took
once) is left out, with a comment saying why, and named to the operator: syncd
then leaves that field alone, and every other value is still imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping

from syncd.api.client import AccountsClient
from syncd.api.pool import for_each
from syncd.core.fields import is_valid_username
from syncd.core.live import READABLE_PROFILE_FIELDS, LiveAccount
from syncd.desired.loading import parse_desired
from syncd.errors import ApiError, DesiredStateError, SyncdError, UsageError
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


#: (username, key) of a user's block: what a line of the file states.
Key = tuple[str, str]


def _lines(
    accounts: Iterable[LiveAccount], left_out: Mapping[Key, str]
) -> Iterator[tuple[str, Key | None]]:
    yield from ((line, None) for line in HEADER.splitlines())
    for account in sorted(accounts, key=lambda a: a.username):
        user = account.username
        yield f"  {user}:", None
        if account.profile is not None:
            for field in READABLE_PROFILE_FIELDS:
                if (user, field) in left_out:
                    yield f"    # {field} left out: {visible(left_out[user, field])}", None
                else:
                    yield f"    {field}: {_scalar(account.profile.value(field))}", (user, field)
        if account.emails is None:
            continue
        if (user, "emails") in left_out:
            # Not the list without that address: a list states every address, so
            # syncd would delete the one left out.
            yield f"    # emails left out: {visible(left_out[user, 'emails'])}", None
            continue
        ordered = sorted(account.emails, key=lambda e: (not e.primary, e.email.lower()))
        yield ("    emails:" if ordered else "    emails: []"), (user, "emails")
        for email in ordered:
            note = "  # primary" if email.primary else ""
            yield f"      - {_scalar(email.email)}{note}", (user, "emails")


def render_desired(accounts: Iterable[LiveAccount]) -> str:
    return "\n".join(line for line, _ in _lines(accounts, {})) + "\n"


def import_text(accounts: list[LiveAccount], path: str) -> tuple[str, list[str]]:
    """The desired-state file of `accounts` (checked by the loader, as `path`), and a
    line "user: key: why" for each key left out because its live value may not be desired."""
    left_out: dict[Key, str] = {}
    while True:
        lines = list(_lines(accounts, left_out))
        text = "\n".join(line for line, _ in lines) + "\n"
        try:
            parse_desired([(path, text.encode())])
        except DesiredStateError as error:
            # The problems point into a file not written: named by user and key instead.
            found = {
                key: problem.message.removeprefix(f"{key[1]}: ")
                for problem in reversed(error.problems)
                if 0 < problem.line <= len(lines) and (key := lines[problem.line - 1][1])
            }
            if not found.keys() - left_out.keys():
                raise  # not a live value's fault: a bug, said as the loader says it
            left_out = found | left_out
        else:
            return text, [f"{user}: {key}: {why}" for (user, key), why in sorted(left_out.items())]


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
