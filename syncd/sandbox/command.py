"""`syncd sandbox`: serve a local copy of the accounts API (options → SandboxConfig → server).

Imports nothing but click at module level: the server, Starlette and uvicorn are
loaded only when the command runs, so that `syncd --help` stays fast, and so
that a `pip install syncd` without the extra `syncd[sandbox]` can say so.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port; 0 picks a free one (the URL is printed).",
)
@click.option(
    "--seed",
    "seed_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML seed file (format: syncd/sandbox/seed.py).",
)
@click.option(
    "--generate",
    default=0,
    type=click.IntRange(0, 999_999),
    metavar="N",
    help="Generate N deterministic users user000001… (before any --seed users).",
)
@click.option(
    "--credentials-out",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write each user's credential there as <username>.token / .password (mode 0600).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="SQLite file: loaded at start if it holds a state, written through on writes.",
)
@click.option("--admin-token", metavar="T", help="A staff token that may act on any user.")
@click.option(
    "--latency-ms", default=0.0, type=click.FloatRange(0), help="Delay every API request."
)
@click.option(
    "--error-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="Fraction of API requests answered 500 or 503 without doing anything.",
)
@click.option(
    "--rate-limit",
    default=0.0,
    type=click.FloatRange(0),
    help="Requests per second per credential; above it 429 with Retry-After (0: none).",
)
@click.option(
    "--ambiguous-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="Fraction of successful writes applied but answered 500 or dropped.",
)
@click.option(
    "--throttle-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="Fraction of requests answered 429 with Retry-After, whatever the rate.",
)
@click.option(
    "--retry-after",
    "retry_after_form",
    default="seconds",
    show_default=True,
    type=click.Choice(["seconds", "date", "none"]),
    help="How a 429 says when to come back: seconds, an HTTP date, or not at all.",
)
@click.option(
    "--trickle-ms",
    default=0.0,
    type=click.FloatRange(0),
    help="Send every answer's body one byte at a time, this many ms apart.",
)
@click.option(
    "--normalize",
    "normalize_rules",
    multiple=True,
    metavar="FIELD=RULE",
    help="Keep a field otherwise than sent: strip, slash, lower, ignore; email: untag (repeat).",
)
@click.option("--fault-seed", default=0, show_default=True, help="Seed of the fault draws.")
@click.option("--access-log/--no-access-log", default=False, help="Log every request (slow).")
def sandbox(
    host: str,
    port: int,
    seed_file: Path | None,
    generate: int,
    credentials_out: Path | None,
    db: Path | None,
    admin_token: str | None,
    latency_ms: float,
    error_rate: float,
    rate_limit: float,
    ambiguous_rate: float,
    throttle_rate: float,
    retry_after_form: str,
    trickle_ms: float,
    normalize_rules: tuple[str, ...],
    fault_seed: int,
    access_log: bool,
) -> None:
    """Serve a local copy of the docker.io accounts API v1.1.

    \b
    GET /_sandbox/stats   request counts by method, route and status
    POST /_sandbox/reset  restore the initial state (or the one in the JSON body)
    The /_sandbox/ routes take no credentials: keep the sandbox on loopback.
    """
    from syncd.sandbox.extra import require_sandbox_extra

    require_sandbox_extra("syncd sandbox")
    from syncd.sandbox import normalize, seed
    from syncd.sandbox.faults import FaultConfig
    from syncd.sandbox.runtime import Sandbox, SandboxConfig
    from syncd.sandbox.server import serve

    snapshot = seed.generate(generate)
    if seed_file is not None:
        snapshot = seed.combine(snapshot, seed.load_seed_file(seed_file, generated=generate))
    faults = FaultConfig(
        latency_ms,
        error_rate,
        rate_limit,
        ambiguous_rate,
        fault_seed,
        throttle_rate,
        retry_after=retry_after_form,
        trickle_ms=trickle_ms,
    )
    try:
        rules = normalize.check_rules(dict(rule.partition("=")[::2] for rule in normalize_rules))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--normalize") from None
    running = Sandbox(SandboxConfig(snapshot, admin_token, faults, db, normalize=rules))
    try:
        if running.loaded_from_db:
            click.echo(f"syncd sandbox: state loaded from {db}; seed not used", err=True)
        if credentials_out is not None:
            written = seed.write_credentials(running.initial.snapshot, credentials_out)
            click.echo(
                f"syncd sandbox: {written} credentials written to {credentials_out}", err=True
            )
        if host not in ("127.0.0.1", "::1", "localhost"):
            click.echo("syncd sandbox: warning: /_sandbox/ routes need no auth", err=True)

        def announce(url: str) -> None:
            # click.echo flushes, so a parent process reading a pipe sees it now.
            click.echo(f"syncd sandbox: serving {url}")

        serve(running, host, port, access_log=access_log, on_ready=announce)
    finally:
        running.close()
