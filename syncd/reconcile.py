"""One reconciliation, end to end: desired state → live state → plan.

The glue between the pure core and the edges, shared by `syncd plan`, `syncd
apply` and the daemon, so that all three see the same plan for the same input.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from syncd.api import AccountsClient
from syncd.cache import LiveCache
from syncd.credentials import CredentialStore
from syncd.desired import DesiredState
from syncd.errors import UsageError
from syncd.fetching import FetchOptions, ProgressCallback, fetch_live
from syncd.live import LiveAccount, Unreadable
from syncd.plan import Plan, build_plan
from syncd.settings import Settings
from syncd.statefile import open_state


@dataclass
class PlanResult:
    desired: DesiredState
    plan: Plan
    live: dict[str, LiveAccount | Unreadable]
    requests: Counter[str] = field(default_factory=Counter)

    def source(self) -> dict[str, Any]:
        return source_of(self.desired)


def source_of(desired: DesiredState) -> dict[str, Any]:
    return {
        "files": [{"path": s.path, "sha256": s.sha256} for s in desired.sources],
        "revision": desired.revision,
    }


def restrict(desired: DesiredState, users: tuple[str, ...]) -> DesiredState:
    """The desired state limited to `--user` names, each of which must be in it."""
    if not users:
        return desired
    unknown = sorted(set(users) - set(desired.usernames()))
    if unknown:
        raise UsageError(f"not in the desired state: {', '.join(unknown)}")
    return desired.only(set(users))


async def compute_plan(
    settings: Settings,
    desired: DesiredState,
    *,
    refresh: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PlanResult:
    credentials = CredentialStore.from_settings(settings)
    db = open_state(settings.state_file)
    try:
        async with AccountsClient(settings, credentials.for_user) as client:
            options = FetchOptions(
                now=time.time(),
                ttl=settings.cache_ttl,
                refresh=refresh,
                concurrency=settings.concurrency,
            )
            live = await fetch_live(
                desired, client, credentials, LiveCache(db), options, on_progress
            )
            requests = client.requests
    finally:
        db.close()
    return PlanResult(desired, build_plan(desired, live), live, requests)
