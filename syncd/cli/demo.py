"""`syncd demo`: the whole loop, plan → apply → plan, against a local sandbox.

A sandbox of the accounts API is started in this process, seeded with the
three accounts of the example desired state (`desired-state.example.yaml` at the
top of the repository, and a copy of it shipped in the package so that the demo
runs from any installed syncd) in a state that differs from it; their tokens are
written as a credentials directory in the work directory, next to the state
file, and the seed itself as `seed.yaml`. Then the same commands an operator
would type are run: the settings they share are printed once as `export` lines
and set in this process's environment (so a flag-free `syncd plan` is what runs
and what is printed), and each command is printed, quoted for a shell, before it
runs. The sandbox stops with the demo; the last lines say how to serve the same
accounts again (`syncd sandbox --seed`) to repeat the commands by hand.

The work directory is emptied at each run, but only if the demo made it: it
leaves a marker file there (MARKER), and refuses any other directory that
holds something, so that a mistyped `--workdir` never deletes someone's files.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import click

from syncd.errors import UsageError
from syncd.visible import counted

#: The example desired state, a data file of the package.
EXAMPLE = "desired-state.example.yaml"

#: The file that says a work directory was made by the demo, and may be emptied.
MARKER = ".made-by-syncd-demo"

ALL_SCOPES = ["profile_read", "profile_write", "email_read", "email_write"]


def _account(token: str, emails: list[str], **profile: str) -> dict[str, Any]:
    return {
        **profile,
        # A list of its own: one shared list would be a YAML alias in seed.yaml, which
        # a seed file refuses.
        "tokens": [{"token": token, "scopes": [*ALL_SCOPES]}],
        "emails": [{"email": emails[0], "primary": True, "verified": True}, *emails[1:]],
    }


#: The live accounts before the demo: each differs from the example in a way worth seeing.
DEMO_SEED: dict[str, Any] = {
    "users": {
        "janedoe": _account(
            "demo-token-janedoe",
            ["jane.doe@example.com", "jane.old@example.com"],
            full_name="Jane",
            location="San Francisco, CA",
            company="Success, Inc.",
            profile_url="https://docker.io/",
        ),
        "johnsmith": _account(
            "demo-token-johnsmith",
            ["john.smith@example.org"],
            full_name="John Smith",
            location="Toronto",
            profile_url="http://john.example.org/",
            gravatar_email="john.smith@example.org",
        ),
        "ops_robot": _account(
            "demo-token-ops-robot", ["robot@example.com", "robot-old@example.com"]
        ),
    }
}


def _shell(*words: str) -> None:
    """A command line as a shell reads it: what is printed is what a user pastes."""
    click.secho(f"$ {shlex.join(words)}", fg="cyan")


def prepare_workdir(workdir: Path) -> None:
    """An empty work directory with the marker: new, emptied, or refused if not the demo's."""
    try:
        if workdir.is_symlink():
            raise UsageError(f"{workdir}: a symbolic link; pass a directory as --workdir")
        if workdir.exists() and not workdir.is_dir():
            raise UsageError(f"{workdir}: not a directory; pass another --workdir")
        marker = workdir / MARKER
        if marker.is_file() and not marker.is_symlink():
            shutil.rmtree(workdir)
        elif workdir.is_dir() and any(workdir.iterdir()):
            # An empty directory (from mktemp -d, say) has nothing to lose; anything else might.
            raise UsageError(
                f"{workdir}: exists and was not made by syncd demo; "
                "refusing to empty it (pass a new --workdir, or remove it yourself)"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        marker.write_text("Made by `syncd demo`, which empties this directory at each run.\n")
    except OSError as error:
        raise UsageError(f"{workdir}: {error.strerror or error}") from None


@contextlib.contextmanager
def _environment(settings: dict[str, str]) -> Iterator[None]:
    """These SYNCD_* variables set while the commands run, and put back as they were."""
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def run_demo(desired: Path, workdir: Path, invoke: Callable[[list[str]], int]) -> None:
    """Run the demo; `invoke` runs one syncd command line and returns its exit code."""
    from syncd.sandbox.extra import require_sandbox_extra

    require_sandbox_extra("syncd demo, which runs a sandbox,")
    import yaml

    from syncd.desired.loading import load_desired
    from syncd.sandbox.runtime import SandboxConfig
    from syncd.sandbox.seed import snapshot_from_mapping, write_credentials
    from syncd.sandbox.server import serve_in_thread

    if not desired.is_file():
        raise click.ClickException(f"{desired}: no such file")
    # Its problems once, before a sandbox starts: each step would print them again.
    load_desired(desired)
    # Absolute paths: the printed commands work from any directory.
    desired, workdir = desired.absolute(), workdir.absolute()
    prepare_workdir(workdir)
    credentials = workdir / "credentials"
    state = workdir / "state"
    snapshot = snapshot_from_mapping(DEMO_SEED, "demo seed")
    write_credentials(snapshot, credentials)

    seed = workdir / "seed.yaml"
    seed.write_text(yaml.safe_dump(DEMO_SEED, sort_keys=False))
    seed.chmod(0o600)  # its tokens are the credentials directory's, which is private

    with serve_in_thread(SandboxConfig(snapshot=snapshot)) as url:
        settings = {
            "SYNCD_API_URL": url,
            "SYNCD_CREDENTIALS_DIR": str(credentials),
            "SYNCD_STATE_DIR": str(state),
            "SYNCD_DESIRED": str(desired),
        }
        # What a person reads, not JSON lines: the log on a console, which an apply
        # keeps to warnings and errors beside its own lines (unless the user chose).
        if not os.environ.get("SYNCD_LOG_FORMAT"):
            settings["SYNCD_LOG_FORMAT"] = "console"
        click.secho("syncd demo", bold=True)
        click.echo(f"A sandbox of the docker.io accounts API is serving at {url}")
        click.echo(
            f"with {counted(len(DEMO_SEED['users']), 'account')} that differ from {desired}."
        )
        click.echo(f"Their tokens are in {credentials}/, one <username>.token file each.")
        click.echo("The commands below run with these settings (paste them into a shell):")
        for name, value in settings.items():
            _shell("export", f"{name}={value}")

        def step(number: int, title: str, *command: str) -> None:
            click.echo()
            click.secho(f"── Step {number}: {title}", bold=True)
            _shell("syncd", *command)
            with _environment(settings):
                code = invoke(list(command))
            if code != 0:
                # The later steps would describe a loop that did not happen.
                raise click.ClickException(
                    f"step {number} (syncd {command[0]}) failed; see above. The sandbox stopped."
                )

        step(1, "see what would change (a dry run: nothing is written)", "plan")
        # --allow-deletions: the demo deletes two addresses, whatever SYNCD_MAX_DELETIONS says.
        step(
            2,
            "converge (--yes because a demo has no one to ask)",
            "apply",
            "--yes",
            "--allow-deletions",
            "10",
        )
        step(3, "plan again: nothing is left to do, and the cache answers", "plan")
        step(4, "every write, with its intent and outcome", "audit")
    click.echo()
    click.echo(f"The audit trail is in {state / 'syncd.db'}; the cache, in {state / 'cache.db'}.")
    click.echo("Query it again with:")
    _shell("syncd", "audit", "--state-dir", str(state))
    click.echo("The sandbox stopped with the demo. To repeat the commands, serve the same")
    click.echo("accounts in another shell (it prints its URL: export it as SYNCD_API_URL):")
    _shell("syncd", "sandbox", "--port", "0", "--seed", str(seed))


@click.command()
@click.option(
    "-f",
    "--file",
    "desired",
    type=click.Path(path_type=Path),
    help="The desired state to converge to, of the demo's accounts only ("
    + ", ".join(DEMO_SEED["users"])
    + "): the sandbox holds no other  [default: the example shipped with syncd]",
)
@click.option(
    "--workdir",
    default=".syncd-demo",
    show_default=True,
    help="Where the demo keeps its credentials and state: a new directory, or one it made"
    " before (emptied first).",
)
@click.pass_context
def demo(context: click.Context, desired: Path | None, workdir: str) -> None:
    """Run plan → apply → plan against a local sandbox, step by step."""
    syncd = context.find_root().command

    def invoke(args: list[str]) -> int:
        try:
            result = syncd.main(args, prog_name="syncd", standalone_mode=False)
        except SystemExit as done:
            return int(done.code or 0)
        return result if isinstance(result, int) else 0

    if desired is None:
        # A file inside the installed package (never a zip: setuptools installs files).
        desired = Path(str(resources.files("syncd") / EXAMPLE))
    run_demo(desired, Path(workdir), invoke)
