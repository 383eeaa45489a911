"""A desired-state file already found valid is not read again, unless anything changed."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from syncd.core.desired import DesiredUser, Location
from syncd.desired.loading import load_desired
from syncd.desired.memo import KEPT, LEFTOVER_AGE, DesiredMemo, decoder, encode, shape
from syncd.errors import DesiredStateError
from tests.memo_entries import rewrite

TEAM = """version: 1
users:
  janedoe:
    full_name: Jane Doe
    company: ""
    emails: [jane@example.com, Jane@Work.example]
  johnsmith: {}
  ops_robot:
    emails: []
"""


@pytest.fixture
def memo(tmp_path: Path) -> DesiredMemo:
    return DesiredMemo(tmp_path / "state" / "desired-memo")


def entries(memo: DesiredMemo) -> list[Path]:
    return sorted(memo.directory.glob("*.jsonl"))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_remembered_file_loads_the_same_state_without_being_parsed(
    tmp_path: Path, memo: DesiredMemo
) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(TEAM)
    first = load_desired(path, memo)
    [entry] = entries(memo)
    # The entry, not the file, is what the second load reads: mark it to tell.
    rewrite(entry, "Jane Doe", "Jane From Memo")

    second = load_desired(path, memo)

    assert second.users[0].profile["full_name"] == "Jane From Memo"
    assert [(u.username, u.profile, u.emails, u.location) for u in second.users[1:]] == [
        (u.username, u.profile, u.emails, u.location) for u in first.users[1:]
    ]
    assert second.sources == first.sources
    assert entry.stat().st_mode & 0o777 == 0o600


def test_changed_bytes_are_read_again(tmp_path: Path, memo: DesiredMemo) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(TEAM)
    load_desired(path, memo)
    path.write_text(TEAM.replace("Jane Doe", "Jane Q. Doe"))

    assert load_desired(path, memo).users[0].profile["full_name"] == "Jane Q. Doe"
    assert len(entries(memo)) == 2


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(
            lambda text: text.replace('"fingerprint": "', '"fingerprint": "0'), id="loader"
        ),
        pytest.param(lambda text: text[: len(text) // 2], id="cut-short"),
        pytest.param(lambda text: "".join(text.splitlines(True)[:-1]), id="last-line-lost"),
        pytest.param(lambda text: text + text.splitlines(True)[-1], id="line-repeated"),
        pytest.param(lambda text: text.replace("[", "{", 2), id="not-json"),
        pytest.param(lambda text: "", id="empty"),
        pytest.param(lambda text: text.replace('"Jane From Memo"', "5"), id="number-for-text"),
        pytest.param(lambda text: text.replace('"full_name"', '"nickname"'), id="unknown-field"),
        pytest.param(lambda text: text.replace('"jane@example.com"', "null"), id="null-address"),
        pytest.param(lambda text: text.replace(", 3, 3]", ', "3", 3]', 1), id="text-line"),
    ],
)
def test_an_entry_that_does_not_fit_is_not_used(
    tmp_path: Path, memo: DesiredMemo, damage: object
) -> None:
    assert callable(damage)
    path = tmp_path / "team.yaml"
    path.write_text(TEAM)
    expected = load_desired(path, memo)
    [entry] = entries(memo)
    # Marked as in the first test, so that using the entry would show.
    rewrite(entry, "Jane Doe", "Jane From Memo")
    marked = entry.read_text()
    damaged = damage(marked)
    assert damaged != marked
    entry.write_text(damaged)

    assert load_desired(path, memo).users == expected.users


def test_a_remembered_file_is_still_checked_against_the_others(
    tmp_path: Path, memo: DesiredMemo
) -> None:
    (tmp_path / "a.yaml").write_text(TEAM)
    load_desired(tmp_path, memo)
    (tmp_path / "b.yaml").write_text("version: 1\nusers:\n  janedoe: {}\n")

    with pytest.raises(DesiredStateError) as caught:
        load_desired(tmp_path, memo)

    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'a.yaml'}:3:3: duplicate user 'janedoe' (also at {tmp_path / 'b.yaml'}:3:3)",
        f"{tmp_path / 'b.yaml'}:3:3: duplicate user 'janedoe' (also at {tmp_path / 'a.yaml'}:3:3)",
    ]


def test_nothing_is_remembered_of_an_invalid_state(tmp_path: Path, memo: DesiredMemo) -> None:
    (tmp_path / "a.yaml").write_text(TEAM)
    (tmp_path / "b.yaml").write_text("version: 1\nusers:\n  janedoe: {}\n")

    with pytest.raises(DesiredStateError):
        load_desired(tmp_path, memo)

    assert entries(memo) == []


def test_only_the_newest_entries_are_kept(tmp_path: Path, memo: DesiredMemo) -> None:
    path = tmp_path / "team.yaml"
    for version in range(KEPT + 3):
        path.write_text(TEAM + f"# version {version}\n")
        load_desired(path, memo)

    assert len(entries(memo)) == KEPT


def test_the_entries_used_last_are_kept(tmp_path: Path, memo: DesiredMemo) -> None:
    path = tmp_path / "team.yaml"
    versions = [TEAM + f"# version {version}\n" for version in range(KEPT + 1)]
    now = time.time()
    for version, text in enumerate(versions[:KEPT]):
        path.write_text(text)
        load_desired(path, memo)
        # Written a minute apart, oldest first, whatever the clock's resolution.
        age = (KEPT - version) * 60
        os.utime(memo.directory / f"{sha256(text)}.jsonl", (now - age, now - age))
    path.write_text(versions[0])
    load_desired(path, memo)  # the oldest entry is used again

    path.write_text(versions[KEPT])
    load_desired(path, memo)  # one entry too many

    kept = {entry.stem for entry in entries(memo)}
    assert len(kept) == KEPT
    assert sha256(versions[0]) in kept
    assert sha256(versions[1]) not in kept


def test_a_temporary_file_left_by_a_killed_write_is_removed_once_old(
    tmp_path: Path, memo: DesiredMemo
) -> None:
    memo.directory.mkdir(parents=True)
    left, fresh = memo.directory / ".left.tmp", memo.directory / ".fresh.tmp"
    left.write_text("{")
    fresh.write_text("{")
    old = time.time() - LEFTOVER_AGE - 60
    os.utime(left, (old, old))
    path = tmp_path / "team.yaml"
    path.write_text(TEAM)

    load_desired(path, memo)

    assert not left.exists()
    assert fresh.exists()  # perhaps another plan's write in progress


def test_a_state_directory_that_cannot_be_written_only_costs_time(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")
    path = tmp_path / "team.yaml"
    path.write_text(TEAM)

    state = load_desired(path, DesiredMemo(tmp_path / "state" / "desired-memo"))

    assert state.usernames() == ["janedoe", "johnsmith", "ops_robot"]


@dataclass(frozen=True, slots=True)
class Team:
    name: str
    lead: Location | None = None


@dataclass(frozen=True, slots=True)
class UserOfTomorrow:
    """DesiredUser with fields it may gain: the memo keeps them with no change of its own."""

    username: str
    profile: Mapping[str, str] = field(default_factory=dict)
    emails: tuple[str, ...] | None = None
    location: Location | None = None
    teams: tuple[Team, ...] = ()
    expires: str | None = None
    quota: int = 0


def test_a_field_added_to_the_model_is_kept_and_changes_the_fingerprint() -> None:
    user = UserOfTomorrow(
        "janedoe",
        {"full_name": "Jane Doe"},
        ("jane@example.com",),
        Location("team.yaml", 3, 3),
        (Team("ops", Location("team.yaml", 9, 5)), Team("dev")),
        "2027-01-01",
        5,
    )
    assert decoder(UserOfTomorrow)(json.loads(encode(user))) == user
    assert shape(UserOfTomorrow) != shape(DesiredUser)
    assert "Team(" in shape(UserOfTomorrow)  # a nested model's fields count too
