"""Applying a plan: the writes, made safe to repeat and recorded in the audit trail.

Per user: the PATCH, then the POSTs, then the DELETEs; users in parallel up to
the concurrency limit. One user's failure never stops the others. The retry
rules of design.md section 3:

- PATCH and DELETE are idempotent: the client retries them; a DELETE answered
  404 means the address is already gone.
- POST is not: after an ambiguous failure (no answer, a 5xx) the emails are
  re-read and the address is added only if it is still missing; a 400 whose
  address turns out to be present means done.
- A write whose result stays unknown is recorded as `unknown`, and the user is
  dropped from the cache so that the next plan reads the truth.

After each success the cache is updated from the answer, in the same
transaction as the outcome event, so the next plan needs no GET for the user.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from syncd.api import AccountsClient
from syncd.audit import FAILED, OK, UNKNOWN, AuditTrail
from syncd.cache import LiveCache, Snapshot
from syncd.errors import (
    ApiError,
    BadRequest,
    HttpStatusError,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
)
from syncd.fields import email_key
from syncd.live import LiveAccount, LiveEmail
from syncd.plan import Action, AddEmail, DeleteEmail, UpdateProfile

#: POST attempts for one address when answers keep getting lost.
POST_ATTEMPTS = 3


@dataclass(frozen=True)
class Failure:
    user: str
    action: str
    description: str
    status: int | None
    message: str
    result: str = FAILED


@dataclass
class ApplyReport:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class _Unknown(Exception):
    """The write may or may not have happened."""

    def __init__(self, error: ApiError) -> None:
        self.error = error


def _is_ambiguous(error: ApiError) -> bool:
    return isinstance(error, TransportError | ServerError)


class Applier:
    def __init__(
        self,
        client: AccountsClient,
        cache: LiveCache,
        audit: AuditTrail,
        live: Mapping[str, LiveAccount],
    ) -> None:
        self.client = client
        self.cache = cache
        self.audit = audit
        self.live = dict(live)
        self.report = ApplyReport()

    async def apply(self, actions: Iterable[Action], concurrency: int) -> ApplyReport:
        by_user: dict[str, list[Action]] = {}
        for action in actions:
            by_user.setdefault(action.user, []).append(action)
        queue = iter(by_user.items())

        async def worker() -> None:
            for user, user_actions in queue:
                for action in _in_write_order(user_actions):
                    await self._apply_one(user, action)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(by_user)) or 1)))
        return self.report

    async def _apply_one(self, user: str, action: Action) -> None:
        intent = self.audit.intent(action)
        try:
            account = await self._write(action)
        except asyncio.CancelledError:
            # Stopped mid-write (shutdown or the run's deadline): say so, then stop.
            lost = TransportError(user, action.action, "-", "stopped before the answer arrived")
            self._record_failure(intent, action, lost, UNKNOWN)
            raise
        except _Unknown as unknown:
            self._record_failure(intent, action, unknown.error, UNKNOWN)
        except ApiError as error:
            self._record_failure(intent, action, error, FAILED)
        else:
            self.live[user] = account
            snapshot = Snapshot(account, time.time())
            self.audit.outcome(intent, action, OK, then=lambda: self.cache.put(snapshot))
            self.report.counts[action.action] += 1

    def _record_failure(self, intent: int, action: Action, error: ApiError, result: str) -> None:
        status = error.status if isinstance(error, HttpStatusError) else None
        # Whatever happened, the cached view of this user may now be wrong.
        self.audit.outcome(
            intent,
            action,
            result,
            status=status,
            message=error.detail,
            then=lambda: self.cache.forget(action.user),
        )
        self.live.pop(action.user, None)
        self.report.counts[f"{action.action}_{result}"] += 1
        self.report.failures.append(
            Failure(action.user, action.action, action.describe(), status, error.detail, result)
        )

    # -- the three writes ---------------------------------------------------------

    def _known(self, user: str) -> LiveAccount:
        return self.live.get(user) or LiveAccount(user)

    async def _write(self, action: Action) -> LiveAccount:
        account = self._known(action.user)
        if isinstance(action, UpdateProfile):
            try:
                profile = await self.client.update_profile(action.user, action.body())
            except ApiError as error:
                raise (_Unknown(error) if _is_ambiguous(error) else error) from None
            return dataclasses.replace(account, profile=profile)
        if isinstance(action, AddEmail):
            return await self._add_email(account, action.email)
        return await self._delete_email(account, action)

    async def _delete_email(self, account: LiveAccount, action: DeleteEmail) -> LiveAccount:
        try:
            await self.client.delete_email(action.user, action.email)
        except NotFound:
            pass  # already gone: the goal is reached
        except ApiError as error:
            raise (_Unknown(error) if _is_ambiguous(error) else error) from None
        return account.with_email_removed(action.email)

    async def _add_email(self, account: LiveAccount, address: str) -> LiveAccount:
        last_error: ApiError | None = None
        for _ in range(POST_ATTEMPTS):
            try:
                added = await self.client.add_email(account.username, address)
                return account.with_email_added(added)
            except RateLimited as error:
                # A 429 is refused before any work: waiting and sending again is safe.
                last_error = error
                await asyncio.sleep(min(error.retry_after or 1.0, 60.0))
                continue
            except BadRequest as error:
                # "Already has this address" is success; any other 400 is a real failure.
                present = await self._present(account.username, address)
                if present is not None:
                    return account.with_email_added(present)
                raise error from None
            except ApiError as error:
                if not _is_ambiguous(error):
                    raise
                last_error = error
            present = await self._present(account.username, address)
            if present is not None:
                return account.with_email_added(present)
        assert last_error is not None
        if isinstance(last_error, RateLimited):
            raise last_error  # never sent through: a plain failure
        raise _Unknown(last_error)

    async def _present(self, username: str, address: str) -> LiveEmail | None:
        """Re-read the addresses after an unclear answer; the one sought, if it is there."""
        try:
            emails = await self.client.get_emails(username)
        except ApiError as error:
            raise _Unknown(error) from None
        key = email_key(address)
        return next((e for e in emails if email_key(e.email) == key), None)


def _in_write_order(actions: list[Action]) -> list[Action]:
    order = {UpdateProfile: 0, AddEmail: 1, DeleteEmail: 2}
    return sorted(actions, key=lambda action: order[type(action)])
