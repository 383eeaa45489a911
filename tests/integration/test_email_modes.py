"""emails_mode against a live sandbox account whose owner added an address by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.errors import GuardError
from tests.world import World

PRIMARY, SEEDED = "jane.doe@example.com", "old@example.com"  # both seeded (tests/world.py)
LISTED, BY_HAND = "listed@example.com", "by.hand@example.com"
SECOND = "second@example.com"


def desire(world: World, mode: str, emails: list[str]) -> None:
    world.desire({"version": 1, "users": {"janedoe": {"emails_mode": mode, "emails": emails}}})


def add_by_hand(world: World, address: str) -> None:
    """The account's owner adds an address themselves (here with the sandbox's staff token)."""
    response = httpx.post(
        f"{world.sandbox.url}/api/v1.1/users/janedoe/emails/",
        json={"email": address},
        headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
    )
    assert response.status_code == 201, response.text


def plan_json(world: World, *options: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["plan", *world.cli_args(), "--output", "json", *options])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


MODES = [
    # mode, after the first apply, after LISTED leaves the list, the plan's unmanaged notes then
    pytest.param(
        "exact", [PRIMARY, LISTED], [PRIMARY], [], id="exact-deletes-every-unlisted-address"
    ),
    pytest.param(
        "additive",
        [PRIMARY, SEEDED, LISTED],
        [PRIMARY, SEEDED, LISTED, BY_HAND],
        [],
        id="additive-never-deletes",
    ),
    pytest.param(
        "owned",
        [PRIMARY, SEEDED, LISTED],
        [PRIMARY, SEEDED, BY_HAND],
        [SEEDED, BY_HAND],
        id="owned-deletes-only-what-syncd-added",
    ),
]


@pytest.mark.parametrize(("mode", "first", "then", "unmanaged"), MODES)
def test_each_mode_with_an_address_added_by_hand(
    world: World, mode: str, first: list[str], then: list[str], unmanaged: list[str]
) -> None:
    desire(world, mode, [PRIMARY, LISTED])
    world.apply()
    assert sorted(world.emails_of("janedoe")) == sorted(first)

    add_by_hand(world, BY_HAND)
    (world.state_dir / "cache.db").unlink()  # the ledger is history: it survives this
    desire(world, mode, [PRIMARY])
    notes = plan_json(world).get("unmanaged_emails", [])
    assert sorted(note["email"] for note in notes) == sorted(unmanaged)
    world.apply()
    assert sorted(world.emails_of("janedoe")) == sorted(then)


def test_an_address_listed_while_syncd_read_it_is_owned(any_world: World) -> None:
    world = any_world  # on SQLite and on PostgreSQL
    desire(world, "owned", [PRIMARY, SEEDED])  # SEEDED is on the account already
    world.apply()
    owned = world.query("SELECT email, how FROM email_ownership ORDER BY email")
    assert owned == [{"email": PRIMARY, "how": "listed"}, {"email": SEEDED, "how": "listed"}]
    desire(world, "owned", [PRIMARY])
    world.apply()
    assert world.emails_of("janedoe") == [PRIMARY]


def test_a_lost_ledger_owns_nothing_and_deletes_nothing(any_world: World) -> None:
    world = any_world
    desire(world, "owned", [PRIMARY, LISTED])
    world.apply()
    assert world.query("SELECT email, how FROM email_ownership ORDER BY email") == [
        {"email": PRIMARY, "how": "listed"},
        {"email": LISTED, "how": "added"},
    ]
    world.query("DELETE FROM email_ownership RETURNING email")  # the ledger is lost
    desire(world, "owned", [PRIMARY])
    notes = plan_json(world)["unmanaged_emails"]
    assert sorted(note["email"] for note in notes) == [LISTED, SEEDED]
    world.apply()
    assert sorted(world.emails_of("janedoe")) == sorted([PRIMARY, SEEDED, LISTED])


def test_ownership_belongs_to_one_api(world: World) -> None:
    desire(world, "owned", [PRIMARY, LISTED])
    world.apply()
    (api,) = {row["api"] for row in world.query("SELECT api FROM email_ownership")}
    assert api == world.sandbox.url.rstrip("/").lower()


def test_an_address_syncd_deleted_is_not_its_own_when_the_owner_adds_it_again(
    any_world: World,
) -> None:
    world = any_world
    desire(world, "owned", [PRIMARY, LISTED])
    world.apply()  # syncd adds LISTED: its own
    desire(world, "owned", [PRIMARY])
    world.apply()  # and deletes it when it leaves the list
    assert LISTED not in world.emails_of("janedoe")
    add_by_hand(world, LISTED)  # the owner wants it back, unlisted
    planned = CliRunner().invoke(cli, ["plan", *world.cli_args(), "--refresh", "--output", "json"])
    notes = json.loads(planned.stdout)
    assert notes["changes"] == []
    assert LISTED in [note["email"] for note in notes["unmanaged_emails"]]
    world.apply(world.settings(cache_ttl=0))
    assert LISTED in world.emails_of("janedoe")


def delete_by_hand(world: World, address: str) -> None:
    response = httpx.request(
        "DELETE",
        f"{world.sandbox.url}/api/v1.1/users/janedoe/emails/",
        json={"email": address},
        headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
    )
    assert response.status_code in (200, 204), response.text


def test_an_address_gone_from_the_account_is_no_longer_syncds(any_world: World) -> None:
    world = any_world
    desire(world, "owned", [PRIMARY, LISTED])
    world.apply()  # syncd adds LISTED: its own
    delete_by_hand(world, LISTED)  # the owner removes it, as the list drops it
    desire(world, "owned", [PRIMARY])
    fresh = world.settings(cache_ttl=0)
    world.apply(fresh)  # read without it: nothing of syncd's there any more
    add_by_hand(world, LISTED)  # the owner's own now
    world.apply(fresh)
    assert LISTED in world.emails_of("janedoe")


def test_a_cached_answer_claims_nothing_the_owner_removed_since(any_world: World) -> None:
    """The trial's sequence (report-lang D13): a claim "listed while read on the account"
    from a cached answer made the owner's address, removed and added again by hand, syncd's."""
    world = any_world
    add_by_hand(world, BY_HAND)
    desire(world, "owned", [PRIMARY])
    world.apply()  # BY_HAND is not managed; the answer that shows it is cached
    delete_by_hand(world, BY_HAND)  # the owner removes it
    desire(world, "owned", [PRIMARY, BY_HAND])
    world.apply()  # within the cache's TTL: the cached answer still shows it
    claimed = world.query("SELECT email FROM email_ownership ORDER BY email")
    assert claimed == [{"email": PRIMARY}]  # PRIMARY: read from the API by the first apply
    add_by_hand(world, BY_HAND)  # the owner adds it again, as their own
    desire(world, "owned", [PRIMARY])
    world.apply(world.settings(cache_ttl=0))
    assert BY_HAND in world.emails_of("janedoe")


def read_gone_then_added_by_hand(
    world: World, run_that_writes_nothing: Callable[[], object]
) -> None:
    """syncd adds LISTED and SECOND; the owner removes LISTED as the list drops both; a
    run that writes nothing to the account reads LISTED gone (and would delete SECOND);
    the owner adds LISTED again, as their own."""
    desire(world, "owned", [PRIMARY, LISTED, SECOND])
    world.apply()  # syncd adds both: its own
    delete_by_hand(world, LISTED)
    desire(world, "owned", [PRIMARY])
    run_that_writes_nothing()
    owned = world.query("SELECT email FROM email_ownership ORDER BY email")
    assert owned == [{"email": PRIMARY}, {"email": SECOND}]
    add_by_hand(world, LISTED)


# A claim never outlives a read that found its address gone, even one whose run writes
# nothing: else the owner's address, added again later and unlisted, is deleted as syncd's.
def test_an_apply_the_guard_refuses_releases_what_it_read_gone(any_world: World) -> None:
    world = any_world
    fresh = world.settings(cache_ttl=0)

    def refused() -> None:
        with pytest.raises(GuardError):
            world.apply(fresh, limit=0)

    read_gone_then_added_by_hand(world, refused)
    world.apply(fresh)
    assert sorted(world.emails_of("janedoe")) == sorted([PRIMARY, SEEDED, LISTED])


def test_a_plan_releases_what_it_read_gone(world: World) -> None:
    # On SQLite: a plan on a shared state (PostgreSQL) writes nothing to it.
    read_gone_then_added_by_hand(world, lambda: plan_json(world, "--refresh"))
    world.apply(world.settings(cache_ttl=0))
    assert sorted(world.emails_of("janedoe")) == sorted([PRIMARY, SEEDED, LISTED])
