"""`syncd demo` runs the whole loop against its own sandbox and ends converged."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from syncd.cli.main import cli

EXAMPLE = Path(__file__).parents[2] / "desired-state.example.yaml"


def test_demo_plans_applies_and_ends_with_an_empty_plan(tmp_path: Path):
    result = CliRunner().invoke(
        cli, ["demo", "-f", str(EXAMPLE), "--workdir", str(tmp_path / "demo")]
    )
    assert result.exit_code == 0, result.output
    steps = result.stdout.split("── Step ")
    assert "Plan: " in steps[1]
    assert "Applied 6 of 6 changes." in steps[2]
    assert "No changes" in steps[3]
    assert "outcome" in steps[4]
    assert (tmp_path / "demo" / "state" / "syncd.db").exists()


def test_demo_without_its_desired_state_says_where_to_look(tmp_path: Path):
    result = CliRunner().invoke(cli, ["demo", "-f", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert "no such file" in result.stderr
