"""`syncd render`: the effective desired state, and where each value came from."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.core.desired import DesiredUser
from syncd.desired.loading import load_desired
from tests.conftest import GIT_IDENTITY

GROUPS = """version: 1
defaults:
  company: Acme
  emails_mode: owned
groups:
  berlin:
    location: Berlin
"""
USERS = """version: 1
users:
  alice:
    groups: [berlin]
    full_name: Alice A
    emails: [alice@example.com]
  bobby:
    groups: [berlin]
    ignore: [location]
  carol:
    full_name: "Carol\\LC"  # a line separator, which the YAML must escape
    suspend: {reason: INC-123, until: 2027-01-31}
"""


@pytest.fixture
def accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "accounts" / "team").mkdir(parents=True)
    (tmp_path / "accounts" / "groups.yaml").write_text(GROUPS, encoding="utf-8")
    (tmp_path / "accounts" / "team" / "users.yaml").write_text(USERS, encoding="utf-8")
    return "accounts"


def suspended(user: DesiredUser) -> tuple[str, float | None] | None:
    """A user's suspension as the file says it (not where)."""
    return None if user.suspend is None else (user.suspend.reason, user.suspend.until)


def render(*args: str) -> str:
    result = CliRunner().invoke(cli, ["render", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


EXPLAINED = [
    pytest.param(
        'alice.location = "Berlin"  group berlin (accounts/groups.yaml:7:15)', id="group"
    ),
    pytest.param('alice.company = "Acme"  defaults (accounts/groups.yaml:3:12)', id="defaults"),
    pytest.param(
        'alice.emails_mode = "owned"  defaults (accounts/groups.yaml:4:16)', id="defaults-mode"
    ),
    pytest.param(
        'alice.full_name = "Alice A"  user (accounts/team/users.yaml:5:16)', id="the-user-itself"
    ),
    pytest.param(
        'alice.emails = ["alice@example.com"]  user (accounts/team/users.yaml:6:13)',
        id="the-users-own-emails",
    ),
    pytest.param("bobby.location: ignored, not managed", id="ignored"),
    pytest.param(
        'carol.suspend = {"reason": "INC-123", "until": "2027-01-31T00:00:00+00:00"}  user '
        "(accounts/team/users.yaml:12:14)",
        id="suspended",
    ),
]


@pytest.mark.parametrize("line", EXPLAINED)
def test_explain_says_where_each_value_came_from(accounts: str, line: str) -> None:
    assert line in render("-f", accounts, "--explain").splitlines()


def test_explain_points_at_the_values_of_a_git_source_too(
    accounts: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From git, a user's own values pointed at its name: the file was looked for on disk.
    git = ["git", "-C", str(tmp_path), *GIT_IDENTITY]
    subprocess.run([*git, "init", "--quiet", "-b", "main"], check=True)
    subprocess.run([*git, "add", "accounts"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "accounts"], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no accounts/ here
    monkeypatch.setenv("SYNCD_STATE_DIR", str(tmp_path / "state"))
    explained = render("-f", f"git+{tmp_path.as_uri()}#main:accounts/", "--explain")
    for line in EXPLAINED:
        assert line.values[0] in explained.splitlines()


def test_the_yaml_is_the_plain_per_user_form_and_loads_to_the_same(
    accounts: str, tmp_path: Path
) -> None:
    text = render("-f", accounts)
    assert "groups" not in text
    assert "defaults" not in text
    plain = tmp_path / "plain.yaml"
    plain.write_text(text, encoding="utf-8")
    again = {user.username: user for user in load_desired(plain).users}
    original = {user.username: user for user in load_desired(accounts).users}
    for name, user in original.items():
        assert dict(again[name].profile) == dict(user.profile)
        assert (again[name].emails, again[name].mode) == (user.emails, user.mode)
        # A suspension rendered away would have syncd write to the user again.
        assert suspended(again[name]) == suspended(user)
    assert suspended(again["carol"]) == ("INC-123", 1801353600.0)  # 2027-01-31, UTC


def test_json_for_one_user_with_origins(accounts: str) -> None:
    document = json.loads(
        render("-f", accounts, "--output", "json", "--user", "bobby", "--explain")
    )
    assert document["users"] == {
        "bobby": {
            "company": {"value": "Acme", "origin": "defaults", "at": "accounts/groups.yaml:3:12"},
            "emails_mode": {
                "value": "owned",
                "origin": "defaults",
                "at": "accounts/groups.yaml:4:16",
            },
            "ignore": ["location"],
        }
    }


def test_json_shows_a_suspension(accounts: str) -> None:
    document = json.loads(render("-f", accounts, "--output", "json", "--user", "carol"))
    assert document["users"]["carol"]["suspend"] == {
        "reason": "INC-123",
        "until": "2027-01-31T00:00:00+00:00",
    }


def test_validate_reports_a_new_error_in_json_with_its_place(
    accounts: str, tmp_path: Path
) -> None:
    (tmp_path / "accounts" / "more.yaml").write_text(
        "version: 1\ngroups:\n  berlin: {}\n", encoding="utf-8"
    )
    result = CliRunner().invoke(cli, ["validate", "-f", accounts, "--output", "json"])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert [(p["file"], p["line"], p["column"]) for p in problems] == [
        ("accounts/groups.yaml", 6, 3),
        ("accounts/more.yaml", 3, 3),
    ]
    assert all("duplicate group 'berlin'" in p["message"] for p in problems)
