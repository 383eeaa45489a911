"""The live-state cache keeps what was fetched, each part with its own age."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import astuple, fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.core.live import LiveAccount, LiveEmail, LiveProfile
from syncd.state.backend import StateStore
from syncd.state.cache import _PROFILE_COLUMNS, Cached, LiveCache, Snapshot

PROFILE = LiveProfile("Jane Doe", "Lisbon", "", "https://example.com/", "", "jane@example.com")
EMAILS = (LiveEmail("jane@example.com", True, True), LiveEmail("JANE@work.example", False, False))


@pytest.fixture
def cache(store: StateStore) -> Iterator[LiveCache]:
    with store.session() as session:
        yield LiveCache(session.cache, "https://accounts.example")


def test_a_part_not_fetched_keeps_the_cached_one_and_its_age(cache: LiveCache) -> None:
    cache.save([Snapshot(LiveAccount("janedoe", profile=PROFILE), 100.0)])
    cache.save([Snapshot(LiveAccount("janedoe", emails=EMAILS), 200.0)])

    assert cache.read_fresh(["janedoe"], now=300.0, ttl=200.0) == {
        "janedoe": Cached(LiveAccount("janedoe", PROFILE, EMAILS), 100.0, 200.0)
    }
    assert cache.read_fresh(["janedoe"], now=250.0, ttl=100.0) == {
        "janedoe": Cached(LiveAccount("janedoe", None, EMAILS), None, 200.0)
    }


def test_an_uncached_part_reads_as_none(cache: LiveCache) -> None:
    cache.save([Snapshot(LiveAccount("janedoe", emails=()), 100.0)])

    assert cache.read_fresh(["janedoe", "nobody"], now=100.0, ttl=0.0) == {
        "janedoe": Cached(LiveAccount("janedoe", None, ()), None, 100.0)
    }


def test_replaced_addresses_keep_the_age_of_the_list(cache: LiveCache) -> None:
    cache.save([Snapshot(LiveAccount("janedoe", PROFILE, EMAILS), 100.0)])
    with cache.db.atomic():
        cache.replace_emails("janedoe", EMAILS[:1])

    assert (
        cache.read_fresh(["janedoe"], now=200.0, ttl=100.0)["janedoe"].account.emails
        == (EMAILS[:1])
    )
    assert cache.read_fresh(["janedoe"], now=201.0, ttl=100.0)["janedoe"].account.emails is None


DAMAGE = [
    "emails = '[[\"x\"]]'",
    "emails = '[[\"x\", 1, true]]'",
    "emails = '[[null, true, true]]'",
    "emails = 'not json'",
    "company = NULL",
]


# A blob where text belongs: SQLite's columns take one; PostgreSQL's TEXT cannot.
@pytest.mark.parametrize(
    ("backend", "damage"),
    [(backend, damage) for backend in ("sqlite", "postgresql") for damage in DAMAGE]
    + [("sqlite", "full_name = x'00ff'")],
)
def test_a_damaged_row_is_read_as_absent(cache: LiveCache, damage: str) -> None:
    cache.save([Snapshot(LiveAccount("janedoe", PROFILE, EMAILS), 100.0)])
    with cache.db.atomic():
        cache.db.execute(f"UPDATE live_accounts SET {damage}")

    assert cache.read_fresh(["janedoe"], now=100.0, ttl=1.0) == {}


def test_the_profile_columns_are_the_profile_fields_in_order() -> None:
    assert tuple(field.name for field in fields(LiveProfile)) == _PROFILE_COLUMNS


texts = st.text(st.characters(exclude_categories=["Cs"]))


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    profile=st.builds(LiveProfile, texts, texts, texts, texts, texts, texts),
    emails=st.lists(st.builds(LiveEmail, texts.filter(bool), st.booleans(), st.booleans())),
)
def test_any_account_reads_back_as_it_was_stored(
    backend: str, cache: LiveCache, profile: LiveProfile, emails: list[LiveEmail]
) -> None:
    account = LiveAccount("janedoe", profile, tuple(emails))
    cache.save([Snapshot(account, 100.0)])

    read = cache.read_fresh(["janedoe"], now=100.0, ttl=1.0)
    if backend == "postgresql" and any("\x00" in value for value in astuple(profile)):
        assert read == {}  # PostgreSQL's text holds no NUL: not cached, read again
    else:
        assert read["janedoe"].account == account
