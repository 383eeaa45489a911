"""Defaults, groups and ignore: what each user ends up managing, and the problems of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from syncd.core.desired import DesiredUser, EmailsMode
from syncd.desired.loading import load_desired, parse_desired
from syncd.desired.memo import DesiredMemo
from syncd.errors import DesiredStateError
from tests.unit.conftest import schema_validator, yaml_data

LAYERS = """version: 1
defaults:
  company: Acme
  emails_mode: owned
groups:
  berlin:
    location: Berlin
  contractors:
    company: ""
  munich:
    location: Munich
  also_berlin:
    location: Berlin
    emails_mode: additive
users:
"""


def resolved(users: str, layers: str = LAYERS) -> DesiredUser:
    (user,) = parse_desired([("d.yaml", (layers + users).encode())]).users
    return user


def problems_of(text: str, path: str = "d.yaml") -> list[str]:
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([(path, text.encode())])
    return [str(problem) for problem in caught.value.problems]


PRECEDENCE = [
    pytest.param("  alice: {}\n", {"company": "Acme"}, EmailsMode.OWNED, id="defaults-only"),
    pytest.param(
        "  alice: {groups: [berlin]}\n",
        {"company": "Acme", "location": "Berlin"},
        EmailsMode.OWNED,
        id="group-adds-to-defaults",
    ),
    pytest.param(
        "  alice: {groups: [contractors]}\n",
        {"company": ""},
        EmailsMode.OWNED,
        id="group-beats-defaults",
    ),
    pytest.param(
        "  alice: {groups: [berlin], location: Home, company: Own}\n",
        {"company": "Own", "location": "Home"},
        EmailsMode.OWNED,
        id="user-beats-group-and-defaults",
    ),
    pytest.param(
        "  alice: {groups: [berlin, also_berlin]}\n",
        {"company": "Acme", "location": "Berlin"},
        EmailsMode.ADDITIVE,
        id="groups-agreeing-are-fine-and-a-group-mode-beats-defaults",
    ),
    pytest.param(
        "  alice: {groups: [also_berlin], emails_mode: exact}\n",
        {"company": "Acme", "location": "Berlin"},
        EmailsMode.EXACT,
        id="user-mode-beats-group",
    ),
    pytest.param(
        "  alice: {groups: [berlin, munich], location: Home}\n",
        {"company": "Acme", "location": "Home"},
        EmailsMode.OWNED,
        id="user-settles-a-group-conflict",
    ),
    pytest.param(
        "  alice: {groups: [berlin], ignore: [location, company]}\n",
        {},
        EmailsMode.OWNED,
        id="ignore-beats-groups-and-defaults",
    ),
    pytest.param(
        "  alice: {groups: [berlin, munich], ignore: [location]}\n",
        {"company": "Acme"},
        EmailsMode.OWNED,
        id="groups-may-disagree-on-a-key-the-user-ignores",
    ),
]


@pytest.mark.parametrize(("users", "profile", "mode"), PRECEDENCE)
def test_precedence(users: str, profile: dict[str, str], mode: EmailsMode) -> None:
    user = resolved(users)
    assert dict(user.profile) == profile
    assert user.mode is mode


@pytest.mark.parametrize(
    ("layers", "mode"),
    [
        pytest.param(
            "defaults: {emails_mode: ~}\ngroups: {g: {}}\n", EmailsMode.EXACT, id="in-defaults"
        ),
        pytest.param(
            "defaults: {emails_mode: owned}\ngroups:\n  g:\n    emails_mode:\n",
            EmailsMode.OWNED,
            id="in-a-group",
        ),
    ],
)
def test_a_null_emails_mode_is_not_set_as_on_a_user(layers: str, mode: EmailsMode) -> None:
    # It was a traceback: "'' is not a valid EmailsMode".
    user = resolved("  alice: {groups: [g], emails_mode: null}\n", f"version: 1\n{layers}users:\n")
    assert user.mode is mode


def test_ignored_emails_are_not_managed() -> None:
    user = resolved("  alice: {ignore: [emails]}\n")
    assert user.emails is None


def test_origins_say_where_each_inherited_value_was_written() -> None:
    user = resolved("  alice:\n    groups: [berlin]\n    full_name: Alice A\n")
    location, company = user.origin("location"), user.origin("company")
    assert location is not None
    assert company is not None
    assert (location.layer, str(location.location)) == ("group berlin", "d.yaml:7:15")
    assert (company.layer, str(company.location)) == ("defaults", "d.yaml:3:12")
    assert user.origin("full_name") is None  # the user's own


def test_users_alike_share_their_origins() -> None:
    text = LAYERS + "".join(f"  user{n:04}: {{groups: [berlin]}}\n" for n in range(3))
    users = parse_desired([("d.yaml", text.encode())]).users
    assert users[0].inherited is users[1].inherited is users[2].inherited


CONFLICTS = [
    pytest.param(
        "  alice: {groups: [berlin, munich]}\n",
        [
            "d.yaml:16:3: user 'alice': group berlin (d.yaml:7:15) and group munich "
            "(d.yaml:11:15) set location to different values; set it on the user, "
            "or in one of them"
        ],
        id="two-groups-disagree",
    ),
    pytest.param(
        "  alice: {groups: [berlni]}\n",
        ["d.yaml:16:20: user 'alice': unknown group 'berlni' (did you mean 'berlin'?)"],
        id="unknown-group",
    ),
    pytest.param(
        "  alice: {groups: [Berlin!]}\n",
        ["d.yaml:16:20: invalid group name 'Berlin!': 1 to 64 of lowercase a-z, 0-9, '_' and '-'"],
        id="invalid-group-name",
    ),
    pytest.param(
        "  alice: {ignore: [locaton]}\n",
        [
            "d.yaml:16:20: cannot ignore 'locaton' (did you mean 'location'?); expected one "
            "of: full_name, location, company, profile_url, gravatar_email, emails"
        ],
        id="ignore-unknown-key",
    ),
    pytest.param(
        "  alice: {emails_mode: owend}\n",
        [
            "d.yaml:16:24: emails_mode: unknown mode 'owend' (did you mean 'owned'?); "
            "expected one of: exact, additive, owned"
        ],
        id="unknown-mode",
    ),
    pytest.param(
        "  alice: {location: X, ignore: [location]}\n",
        ["d.yaml:16:33: location: both set and ignored; keep one"],
        id="set-and-ignored",
    ),
    pytest.param(
        "  alice:\n    groups: [berlin]\n    full_name: A\n    emails: [a@example.com]\n"
        "    ignore:\n    - company\n    - emails\n",
        ["d.yaml:22:7: emails: both set and ignored; keep one"],
        id="set-and-ignored-said-at-the-ignore-entry",
    ),
]


@pytest.mark.parametrize(("users", "expected"), CONFLICTS)
def test_conflicts(users: str, expected: list[str]) -> None:
    assert problems_of(LAYERS + users) == expected


LAYER_PROBLEMS = [
    pytest.param(
        "version: 1\ndefaults: {compnay: Acme}\nusers: {}\n",
        ["d.yaml:2:12: unknown key 'compnay' (did you mean 'company'?)"],
        id="unknown-key-in-defaults",
    ),
    pytest.param(
        "version: 1\ngroups:\n  berlin: {emails: []}\nusers: {}\n",
        [
            "d.yaml:3:12: 'emails' cannot be set by a group: addresses are personal; "
            "set them on each user"
        ],
        id="emails-are-personal",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  company: Acme\n  emails: [a@example.com]\nusers: {}\n",
        [
            "d.yaml:4:3: 'emails' cannot be set in 'defaults': addresses are personal; "
            "set them on each user"
        ],
        id="emails-are-personal-not-defaults",
    ),
    pytest.param(
        "version: 1\ngroups:\n  berlin: {}\n  berlin: {}\nusers: {}\n",
        [
            "d.yaml:3:3: duplicate key 'berlin' (also at d.yaml:4:3)",
            "d.yaml:4:3: duplicate key 'berlin' (also at d.yaml:3:3)",
        ],
        id="group-twice-in-a-file",
    ),
    pytest.param(
        "version: 1\n",
        ["d.yaml:1:1: missing 'users' (a mapping of usernames; 'users: {}' for none)"],
        id="users-still-required-without-layers",
    ),
]


@pytest.mark.parametrize(("text", "expected"), LAYER_PROBLEMS)
def test_layer_problems(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_tree_of_team_folders(tmp_path: Path) -> None:
    write(tmp_path / "groups.yaml", "version: 1\ngroups:\n  berlin: {location: Berlin}\n")
    write(
        tmp_path / "teams" / "a" / "users.yml", "version: 1\nusers:\n  alice: {groups: [berlin]}\n"
    )
    write(tmp_path / "teams" / "b.yaml", "version: 1\nusers:\n  bob_b: {}\n")
    write(tmp_path / ".github" / "ci.yaml", "not: [a desired state\n")
    write(tmp_path / "teams" / ".hidden.yaml", "nor: this\n")
    state = load_desired(tmp_path)
    assert [source.path for source in state.sources] == [
        str(tmp_path / "groups.yaml"),
        str(tmp_path / "teams" / "a" / "users.yml"),
        str(tmp_path / "teams" / "b.yaml"),
    ]
    assert {user.username: dict(user.profile) for user in state.users} == {
        "alice": {"location": "Berlin"},
        "bob_b": {},
    }
    assert state.groups == ("berlin",)


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param(
            "version: 1\ngroups:\n  berlin: {}\n",
            ["duplicate group 'berlin'"],
            id="group",
        ),
        pytest.param("version: 1\ndefaults: {}\n", ["'defaults' declared twice"], id="defaults"),
    ],
)
def test_declared_once_across_files(tmp_path: Path, second: str, expected: list[str]) -> None:
    write(tmp_path / "a.yaml", "version: 1\ndefaults: {}\ngroups:\n  berlin: {}\nusers: {}\n")
    write(tmp_path / "b.yaml", second)
    with pytest.raises(DesiredStateError) as caught:
        load_desired(tmp_path)
    messages = [str(problem) for problem in caught.value.problems]
    first = "a.yaml:2:1" if "defaults" in expected[0] else "a.yaml:4:3"
    second_place = "b.yaml:2:1" if "defaults" in expected[0] else "b.yaml:3:3"
    assert messages == [
        f"{tmp_path / first} {expected[0]} (also at {tmp_path / second_place})".replace(
            " ", ": ", 1
        ),
        f"{tmp_path / second_place} {expected[0]} (also at {tmp_path / first})".replace(
            " ", ": ", 1
        ),
    ]


def test_written_users_round_trip_through_the_memo(tmp_path: Path) -> None:
    write(tmp_path / "d" / "groups.yaml", LAYERS + "  carol: {}\n")
    users = "version: 1\nusers:\n  alice:\n    groups: [berlin]\n    ignore: [company]\n"
    users += "    emails_mode: exact\n    emails: [a@example.com]\n"
    write(tmp_path / "d" / "users.yaml", users)
    memo = DesiredMemo(tmp_path / "state" / "desired-memo")
    first = load_desired(tmp_path / "d", memo)
    assert len(list(memo.directory.glob("*.jsonl"))) == 1  # the users' file, not the layers'
    again = load_desired(tmp_path / "d", memo)
    assert again.users == first.users
    alice = next(user for user in again.users if user.username == "alice")
    assert alice.emails_mode is EmailsMode.EXACT
    assert (alice.groups, alice.ignore) == (("berlin",), ("company",))
    assert dict(alice.profile) == {"location": "Berlin"}
    assert [origin.key for origin in alice.inherited] == ["location"]


@pytest.mark.parametrize(
    ("users", "valid"),
    [
        pytest.param("  alice: {groups: [berlin], ignore: [emails]}\n", True, id="valid"),
        pytest.param("  alice: {emails_mode: owend}\n", False, id="unknown-mode"),
        pytest.param("  alice: {ignore: [locaton]}\n", False, id="unknown-ignored-key"),
        pytest.param("  alice: {groups: [Berlin!]}\n", False, id="invalid-group-name"),
    ],
)
def test_the_schema_describes_the_new_keys(users: str, valid: bool) -> None:
    is_valid = schema_validator()
    assert is_valid is not None, "install jsonschema (pip install -e '.[dev]')"
    assert is_valid(yaml_data("d.yaml", LAYERS + users)) is valid


def test_an_unknown_group_is_placed_in_the_file_that_names_it(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "version: 1\ngroups:\n  berlin: {}\n")
    write(tmp_path / "b.yaml", "version: 1\nusers:\n  alice:\n    groups: [berlin, munich]\n")
    with pytest.raises(DesiredStateError) as caught:
        load_desired(tmp_path)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{tmp_path / 'b.yaml'}:4:22: user 'alice': unknown group 'munich'; "
        "groups declared: berlin"
    ]


TRIAL = """version: 1
groups:
  paris: {location: Paris}
  berlin: {location: Berlin}
