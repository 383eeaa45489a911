"""Messages a new-operator trial found wanting (2026-12-07): each says what went wrong
once, in the operator's words, and the way on."""

from __future__ import annotations

from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.state.lock import acquire
from tests.world import World


def test_an_apply_refused_the_lock_is_told_how_to_wait_for_it(world: World):
    held = acquire(world.state_dir)  # as a `syncd run` holds it for its life
    try:
        refused = CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"])
    finally:
        held.release()
    assert refused.exit_code == 1
    (line,) = refused.stderr.splitlines()
    assert "holds" in line
    assert "one run or apply per state directory" in line
    assert line.endswith("; wait for it with --lock-timeout 5m, or stop it"), line


def test_a_run_refused_the_lock_is_not_offered_a_flag_it_lacks(world: World):
    held = acquire(world.state_dir)
    try:
        refused = CliRunner().invoke(cli, ["run", "--once", *world.cli_args()])
    finally:
        held.release()
    assert refused.exit_code == 1
    assert "one run or apply per state directory" in refused.stderr
    assert "--lock-timeout" not in refused.stderr
