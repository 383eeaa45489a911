"""Messages a new operator met in the first week, each saying enough (issue 22, item 18).

A misspelt SYNCD_ variable was silently ignored (a TOML typo is an error); a
user without a credential was not told where syncd had looked; `run --help`
named only git+https://; `validate` said "1 users".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.cli.conftest import plan
from tests.world import World, write_secret


def validate(tmp_path: Path, users: dict[str, str], **env: str) -> tuple[int, str, str]:
    desired = tmp_path / "one.yaml"
    lines = "".join(f"  {name}: {{full_name: {full}}}\n" for name, full in users.items())
    desired.write_text(f"version: 1\nusers:\n{lines}")
    result = CliRunner().invoke(cli, ["validate", "-f", str(desired)], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_a_misspelt_variable_is_a_warning_naming_the_setting_meant(tmp_path: Path):
    code, _, stderr = validate(tmp_path, {"janedoe": "Jane"}, SYNCD_MAX_DELETION="5")
    assert code == 0, stderr  # a warning, not an error
    assert stderr == (
        "syncd: warning: SYNCD_MAX_DELETION is not a setting and is ignored "
        "(did you mean SYNCD_MAX_DELETIONS?)\n"
    )


@pytest.mark.parametrize("variable", ["SYNCD_PACKAGE", "SYNCD_MAX_DELETIONS", "SYNCD_CONFIG"])
def test_a_setting_or_a_variable_like_none_is_not_warned_about(tmp_path: Path, variable: str):
    config = tmp_path / "syncd.toml"
    config.write_text("")
    value = str(config) if variable == "SYNCD_CONFIG" else "5"
    code, _, stderr = validate(tmp_path, {"janedoe": "Jane"}, **{variable: value})
    assert (code, stderr) == (0, "")


def test_a_misspelt_key_of_the_config_file_names_the_setting_meant(tmp_path: Path):
    config = tmp_path / "syncd.toml"
    config.write_text("max_deletion = 5\n")
    code, _, stderr = validate(tmp_path, {"janedoe": "Jane"}, SYNCD_CONFIG=str(config))
    assert code == 1
    assert (
        f"max_deletion (config file {config}): unknown setting (did you mean max_deletions?)"
        in stderr
    )


def test_validate_counts_one_user_in_the_singular(tmp_path: Path):
    assert validate(tmp_path, {"janedoe": "Jane"})[1].endswith(": valid, 1 user\n")
    assert validate(tmp_path, {"janedoe": "J", "johnsmith": "J"})[1].endswith(", 2 users\n")


def test_run_help_names_every_kind_of_git_source():
    result = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "git+https://, git+ssh:// or git+file:// URL" in result.stdout


def test_no_credential_names_the_directory_and_a_misnamed_file(world: World):
    (world.credentials_dir / "johnsmith.token").rename(world.credentials_dir / "JohnSmith.tokn")
    result = plan(world)
    assert result.exit_code == 1
    [line] = [line for line in result.stdout.splitlines() if "no_credentials" in line]
    assert line == (
        f"✗ johnsmith: no_credentials: no johnsmith.token or johnsmith.password in "
        f"{world.credentials_dir} and no fallback token (JohnSmith.tokn is there: misnamed?)"
    )


@pytest.mark.parametrize("name", ["syncd_johnsmith.token", "syncd-johnsmith.token"])
def test_a_prefix_left_unset_is_a_near_miss_too(world: World, name: str):
    # `-` for `_` was no near miss (ops-robot.token for ops_robot): no username holds `-`.
    token = (world.credentials_dir / "johnsmith.token").read_text()
    (world.credentials_dir / "johnsmith.token").unlink()
    write_secret(world.credentials_dir / name, token)
    result = plan(world)
    assert f"({name} is there: misnamed?)" in result.stdout


def test_no_credential_for_anyone_names_the_directory_looked_in(world: World):
    for path in world.credentials_dir.iterdir():
        path.unlink()
    result = plan(world)
    assert result.exit_code == 1
    assert f"(looked in {world.credentials_dir})" in result.stdout


def test_status_of_a_user_syncd_knows_nothing_of_says_so(world: World):
    # It printed a record of dashes, as for a user that is fine.
    world.apply()
    result = CliRunner().invoke(
        cli,
        ["status", "--state-dir", str(world.state_dir), "--user", "nosuch", "--user", "janedoe"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0  # README's exit codes are silent on it: a report, not an error
    nosuch = result.stdout.split("user nosuch\n")[1].split("user janedoe\n")
    assert nosuch[0] == (
        "  unknown      syncd knows nothing of this user: no read, pending change or write "
        "of it in this state (a typo, or not in the desired state?)\n"
    )
    assert "  last write   " in nosuch[1]  # a user it wrote is shown as before
