"""The measurements of syncd itself: cold and warm plans, apply, start-up.

Each runs the real `syncd` command in a child process against a sandbox in
another child process, and compares its request rate with a plain httpx loop
against the same sandbox in the same run (the issues' ratio targets). Peak
memory is the child's own maximum RSS, read with os.wait4.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from syncd.sandbox.seed import generate, generated_token

#: The concurrency of the loopback figures, for syncd and the plain loops alike: syncd's
#: default before issue 16 (32 since), kept so that they compare with the earlier runs.
CONCURRENCY = 16


@dataclass(frozen=True)
class Figure:
    """One measurement: its name, value and unit, and the details shown beside it."""

    name: str
    value: float
    unit: str
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.name}: {self.value:,.0f} {self.unit}"


@contextmanager
def sandbox_process(users: int, admin_token: str, *extra: str) -> Iterator[tuple[str, int]]:
    """`syncd sandbox --port 0` in a child process; yields the URL it prints and its pid."""
    command = [
        sys.executable,
        "-m",
        "syncd",
        "sandbox",
        "--port",
        "0",
        "--generate",
        str(users),
        "--admin-token",
        admin_token,
        *extra,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        prefix = "syncd sandbox: serving "
        if not line.startswith(prefix):
            raise SystemExit(f"bench: the sandbox did not start (it printed {line!r})")
        yield line.removeprefix(prefix).strip(), process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class Child:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    #: User and system CPU of the child.
    cpu_seconds: float = 0.0


def run_syncd(args: list[str], env: dict[str, str] | None = None) -> Child:
    """One syncd command line in a child process: its time, peak memory and output."""
    command = [sys.executable, "-m", "syncd", *args]
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode()
    cpu = usage.ru_utime + usage.ru_stime
    return Child(seconds, usage.ru_maxrss / 1024, process.returncode, stdout, cpu)


@dataclass(frozen=True)
class Measured:
    """A syncd command and what the sandbox saw of it."""

    child: Child
    #: The requests it made, by method.
    made: dict[str, int]
    #: From its first request's arrival at the sandbox to the last answer: the time its
    #: requests took, without Python's start, the imports, reading and planning.
    requests_seconds: float


def measured_syncd(url: str, args: list[str], env: dict[str, str] | None = None) -> Measured:
    """`run_syncd` against the sandbox at `url`, which times its requests (since a mark)."""
    httpx.post(f"{url}/_sandbox/mark", timeout=30).raise_for_status()
    before = stats(url)
    child = run_syncd(args, env)
    after = stats(url)
    return Measured(child, requests_made(before, after), after["since_mark"]["seconds"])


def ratios(rates: Sequence[float], plain: Sequence[float]) -> list[float]:
    """Each of syncd's rates over the mean of the plain loop's runs just before and just
    after it: the runs alternate, the plain loop's first and last (one more of them)."""
    if len(plain) != len(rates) + 1:
        raise ValueError(f"{len(rates)} runs of syncd need {len(rates) + 1} of the plain loop")
    return [round(rate / statistics.mean(plain[i : i + 2]), 2) for i, rate in enumerate(rates)]


def desired_file(path: Path, users: int, change: bool) -> None:
    """A desired state for the generated users: every user manages its name and emails.

    With `change`, each user's full name differs from the sandbox: one PATCH each.
    """
    lines = ["version: 1", "users:"]
    for i in range(1, users + 1):
        name = f"user{i:06d}"
        full_name = f"User {i}" + (" (renamed)" if change else "")
        lines += [
            f"  {name}:",
            f'    full_name: "{full_name}"',
            f"    emails: [{name}@example.com]",
        ]
    path.write_text("\n".join(lines) + "\n")


