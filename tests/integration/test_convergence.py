"""Property: from any live state, apply converges, and a second plan is empty."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_TOKEN, SandboxHandle
from tests.world import World, account

NAMES = ["alice_a", "bob_b", "carol_c"]
addresses = st.sampled_from([f"{n}@example.com" for n in ("a", "b", "c", "d", "E")])
texts = st.sampled_from(["", "Acme", "Umbrella Corp", "Zoë"])


@st.composite
def worlds(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    seed, desired = {}, {}
    for name in NAMES:
        live_emails = draw(st.lists(addresses, unique_by=str.lower, min_size=1, max_size=4))
        seed[name] = account(live_emails, f"tok-{name}", company=draw(texts))
        wanted: dict[str, Any] = {}
        if draw(st.booleans()):
            wanted["company"] = draw(texts)
        if draw(st.booleans()):
            wanted["location"] = draw(texts)
        if draw(st.booleans()):
            # Keep the primary so that the plan has no warning to leave behind.
            extra = draw(st.lists(addresses, unique_by=str.lower, max_size=3))
            primary = live_emails[0]
            wanted["emails"] = [primary, *(e for e in extra if e.lower() != primary.lower())]
        desired[name] = wanted
    return {"users": seed}, {"version": 1, "users": desired}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_apply_converges_from_any_state(sandbox_server: str, example: tuple[Any, Any]):
    seed, desired = example
    with tempfile.TemporaryDirectory() as root:
        world = World(SandboxHandle(sandbox_server, ADMIN_TOKEN), Path(root))
        world.seed(seed)
        world.desire(desired)
        first = world.apply(world.settings(max_deletions=100), limit=100)
        assert world.writes() == len(first.result.plan.changes)
        second = world.apply(world.settings(max_deletions=100), limit=100)
        assert second.result.plan.is_empty
        # And the truth, not only the cache, agrees.
        for name, wanted in desired["users"].items():
            if "emails" in wanted:
                assert sorted(map(str.lower, world.emails_of(name))) == sorted(
                    map(str.lower, wanted["emails"])
                )
