"""`syncd run` (the daemon, under systemd) and `syncd status` (what it did, from the state file).

Only click is imported at module level; the daemon, APScheduler and
prometheus-client load when `run` or `status` runs, so `syncd --help` stays fast.
`status` never calls the API and never writes: it opens the state file read-only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from syncd.errors import EXIT_ERROR, EXIT_GUARD, EXIT_OK
from syncd.visible import visible, visible_json

if TYPE_CHECKING:
    from syncd.settings import Settings
    from syncd.state.backend import Database

ACTIONS = ("update_profile", "add_email", "delete_email")
#: Users in error listed by the text view; the JSON view lists all.
USERS_IN_ERROR_SHOWN = 20


@click.command()
@click.option("--config", "config_file", metavar="FILE", help="TOML settings file.")
@click.option("--api-url", help="Base URL of the accounts API [SYNCD_API_URL].")
@click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False),
    help="Directory of <user>.token / <user>.password files [SYNCD_CREDENTIALS_DIR].",
)
@click.option(
    "--state-dir", type=click.Path(file_okay=False), help="State directory [SYNCD_STATE_DIR]."
)
@click.option(
    "-f",
    "--file",
    "desired",
    metavar="PATH|URL",
    help="Desired state: file, directory, or git+https://, git+ssh:// or git+file:// URL "
    "[SYNCD_DESIRED].",
)
@click.option("--interval", type=float, help="Seconds between runs [SYNCD_INTERVAL, 300].")
@click.option(
    "--metrics-addr", metavar="HOST:PORT", help="Serve /metrics, /healthz, /readyz (and hooks)."
)
@click.option(
    "--insecure-http", is_flag=True, default=None, help="Allow plain http:// to a remote host."
)
@click.option(
    "--observe",
    is_flag=True,
    default=None,
    help="Plan and report drift every cycle; write nothing [SYNCD_OBSERVE].",
)
@click.option(
    "--once", is_flag=True, help="One cycle, then exit with apply's codes (0, 1, 3): for cron."
)
def run(config_file: str | None, once: bool, **flags: Any) -> None:
    """Reconcile on a schedule until stopped (a systemd Type=notify service).

    SIGTERM or SIGINT stops (exit 0), SIGHUP re-reads the settings and runs now.
    """
    import asyncio
    import contextlib
    import os

    from syncd.api.credentials import CredentialStore
    from syncd.errors import UsageError
    from syncd.logs import configure_logging
    from syncd.service.daemon import Daemon, log
    from syncd.service.leadership import last_success, lead
    from syncd.service.listener import MetricsServer
    from syncd.service.metrics import Metrics
    from syncd.service.notify import Notifier
    from syncd.service.webhook import Webhook
    from syncd.settings import load_settings
    from syncd.state.backend import open_store

    def settings_now() -> Settings:
        return load_settings(config_file, **flags)  # again on SIGHUP: the file may have changed

    settings = settings_now()
    configure_logging(settings.log_format)
    settings.check_transport()
    # Only `syncd run` on a state that hosts share stands by for the lock; `--once`
    # and SQLite take it now, or are refused naming its holder.
    stands_by = settings.on_postgresql and not once
    with contextlib.ExitStack() as held:
        store = None
        if not stands_by:  # one instance, or none: refused before anything else
            store = held.enter_context(open_store(settings, "run"))
            held.enter_context(store.lock("run"))
        CredentialStore.from_settings(settings)  # unreadable credentials stop us before READY=1
        metrics = Metrics(settings.interval)
        if store is not None:  # the lock is ours: active until the process ends
            metrics.became_active(last_success(store.history))
        webhook = None
        if settings.webhook_secret_file is not None:
            if not settings.metrics_addr:
                raise UsageError(
                    "SYNCD_WEBHOOK_SECRET_FILE needs SYNCD_METRICS_ADDR: hooks arrive there"
                )
            webhook = Webhook.from_file(settings.webhook_secret_file)
        if settings.metrics_addr:
            server = MetricsServer(settings.metrics_addr, metrics, webhook)
            server.start()
            held.callback(server.close)
            log.info("metrics_listening", address=server.address, hooks=webhook is not None)
        notifier = Notifier.from_environment(os.environ)
        daemon = None
        if store is None:  # active, or a standby until the lock is free
            asyncio.run(lead(settings, settings_now, notifier, metrics, webhook=webhook))
        else:
            daemon = Daemon(
                settings, settings_now, notifier, metrics, store, once=once, webhook=webhook
            )
            asyncio.run(daemon.serve())
    if once:
        assert daemon is not None
        sys.exit(once_exit_code(daemon.last.result if daemon.last else "error"))


def once_exit_code(result: str) -> int:
    """`run --once` ends as `apply` would: 0 converged (or, observing, seen), 3 the deletion
    guard refused, 1 anything else."""
    if result in ("ok", "no_changes", "drift"):
        return EXIT_OK
    if result == "blocked":
        return EXIT_GUARD
    return EXIT_ERROR


@click.command()
@click.option("--config", "config_file", metavar="FILE", help="TOML settings file.")
@click.option(
    "--state-dir", type=click.Path(file_okay=False), help="State directory [SYNCD_STATE_DIR]."
)
@click.option("--runs", "limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(config_file: str | None, state_dir: str | None, limit: int, output: str) -> None:
    """Show the daemon's state from the state file: last runs, drift, next run, guard.

    Reads nothing from the API and writes nothing.
    """
    from syncd.settings import load_settings

    settings = load_settings(config_file, state_dir=state_dir)
    report = read_status(settings, limit)
    if output == "json":
        click.echo(visible_json(json.dumps(report, indent=2, ensure_ascii=False)))
    else:
        click.echo(render_status(report), nl=False)


def read_status(settings: Settings, limit: int = 10) -> dict[str, Any]:
    """What `syncd status` shows, as data (also its --output json)."""
    from syncd.errors import StateError, UsageError
    from syncd.state.backend import open_store
    from syncd.state.daemon_state import read_daemon_state

    path = settings.state_file
    if not settings.on_postgresql and not path.exists():
        raise UsageError(f"no state file at {path}: syncd has not run with this state directory")
    with open_store(settings, "status", read_only=True) as store:
        holders = store.holders()
        db = store.history
        if settings.on_postgresql and not db.has_table("runs"):
            raise StateError(f"state database {store.where}: syncd has not run with it")
        daemon = read_daemon_state(db)
        cursor = db.execute(
            "SELECT id, command, started_at, ended_at, result, revision, counts FROM runs"
            " ORDER BY started_at DESC LIMIT ?",
            [limit],
        )
        columns = [description[0] for description in cursor.description]
        runs = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        last_success = db.execute(
            "SELECT ended_at, revision FROM runs WHERE result IN ('ok', 'no_changes')"
            " ORDER BY ended_at DESC LIMIT 1"
        ).fetchone() or (None, None)
        in_error = _users_in_error(db)
    active = next((holder for holder in holders if holder.active), None)
    running = active is not None
    for entry in runs:
        entry["counts"] = json.loads(entry["counts"] or "{}")
        if entry["result"] is None and not running:
            # Nothing holds the lock, so nothing runs: its process died. The next
            # apply or run records it so; until then, say what it is.
            entry["result"] = "interrupted"
    last = runs[0] if runs else None
    counts = last["counts"] if last else {}
    limit_deletions = daemon.get("max_deletions", settings.max_deletions)
    return {
        "state_file": settings.state_location,
        "daemon": {
            "running": running,
            "pid": (active.pid or None) if active else None,
            # Who holds the lock, where hosts share the state (no pid of this host's).
            "active": active.name if active and active.pid is None else None,
            "standbys": [
                {"name": holder.name, "since": holder.since}
                for holder in holders
                if not holder.active
            ],
            "started_at": daemon.get("started_at"),
            "desired": daemon.get("desired"),
            "interval": daemon.get("interval"),
            "observe": bool(daemon.get("observe")),
        },
        "next_run_at": daemon.get("next_run_at") if running else None,
        "consecutive_failures": daemon.get("consecutive_failures", 0),
        "last_success_at": last_success[0],
        "last_good_revision": last_success[1],
        "pending": pending_changes(last["result"], counts) if last else None,
        "guard": {
            "max_deletions": limit_deletions,
            "blocked": bool(last and last["result"] == "blocked"),
            "deletions_planned": counts.get("delete_email", 0),
        },
        "source": daemon.get("source") if running else None,
        "readiness": daemon.get("readiness") if running else None,
        "users_in_error": in_error,
        "runs": runs,
    }


def _users_in_error(db: Database) -> list[dict[str, Any]]:
    """The daemon's failing users (syncd.state.user_failures), in a file that has them."""
    if not db.has_table("user_failures"):
        return []
    cursor = db.execute(
        "SELECT username AS user, code, message, since, failures AS cycles, retry_at"
        " FROM user_failures ORDER BY username"
    )
    columns = [description[0] for description in cursor.description]
    users = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    for user in users:
        retry_at = user.pop("retry_at")
        user["retry_at"] = (
            None if retry_at is None else utc_iso_seconds(datetime.fromtimestamp(retry_at, UTC))
        )
    return users


