"""What more than one CLI test module uses."""

from __future__ import annotations

from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.world import World


def plan(world: World, *args: str, api_url: str | None = None) -> Result:
    """`syncd plan --detailed-exitcode` on the world, against `api_url` if given."""
    arguments = world.cli_args()
    if api_url is not None:
        arguments[arguments.index("--api-url") + 1] = api_url
    return CliRunner().invoke(
        cli, ["plan", *arguments, "--detailed-exitcode", *args], catch_exceptions=False
    )
