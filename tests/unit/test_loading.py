"""The desired-state loader: good and bad files, directories, duplicates across files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from syncd.core.desired import DesiredState, DesiredUser, Location, SourceFile
from syncd.desired.loading import load_desired, parse_desired
from syncd.errors import DesiredStateError

REPO = Path(__file__).resolve().parents[2]
HEAD = "version: 1\nusers:\n"


def load_text(text: str, path: str = "d.yaml") -> DesiredState:
    return parse_desired([(path, text.encode())])


def problems_of(text: str) -> list[str]:
    with pytest.raises(DesiredStateError) as caught:
        load_text(text)
    return [str(problem) for problem in caught.value.problems]


def user(username: str, emails: tuple[str, ...] | None = None, **profile: str) -> DesiredUser:
    return DesiredUser(username, profile, emails)


GOOD = [
    pytest.param(
        HEAD + "  janedoe:\n"
        "    full_name: Jane Doe\n"
        "    location: Private Island\n"
        "    company: Retired\n"
        "    profile_url: http://janedoe.com/\n"
        "    gravatar_email: jane.doe@example.com\n"
        "    emails:\n"
        "      - jane.doe@example.com\n"
        "      - jane.doe+other@example.com\n",
        [
            user(
                "janedoe",
                ("jane.doe@example.com", "jane.doe+other@example.com"),
                full_name="Jane Doe",
                location="Private Island",
                company="Retired",
                profile_url="http://janedoe.com/",
                gravatar_email="jane.doe@example.com",
            )
        ],
        id="every-setting",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: Jane Doe\n",
        [user("janedoe", full_name="Jane Doe")],
        id="absent-keys-are-unmanaged",
    ),
    pytest.param(
        HEAD + '  janedoe:\n    full_name: ""\n    location:\n    company: ~\n'
        "    profile_url: ''\n    gravatar_email: null\n",
        [
            user(
                "janedoe", full_name="", location="", company="", profile_url="", gravatar_email=""
            )
        ],
        id="empty-string-and-null-mean-empty",
    ),
    pytest.param(
        HEAD + "  janedoe: {}\n  johnsmith:\n  ops_robot: ~\n",
        [user("janedoe"), user("johnsmith"), user("ops_robot")],
        id="users-listed-with-nothing-managed",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: []\n", [user("janedoe", ())], id="emails-empty-list"
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: [b@example.com, A@example.com]\n",
        [user("janedoe", ("b@example.com", "A@example.com"))],
        id="emails-as-written-in-order",
    ),
    pytest.param("version: 1\nusers: {}\n", [], id="no-users"),
    pytest.param("version: 1\nusers:\n", [], id="users-null"),
    pytest.param(
        HEAD + "  zeta: {}\n  alpha: {}\n  mike: {}\n",
        [user("zeta"), user("alpha"), user("mike")],
        id="key-order-kept",
    ),
    pytest.param(HEAD + "  1234: {}\n", [user("1234")], id="numeric-username-is-text"),
    pytest.param(
        HEAD + "  janedoe:\n    location: no\n    company: on\n",
        [user("janedoe", location="no", company="on")],
        id="yaml-1.2-no-is-a-string",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    location: 2024-01-31\n    company: 1_000\n",
        [user("janedoe", location="2024-01-31", company="1_000")],
        id="yaml-1.2-core-schema-dates-are-text",
    ),
    pytest.param(
        HEAD + '  janedoe:\n    location: "42"\n', [user("janedoe", location="42")], id="quoted"
    ),
    pytest.param(
        "\ufeff" + HEAD + "  janedoe: {}\n", [user("janedoe")], id="utf8-byte-order-mark"
    ),
    pytest.param(
        (HEAD + "  janedoe:\n    full_name: Jane\n").replace("\n", "\r\n"),
        [user("janedoe", full_name="Jane")],
        id="crlf",
    ),
    pytest.param(
        "# comment\n{version: 1, users: {janedoe: {emails: [j@example.com]}}}  # flow\n",
        [user("janedoe", ("j@example.com",))],
        id="flow-style-and-comments",
    ),
    pytest.param(
        HEAD + "  janedoe: &jane\n    full_name: Jane\n",
        [user("janedoe", full_name="Jane")],
        id="unused-anchor-is-harmless",
    ),
    pytest.param(
        "---\n" + HEAD + "  janedoe:\n    full_name: Zoë Ångström 山田\n...\n",
        [user("janedoe", full_name="Zoë Ångström 山田")],
        id="document-markers-and-unicode",
    ),
]


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


BAD = [
    pytest.param(
        HEAD + "  janedoe:\n    ful_name: Jane\n",
        ["d.yaml:4:5: unknown key 'ful_name' (did you mean 'full_name'?)"],
        id="near-miss",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    Emails: []\n",
        ["d.yaml:4:5: unknown key 'Emails' (did you mean 'emails'?)"],
        id="near-miss-by-case",
    ),
    pytest.param(
        "version: 1\nuser: {}\nusers: {}\n",
        ["d.yaml:2:1: unknown key 'user' (did you mean 'users'?)"],
        id="top-level-near-miss",
    ),
    pytest.param(
        "version: 1\nusers: {}\njanedoe: {}\n",
        ["d.yaml:3:1: unknown key 'janedoe' (users go under 'users:')"],
        id="user-at-top-level",
    ),
    pytest.param("users: {}\n", ["d.yaml:1:1: missing 'version: 1'"], id="missing-version"),
    pytest.param(
        "version: 1\n",
        ["d.yaml:1:1: missing 'users' (a mapping of usernames; 'users: {}' for none)"],
        id="missing-users",
    ),
    pytest.param(
        "version: 2\nusers: {}\n",
        ["d.yaml:1:10: unsupported version 2: this syncd reads version 1"],
        id="version-2",
    ),
    pytest.param(
        "version: '1'\nusers: {}\n",
        ["d.yaml:1:10: version must be the number 1, not the string '1'"],
        id="version-string",
    ),
    pytest.param(
        "version: true\nusers: {}\n",
        ["d.yaml:1:10: version must be the number 1, not true"],
        id="version-boolean",
    ),
    pytest.param(
        "version: 1.0\nusers: {}\n",
        ["d.yaml:1:10: version must be the number 1, not 1.0"],
        id="version-float",
    ),
    pytest.param(
        "- 1\n",
        ["d.yaml:1:1: the top level must be a mapping with 'version: 1' and 'users', not a list"],
        id="top-level-list",
    ),
    pytest.param(
        "version: 1\nusers: [janedoe]\n",
        ["d.yaml:2:8: 'users' must be a mapping of usernames to their settings, not a list"],
        id="users-list",
    ),
    pytest.param(
        HEAD + "  Jane_Doe: {}\n",
        [
            "d.yaml:3:3: invalid username 'Jane_Doe': 4 to 30 of lowercase a-z, 0-9 and '_'"
            " (did you mean 'jane_doe'?)"
        ],
        id="username-case",
    ),
    pytest.param(
        HEAD + "  jan: {}\n",
        ["d.yaml:3:3: invalid username 'jan': 4 to 30 of lowercase a-z, 0-9 and '_'"],
        id="username-short",
    ),
    pytest.param(
        HEAD + "  janedoe: [x]\n",
        ["d.yaml:3:12: user 'janedoe' must be a mapping of settings (or empty), not a list"],
        id="user-list",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    location: 42\n",
        [
            'd.yaml:4:15: location must be a string ("" or null for empty), not a number'
            ' (quote it to mean the text: "42")'
        ],
        id="profile-number",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    location: 0x2A\n",
        [
            'd.yaml:4:15: location must be a string ("" or null for empty), not a number'
            ' (quote it to mean the text: "0x2A")'
        ],
        id="profile-hex-number-quoted-as-written",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    company: [a]\n",
        ['d.yaml:4:14: company must be a string ("" or null for empty), not a list'],
        id="profile-list",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    company: {a: b}\n",
        ['d.yaml:4:14: company must be a string ("" or null for empty), not a mapping'],
        id="profile-mapping",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: " + "x" * 256 + "\n",
        ["d.yaml:4:16: full_name is 256 characters long; the limit is 255"],
        id="full-name-too-long",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: j@example.com\n",
        ["d.yaml:4:13: emails must be a list of addresses, not a string"],
        id="emails-string",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails:\n",
        [
            "d.yaml:4:5: emails must be a list of addresses, not null:"
            " write 'emails: []' to keep only the primary address"
        ],
        id="emails-null-at-its-key",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: [j@example.com, [k@example.com]]\n",
        ["d.yaml:4:29: an email address must be a string, not a list"],
        id="email-not-string",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails:\n      - j@example\n",
        ["d.yaml:5:9: invalid email address 'j@example'"],
        id="invalid-email",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    gravatar_email: j.example.com\n",
        ["d.yaml:4:21: gravatar_email: invalid email address 'j.example.com'"],
        id="invalid-gravatar-email",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    profile_url: www.example.com\n",
        [
            "d.yaml:4:18: profile_url: invalid URL 'www.example.com':"
            ' expected http:// or https://, or "" for none'
        ],
        id="invalid-url",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: [J@Example.com, j@example.com, x@example.com]\n",
        [
            "d.yaml:4:14: duplicate email 'J@Example.com'"
            " (also at d.yaml:4:29; addresses compare case-insensitively)",
            "d.yaml:4:29: duplicate email 'j@example.com'"
            " (also at d.yaml:4:14; addresses compare case-insensitively)",
        ],
        id="duplicate-email-by-case",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: [j@example.com, j@example.com]\n",
        [
            "d.yaml:4:14: duplicate email 'j@example.com' (also at d.yaml:4:29)",
            "d.yaml:4:29: duplicate email 'j@example.com' (also at d.yaml:4:14)",
        ],
        id="duplicate-email-same-case",
    ),
    pytest.param(
        HEAD + "  janedoe: {}\n  johnsmith: {}\n  janedoe: {}\n  janedoe: {}\n",
        [
            "d.yaml:3:3: duplicate user 'janedoe' (also at d.yaml:5:3, d.yaml:6:3)",
            "d.yaml:5:3: duplicate user 'janedoe' (also at d.yaml:3:3, d.yaml:6:3)",
            "d.yaml:6:3: duplicate user 'janedoe' (also at d.yaml:3:3, d.yaml:5:3)",
        ],
        id="duplicate-user-in-file",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    company: A\n    company: B\n",
        [
            "d.yaml:4:5: duplicate key 'company' (also at d.yaml:5:5)",
            "d.yaml:5:5: duplicate key 'company' (also at d.yaml:4:5)",
        ],
        id="duplicate-profile-key",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: *name\n",
        ["d.yaml:4:16: YAML aliases are not allowed ('*name'): write the value out"],
        id="alias",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: !!python/name:os.system ''\n",
        [
            "d.yaml:4:16: YAML tag '!!python/name:os.system' is not allowed:"
            " the desired state holds only strings, lists and mappings"
        ],
        id="python-tag",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: [Jane\n",
        [
            "d.yaml:5:1: invalid YAML: did not find expected ',' or ']'"
            " (while parsing a flow sequence at 4:16)"
        ],
        id="syntax-error",
    ),
    pytest.param(
        HEAD + "\tjanedoe: {}\n",
        [
            "d.yaml:3:1: invalid YAML: found character '\\t' that cannot start any token;"
            " indent with spaces, YAML does not allow tabs there"
        ],
        id="tab",
    ),
    pytest.param("", ["d.yaml:1:1: empty file: expected 'version: 1' and 'users'"], id="empty"),
    pytest.param(
        "# only a comment\n\n",
        ["d.yaml:1:1: empty file: expected 'version: 1' and 'users'"],
        id="only-comments",
    ),
    pytest.param(
        "version: 1\nusers: {}\n---\nversion: 1\n",
        ["d.yaml:3:1: a second YAML document ('---') is not allowed: one document per file"],
        id="two-documents",
    ),
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
    assert found == [("1.yaml", 3, 1), ("2.yaml", 3, 3), ("3.yaml", 1, 1), ("4.yaml", 4, 14)]
    assert caught.value.problems[2].message == "not valid UTF-8 (byte 0xff at offset 23)"


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
