"""emails_mode against a live sandbox account whose owner added an address by hand."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.world import World

PRIMARY, SEEDED = "jane.doe@example.com", "old@example.com"  # both seeded (tests/world.py)
LISTED, BY_HAND = "listed@example.com", "by.hand@example.com"


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


def plan_json(world: World) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["plan", *world.cli_args(), "--output", "json"])
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
