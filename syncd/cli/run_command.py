"""`syncd run`: the daemon, under systemd (what it does is syncd.service.startup)."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

import click

from syncd.cli.options import (
    api_url_option,
    config_option,
    credentials_dir_option,
    desired_option,
    insecure_http_option,
    scope_of,
    scope_options,
    state_dir_option,
    with_options,
)
from syncd.core.vocabulary import RunResult
from syncd.errors import EXIT_ERROR, EXIT_GUARD, EXIT_OK

if TYPE_CHECKING:
    from syncd.service.cycle import CycleOutcome


@click.command()
@with_options(
    config_option,
    api_url_option,
    credentials_dir_option,
    state_dir_option,
    desired_option,
    click.option("--interval", type=float, help="Seconds between runs [SYNCD_INTERVAL, 300]."),
    click.option(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="Serve /metrics, /healthz, /readyz (and hooks) [SYNCD_METRICS_ADDR].",
    ),
    insecure_http_option,
    click.option(
        "--observe",
        is_flag=True,
        default=None,
        help="Plan and report drift every cycle; write nothing [SYNCD_OBSERVE].",
    ),
    click.option(
        "--once", is_flag=True, help="One cycle, then exit with apply's codes (0, 1, 3): for cron."
    ),
    scope_options,
)
def run(config_file: str | None, once: bool, **flags: Any) -> None:
    """Reconcile on a schedule until stopped (a systemd Type=notify service).

    SIGTERM or SIGINT stops (exit 0), SIGHUP re-reads the settings and runs now.
    --user, --exclude and --group limit a --once cycle.
    """
    from syncd.service.startup import serve
    from syncd.settings import load_settings

    scope = scope_of(flags)
    if scope and not once:
        raise click.UsageError("--user, --exclude and --group limit a --once cycle only")
    settings_now = functools.partial(load_settings, config_file, **flags)  # again on SIGHUP
    last = serve(settings_now, once=once, scope=scope)
    if once:
        sys.exit(once_exit_code(last))


def once_exit_code(last: CycleOutcome | None) -> int:
    """`run --once` ends as `apply` would: 0 converged (or, observing, seen; or `held`: all
    was done but what the operator left out, a rejected deletion or suspended users),
    3 the deletion guard refused, 1 anything else. Converged on the last good revision
    of a git source whose fetch failed is 1 too: for cron the exit code is the signal."""
    if last is None:
        return EXIT_ERROR
    if last.result == RunResult.BLOCKED:
        return EXIT_GUARD
    done = (RunResult.OK, RunResult.NO_CHANGES, RunResult.DRIFT, RunResult.HELD)
    return EXIT_OK if last.result in done and last.warning is None else EXIT_ERROR
