"""The desired-state loader: good and bad files, directories, duplicates across files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from syncd.core.desired import DesiredState, DesiredUser, Location, SourceFile
from syncd.desired.loading import load_desired, parse_desired
from syncd.errors import DesiredStateError
from tests.unit.desired_cases import BAD, GOOD, HEAD

REPO = Path(__file__).resolve().parents[2]


def load_text(text: str, path: str = "d.yaml") -> DesiredState:
    return parse_desired([(path, text.encode())])


def problems_of(text: str) -> list[str]:
    with pytest.raises(DesiredStateError) as caught:
        load_text(text)
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_good_input(text: str, expected: list[DesiredUser]) -> None:
    assert list(load_text(text).users) == expected


def test_profile_lists_only_stated_fields_in_api_order() -> None:
    (loaded,) = load_text(HEAD + "  janedoe:\n    company: C\n    full_name: F\n").users
    assert list(loaded.profile) == ["full_name", "company"]
    assert loaded.emails is None


def test_users_know_where_they_were_written() -> None:
    state = load_text(HEAD + "  janedoe: {}\n  # comment\n  johnsmith: {}\n", "x/d.yaml")
    assert [u.location for u in state.users] == [
        Location("x/d.yaml", 3, 3),
        Location("x/d.yaml", 5, 3),
    ]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_input(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = (
        "version: 1\n"
        "users:\n"
        "  JaneDoe:\n"
        "    ful_name: Jane\n"
        "  johnsmith:\n"
        "    location: 3\n"
        "    emails: [nope, a@example.com, A@example.com]\n"
        "    profile_url: ftp://example.com/\n"
        "extra: 1\n"
    )
    found = problems_of(text)
    assert [problem.split(": ")[0] for problem in found] == [
        "d.yaml:3:3",
        "d.yaml:4:5",
        "d.yaml:6:15",
        "d.yaml:7:14",
        "d.yaml:7:20",
        "d.yaml:7:35",
        "d.yaml:8:18",
        "d.yaml:9:1",
    ]


def test_error_message_lists_problems_then_a_count() -> None:
    with pytest.raises(DesiredStateError) as caught:
        load_text("version: 3\nusers: []\n")
    assert str(caught.value).splitlines() == [
        "d.yaml:1:10: unsupported version 3: this syncd reads version 1",
        "d.yaml:2:8: 'users' must be a mapping of usernames to their settings, not a list",
        "2 problems in the desired state",
    ]


# --- files and directories ---------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_file_loads_with_its_digest_and_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "conf" / "team.yaml", HEAD + "  janedoe: {}\n")
    monkeypatch.chdir(tmp_path)
    state = load_desired("conf/team.yaml")
    digest = hashlib.sha256((tmp_path / "conf" / "team.yaml").read_bytes()).hexdigest()
    assert state.sources == (SourceFile("conf/team.yaml", digest),)
    assert state.users[0].location == Location("conf/team.yaml", 3, 3)
    assert state.revision is None


def test_directory_reads_yaml_files_of_its_tree_in_path_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "d" / "b.yml", HEAD + "  bbbb: {}\n  aaaa: {}\n")
    write(tmp_path / "d" / "a.yaml", HEAD + "  zzzz: {}\n")
    write(tmp_path / "d" / "c.yaml", "version: 1\nusers: {}\n")
    write(tmp_path / "d" / "notes.txt", "not yaml")
    write(tmp_path / "d" / ".hidden.yaml", "not: [even, valid")
    write(tmp_path / "d" / ".sub" / "deeper.yaml", "not: [even, valid")
    write(tmp_path / "d" / "sub" / "deeper.yaml", HEAD + "  yyyy: {}\n")
    (tmp_path / "d" / "dir.yaml").mkdir()
    monkeypatch.chdir(tmp_path)
    state = load_desired(Path("d"))
    assert state.usernames() == ["zzzz", "bbbb", "aaaa", "yyyy"]
    assert [source.path for source in state.sources] == [
        "d/a.yaml",
        "d/b.yml",
        "d/c.yaml",
        "d/sub/deeper.yaml",
    ]


def test_duplicate_users_across_files_name_both_places(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", HEAD + "  janedoe: {}\n")
    write(tmp_path / "other.yaml", HEAD + "  johnsmith: {}\n  janedoe:\n    company: X\n")
    with pytest.raises(DesiredStateError) as caught:
        load_desired(tmp_path)
    a, other = tmp_path / "a.yaml", tmp_path / "other.yaml"
    assert [str(p) for p in caught.value.problems] == [
        f"{a}:3:3: duplicate user 'janedoe' (also at {other}:4:3)",
        f"{other}:4:3: duplicate user 'janedoe' (also at {a}:3:3)",
    ]


def test_problems_of_all_files_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path / "1.yaml", "version: 1\nusers: [\n")
    write(tmp_path / "2.yaml", HEAD + "  jan: {}\n")
    (tmp_path / "3.yaml").write_bytes(b"version: 1\nusers: {}\n# \xff\n")
    write(tmp_path / "4.yaml", HEAD + "  janedoe:\n    emails: [x]\n")
    with pytest.raises(DesiredStateError) as caught:
        load_desired(tmp_path)
    found = [(Path(p.path).name, p.line, p.column) for p in caught.value.problems]
    assert found == [("1.yaml", 3, 1), ("2.yaml", 3, 3), ("3.yaml", 3, 3), ("4.yaml", 4, 14)]
    assert caught.value.problems[2].message == "not valid UTF-8 (byte 0xff at offset 23)"


def test_a_fifo_with_a_yaml_name_is_refused_in_a_directory(tmp_path: Path) -> None:
    # It was left out in silence. Opened, it would wait for a writer.
    write(tmp_path / "users.yaml", HEAD + "  janedoe: {}\n")
    os.mkfifo(tmp_path / "more.yaml")
    with pytest.raises(DesiredStateError) as caught:
        load_desired(tmp_path)
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'more.yaml'}:1:1: not a regular file: refused"
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p / "nothing-here", "no such file or directory", id="missing"),
        pytest.param(
            lambda p: p, "no *.yaml or *.yml file in this directory", id="empty-directory"
        ),
    ],
)
def test_unusable_path(tmp_path: Path, make: object, message: str) -> None:
    assert callable(make)
    path = make(tmp_path)
    with pytest.raises(DesiredStateError) as caught:
        load_desired(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}:1:1: {message}"]


def test_a_file_named_explicitly_may_have_any_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "desired.conf", HEAD + "  janedoe: {}\n")
    assert load_desired(path).usernames() == ["janedoe"]


def test_example_file_at_repository_root_loads() -> None:
    state = load_desired(REPO / "desired-state.example.yaml")
    assert state.usernames() == ["janedoe", "johnsmith", "ops_robot"]
    jane, john, robot = state.users
    assert jane.emails == ("jane.doe@example.com", "jane.doe+other@example.com")
    assert set(jane.profile) == {
        "full_name",
        "location",
        "company",
        "profile_url",
        "gravatar_email",
    }
    assert "location" not in john.profile
    assert john.profile["profile_url"] == ""
    assert robot == DesiredUser("ops_robot", {}, ("robot@example.com",))
