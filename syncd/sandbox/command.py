"""`syncd sandbox`: serve a local copy of the accounts API (options → SandboxConfig → server).

Imports nothing but click at module level: the server, Starlette and uvicorn are
loaded only when the command runs, so that `syncd --help` stays fast, and so
that a `pip install syncd` without the extra `syncd[sandbox]` can say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    "--latency-ms",
    "latency",
    default="0",
    metavar="MS[±JITTER]",
    help="Delay every API request: a mean, and evenly within ± a jitter (30±10, or 30+-10).",
)
@click.option(
    "--latency-jitter-ms",
    default=None,
    type=click.FloatRange(0),
    help="The jitter of --latency-ms, if it does not say one.",
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
    "--global-rate-limit",
    default="0",
    metavar="R[/s]",
    help="Requests per second for all credentials together; 429 above it, and RateLimit "
    "headers on every answer (0: none).",
)
@click.option(
    "--rate-limit-headers",
    default="ietf",
    show_default=True,
    type=click.Choice(["ietf", "x", "structured", "none"]),
    help="How answers tell the global limit: RateLimit-Limit/-Remaining/-Reset, "
    "X-RateLimit-*, the later draft's RateLimit and RateLimit-Policy, or not at all.",
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
    latency: str,
    latency_jitter_ms: float | None,
    global_rate_limit: str,
    normalize_rules: tuple[str, ...],
    access_log: bool,
    # The other options, each named as the FaultConfig field it sets.
    **faults: Any,
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
    latency_ms, jitter_ms = _latency(latency, latency_jitter_ms)
    try:
        config = FaultConfig(
            latency_ms=latency_ms,
            latency_jitter_ms=jitter_ms,
            global_rate_limit=_rate(global_rate_limit),
            **faults,
        )
    except ValueError as error:
        # Only the jitter can be wrong here (above the mean): the rest passed its click type.
        raise click.BadParameter(str(error), param_hint="--latency-ms") from None
    try:
        rules = normalize.check_rules(dict(rule.partition("=")[::2] for rule in normalize_rules))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--normalize") from None
    running = Sandbox(SandboxConfig(snapshot, admin_token, config, db, normalize=rules))
    try:
        if running.loaded_from_db:
            click.echo(f"syncd sandbox: state loaded from {db}; seed not used", err=True)
        if credentials_out is not None:
            written = seed.write_credentials(running.initial.snapshot, credentials_out)
            files = "credential" if written == 1 else "credentials"
            click.echo(f"syncd sandbox: {written} {files} written to {credentials_out}", err=True)
        if host not in ("127.0.0.1", "::1", "localhost"):
            click.echo("syncd sandbox: warning: /_sandbox/ routes need no auth", err=True)

        def announce(url: str) -> None:
            # click.echo flushes, so a parent process reading a pipe sees it now.
            click.echo(f"syncd sandbox: serving {url}")

        serve(running, host, port, access_log=access_log, on_ready=announce)
    finally:
        running.close()


def _latency(text: str, jitter: float | None) -> tuple[float, float]:
    """`--latency-ms 30±10` (or `30+-10`, or `30` and `--latency-jitter-ms 10`) → (30, 10)."""
    mean, sign, spread = text.replace("+-", "±").partition("±")
    try:
        values = [float(mean), float(spread) if sign else 0.0]
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected milliseconds, as 30 or 30±10", param_hint="--latency-ms"
        ) from None
    if not all(0 <= value < float("inf") for value in values):
        raise click.BadParameter(f"{text!r}: must be >= 0", param_hint="--latency-ms")
    if sign and jitter is not None:
        raise click.BadParameter(
            "a jitter in --latency-ms and --latency-jitter-ms: give one", param_hint="--latency-ms"
        )
    return values[0], values[1] if sign else (jitter or 0.0)


def _rate(text: str) -> float:
    """`--global-rate-limit 300` or `300/s` → 300.0."""
    try:
        rate = float(text.strip().removesuffix("/s"))
    except ValueError:
        rate = -1.0
    if not 0 <= rate < float("inf"):
        raise click.BadParameter(
            f"{text!r}: expected requests per second, as 300 or 300/s",
            param_hint="--global-rate-limit",
        )
    return rate