def team_desired(directory: Path, users: int) -> None:
    """The same users as `desired_file` (no change), written as a team would: `defaults`
    and 50 groups in groups.yaml, each user in two groups in users.yaml.

    48 site groups set the location and company that the sandbox generated for
    their users (seed.py's lists, of 6 and 4 values, repeat every 12 users), so
    the plan is as empty as the plain one; two more set the email mode only.
    """
    from syncd.sandbox.seed import _COMPANIES, _LOCATIONS

    directory.mkdir(parents=True, exist_ok=True)
    lines = ["version: 1", "defaults:", "  emails_mode: exact", "groups:"]
    for n in range(48):
        location, company = _LOCATIONS[n % len(_LOCATIONS)], _COMPANIES[n % len(_COMPANIES)]
        lines.append(f'  site{n:02d}: {{location: "{location}", company: "{company}"}}')
    lines += ["  even: {emails_mode: exact}", "  odd: {emails_mode: exact}"]
    (directory / "groups.yaml").write_text("\n".join(lines) + "\n")
    lines = ["version: 1", "users:"]
    for i in range(1, users + 1):
        name = f"user{i:06d}"
        lines += [
            f"  {name}:",
            f"    groups: [site{i % 48:02d}, {'odd' if i % 2 else 'even'}]",
            f'    full_name: "User {i}"',
            f"    emails: [{name}@example.com]",
        ]
    (directory / "users.yaml").write_text("\n".join(lines) + "\n")