users:
  bob_b: {emails: [not-an-email], colour: red}
  alice_a:
    groups: [berlim, paris, berlin]
"""


def test_group_problems_come_with_the_others_of_the_file() -> None:
    # They used to wait until every other problem of the state was fixed.
    assert problems_of(TRIAL) == [
        "d.yaml:6:20: invalid email address 'not-an-email'",
        "d.yaml:6:35: unknown key 'colour'; expected one of: full_name, location, company, "
        "profile_url, gravatar_email, emails_mode, emails, groups, ignore, suspend",
        "d.yaml:7:3: user 'alice_a': group paris (d.yaml:3:21) and group berlin (d.yaml:4:22) "
        "set location to different values; set it on the user, or in one of them",
        "d.yaml:8:14: user 'alice_a': unknown group 'berlim' (did you mean 'berlin'?)",
    ]


def test_a_file_with_problems_has_no_group_conflict_on_an_ignored_key() -> None:
    text = LAYERS + "  alice: {groups: [berlin, munich], ignore: [location], colour: red}\n"
    assert problems_of(text) == [
        "d.yaml:16:57: unknown key 'colour'; expected one of: full_name, location, company, "
        "profile_url, gravatar_email, emails_mode, emails, groups, ignore, suspend",
    ]


def test_group_problems_come_with_the_problems_of_other_files(tmp_path: Path) -> None:
    groups = "version: 1\ngroups:\n  berlin: {location: Berlin}\n  paris: {location: Paris}\n"
    write(tmp_path / "a.yaml", groups + "  lyon: {location: 7}\n")
    write(
        tmp_path / "b.yaml",
        "version: 1\nusers:\n  alice: {groups: [berlin, munich], full_name: 7}\n"
        "  bobby: {groups: [berlin, lyon, paris]}\n  carol: {groups: [lyon, Lyon!, berlni]}\n",
    )
    with pytest.raises(DesiredStateError) as caught:
        load_desired(tmp_path)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    # A group that is itself invalid is known, but no conflict is found with it.
    assert [str(problem) for problem in caught.value.problems] == [
        f'{a}:5:20: location must be a string ("" or null for empty), not a number '
        '(quote it to mean the text: "7")',
        f"{b}:3:28: user 'alice': unknown group 'munich'; groups declared: berlin, lyon, paris",
        f'{b}:3:48: full_name must be a string ("" or null for empty), not a number '
        '(quote it to mean the text: "7")',
        f"{b}:4:3: user 'bobby': group berlin ({a}:3:22) and group paris ({a}:4:21) set "
        "location to different values; set it on the user, or in one of them",
        f"{b}:5:26: invalid group name 'Lyon!': 1 to 64 of lowercase a-z, 0-9, '_' and '-'",
        f"{b}:5:33: user 'carol': unknown group 'berlni' (did you mean 'berlin'?)",
    ]


@pytest.mark.parametrize(
    "groups",
    [
        pytest.param("version: 1\ngroups:\n  lyon: {location: [Lyon}\n", id="not-yaml"),
        pytest.param("version: 1\ngroups: {}\ngroups: {lyon: {}}\n", id="groups-twice"),
        pytest.param("version: 1\ngroups: [lyon]\n", id="groups-not-a-mapping"),
    ],
)
def test_no_group_is_unknown_while_a_file_that_may_declare_it_is_unreadable(
    tmp_path: Path, groups: str
) -> None:
    write(tmp_path / "a.yaml", groups)
    write(tmp_path / "b.yaml", "version: 1\nusers:\n  alice: {groups: [lyon]}\n")
    with pytest.raises(DesiredStateError) as caught:
        load_desired(tmp_path)
    assert {problem.path for problem in caught.value.problems} == {str(tmp_path / "a.yaml")}


def test_a_group_may_be_called_defaults() -> None:
    text = "version: 1\ndefaults: {company: A}\ngroups:\n  defaults: {location: X}\nusers:\n"
    user = resolved("  alice: {groups: [defaults]}\n", text)
    assert user.profile == {"company": "A", "location": "X"}
    assert [origin.layer for origin in user.inherited] == ["group defaults", "defaults"]


def test_every_key_a_user_writes_survives_its_defaults_and_groups():
    # inheritance._apply builds the resolved user field by field (for speed): a field
    # it forgets is lost only where defaults or groups are used, as `suspend:` once was.
    assert {field.name for field in dataclasses.fields(DesiredUser)} == {
        *("username", "profile", "emails", "location", "emails_mode"),
        *("groups", "ignore", "inherited", "suspend"),
    }, "a new key: write it in the user below, and keep it in inheritance._apply"
    user = resolved(
        "  alice:\n    full_name: Alice\n    emails: [a@example.com]\n    emails_mode: exact\n"
        "    groups: [berlin]\n    ignore: [company]\n    suspend: {reason: INC-1}\n"
    )
    assert user.username == "alice"
    assert user.profile == {"full_name": "Alice", "location": "Berlin"}
    assert user.emails == ("a@example.com",)
    assert user.emails_mode == EmailsMode.EXACT
    assert (user.groups, user.ignore) == (("berlin",), ("company",))
    assert user.location is not None
    assert [origin.key for origin in user.inherited] == ["location"]
    assert user.suspend is not None
    assert user.suspend.reason == "INC-1"
