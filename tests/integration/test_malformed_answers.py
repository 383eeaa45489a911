"""Malformed API answers are errors for their user, never data, and never lead to a write."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.sandbox.malformed import KINDS
from tests.world import STANDARD_SEED, World


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_answer_fails_that_user_and_writes_nothing(world: World, kind: str):
    world.sandbox.reset(seed=STANDARD_SEED, malformed={"janedoe": kind})
    runner = CliRunner()
    plan = runner.invoke(cli, ["plan", *world.cli_args()], catch_exceptions=False)
    assert plan.exit_code == 1, plan.output
    assert "janedoe: malformed_response" in plan.stdout
    assert "GET /api/v1.1/users/janedoe/" in plan.stdout
    applied = runner.invoke(cli, ["apply", *world.cli_args(), "--yes"], catch_exceptions=False)
    assert applied.exit_code == 1, applied.output
    assert world.writes() == 0
