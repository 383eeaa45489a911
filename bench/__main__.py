"""`python -m bench`: measure, print a table, write bench/results/latest.json.

Each measurement is a function that takes the running `Bench` (the sandbox's
URL and its users) and returns `Figure`s; add one to MEASUREMENTS to extend
the run. The sandbox is started as a separate process, as `syncd sandbox`
would be, so that the client's CPU is not counted against the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from syncd.sandbox.seed import generated_token

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.name}: {self.value:,.0f} {self.unit}"


@dataclass(frozen=True)
class Bench:
    url: str
    server_pid: int
    users: int
    admin_token: str
    requests: int
    concurrency: int


@contextmanager
def sandbox_process(users: int, admin_token: str) -> Iterator[tuple[str, int]]:
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


async def _get_users(bench: Bench, count: int) -> list[float]:
    """`count` GET user calls at `bench.concurrency`, spread over the users; each latency."""
    limits = httpx.Limits(
        max_connections=bench.concurrency, max_keepalive_connections=bench.concurrency
    )
    latencies: list[float] = []
    next_index = 0

    async with httpx.AsyncClient(base_url=bench.url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                index = next_index
                next_index += 1
                username = f"user{index % bench.users + 1:06d}"
                headers = {"Authorization": f"Bearer {generated_token(username)}"}
                started = time.perf_counter()
                response = await client.get(f"/api/v1.1/users/{username}/", headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"bench: GET {username} answered {response.status_code}")

        await asyncio.gather(*(worker() for _ in range(bench.concurrency)))
    return latencies


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    user, system = stat.rpartition(")")[2].split()[11:13]
    return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")


def get_user_throughput(bench: Bench) -> list[Figure]:
    """GET user throughput at the configured concurrency, after a warm-up.

    The CPU time of both processes is recorded too: on a small machine the
    client (httpx's async pool) can cost more than the server, and the server's
    CPU per request is the figure that does not depend on the client.
    """
    asyncio.run(_get_users(bench, min(500, bench.requests)))  # connections, caches
    server_before = cpu_seconds(bench.server_pid)
    client_before = time.process_time()
    started = time.perf_counter()
    latencies = asyncio.run(_get_users(bench, bench.requests))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    server_after = cpu_seconds(bench.server_pid)
    cuts = statistics.quantiles(latencies, n=100)
    details: dict[str, Any] = {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "latency_ms_p50": round(cuts[49] * 1000, 2),
        "latency_ms_p99": round(cuts[98] * 1000, 2),
        "users": bench.users,
        "client_cpu_seconds": round(client_cpu, 2),
    }
    figures = [
        Figure(
            f"sandbox GET user, concurrency {bench.concurrency}",
            len(latencies) / elapsed,
            "req/s",
            details,
        )
    ]
    if server_before is not None and server_after is not None:
        server_cpu = server_after - server_before
        details["server_cpu_seconds"] = round(server_cpu, 2)
        figures.append(
            Figure(
                "sandbox server CPU per GET user",
                server_cpu / len(latencies) * 1e6,
                "µs",
                {"requests_per_cpu_second": round(len(latencies) / max(server_cpu, 1e-9))},
            )
        )
    return figures


MEASUREMENTS: list[Callable[[Bench], list[Figure]]] = [get_user_throughput]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--users", type=int, default=2000, help="generated users")
    parser.add_argument("--requests", type=int, default=10_000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    admin_token = secrets.token_hex(16)
    figures: list[Figure] = []
    with sandbox_process(args.users, admin_token) as (url, pid):
        bench = Bench(url, pid, args.users, admin_token, args.requests, args.concurrency)
        for measure in MEASUREMENTS:
            for figure in measure(bench):
                print(figure.line(), flush=True)
                figures.append(figure)
    RESULTS.mkdir(exist_ok=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "figures": [asdict(f) for f in figures],
    }
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
