"""`syncd state migrate`: move the history to another backend (SQLite → PostgreSQL)."""

from __future__ import annotations

import click

from syncd.cli.options import config_option, settings_from_flags
from syncd.errors import SettingsError, StateError
from syncd.visible import counted


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
    try:
        to = load_settings(config_file, state_dir=state_dir, state_url=target)
    except SettingsError as error:
        # The same settings loaded but for the target: what is wrong is --to's (migrate
        # has no --state-url), said as pydantic said it of state_url.
        said = str(error).partition("state_url (--state-url): ")[2] or str(error)
        raise click.BadParameter(said, param_hint="'--to'") from None
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
        f"Copied {counted(counts['runs'], 'run')}, {counted(counts['audit'], 'audit event')} "
        f"and {counted(counts['not_kept'], 'not-kept record')} from {settings.state_location} "
        f"to {to.state_location}; the counts match on both sides."
    )
    click.echo(f"To use it: SYNCD_STATE_URL='{to.state_url}'")
