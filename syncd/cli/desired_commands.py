"""Commands about the desired-state files: `validate`, `schema`, `render` and `import`.

None of them writes to the accounts: `validate`, `schema` and `render` never
call the API, and `import` only reads it.
"""

from __future__ import annotations

from typing import Any

import click

from syncd.cli.options import (
    api_options,
    desired_for,
    desired_option,
    output_option,
    refuse_to_overwrite,
    settings_from_flags,
)
from syncd.core.jsondoc import dumps_document
from syncd.visible import counted, visible, visible_lines


@click.command()
@desired_option
@output_option("One line, or a JSON document (the problems with file, line and column).")
def validate(desired: str | None, output: str) -> None:
    """Check the desired state; send nothing to the API."""
    settings = settings_from_flags({"desired": desired})
    state = desired_for(settings, output=output)
    if output == "json":
        from syncd.engine.reconcile import source_of

        document = {
            "format_version": 1,
            "valid": True,
            "problems": [],
            "source": source_of(state),
            "summary": {"problems": 0, "users": len(state.users)},
        }
        click.echo(dumps_document(document))
        return
    from syncd.desired.gitsource import shown_desired

    click.echo(f"{shown_desired(settings.desired)}: valid, {counted(len(state.users), 'user')}")


@click.command()
def schema() -> None:
    """Print the JSON Schema of the desired-state format."""
    import json

    from syncd.desired.fileformat import desired_state_json_schema

    click.echo(json.dumps(desired_state_json_schema(), indent=2))


@click.command()
@desired_option
@click.option("--user", "users", multiple=True, metavar="NAME", help="Only this user (repeat).")
@click.option(
    "--output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="A desired-state file in the plain per-user form, or JSON.",
)
@click.option("--explain", is_flag=True, help="Say where each value came from.")
def render(desired: str | None, users: tuple[str, ...], output: str, explain: bool) -> None:
    """Print the effective desired state: after defaults, groups and ignore."""
    from syncd.core import effective
    from syncd.core.desired import Scope
    from syncd.desired.gitsource import git_files
    from syncd.desired.loading import own_places

    settings = settings_from_flags({"desired": desired})
    state = desired_for(settings, Scope(users), output="json" if output == "json" else "text")
    place = own_places(state, git_files(settings, state.revision)) if explain else None
    if output == "json":
        click.echo(dumps_document(effective.to_json(state, explain=explain, place=place)))
    elif explain:
        for line in effective.explain_lines(state, place):
            click.echo(visible_lines(line))
    else:
        click.echo(effective.to_yaml(state), nl=False)


@click.command("import")
@api_options  # no -f: what is imported is the live accounts, whatever a desired state says
@click.option("--user", "users", multiple=True, metavar="NAME", help="Import this user (repeat).")
@click.option("--out", "out_file", metavar="FILE", help="Write here instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def import_(users: tuple[str, ...], out_file: str | None, force: bool, **options: Any) -> None:
    """Write a desired-state file from the live accounts.

    Without --user, every user of the credentials directory is imported.
    """
    import asyncio
    from pathlib import Path

    from syncd.api.client import AccountsClient
    from syncd.api.credentials import CredentialStore
    from syncd.core.live import LiveAccount
    from syncd.engine.importing import check_usernames, import_text, read_accounts
    from syncd.errors import SyncdError
    from syncd.wholefiles import replacing

    if out_file:
        refuse_to_overwrite(out_file, force)
    # Said before the accounts are read; not made here: a typo would make a directory.
    if out_file and not Path(out_file).absolute().parent.is_dir():
        folder = Path(out_file).parent
        raise click.ClickException(f"cannot write {out_file}: no directory {folder}/ (mkdir it)")
    settings = settings_from_flags(options)
    credentials = CredentialStore.from_settings(settings)
    names = sorted(set(users) or credentials.usernames())
    if not names:
        raise click.UsageError("no users: name them with --user or set a credentials directory")
    # Each name becomes a URL: checked here, where the message can say where it came from.
    where = "--user" if users else f"credentials directory {settings.credentials_dir}"
    check_usernames(names, where)

    async def read() -> list[LiveAccount]:
        async with AccountsClient(settings, credentials.for_user) as client:
            return await read_accounts(client, names, settings.concurrency)

    text, left_out = import_text(asyncio.run(read()), out_file or "<import>")
    if not out_file:
        click.echo(text, nl=False)
    else:
        try:
            with replacing(Path(out_file)) as handle:
                handle.write(text.encode())
        except OSError as error:
            message = f"cannot write {out_file}: {error.strerror or error}"
            raise click.ClickException(message) from None
        click.echo(f"Imported {counted(len(names), 'user')} into {out_file}.", err=True)
    for line in left_out:
        click.echo(f"syncd: {visible(line)}: left out, which syncd then leaves alone", err=True)
    if left_out:
        # Exit 1: a script that commits the import must not miss that it is not whole.
        why = "their live values are not valid in a desired state"
        raise SyncdError(
            f"{counted(len(left_out), 'field')} left out of the import (above): {why}"
        )
