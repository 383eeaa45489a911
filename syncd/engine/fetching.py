"""Reading the live state: cache first, then the API for what is missing or stale.

For each desired user only the parts it manages are read: the profile when it
states a profile field (or nothing at all, to learn whether it exists), the
email list when it states `emails`. A cold plan so costs at most 2 GETs per
user and a warm one none. Users are fetched by `concurrency` workers, and what
they learn is written to the cache in batches as they go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from syncd.api.client import AccountsClient
from syncd.api.credentials import CredentialStore
from syncd.api.pool import for_each
from syncd.core.desired import DesiredUser
from syncd.core.live import LiveAccount
from syncd.core.problem import Problem
from syncd.core.vocabulary import Code
from syncd.errors import (
    ApiError,
    CredentialRefused,
    Forbidden,
    MalformedResponse,
    MissingCredential,
    NotFound,
    Unauthorized,
)
from syncd.state.cache import Cached, LiveCache, Snapshot

ProgressCallback = Callable[[int, int], None]

#: Snapshots kept in memory before they are written to the cache.
FLUSH_EVERY = 500


@dataclass(frozen=True, slots=True)
class Freshness:
    """How far a plan may trust the cache (see FetchOptions for each field)."""

    ttl: float
    refresh: bool = False
    refresh_oldest: int = 0


@dataclass(frozen=True, slots=True)
class FetchOptions:
    now: float
    #: Seconds a cached part is trusted: SYNCD_CACHE_TTL, or the daemon's drift window.
    ttl: float
    #: Read every user again, whatever the cache holds (--refresh, SIGHUP).
    refresh: bool = False
    concurrency: int = 16
    #: Users whose cached state must not be trusted (a write to them was interrupted).
    distrust: frozenset[str] = frozenset()
    #: Read at least this many users from the API, those read longest ago first,
    #: even if the cache still trusts them: the daemon's drift window, spread so
    #: that every cycle reads its share and no two cycles' entries age together.
    refresh_oldest: int = 0
    #: Users not to read this time, each with the error it stands for: the
    #: daemon's users that failed and wait for their own retry.
    hold: Mapping[str, Problem] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LiveRead:
    """The live state of the wanted users, and how fresh what was used is."""

    states: dict[str, LiveAccount | Problem]
    #: When the oldest cached answer used was read; None when none was used.
    oldest_read_at: float | None = None
    #: Users answered from the cache, wholly or in part (a cached profile, fresh emails).
    from_cache: int = 0
    #: Users whose address list was read from the API in this run, not the cache:
    #: only such an answer may make syncd own an address (reconcile.planning).
    emails_read: frozenset[str] = frozenset()


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


def unreadable(username: str, error: ApiError, api_url: str, credential: str = "") -> Problem:
    """What a failed read means for the plan: an error for this user, with its cause.

    The cause leaves the user out (no body, no path), so that the same failure
    for many users can be told apart from many failures, and said once.
    `credential` says where the user's credential came from, for a 401.
    """
    if isinstance(error, MissingCredential):
        return Problem(username, Code.NO_CREDENTIALS, error.detail, NO_CREDENTIAL)
    if isinstance(error, CredentialRefused):
        # The message names the file: each refusal is news of its own.
        return Problem(username, Code.CREDENTIAL_REFUSED, error.detail, error.detail)
    if isinstance(error, NotFound):
        return Problem(
            username,
            Code.USER_NOT_FOUND,
            "the API has no such user (404)",
            f"the API at {api_url} answered 404 (no such user): is the API URL right?",
        )
    if isinstance(error, Forbidden):
        return Problem(
            username,
            Code.FORBIDDEN,
            f"the credential may not read this user: {error}",
            f"the API at {api_url} answered 403: may the credentials read their users "
            "(scopes profile_read and email_read)?",
        )
    if isinstance(error, Unauthorized):
        return Problem(
            username,
            Code.UNAUTHORIZED,
            f"credential refused ({credential}): {error}",
            f"the API at {api_url} refused the credentials (401)",
        )
    if isinstance(error, MalformedResponse):
        return Problem(
            username,
            Code.MALFORMED_RESPONSE,
            str(error),
            f"the API at {api_url} answered with something that is not its JSON: {error.detail}",
        )
    # The detail, not the status alone: it is what tells a wait syncd refused
    # (WaitTooLong), a proxy's page or where a redirect pointed from "HTTP 429".
    return Problem(
        username, Code.FETCH_FAILED, str(error), f"the API at {api_url} failed: {error.detail}"
    )


NO_CREDENTIAL = (
    "no credential: put <username>.token or <username>.password files in the credentials "
    "directory (SYNCD_CREDENTIALS_DIR, --credentials-dir), or set SYNCD_TOKEN"
)


def mark_shared(
    result: dict[str, LiveAccount | Problem],
    requested: set[str],
    read_from_api: int,
    read_from_cache: int,
) -> None:
    """Mark the failures as shared when every read met the same one, to say it once.

    Among the users whose reads were sent (`requested`): when none succeeded and
    all failed for one cause, that cause is shared. The API unreachable counts
    so even for one user, and beside users answered from the cache, and its
    several causes (a 500 here, a 503 there) are one, said together; any other
    cause needs two users and no other user read, since a user not found beside
    users that were read is news of its own. Users that sent nothing (no
    credential, or waiting for their own retry) neither make nor break it; when
    nothing could be sent for anyone, no credential at all is the shared cause.
    """
    sent = [result[name] for name in requested]
    if sent:
        if read_from_api:
            return
        failed = [state for state in sent if isinstance(state, Problem)]
        transport = all(state.code == Code.FETCH_FAILED for state in failed)
        if not transport and (len(failed) < 2 or read_from_cache):
            return
    else:
        failed = [
            state
            for state in result.values()
            if isinstance(state, Problem) and state.code == Code.NO_CREDENTIALS
        ]
        if read_from_cache or len(failed) < 2:
            return
    causes = sorted({state.cause for state in failed})
    if len(causes) != 1 and not all(state.code == Code.FETCH_FAILED for state in failed):
        return
    cause = "; ".join(causes[:SAID_CAUSES])
    if len(causes) > SAID_CAUSES:
        cause += f"; and {len(causes) - SAID_CAUSES} more causes"
    for state in failed:
        result[state.user] = dataclasses.replace(state, cause=cause, shared=True)


#: The causes of an API that answered nothing said together, at most.
SAID_CAUSES = 3


async def fetch_live(
    wanted: Iterable[Wanted],
    client: AccountsClient,
    credentials: CredentialStore,
    cache: LiveCache,
    options: FetchOptions,
    on_progress: ProgressCallback | None = None,
) -> LiveRead:
    """The live state of every wanted account, from the cache where it is fresh enough."""
    wanted = list(wanted)
    trusted = [user.username for user in wanted if user.username not in options.distrust]
    cached = {} if options.refresh else cache.read_fresh(trusted, options.now, options.ttl)
    result: dict[str, LiveAccount | Problem] = {}
    to_fetch: list[tuple[Wanted, LiveAccount]] = []
    answered: list[tuple[Wanted, Cached]] = []
    directory = credentials.directory
    where = f"looked in {directory}" if directory else "no credentials directory set"
    no_one = f"{NO_CREDENTIAL} ({where})"
    for user in wanted:
        if (held := options.hold.get(user.username)) is not None:
            result[user.username] = held
            continue
        # Checked even when the cache could answer: a plan for a user that
        # nothing can authenticate would promise writes that cannot happen.
        if not credentials.has(user.username):
            result[user.username] = Problem(
                user.username, Code.NO_CREDENTIALS, credentials.why_missing(user.username), no_one
            )
            continue
        entry = cached.get(user.username)
        if entry is not None and _complete(user, entry.account):
            answered.append((user, entry))
        else:
            to_fetch.append((user, entry.account if entry else LiveAccount(user.username)))
    due = options.refresh_oldest - len(to_fetch)
    if due > 0 and answered:
        answered.sort(key=_read_at)
        to_fetch += [(user, LiveAccount(user.username)) for user, _ in answered[:due]]
        del answered[:due]
    for user, entry in answered:
        result[user.username] = entry.account

    total, done, fetched = len(to_fetch), 0, 0
    pending: list[Snapshot] = []

    async def fetch(work: tuple[Wanted, LiveAccount]) -> None:
        nonlocal done, fetched
        user, known = work
        outcome = await _fetch_one(client, credentials, user, known)
        result[user.username] = outcome
        if isinstance(outcome, LiveAccount):
            fetched += 1
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
    mark_shared(result, {user.username for user, _ in to_fetch}, fetched, len(answered))
    # When each user answered from the cache, wholly or in part, read what it used.
    used = [*map(_read_at, answered), *_kept_read_at(to_fetch, result, cached)]
    return LiveRead(
        result,
        min(used, default=None),
        len(used),
        frozenset(u.username for u, was in to_fetch if _emails_read(result[u.username], was)),
    )


def _read_at(item: tuple[Wanted, Cached]) -> float:
    """When the cached parts this user needs were read: the older of the two."""
    user, entry = item
    times = [entry.profile_read_at if user.profile else None]
    times.append(entry.emails_read_at if user.emails else None)
    return min((at for at in times if at is not None), default=float("inf"))


def _kept_read_at(
    fetched: Iterable[tuple[Wanted, LiveAccount]],
    states: Mapping[str, LiveAccount | Problem],
    cached: Mapping[str, Cached],
) -> Iterator[float]:
    """When the cached parts that each read kept beside what it fetched were read.

    A cached part used beside a fresh one is as much the cache's answer as a
    wholly cached user, and the plan must say its age.
    """
    for user, known in fetched:
        entry, state = cached.get(user.username), states[user.username]
        if entry is None or entry.account is not known or not isinstance(state, LiveAccount):
            continue  # nothing cached, or read again whole (refresh_oldest), or not read
        kept = Wanted(
            user.username,
            user.profile and state.profile is known.profile,
            user.emails and state.emails is known.emails,
        )
        if (read_at := _read_at((kept, entry))) != float("inf"):
            yield read_at


def _complete(user: Wanted, known: LiveAccount) -> bool:
    return (
        (known.profile is not None or not user.profile)
        and (known.emails is not None or not user.emails)
        and not known.primary_unknown
    )


def _emails_read(outcome: LiveAccount | Problem, known: LiveAccount) -> bool:
    """Whether the address list of `outcome` was read from the API, not the cache."""
    read = outcome.emails if isinstance(outcome, LiveAccount) else None
    return read is not None and read is not known.emails


def _fetched_parts(fetched: LiveAccount, known: LiveAccount) -> LiveAccount:
    """Only what came from the API this time, so cached parts keep their own age."""
    return dataclasses.replace(
        fetched,
        profile=None if fetched.profile is known.profile else fetched.profile,
        emails=None if fetched.emails is known.emails else fetched.emails,
    )


async def _fetch_one(
    client: AccountsClient, credentials: CredentialStore, user: Wanted, known: LiveAccount
) -> LiveAccount | Problem:
    account = known
    try:
        if user.profile and account.profile is None:
            account = dataclasses.replace(account, profile=await client.get_user(user.username))
        if user.emails and account.emails is None:
            account = dataclasses.replace(account, emails=await client.get_emails(user.username))
        if account.primary_unknown:
            # Only the profile's `email` can say which address is the primary, which
            # is never deleted (LiveAccount.may_be_primary): unread, none would be.
            account = dataclasses.replace(account, profile=await client.get_user(user.username))
    except ApiError as error:
        # Only a credential that was sent can be refused: for_user() has it cached.
        refused = credentials.for_user(user.username) if isinstance(error, Unauthorized) else None
        source = refused.source if refused else ""
        return unreadable(user.username, error, client.api_url, source)
    return account
