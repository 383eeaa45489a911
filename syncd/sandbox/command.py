"""`syncd sandbox`: serve the accounts API on loopback (placeholder until the server lands)."""

from __future__ import annotations

import click


@click.command()
def sandbox() -> None:
    """Serve a local copy of the docker.io accounts API."""
    raise click.ClickException("not yet implemented")