@contextlib.asynccontextmanager
async def worker_clients(
    url: str, workers: int, *, one_connection_each: bool, timeout: float
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """A client for each of `workers` workers: one shared pool of `workers`
    connections, as most httpx code does, or a one-connection client each, as
    syncd's lanes are. They share one TLS context (one CA bundle load)."""
    tls = httpx.create_ssl_context()

    def client(connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout, verify=tls)

    if one_connection_each:
        clients = [client(1) for _ in range(workers)]
    else:
        clients = [client(workers)] * workers
    try:
        yield clients
    finally:
        for each in dict.fromkeys(clients):  # the shared one once
            await each.aclose()


async def plain_loop(
    url: str,
    users: int,
    count: int,
    write: bool,
    one_connection_each: bool = False,
    workers: int | None = None,
) -> float:
    """Requests per second of a plain httpx loop: GET user/emails, or a no-op PATCH.

    The plain loop shares one client among its workers, as most httpx code does
    (the peer a user would write). With `one_connection_each`, each worker has
    a one-connection client of its own, as syncd's lanes are. `workers`
    defaults to the bench's concurrency.
    """
    next_index = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            name = f"user{index // 2 % users + 1:06d}"
            headers = {"Authorization": f"Bearer {generated_token(name)}"}
            if write:
                # company is not in the desired state: the loop leaves the plan alone.
                response = await client.patch(
                    f"/api/v1.1/users/{name}/", json={"company": "Bench Inc."}, headers=headers
                )
            else:
                path = f"/api/v1.1/users/{name}/" + ("emails/" if index % 2 else "")
                response = await client.get(path, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"bench: plain loop got HTTP {response.status_code}")

    async with worker_clients(
        url, workers or CONCURRENCY, one_connection_each=one_connection_each, timeout=60
    ) as clients:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        return count / (time.perf_counter() - started)


def stats(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/_sandbox/stats", timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def requests_made(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    methods = set(before["by_method"]) | set(after["by_method"])
    return {m: after["by_method"].get(m, 0) - before["by_method"].get(m, 0) for m in methods}


def fill_cache(state_dir: Path, users: int, api_url: str) -> None:
    """A fresh live-state cache of `api_url` for the generated users, without a cold plan
    of hours."""
    from syncd.core.api_url import normal_api_url
    from syncd.core.fields import gravatar_url
    from syncd.core.live import LiveAccount, LiveEmail, LiveProfile
    from syncd.state.cache import LiveCache, Snapshot
    from syncd.state.statefile import open_cache

    db = open_cache(state_dir / "cache.db")
    now = time.time()
    snapshots = (
        Snapshot(
            LiveAccount(
                a.username,
                LiveProfile(
                    a.full_name,
                    a.location,
                    a.company,
                    a.profile_url,
                    gravatar_url(a.gravatar_email) if a.gravatar_email else "",
                    a.emails[0].address,
                ),
                tuple(LiveEmail(e.address, e.verified, e.primary) for e in a.emails),
            ),
            now,
        )
        for a in generate(users).accounts
    )
    LiveCache(db, normal_api_url(api_url)).save(snapshots)
    db.close()


def writes_seconds(state: Path) -> float:
    """From the first intent to the last outcome of the last run in `state`'s audit
    trail: the apply's writes without its start and its plan."""
    with contextlib.closing(sqlite3.connect(state / "syncd.db")) as db:
        first, last = db.execute(
            "SELECT MIN(timestamp), MAX(timestamp) FROM audit"
            " WHERE event IN ('intent', 'outcome') AND run_id ="
            " (SELECT run_id FROM audit WHERE event = 'intent' ORDER BY seq DESC LIMIT 1)"
        ).fetchone()
    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


def plan_args(
    url: str, desired: Path, state: Path, credentials: Path | None, output: bool = True
) -> list[str]:
    args = ["--api-url", url, "-f", str(desired), "--state-dir", str(state)]
    args += ["--concurrency", str(CONCURRENCY)]
    if output:
        args += ["--output", "json"]
    if credentials is not None:
        args += ["--credentials-dir", str(credentials)]
    return args


def summary_of(child: Child) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(child.stdout)
    except ValueError:
        return {}
    summary: dict[str, Any] = document.get("summary", {})
    return summary


@dataclass(frozen=True)
class Cycles:
    seconds: list[float]  # each cycle's own duration, as the daemon logs it
    rss_mb: list[float]  # the daemon's resident memory after each cycle
    gets: list[int]  # the GETs the sandbox answered between one cycle's end and the next's


def daemon_cycles(
    url: str,
    desired: Path,
    state: Path,
    credentials: Path,
    cycles: int,
    *,
    interval: float,
    window: float,
    deadline: float = 900,
    settings: dict[str, str] | None = None,
) -> Cycles:
    """`syncd run` on its own schedule for `cycles` cycles after the first (`settings`: more).

    Each cycle is over when the daemon logs `cycle_finished`; the sandbox's GET
    count then tells what the cycle read. The daemon is killed if the whole
    measurement takes longer than `deadline` seconds.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "NOTIFY_"))}
    env.update(
        SYNCD_API_URL=url,
        SYNCD_DESIRED=str(desired),
        SYNCD_STATE_DIR=str(state),
        SYNCD_CREDENTIALS_DIR=str(credentials),
        SYNCD_CONCURRENCY=str(CONCURRENCY),
        SYNCD_INTERVAL=str(interval),
        SYNCD_DRIFT_WINDOW=str(window),
        SYNCD_RUN_DEADLINE="600",
        SYNCD_LOG_FORMAT="json",
        **(settings or {}),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "run"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(deadline, process.kill)
    watchdog.start()
    seconds: list[float] = []
    rss_mb: list[float] = []
    gets: list[int] = []
    last = stats(url)["by_method"].get("GET", 0)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if '"cycle_finished"' not in line:
                continue
            event = json.loads(line)
            if event.get("result") not in ("ok", "no_changes"):
                raise SystemExit(f"bench: a daemon cycle ended {event.get('result')}: {line}")
            now = stats(url)["by_method"].get("GET", 0)
            seconds.append(float(event["seconds"]))
            rss_mb.append(resident_mb(process.pid))
            gets.append(now - last)
            last = now
            if len(seconds) == cycles + 1:
                break
        else:
            raise SystemExit(f"bench: the daemon stopped after {len(seconds)} cycles")
    finally:
        watchdog.cancel()
        process.terminate()
        process.communicate(timeout=60)
    return Cycles(seconds[1:], rss_mb[1:], gets[1:])


def resident_mb(pid: int) -> float:
    """A running process's resident memory now (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"bench: no VmRSS for process {pid}")
