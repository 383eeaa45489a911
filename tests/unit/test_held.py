"""The daemon's deletion guard as a pure decision: hold past the limit, apply the rest."""

from __future__ import annotations

import pytest

from syncd.core.held import split_deletions
from syncd.core.plan import AddEmail, DeleteEmail, FieldChange, Plan, UpdateProfile

RENAME = UpdateProfile("alice", (FieldChange("full_name", "A", "Alice"),))
ADD = AddEmail("alice", "new@example.com")
D1, D2, D3 = (DeleteEmail("bobsmith", f"old{n}@example.com") for n in (1, 2, 3))
PLAN = Plan((RENAME, ADD, D1, D2, D3))


def key(action: DeleteEmail) -> tuple[str, str]:
    return action.user, action.email


@pytest.mark.parametrize(
    ("limit", "approved", "rejected", "now", "held"),
    [
        pytest.param(3, [], [], PLAN.changes, (), id="within-the-limit"),
        pytest.param(2, [], [], (RENAME, ADD), (D1, D2, D3), id="over-holds-all-deletions"),
        pytest.param(0, [D1, D2, D3], [], PLAN.changes, (), id="an-approved-set-goes-through"),
        pytest.param(0, [D1, D2], [], (RENAME, ADD, D1, D2), (D3,), id="others-still-counted"),
        pytest.param(1, [D1], [D2], (RENAME, ADD, D1, D3), (), id="rejected-left-out"),
        pytest.param(0, [], [D1, D2, D3], (RENAME, ADD), (), id="all-rejected"),
    ],
)
def test_what_a_cycle_applies_and_holds(limit, approved, rejected, now, held):
    split = split_deletions(PLAN, limit, map(key, approved), map(key, rejected))
    assert split.now.changes == now
    assert split.held == held
    assert set(split.rejected) == set(rejected)


def test_an_approved_address_matches_whatever_its_case():
    plan = Plan((DeleteEmail("bobsmith", "Old1@Example.com"),))
    split = split_deletions(plan, 0, [("bobsmith", "old1@example.com")])
    assert split.held == ()
    assert split.now == plan
