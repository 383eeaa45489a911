"""Reading the live state: cache first, then the API for what is missing or stale.

For each desired user only the parts it manages are read: the profile when it
states a profile field (or nothing at all, to learn whether it exists), the
email list when it states `emails`. A cold plan so costs at most 2 GETs per
user and a warm one none. Users are fetched by `concurrency` workers, and what
they learn is written to the cache in batches as they go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from syncd.api.client import AccountsClient
from syncd.api.credentials import CredentialStore
from syncd.api.pool import for_each
from syncd.core.desired import DesiredUser
from syncd.core.live import LiveAccount, Unreadable
from syncd.errors import (
    ApiError,
    CredentialRefused,
    Forbidden,
    MissingCredential,
    NotFound,
    Unauthorized,
)
from syncd.state.cache import LiveCache, Snapshot

ProgressCallback = Callable[[int, int], None]

#: Snapshots kept in memory before they are written to the cache.
FLUSH_EVERY = 500


@dataclass(frozen=True, slots=True)
class FetchOptions:
    now: float
    ttl: float
    refresh: bool = False
    concurrency: int = 16
    #: Users whose cached state must not be trusted (a write to them was interrupted).
    distrust: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Wanted:
    """Which parts of an account to read."""

    username: str
    profile: bool
    emails: bool

    @classmethod
    def for_desired(cls, user: DesiredUser) -> Wanted:
        # The profile also when nothing is managed: to learn whether the user exists.
        return cls(
            user.username, bool(user.profile) or user.emails is None, user.emails is not None
        )


def unreadable(username: str, error: ApiError) -> Unreadable:
    """What a failed read means for the plan: a warning or an error for this user."""
    if isinstance(error, MissingCredential):
        return Unreadable(username, "no_credentials", error.detail)
    if isinstance(error, CredentialRefused):
        return Unreadable(username, "credential_refused", error.detail, is_error=True)
    if isinstance(error, NotFound):
        return Unreadable(username, "user_not_found", "the API has no such user (404)")
    if isinstance(error, Forbidden):
        return Unreadable(username, "forbidden", f"the credential may not read this user: {error}")
    if isinstance(error, Unauthorized):
        return Unreadable(username, "unauthorized", f"credential refused: {error}", is_error=True)
    return Unreadable(username, "fetch_failed", str(error), is_error=True)


async def fetch_live(
    wanted: Iterable[Wanted],
    client: AccountsClient,
    credentials: CredentialStore,
    cache: LiveCache,
    options: FetchOptions,
    on_progress: ProgressCallback | None = None,
) -> dict[str, LiveAccount | Unreadable]:
    """The live state of every wanted account, from the cache where it is fresh enough."""
    wanted = list(wanted)
    trusted = [user.username for user in wanted if user.username not in options.distrust]
    cached = {} if options.refresh else cache.read_fresh(trusted, options.now, options.ttl)
    result: dict[str, LiveAccount | Unreadable] = {}
    to_fetch: list[tuple[Wanted, LiveAccount]] = []
    for user in wanted:
        # Checked even when the cache could answer: a plan for a user that
        # nothing can authenticate would promise writes that cannot happen.
        if not credentials.has(user.username):
            result[user.username] = Unreadable(
                user.username,
                "no_credentials",
                "no credential file for this user and no fallback token",
            )
            continue
        known = cached.get(user.username) or LiveAccount(user.username)
        if _complete(user, known):
            result[user.username] = known
        else:
            to_fetch.append((user, known))

    total, done = len(to_fetch), 0
    pending: list[Snapshot] = []

    async def fetch(work: tuple[Wanted, LiveAccount]) -> None:
        nonlocal done
        user, known = work
        outcome = await _fetch_one(client, user, known)
        result[user.username] = outcome
        if isinstance(outcome, LiveAccount):
            pending.append(Snapshot(_fetched_parts(outcome, known), options.now))
            if len(pending) >= FLUSH_EVERY:
                cache.save(pending)
                pending.clear()
        done += 1
        if on_progress:
            on_progress(done, total)

    try:
        await for_each(to_fetch, min(options.concurrency, total), fetch)
    finally:
        cache.save(pending)
    return result


def _complete(user: Wanted, known: LiveAccount) -> bool:
    return (known.profile is not None or not user.profile) and (
        known.emails is not None or not user.emails
    )


def _fetched_parts(fetched: LiveAccount, known: LiveAccount) -> LiveAccount:
    """Only what came from the API this time, so cached parts keep their own age."""
    return dataclasses.replace(
        fetched,
        profile=None if fetched.profile is known.profile else fetched.profile,
        emails=None if fetched.emails is known.emails else fetched.emails,
    )


async def _fetch_one(
    client: AccountsClient, user: Wanted, known: LiveAccount
) -> LiveAccount | Unreadable:
    account = known
    try:
        if user.profile and account.profile is None:
            account = dataclasses.replace(account, profile=await client.get_user(user.username))
        if user.emails and account.emails is None:
            account = dataclasses.replace(account, emails=await client.get_emails(user.username))
    except ApiError as error:
        return unreadable(user.username, error)
    return account
