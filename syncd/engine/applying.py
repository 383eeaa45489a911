"""Applying a plan: the writes, made safe to repeat and recorded in the audit trail.

Per user: the PATCH, then the POSTs, then the DELETEs; users in parallel up to
the concurrency limit. One user's failure never stops the others; an API that
stops answering (ApiUnreachable, the client's rule for reads and writes alike)
stops them all: the write in hand is recorded, nothing more is sent. The retry
rules of design.md section 3:

- PATCH and DELETE are idempotent: the client retries them. A DELETE answered
  404 is ambiguous (design.md section 1: an unknown user, or an address the
  user does not have): the emails are re-read, and the address absent means
  already gone, the user absent `user_not_found`.
- POST is not: after an ambiguous failure (no answer, a 5xx, an unreadable
  2xx) the emails are re-read and the address is added only if it is still
  missing; a 400 whose address turns out to be present means done.
- A write none of whose attempts made a connection was not sent: `failed`,
  saying so. A write whose result stays unknown is recorded as `unknown`, and
  the user is dropped from the cache so that the next plan reads the truth; a
  write refused (400, 401, 403) or never sent changed nothing, and the user's
  cache entry stays.
- Within a user, a failure can make the rest unsafe: after an authentication
  or not-found error nothing more is sent for that user, after a 403 nothing
  more that needs the same scope (profile_write for the PATCH, email_write for
  the POSTs and DELETEs), and deletions wait
  until every addition has succeeded, so an account never ends up with fewer
  addresses than either the old or the new list.

After each success the cache is updated from the answer, in the same
transaction as the outcome event, so the next plan needs no GET for the user.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from syncd.api.client import AccountsClient
from syncd.api.pool import for_each
from syncd.core.fields import email_key
from syncd.core.live import LiveAccount, LiveEmail
from syncd.core.not_kept import NotKept, after_add, after_update
from syncd.core.plan import Action, AddEmail, DeleteEmail, UpdateProfile, UserEmail
from syncd.core.problem import Problem
from syncd.core.vocabulary import ActionName, Code, WriteResult
from syncd.errors import (
    ApiError,
    ApiUnreachable,
    BadRequest,
    Forbidden,
    HttpStatusError,
    MalformedResponse,
    MissingCredential,
    NotFound,
    NotSent,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
)
from syncd.state.audit import AuditTrail
from syncd.state.cache import LiveCache, Snapshot
from syncd.state.groupcommit import group_commit
from syncd.state.not_kept import NotKeptRecords
from syncd.state.ownership import Claim, OwnershipLedger

#: POST attempts for one address when answers keep getting lost.
POST_ATTEMPTS = 3
OK, FAILED, UNKNOWN = WriteResult.OK, WriteResult.FAILED, WriteResult.UNKNOWN
SKIPPED, DOES_NOT_CONVERGE = WriteResult.SKIPPED, WriteResult.DOES_NOT_CONVERGE
#: The code of a user whose write failed, by the answer's status.
_WRITE_CODES = {401: Code.UNAUTHORIZED, 403: Code.FORBIDDEN, 404: Code.USER_NOT_FOUND}

#: Told of each action as it ends: the action, its result (ok, failed, unknown,
#: skipped, does_not_converge) and, when it did not simply succeed, why.
ChangeObserver = Callable[[Action, WriteResult, str | None], None]

#: Each user's writes go in this order: the PATCH, the POSTs, the DELETEs.
_WRITE_ORDER = {UpdateProfile: 0, AddEmail: 1, DeleteEmail: 2}
#: Errors after which nothing more is sent for the user: every call would fail alike.
_USER_STOPPERS = (Unauthorized, NotFound, MissingCredential)


@dataclass
class ApplyReport:
    counts: Counter[str] = field(default_factory=Counter)
    #: One per write that did not succeed, for its user.
    failures: list[Problem] = field(default_factory=list)
    #: The same writes by what they were and how they ended (what `apply` sums up).
    failed: Counter[tuple[ActionName, WriteResult]] = field(default_factory=Counter)
    #: Users whose writes were not sent: suspended after the plan was made.
    withheld: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class _Withheld(Exception):
    """The user was suspended after the plan: nothing of theirs is written."""


class _Unknown(Exception):
    """The write may or may not have happened."""

    def __init__(self, error: ApiError) -> None:
        self.error = error


def _listed(account: LiveAccount, address: str) -> bool:
    """Whether the account still lists `address`, in any spelling."""
    key = email_key(address)
    return any(email_key(e.email) == key for e in account.emails or ())


def _is_ambiguous(error: ApiError) -> bool:
    # An unreadable answer to a write arrives after the write was accepted. A write
    # none of whose attempts made a connection was not sent: a known failure.
    ambiguous = isinstance(error, TransportError | ServerError | MalformedResponse)
    return ambiguous and not isinstance(error, NotSent)


class Applier:
    def __init__(
        self,
        client: AccountsClient,
        cache: LiveCache,
        audit: AuditTrail,
        live: Mapping[str, LiveAccount],
        not_kept: NotKeptRecords,
        ownership: OwnershipLedger,
        suspended: Callable[[str], bool],
        on_change: ChangeObserver | None = None,
        report: ApplyReport | None = None,
    ) -> None:
        self.on_change = on_change
        self.ownership = ownership
        #: Asked before each user's writes: a suspension said since the plan stops them.
        self.suspended = suspended
        self.client = client
        self.cache = cache
        self.audit = audit
        self.not_kept = not_kept
        self.live = dict(live)
        #: Filled as each write ends: whoever passed it reads it even if the apply is stopped.
        self.report = ApplyReport() if report is None else report
        self.commits = group_commit(audit.db, cache.db)

    async def apply(self, actions: Iterable[Action], concurrency: int) -> ApplyReport:
        by_user: dict[str, list[Action]] = {}
        for action in actions:
            by_user.setdefault(action.user, []).append(action)
        self.commits.open()
        self.client.fence = self.commits.durable  # for each write sent again after a wait
        try:
            await for_each(by_user.values(), min(concurrency, len(by_user)), self._apply_user)
        finally:
            self.client.fence = None
            await self.commits.close()
        return self.report

    async def _apply_user(self, actions: list[Action]) -> None:
        remaining = sorted(actions, key=lambda action: _WRITE_ORDER[type(action)])
        unless: Callable[[str], bool] | None = self.suspended  # asked once, with the first intent
        while remaining:
            action = remaining.pop(0)
            try:
                error = await self._apply_one(action, unless)
            except _Withheld:
                self.report.withheld.append(action.user)
                return
            unless = None
            if error is None:
                continue
            # A 403 is per scope (design.md section 1): the PATCH's profile_write says
            # nothing of the email_write of the POSTs and DELETEs, which all come after.
            email_403 = isinstance(error, Forbidden) and not isinstance(action, UpdateProfile)
            if isinstance(error, _USER_STOPPERS) or email_403:
                failed = f"{error.method} {error.path}: {error.detail}"
                self._skip(remaining, f"an earlier write for this user failed: {failed}")
                return
            if isinstance(action, AddEmail):
                deletions = [a for a in remaining if isinstance(a, DeleteEmail)]
                self._skip(deletions, "an address to add is not in place yet")
                remaining = [a for a in remaining if not isinstance(a, DeleteEmail)]

    async def _apply_one(
        self, action: Action, unless: Callable[[str], bool] | None = None
    ) -> ApiError | None:
        """One write with its intent and outcome; the error if it did not succeed.

        With `unless`, no intent and _Withheld when `unless(user)`: asked in the
        intent's transaction, so a `syncd suspend` is seen, or came after the intent.
        """

        def record_intent() -> int | None:
            if unless is not None and unless(action.user):
                return None
            return self.audit.intent(action)

        # Every row of the apply goes through the group commit: on SQLite its thread has
        # the connections to itself, and the intent is written there (its number later).
        intent = self.commits.submit(record_intent)
        try:
            await self.commits.durable()  # the intent is on disk before the request leaves
            if intent.result() is None:
                raise _Withheld
            account, missed = await self._write(action)
        except asyncio.CancelledError:
            # Stopped mid-write (shutdown or the run's deadline): say so, then stop.
            self._record(intent, action, UNKNOWN, None, "stopped before the answer arrived")
            raise
        except ApiUnreachable as error:
            # The run stops. The client raises it from NotSent when no attempt of this
            # write made a connection; else it may have arrived (a timeout, a lost answer).
            if isinstance(error.__cause__, NotSent):
                self._record(intent, action, FAILED, None, f"not sent: {error}")
            else:
                self._record(intent, action, UNKNOWN, None, str(error))
            raise
        except _Unknown as unknown:
            self._record_error(intent, action, unknown.error, UNKNOWN)
            return unknown.error
        except ApiError as error:
            self._record_error(intent, action, error, FAILED)
            return error
        self.live[action.user] = account

        def remember() -> None:
            self._remember(action, account)
            self.not_kept.save(missed)
            if isinstance(action, AddEmail) and not missed:
                # Added by syncd, so syncd's to delete when it leaves the list.
                self.ownership.record([UserEmail(action.user, action.email)], Claim.ADDED)
            if isinstance(action, DeleteEmail) and not _listed(account, action.email):
                # Gone: if the owner adds it again, it is theirs, not syncd's to delete.
                # Not while another spelling of it is left, which has a DELETE of its own.
                self.ownership.release([UserEmail(action.user, action.email)])

        # Accepted, and applied as far as the server goes: what it did not keep is
        # an error of its own, and the cache holds the server's value.
        result = DOES_NOT_CONVERGE if missed else OK
        message = "; ".join(record.message() for record in missed) or None
        self._outcome(intent, action, result, message=message, then=remember)
        if missed:  # sent and accepted, yet not applied as planned: a failure, once
            self._fail(action, result, None, message or "")
        else:
            self.report.counts[action.action] += 1
        self._tell(action, result, message)
        return None

    def _tell(self, action: Action, result: WriteResult, message: str | None) -> None:
        if self.on_change is not None:
            self.on_change(action, result, message)

    def _remember(self, action: Action, account: LiveAccount) -> None:
        if isinstance(action, UpdateProfile) and account.profile is not None:
            # The PATCH answer is a whole, fresh user object.
            profile_only = LiveAccount(account.username, account.profile)
            self.cache.put(Snapshot(profile_only, time.time()))
        elif account.emails is not None:
            # The list is the cached one plus or minus one address: it keeps
            # the age of the cached list, so the TTL still brings a re-read.
            self.cache.replace_emails(account.username, account.emails)

    def _outcome(
        self,
        intent: Future[int | None],
        action: Action,
        result: WriteResult,
        *,
        status: int | None = None,
        message: str | None,
        then: Callable[[], None] | None,
    ) -> None:
        """The outcome of `intent`, written after it (none when it was withheld)."""

        def record() -> None:
            seq = intent.result()
            if seq is not None:
                self.audit.outcome(seq, action, result, status=status, message=message, then=then)

        self.commits.submit(record)

    def _record_error(
        self, intent: Future[int | None], action: Action, error: ApiError, result: WriteResult
    ) -> None:
        status = error.status if isinstance(error, HttpStatusError) else None
        unsent = "not sent: " if isinstance(error, NotSent) else ""
        self._record(intent, action, result, status, unsent + error.detail)

    def _record(
        self,
        intent: Future[int | None],
        action: Action,
        result: WriteResult,
        status: int | None,
        message: str,
    ) -> None:
        # A refusal (400, 401, 403) or a write never sent changed nothing on the server:
        # what was read stays true, and stays cached. An unknown outcome may have changed
        # the account, and a 404 says it is gone: the next run reads the truth.
        then = None
        if result == UNKNOWN or status == 404:
            then = functools.partial(self.cache.forget, action.user)
            self.live.pop(action.user, None)
        self._outcome(intent, action, result, status=status, message=message, then=then)
        self._fail(action, result, status, message)
        self._tell(action, result, message)

    def _skip(self, actions: Sequence[Action], reason: str) -> None:
        """Actions not sent at all: no intent, no outcome, but they fail the run.

        The observer is told SKIPPED, which it says as "not sent": `reason` alone follows.
        """
        for action in actions:
            self._fail(action, SKIPPED, None, f"not sent: {reason}")
            self._tell(action, SKIPPED, reason)

    def _fail(self, action: Action, result: WriteResult, status: int | None, message: str) -> None:
        """Count a write that did not succeed, and what it means for its user."""
        self.report.counts[f"{action.action}_{result}"] += 1
        self.report.failed[action.action, result] += 1
        said = f"{action.describe()}: {message}"
        if result == DOES_NOT_CONVERGE:
            # It names the fields already, as the plan says it on the runs after.
            code, said = Code.DOES_NOT_CONVERGE, message
        else:
            code = _WRITE_CODES.get(status or 0, Code.WRITE_FAILED)
        problem = Problem(action.user, code, said)
        self.report.failures.append(problem)

    # -- the three writes ---------------------------------------------------------

    async def _write(self, action: Action) -> tuple[LiveAccount, list[NotKept]]:
        """The account after the write, and what of the write the server did not keep."""
        account = self.live.get(action.user) or LiveAccount(action.user)
        if isinstance(action, UpdateProfile):
            body = action.body()
            try:
                profile = await self.client.update_profile(action.user, body)
            except ApiError as error:
                raise (_Unknown(error) if _is_ambiguous(error) else error) from None
            missed = after_update(action.user, body, profile)
            return LiveAccount(account.username, profile, account.emails), missed
        if isinstance(action, AddEmail):
            account, present = await self._add_email(account, action.email)
            missed_address = after_add(action.user, action.email, present)
            return account, [] if missed_address is None else [missed_address]
        return await self._delete_email(account, action), []

    async def _delete_email(self, account: LiveAccount, action: DeleteEmail) -> LiveAccount:
        try:
            await self.client.delete_email(action.user, action.email)
        except NotFound as error:
            # The user gone, or the address (design.md section 1): the emails tell which,
            # not the wording of the answer. Gone already, the goal is reached. This very
            # spelling: another of the same address may be listed, with its own DELETE.
            present = await self._present(action.user, action.email)
            if present is not None and present.email == action.email:
                detail = f"{error.detail}, yet the address is still listed"
                raise ApiError(error.user, error.method, error.path, detail) from None
        except ApiError as error:
            raise (_Unknown(error) if _is_ambiguous(error) else error) from None
        return account.with_email_removed(action.email)

    async def _add_email(
        self, account: LiveAccount, address: str
    ) -> tuple[LiveAccount, LiveEmail]:
        """The account with the address, and the address as the server has it."""
        last_error: ApiError | None = None
        for attempt in range(1, POST_ATTEMPTS + 1):
            if attempt > 1:  # sent again after a wait or a re-read: still ours to send?
                await self.commits.durable()
            try:
                added = await self.client.add_email(account.username, address)
                return account.with_email_added(added), added
            except RateLimited as error:
                # A 429 is refused before any work: waiting and sending again is safe,
                # unless the server asks for a wait longer than we give it.
                if not error.retryable or attempt == POST_ATTEMPTS:
                    raise  # no wait for an attempt that will not come: a plain failure
                await asyncio.sleep(self.client.retry.delay(attempt, error))
                continue
            except BadRequest as error:
                # "Already has this address" is success; any other 400 is a real failure.
                present = await self._present(account.username, address)
                if present is not None:
                    return account.with_email_added(present), present
                raise error from None
            except ApiError as error:
                if not _is_ambiguous(error):
                    raise
                last_error = error
            present = await self._present(account.username, address)
            if present is not None:
                return account.with_email_added(present), present
        assert last_error is not None  # the last attempt's answer was lost
        raise _Unknown(last_error)

    async def _present(self, username: str, address: str) -> LiveEmail | None:
        """Re-read the addresses after an unclear answer; the one sought, if it is there."""
        try:
            emails = await self.client.get_emails(username)
        except NotFound:
            raise  # the user is gone: a failure, no longer in doubt, and the user's last write
        except ApiError as error:
            raise _Unknown(error) from None
        key = email_key(address)
        return next((e for e in emails if email_key(e.email) == key), None)