def utc_iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def pending_changes(result: str | None, counts: Mapping[str, int]) -> dict[str, Any]:
    """The changes of the last run's plan that it did not apply (its counts say both)."""
    by_action = {
        action: max(counts.get(action, 0) - counts.get(f"applied_{action}", 0), 0)
        for action in ACTIONS
    }
    total = sum(by_action.values())
    applied_any = any(counts.get(f"applied_{action}", 0) for action in ACTIONS)
    users = counts.get("users_changed", 0) if total else 0
    return {
        "as_of": result,
        "changes": total,
        "by_action": by_action,
        # After a partial apply the plan's user count is an upper bound.
        "users": users,
        "users_exact": not (total and applied_any),
        "errors": counts.get("errors", 0),
        # Whether the run got as far as a plan (its counts hold the plan's summary):
        # a run that did not knows nothing of what is pending.
        "planned": "users" in counts,
        "users_unreadable": counts.get("users_unreadable", 0),
    }


def render_status(report: Mapping[str, Any]) -> str:
    daemon = report["daemon"]
    lines = [f"state file   {report['state_file']}"]
    if daemon["running"]:
        since = _when(daemon["started_at"])
        if daemon["active"]:  # PostgreSQL: the instance that holds the lock, on any host
            lines.append(f"daemon       active: {visible(daemon['active'])}, since {since}")
        else:
            lines.append(f"daemon       running, pid {daemon['pid'] or 'unknown'}, since {since}")
        lines.append(f"desired      {daemon['desired']} every {daemon['interval']:g} s")
        if daemon["observe"]:
            lines.append("mode         observing: plans and reports drift, writes nothing")
        lines.append(f"next run     {_when(report['next_run_at'])}")
    else:
        lines.append("daemon       not running")
    for standby in daemon["standbys"]:
        lines.append(
            f"standby      {visible(standby['name'])}, waiting since {_when(standby['since'])}"
        )
    if report["consecutive_failures"]:
        lines.append(f"failures     {report['consecutive_failures']} in a row (backing off)")
    lines.append(f"last success {_when(report['last_success_at'])}")
    if report["last_good_revision"]:
        lines.append(f"revision     {report['last_good_revision']} (last applied)")
    if (source := report["source"]) is not None:
        when = _when(source["last_success_at"])
        if source["current"]:
            lines.append(f"source       current (read {when})")
        else:
            error = visible(source["error"] or "")
            lines.append(f"source       NOT CURRENT, last read {when}: {error}")
    if (readiness := report["readiness"]) is not None:
        word = "ready" if readiness["ready"] else "NOT READY"
        lines.append(f"readiness    {word}: {visible(readiness['reason'])}")
    lines.append(f"guard        {_guard(report['guard'])}")
    lines.append(f"pending      {_pending(report['pending'])}")
    in_error = report["users_in_error"]
    lines.append(f"in error     {len(in_error)} users" if in_error else "in error     none")
    for user in in_error[:USERS_IN_ERROR_SHOWN]:
        retry = f"; read again {_when(user['retry_at'])}" if user["retry_at"] else ""
        lines.append(
            f"  {user['user']:<30} {user['code']:<18} since {_when(user['since'])}"
            f" ({user['cycles']} cycles{retry}): {visible(user['message'])}"
        )
    if len(in_error) > USERS_IN_ERROR_SHOWN:
        lines.append(
            f"  and {len(in_error) - USERS_IN_ERROR_SHOWN} more (--output json lists all)"
        )
    lines.append("last runs")
    for entry in report["runs"]:
        revision = (entry["revision"] or "-")[:12]
        applied = sum(entry["counts"].get(f"applied_{action}", 0) for action in ACTIONS)
        lines.append(
            f"  {_when(entry['started_at']):<20} {entry['command']:<6} "
            f"{entry['result'] or 'running':<11} {revision:<12}  {applied} applied"
        )
    if not report["runs"]:
        lines.append("  none")
    return "\n".join(lines) + "\n"


def _guard(guard: Mapping[str, Any]) -> str:
    limit = guard["max_deletions"]
    if guard["blocked"]:
        planned = guard["deletions_planned"]
        return f"BLOCKED the last run: {planned} deletions planned, the limit is {limit}"
    return f"clear (at most {limit} deletions per run)"


def _pending(pending: Mapping[str, Any] | None) -> str:
    if pending is None:
        return "unknown: no run yet"
    if not pending["planned"]:
        return f"unknown: the last run ({pending['as_of']}) did not get as far as a plan"
    unreadable = pending["users_unreadable"]
    unknown = f"; not known for {unreadable} users that could not be read" if unreadable else ""
    if not pending["changes"]:
        return f"none as of the last run ({pending['as_of']}){unknown}"
    detail = ", ".join(f"{action} {n}" for action, n in pending["by_action"].items() if n)
    users = pending["users"] if pending["users_exact"] else f"up to {pending['users']}"
    return f"{pending['changes']} changes for {users} users ({detail}) after the last run{unknown}"


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
