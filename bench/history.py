"""Years of history (issue 26): what a long history costs, beside an empty one.

A history of EVENTS audit events and RUNS runs is made through syncd's own
tables and code (syncd.state.audit's rows, each event hash-chained by
syncd.state.chain as syncd writes it), dated over the past year, written in
batches; then its chain is checked by `syncd audit verify`'s code. Then, on that
state and on an empty one, each in the same run against the same sandbox:

- an apply of one change for each of `users` users (writes/s);
- idle daemon cycles (median ms), while a thread asks /healthz all along;
- the state work of a takeover (the dead run closed, its open intents found
  and closed, the last good run), in this process;
- `syncd status` and `syncd audit --user U --since 1d` (ms).

Target: each within 1.2 × the empty history's figure, /healthz 200 throughout.
And `syncd state migrate` of the history to PostgreSQL (peak RSS < 200 MB),
and the apply with intents flushed (synchronous=FULL, as syncd runs) beside
the same without (synchronous=NORMAL, syncd before issue 26), on loopback
and where users feel it: against a sandbox that answers in 30±10 ms, beside
a plain httpx loop of PATCHes at the same concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import limits, runs

Measured = tuple[str, float, str, dict[str, Any]]
SandboxProcess = Callable[..., AbstractContextManager[tuple[str, int]]]

EVENTS = 2_000_000
RUNS = 100_000
CYCLES = 4
#: Changes applied at real latency: enough that the writes, not the start, dominate.
REAL_USERS = 3000
#: Events written per executemany and commit: memory and the WAL bounded.
HISTORY_BATCH = 100_000
#: The history's events whose hashes the bench checks after making it.
VERIFIED = 200_000
#: The child that applies as syncd did before issue 26: WAL with synchronous=NORMAL.
UNFLUSHED = (
    "import sys, syncd.state.sqlite_backend as b, syncd.state.statefile as f\n"
    "def normal(path):\n"
    "    db = f.open_state(path)\n"
    "    db.execute('PRAGMA synchronous=NORMAL')\n"
    "    return db\n"
    "b.open_state = normal\n"
    "from syncd.cli.main import cli\n"
    "cli(sys.argv[1:], prog_name='syncd')\n"
)


def make_history(state: Path, events: int, run_count: int) -> None:
    """`run_count` runs over the past year, holding `events` events (an intent and its
    outcome per write), each row made by syncd.state.audit and chained by
    syncd.state.chain as syncd makes them, written many rows at a time.

    Not through AuditTrail.intent and outcome: a transaction, an open intent and a head
    update per event are too slow for the history's size. The rows are theirs, written
    in batches (executemany); each commit leaves the head at its last event and no
    intent open, a state syncd itself could have left.
    """
    from syncd.core.plan import UpdateProfile
    from syncd.core.vocabulary import RunResult, WriteResult
    from syncd.state.audit import AuditTrail, actor, change_target, describe_change
    from syncd.state.chain import HASHED, Head, link, read_head
    from syncd.state.sqlite_backend import SqliteStore

    start = datetime.now(UTC) - timedelta(days=366)
    step = timedelta(days=365) / max(run_count, 1)
    writes_per_run, extra = divmod(events // 2, max(run_count, 1))
    result = RunResult.OK if writes_per_run else RunResult.NO_CHANGES
    columns = (*HASHED, "prev_hash", "hash")  # as SELECTED names them
    who = actor()
    with SqliteStore(state) as store:
        db = store.history
        db.begin()
        head = written = read_head(db)
        runs_made: list[dict[str, Any]] = []
        events_made: list[list[Any]] = []
        for n in range(run_count):
            moment = start + n * step
            audit = AuditTrail(db, {"revision": "bench"}, clock=functools.partial(_same, moment))
            run = audit.run_row("run", who)
            for w in range(writes_per_run + (n < extra)):
                action = _change(UpdateProfile, f"user{(n + w) % 1000 + 1:06d}", n)
                intent = link(audit.intent_row(action, describe_change(action)), head)
                outcome = audit.outcome_row(
                    intent["seq"],
                    action.user,
                    action.action,
                    change_target(action),
                    WriteResult.OK,
                    200,
                    None,
                )
                outcome = link(outcome, Head(intent["seq"], intent["hash"]))
                head = Head(outcome["seq"], outcome["hash"])
                events_made.append([intent.get(column) for column in columns])
                events_made.append([outcome.get(column) for column in columns])
            runs_made.append({**run, **audit.end_row(result, {})})
            if len(events_made) >= HISTORY_BATCH or n == run_count - 1:
                _write(db, runs_made, events_made, written, head)
                db.commit_and_begin()
                written, runs_made, events_made = head, [], []
        db.commit()


def _write(
    db: Any, runs_made: list[dict[str, Any]], events_made: list[list[Any]], after: Any, head: Any
) -> None:
    """Insert runs and events (columns in SELECTED's order) many at a time, and move the
    audit head from `after` to `head`, their last event, as each append does."""
    from syncd.state.chain import SELECTED

    if runs_made:
        names = list(runs_made[0])
        db.execute_many(
            f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [list(run.values()) for run in runs_made],
        )
    if events_made:
        marks = ", ".join("?" for _ in events_made[0])
        db.execute_many(f"INSERT INTO audit ({SELECTED}) VALUES ({marks})", events_made)
    moved = db.execute(
        "UPDATE audit_head SET seq = ?, hash = ? WHERE seq = ? AND COALESCE(hash, '') = ?",
        [head.seq, head.hash, after.seq, after.hash or ""],
    ).rowcount
    if moved != 1:
        raise SystemExit("bench: the audit head moved while the history was made")


def check_history(state: Path, events: int) -> None:
    """Stop the bench unless the history made is one syncd accepts: its chain checked by
    `syncd audit verify`'s code, its head at its last event, no intent left open.

    The whole chain up to VERIFIED events; beyond, its first VERIFIED events (they span
    batches and their commits) and the head: at the full size, checking every hash costs
    about as much as making the history, at every bench.
    """
    from syncd.errors import StateError
    from syncd.state.audit_queries import open_intents
    from syncd.state.chain import events as chained
    from syncd.state.chain import read_head, verify, verify_events
    from syncd.state.sqlite_backend import SqliteStore

    with SqliteStore(state) as store:
        db = store.history
        try:
            if events <= VERIFIED:
                checked = verify(db).checked
            else:
                checked = verify_events(
                    itertools.islice(chained(db), VERIFIED), starts=frozenset({None})
                ).checked
                head = read_head(db)
                last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                if (head.seq, head.hash) != tuple(last.fetchone()):
                    raise StateError(f"its head is event {head.seq}, not its last event")
        except StateError as error:
            message = f"bench: the history made is not a valid audit chain: {error}"
            raise SystemExit(message) from None
        if checked != min(events, VERIFIED) or read_head(db).seq != events:
            raise SystemExit(f"bench: the history made does not hold {events} events")
        if open_intents(db):
            raise SystemExit("bench: the history made left intents open")


def _same(moment: datetime) -> datetime:
    return moment


def _change(kind: Any, user: str, n: int) -> Any:
    from syncd.core.plan import FieldChange

    return kind(user, (FieldChange("full_name", f"Old {n}", f"New {n}"),))


@contextlib.contextmanager
def healthz_watch(address: str) -> Iterator[dict[str, int]]:
    """Ask /healthz every 0.2 s while the block runs; count the answers by status, from
    the first to the last (before, the daemon is starting; after, it was stopped)."""
    seen: dict[str, int] = {}
    answers: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.wait(0.2):
                try:
                    status = str(client.get(f"http://{address}/healthz").status_code)
                except httpx.HTTPError:
                    status = "unanswered"
                answers.append(status)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
        answered = [n for n, status in enumerate(answers) if status != "unanswered"]
        if answered:
            for status in answers[answered[0] : answered[-1] + 1]:
                seen[status] = seen.get(status, 0) + 1


def _takeover_ms(state: Path) -> float:
    """The state work of a takeover after a crash: a dead run and an open intent."""
    from syncd.core.plan import UpdateProfile
    from syncd.state.audit import AuditTrail
    from syncd.state.audit_queries import last_successful_run, open_intents
    from syncd.state.sqlite_backend import SqliteStore

    with SqliteStore(state) as store:
        dead = AuditTrail(store.history, {})
        dead.begin_run("run")
        dead.intent(_change(UpdateProfile, "user000001", 0))
        started = time.perf_counter()
        audit = AuditTrail(store.history, {})
        audit.close_dead_runs()
        open_intents(store.history)
        audit.close_interrupted()
        last_successful_run(store.history)
        return (time.perf_counter() - started) * 1000


def _side(url: str, root: Path, users: int, name: str, credentials: Path) -> dict[str, Any]:
    state = root / name
    history = name == "history"
    made = 0.0
    if history:
        started = time.perf_counter()
        make_history(state, EVENTS, RUNS)
        made = time.perf_counter() - started
        check_history(state, EVENTS)
    desired = root / f"desired-{state.name}.yaml"
    runs.desired_file(desired, users, change=True)
    # Each side renames the users its own way, so that each apply has one change per user.
    desired.write_text(desired.read_text().replace("(renamed)", f"({state.name})"))
    args = runs.plan_args(url, desired, state, credentials, output=False)
    runs.run_syncd(["plan", *runs.plan_args(url, desired, state, credentials)])  # the cache
    applied = runs.run_syncd(["apply", *args, "--yes"])
    if applied.returncode != 0:
        raise SystemExit(f"bench: apply on the {state.name} history failed")
    port = 20000 + os.getpid() % 20000 + history
    with healthz_watch(f"127.0.0.1:{port}") as answers:
        cycles = runs.daemon_cycles(
            url,
            desired,
            state,
            credentials,
            CYCLES,
            interval=1.5,
            window=3.2e7,
            settings={"SYNCD_METRICS_ADDR": f"127.0.0.1:{port}"},
        )
    status = runs.run_syncd(["status", "--state-dir", str(state)])
    audit = runs.run_syncd(
        ["audit", "--state-dir", str(state), "--user", "user000001", "--since", "1d"]
    )
    return {
        "apply_writes_s": round(users / applied.seconds, 1),
        "idle_cycle_ms": round(statistics.median(cycles.seconds) * 1000, 1),
        "takeover_ms": round(_takeover_ms(state), 1),
        "status_ms": round(status.seconds * 1000, 1),
        "audit_user_since_ms": round(audit.seconds * 1000, 1),
        "healthz": answers,
        "made_s": round(made, 1),
    }


def _migrate_peak_mb(state: Path) -> dict[str, Any]:
    from tests.postgres import running_cluster

    with running_cluster() as cluster:
        database = cluster.new_database()
        env = {"SYNCD_STATE_PASSWORD_FILE": str(database.password_file)}
        moved = runs.run_syncd(
            ["state", "migrate", "--state-dir", str(state), "--to", database.url], env=env
        )
    if moved.returncode != 0:
        raise SystemExit("bench: state migrate failed")
    return {"peak_rss_mb": round(moved.peak_rss_mb), "seconds": round(moved.seconds, 1)}


def _apply_rate(url: str, root: Path, users: int, name: str, credentials: Path) -> float:
    """The writes/s of an apply on a state of its own: `unflushed` as syncd ran before
    issue 26 (no fsync per group commit), else as syncd runs."""
    import subprocess
    import sys

    state, desired = root / name, root / f"desired-{name}.yaml"
    runs.desired_file(desired, users, change=True)
    desired.write_text(desired.read_text().replace("(renamed)", f"({name})"))
    runs.run_syncd(["plan", *runs.plan_args(url, desired, state, credentials)])
    args = runs.plan_args(url, desired, state, credentials, output=False)
    command = ["-c", UNFLUSHED] if name.startswith("unflushed") else ["-m", "syncd"]
    subprocess.run(
        [sys.executable, *command, "apply", *args, "--yes"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Over the writes alone, as the plain loop's and the limit's rates are: the
    # command's start and its plan from the cache cost the same either way.
    return users / runs.writes_seconds(state)


def figures(sandbox: SandboxProcess, users: int) -> list[Measured]:
    """Every figure of the module's docstring, for an apply of `users` changes."""
    import logging

    import structlog

    # The takeover's AuditTrail calls in this process are not news, and on both
    # sides alike: logging on one side only would be its cost, not the history's.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        credentials = root / "credentials"
        admin = "bench-" + os.urandom(8).hex()
        with sandbox(users, admin, "--credentials-out", str(credentials)) as (url, _):
            # The empty history before and after, to see past the machine's drift.
            before = _side(url, root, users, "empty", credentials)
            full = _side(url, root, users, "history", credentials)
            after = _side(url, root, users, "empty-again", credentials)
            empty = {
                key: round((value + after[key]) / 2, 1) if isinstance(value, float) else value
                for key, value in before.items()
            }
            flushed = [_apply_rate(url, root, users, "flushed", credentials)]
            unflushed = _apply_rate(url, root, users, "unflushed", credentials)
            flushed.append(_apply_rate(url, root, users, "flushed-again", credentials))
        migrated = _migrate_peak_mb(root / "history")
    history = f"{EVENTS:,} events, {RUNS:,} runs"
    measured: list[Measured] = []
    for key, name, higher_is_better in (
        ("apply_writes_s", f"apply, {users:,} changes (writes/s)", True),
        ("idle_cycle_ms", "daemon idle cycle (ms)", False),
        ("takeover_ms", "takeover's state work (ms)", False),
        ("status_ms", "syncd status (ms)", False),
        ("audit_user_since_ms", "syncd audit --user U --since 1d (ms)", False),
    ):
        ratio = empty[key] / full[key] if higher_is_better else full[key] / empty[key]
        measured.append(
            (
                f"{name}, history of {history} against none",
                round(ratio, 2),
                "x the empty history's cost",
                {
                    "with_history": full[key],
                    "empty": empty[key],
                    "healthz_with_history": full["healthz"],
                    "healthz_empty": empty["healthz"],
                    "target": "<= 1.2 x, /healthz 200 throughout",
                },
            )
        )
    measured.append(
        (
            f"state migrate, history of {history}",
            migrated["peak_rss_mb"],
            "MB peak RSS",
            {**migrated, "history_made_s": full["made_s"], "target": "< 200 MB"},
        )
    )
    ratio = statistics.mean(flushed) / unflushed
    measured.append(
        (
            f"apply, {users:,} changes, intents flushed against not",
            round(ratio, 2),
            "x the writes/s without fsync",
            {
                "flushed_writes_s": round(statistics.mean(flushed), 1),
                "unflushed_writes_s": round(unflushed, 1),
                "target": ">= 0.8",
            },
        )
    )
    measured += [
        _real_latency_apply(sandbox, REAL_USERS, None),
        _real_latency_apply(sandbox, REAL_USERS, limits.LIMIT),
    ]
    return measured


def _real_latency_apply(sandbox: SandboxProcess, users: int, limit: int | None) -> Measured:
    """The apply, flushed and not, where the API answers in 30±10 ms (and limits
    the rate to `limit` a second): where users feel its speed."""
    flags = ["--latency-ms", f"{limits.LATENCY_MS:g}±{limits.JITTER_MS:g}"]
    if limit is not None:
        flags += ["--global-rate-limit", str(limit)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        credentials = root / "credentials"
        admin = "bench-" + os.urandom(8).hex()
        with sandbox(users, admin, *flags, "--credentials-out", str(credentials)) as (url, _):
            flushed = [_apply_rate(url, root, users, "flushed", credentials)]
            unflushed = _apply_rate(url, root, users, "unflushed", credentials)
            flushed.append(_apply_rate(url, root, users, "flushed-again", credentials))
            # A plain loop would meet 429s at the limit: there the peer is the limit itself.
            peer = float(limit) if limit else asyncio.run(runs.plain_loop(url, users, users, True))
    rate = statistics.mean(flushed)
    where = f"limit {limit}/s" if limit else "no limit"
    return (
        f"apply, {users:,} changes at 30±10 ms, {where}, intents flushed against not",
        round(rate / unflushed, 2),
        "x the writes/s without fsync",
        {
            "flushed_writes_s": round(rate, 1),
            "unflushed_writes_s": round(unflushed, 1),
            ("of_limit" if limit else "of_plain_loop"): round(rate / peer, 2),
            "plain_loop_writes_s": None if limit else round(peer, 1),
            "target": ">= 0.8",
        },
    )
