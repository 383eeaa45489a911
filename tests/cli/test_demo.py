"""`syncd demo` runs the whole loop against its own sandbox and ends converged; it empties
only a work directory that it made."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from syncd.cli.demo import DEMO_SEED, MARKER, run_demo
from syncd.cli.main import cli
from syncd.sandbox.seed import load_seed_file, snapshot_from_mapping

EXAMPLE = Path(__file__).parents[2] / "desired-state.example.yaml"
#: Its copy in the package (tests/packaging/test_example.py keeps the two identical).
PACKAGED = Path(__file__).parents[2] / "syncd" / "desired-state.example.yaml"


def test_demo_plans_applies_and_ends_with_an_empty_plan(tmp_path: Path):
    result = CliRunner().invoke(
        cli, ["demo", "-f", str(EXAMPLE), "--workdir", str(tmp_path / "demo")]
    )
    assert result.exit_code == 0, result.output
    steps = result.stdout.split("── Step ")
    assert "Plan: " in steps[1]
    assert "Apply complete: 6 applied, 0 failed." in steps[2]
    assert "No changes" in steps[3]
    assert "janedoe: add jane.doe+other@example.com ok" in steps[4]
    assert (tmp_path / "demo" / "state" / "syncd.db").exists()
    # What a person reads: no JSON log lines and no Python reprs anywhere.
    for line in result.output.splitlines():
        assert not line.startswith("{"), line
        assert "None" not in line, line
        assert "{'" not in line, line


def test_demo_without_its_desired_state_says_where_to_look(tmp_path: Path):
    result = CliRunner().invoke(cli, ["demo", "-f", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert "no such file" in result.stderr


def test_demo_empties_a_workdir_it_made_before(tmp_path: Path):
    workdir = tmp_path / "demo"
    workdir.mkdir()
    (workdir / MARKER).write_text("from an earlier run\n")
    (workdir / "left-over").write_text("from an earlier run\n")
    result = CliRunner().invoke(cli, ["demo", "-f", str(EXAMPLE), "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert not (workdir / "left-over").exists()
    assert (workdir / MARKER).is_file()  # so that the next run may empty it again


def test_demo_uses_an_empty_directory_and_its_own_example_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    workdir, elsewhere = tmp_path / "empty", tmp_path / "elsewhere"
    workdir.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no example desired state here
    result = CliRunner().invoke(cli, ["demo", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert f"differ from {PACKAGED}." in result.stdout
    assert (workdir / MARKER).is_file()


@pytest.mark.parametrize("kind", ["files", "file", "symlink"])
def test_demo_refuses_a_workdir_it_did_not_make(tmp_path: Path, kind: str):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    workdir = {
        "files": precious,
        "file": precious / "thesis.tex",
        "symlink": tmp_path / "link",
    }[kind]
    if kind == "symlink":
        # A link to a directory the demo made: following it would empty another place.
        (precious / MARKER).write_text("")
        workdir.symlink_to(precious)
    result = CliRunner().invoke(cli, ["demo", "-f", str(EXAMPLE), "--workdir", str(workdir)])
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"syncd: {workdir}: ")
    assert (precious / "thesis.tex").read_text() == "years of work\n"
    assert sorted(p.name for p in precious.iterdir()) == sorted(
        ["thesis.tex", *([MARKER] if kind == "symlink" else [])]
    )


def test_each_printed_command_is_the_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """What the demo prints, pasted into a shell, is what it ran: the `export` lines are
    the environment each command ran in, and each `$ syncd` line its very arguments."""
    before = {name: value for name, value in os.environ.items() if name.startswith("SYNCD_")}
    ran: list[tuple[list[str], dict[str, str]]] = []

    def invoke(args: list[str]) -> int:
        now = {name: value for name, value in os.environ.items() if name.startswith("SYNCD_")}
        ran.append((args, now))
        try:
            cli.main(args, prog_name="syncd", standalone_mode=False)
        except SystemExit as done:
            return int(done.code or 0)
        return 0

    workdir = tmp_path / "a demo's dir"  # a space: the printed paths must be quoted
    run_demo(EXAMPLE, workdir, invoke)
    printed = [
        shlex.split(line.removeprefix("$ "))
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("$ ")
    ]
    exported = dict(
        words[1].split("=", 1) for words in printed if words[0] == "export" and len(words) == 2
    )
    commands = [words[1:] for words in printed if words[0] == "syncd"]
    assert exported["SYNCD_STATE_DIR"] == str(workdir / "state")
    assert exported["SYNCD_DESIRED"] == str(EXAMPLE)
    assert [args for args, _ in ran] == commands[: len(ran)]
    assert [args[0] for args, _ in ran] == ["plan", "apply", "plan", "audit"]
    for _, environment in ran:
        assert environment == {**before, **exported}
    assert os.environ.get("SYNCD_API_URL") == before.get("SYNCD_API_URL")  # put back

    # After the runs: the audit trail again, and a sandbox of the same accounts to repeat them.
    audit, serve = commands[len(ran) :]
    assert audit == ["audit", "--state-dir", str(workdir / "state")]
    assert serve[:4] == ["sandbox", "--port", "0", "--seed"]
    assert load_seed_file(Path(serve[4])) == snapshot_from_mapping(DEMO_SEED)
    assert Path(serve[4]).stat().st_mode & 0o777 == 0o600  # it holds the tokens


def test_demo_with_an_invalid_desired_state_says_so_once_and_runs_nothing(tmp_path: Path):
    desired = tmp_path / "desired.yaml"
    desired.write_text("version: 1\nusers:\n  alice_a: {full_nam: Alice}\n")
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "-f", str(desired), "--workdir", str(workdir)])
    assert result.exit_code != 0
    assert "Step" not in result.output
    assert result.output.count("unknown key 'full_nam'") == 1, result.output
    assert not workdir.exists()  # no sandbox, no credentials, no state claimed


def test_demo_stops_at_the_first_step_that_fails(tmp_path: Path):
    ran: list[list[str]] = []

    def invoke(args: list[str]) -> int:
        ran.append(args)
        return 1

    with pytest.raises(click.ClickException) as stopped:
        run_demo(EXAMPLE, tmp_path / "demo", invoke)
    assert ran == [["plan"]]
    assert "step 1 (syncd plan) failed" in stopped.value.format_message()


def test_demo_help_says_its_file_can_name_only_the_demos_accounts():
    # `-f FILE` of any other users failed with no_credentials, which the help did not foretell.
    shown = " ".join(CliRunner().invoke(cli, ["demo", "--help"]).output.split())
    assert f"of the demo's accounts only ({', '.join(DEMO_SEED['users'])})" in shown
