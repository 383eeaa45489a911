"""`syncd state migrate`: move the history to another backend (SQLite → PostgreSQL)."""

from __future__ import annotations

import click

from syncd.cli.options import config_option, settings_from_flags
from syncd.errors import StateError


@click.group()
def state() -> None:
    """Where syncd keeps its state: move it."""


@state.command()
@config_option
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="State directory of the SQLite files to copy [SYNCD_STATE_DIR].",
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="Where to copy it: postgresql://user@host:port/db (no password in it: "
    "SYNCD_STATE_PASSWORD_FILE or libpq's PGPASSFILE), or a directory.",
)
def migrate(config_file: str | None, state_dir: str | None, target: str) -> None:
    """Copy the runs and the audit trail to another backend, and check the counts.

    The source is the state the settings name (SYNCD_STATE_URL, else the
    state directory). Nothing may run on either side meanwhile (both are
    locked), and the target must hold no history yet. The live cache is not
    copied: the first plan on the target reads the accounts again.
    """
    from syncd.settings import load_settings
    from syncd.state.backend import open_store
    from syncd.state.migrate import migrate as copy_history

    settings = settings_from_flags({"config_file": config_file, "state_dir": state_dir})
    to = load_settings(config_file, state_dir=state_dir, state_url=target)
    if not settings.on_postgresql and not settings.state_file.exists():
        raise StateError(f"no state file at {settings.state_file}: nothing to copy")
    if to.state_location == settings.state_location:
        raise click.UsageError("--to names the state that would be copied")
    with (
        open_store(settings, "state migrate") as source,
        open_store(to, "state migrate") as destination,
    ):
        counts = copy_history(source, destination)
    click.echo(
        f"Copied {counts['runs']} runs, {counts['audit']} audit events and "
        f"{counts['not_kept']} not-kept records from {settings.state_location} to "
        f"{to.state_location}; the counts match on both sides."
    )
    click.echo(f"To use it: SYNCD_STATE_URL='{to.state_url}'")
