"""What the commands share: the flags that override settings, and loading what they name.

Only click, syncd.errors and small pure modules of syncd.core are imported at start-up;
the rest loads when a command runs, so that `syncd --help` stays fast.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from syncd.core.jsondoc import dumps_document
from syncd.errors import EXIT_ERROR, DesiredStateError

if TYPE_CHECKING:
    from syncd.core.desired import DesiredState, Scope
    from syncd.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `2h`, `3d` in seconds; a UsageError for anything else."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise click.UsageError(f"invalid duration {text!r}: expected a number and s, m, h or d")
    return float(match[1]) * UNIT_SECONDS[match[2]]


def refuse_to_overwrite(out: str | Path, force: bool) -> None:
    """`--out FILE` of a file a person keeps (an import, an audit export): a rerun or a
    typo must not replace the one that is there (after a prune, the only copy)."""
    if Path(out).exists() and not force:
        raise click.ClickException(f"{out} exists; pass --force to overwrite it")


def output_option(help: str | None = "Human diff or the JSON contract.") -> Callable[[F], F]:
    """`--output text|json`, text by default: every command that prints a result has it."""
    return click.option(
        "--output",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help=help,
    )


def with_options(*options: Callable[[F], F]) -> Callable[[F], F]:
    """The options given, in that order in --help."""

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


# Each option that commands share, declared once (click makes a new Option each
# time one decorates a command). A flag given overrides the [SYNCD_...] it names.
config_option = click.option("--config", "config_file", metavar="FILE", help="TOML settings file.")
api_url_option = click.option("--api-url", help="Base URL of the accounts API [SYNCD_API_URL].")
credentials_dir_option = click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False),
    help="Directory of <user>.token / <user>.password files [SYNCD_CREDENTIALS_DIR].",
)
state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="Where the state files live [SYNCD_STATE_DIR].",
)
deadline_option = click.option(
    "--deadline",
    "run_deadline",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop the run after this long, saying so [SYNCD_RUN_DEADLINE].",
)
insecure_http_option = click.option(
    "--insecure-http",
    is_flag=True,
    default=None,
    help="Allow plain http:// to a non-loopback host [SYNCD_INSECURE_HTTP].",
)
desired_option = click.option(
    "-f",
    "--file",
    "desired",
    metavar="PATH|URL",
    help="Desired state: a file, a directory, or a git+https://, git+ssh:// or git+file:// URL"
    " [SYNCD_DESIRED, ./desired-state.yaml].",
)

#: `--config` and `--state-dir`: the flags of the commands that only read or write the state.
state_options = with_options(config_option, state_dir_option)

#: Flags shared by every command that talks to the API.
api_options = with_options(
    config_option,
    api_url_option,
    credentials_dir_option,
    state_dir_option,
    click.option("--concurrency", type=int, help="Requests in flight [SYNCD_CONCURRENCY]."),
    insecure_http_option,
)
#: Those, and -f: the commands that compare the API with the desired state.
settings_options = with_options(api_options, desired_option)


def settings_from_flags(flags: dict[str, Any], *, verbose: bool = False) -> Settings:
    """The settings, with the flags given (None: not given) over the environment and file,
    and the log set up from them (syncd.logs.configure_logging, `verbose` as there).

    Every command that reads settings sets its log up here: on stderr, so that its
    stdout is its own output alone (a plan's JSON, an imported file); unset,
    structlog prints every event, debug included, to stdout.
    """
    from syncd.logs import configure_logging
    from syncd.settings import load_settings

    settings = load_settings(**flags)
    configure_logging(settings.log_format, verbose=verbose)
    return settings


#: `--user`, `--exclude`, `--group`: which users a run is limited to (scope_of).
scope_options = with_options(
    click.option(
        "--user", "users", multiple=True, metavar="NAME", help="Only this user (repeat)."
    ),
    click.option(
        "--exclude",
        multiple=True,
        metavar="NAME",
        help="Not this user, whatever else says (repeat).",
    ),
    click.option(
        "--group",
        "groups",
        multiple=True,
        metavar="NAME",
        help="Only the users of this group (repeat).",
    ),
)


def scope_of(options: dict[str, Any]) -> Scope:
    """The Scope that scope_options gave, taken out of `options`."""
    from syncd.core.desired import Scope

    return Scope(options.pop("users", ()), options.pop("exclude", ()), options.pop("groups", ()))


def desired_for(
    settings: Settings,
    scope: Scope | None = None,
    *,
    remember: bool = False,
    output: str = "text",
) -> DesiredState:
    """The desired state that the settings name, limited to the `scope` if any.

    With `output` json, an invalid desired state is a JSON document of its
    problems on stdout (and exit 1), for CI to annotate the lines.
    """
    from syncd.core.desired import Scope
    from syncd.desired.gitsource import resolve_desired

    try:
        desired = resolve_desired(settings, remember=remember).select(scope or Scope())
    except DesiredStateError as error:
        if output != "json":
            raise
        problems = [
            {"file": p.path, "line": p.line, "column": p.column, "message": p.message}
            for p in error.problems
        ]
        document = {
            "format_version": 1,
            "valid": False,
            "problems": problems,
            "summary": {"problems": len(problems)},
        }
        click.echo(dumps_document(document))
        sys.exit(EXIT_ERROR)
    keep_until_exit()
    return desired


def keep_until_exit() -> None:
    """Hide what is alive now from the cyclic garbage collector, for a one-shot command.

    The modules, the desired state and the plan live until the process exits,
    yet each full collection walks them all again, a large part of a warm plan
    of many users. They hold no cycles to collect. Never for the daemon, which
    lives on and reloads.
    """
    import gc

    gc.freeze()
