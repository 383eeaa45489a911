"""Cold plans against a sandbox that behaves like a real server: latency and a rate limit.

On loopback syncd is CPU-bound; against a real API the network's latency and
the server's rate limit decide (issue 16). The sandbox here answers after
30 ms ± 10 ms (evenly), and, for the first two figures, lets 300 requests a
second through for all credentials together, telling its budget in
RateLimit-* headers on every answer. A cold plan of N users is 2N GETs, so
its floor is 2N / 300 seconds.

- adaptive: syncd as shipped (SYNCD_CONCURRENCY 32, the controller on);
- fixed: syncd as it was, 16 in flight and every 429 waiting on its own;
- then without the limit, at two concurrencies: 8, which this machine can
  keep busy (so the figure is about the controller: it should reach its
  maximum and keep every slot full, ≥ 0.9 × concurrency / latency), and 32,
  where syncd's own CPU is the limit on two shared cores. Each is beside a
  plain httpx loop at the same concurrency (one connection per worker) on the
  same sandbox: the sandbox's own cost per request comes on top of its
  latency for any client, and that loop shows how much. The loop runs before
  and after each plan, and each plan's ratio is to the mean of the two; at 32,
  the issue's target, there are ROUNDS plans, each with a fresh state, and
  the figure is the median of their ratios. `of_plain_loop` is over the whole
  command (Python's start and imports in it), `of_plain_loop_over_requests`
  over its requests alone, from the first one's arrival at the sandbox to the
  last answer, as the loop's own rate is: that one is checked against the
  target.

How the controller settles is read from the sandbox: the most requests in
flight at once, second by second, shown as the median of each 5 s.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import runs
from bench.runs import Figure, sandbox_process

LATENCY_MS = 30.0
JITTER_MS = 10.0
LIMIT = 300
#: A cold plan may take this much longer than the floor, and meet this share of 429s.
SLACK = 1.15
MAX_429_SHARE = 0.01
#: The share of concurrency / latency that a plan without a limit must reach.
BUSY_SHARE = 0.9
#: Requests of the plain loop (one connection per worker) at the same concurrency.
PLAIN_REQUESTS = 4000
#: Cold plans at syncd's default concurrency (32), each between two plain loops, and the
#: share of the plain loop's rate the median of their ratios must reach, over requests.
ROUNDS = 3
OF_PLAIN = 0.97


def real_server_plans(users: int) -> list[Figure]:
    """The four cold plans of the module docstring, each against a fresh state directory."""
    figures = []
    admin = secrets.token_hex(16)
    latency = ("--latency-ms", f"{LATENCY_MS:g}±{JITTER_MS:g}")
    floor = 2 * users / LIMIT
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        credentials, desired = root / "credentials", root / "desired.yaml"
        runs.desired_file(desired, users, change=False)
        limited = ("--global-rate-limit", str(LIMIT), "--credentials-out", str(credentials))
        with sandbox_process(users, admin, *latency, *limited) as (url, _):
            for name, flags, env in (
                ("adaptive", [], {}),
                ("fixed 16, as before", ["--concurrency", "16"], {"SYNCD_ADAPTIVE": "false"}),
            ):
                time.sleep(1.5)  # the bucket is whole again, for each alike
                seen = _cold_plan(url, desired, root / name, credentials, flags, env)
                figures.append(
                    Figure(
                        f"cold plan, {users:,} users, 30±10 ms, limit {LIMIT}/s, {name}",
                        seen["seconds"],
                        "s",
                        {
                            "floor_s": round(floor, 1),
                            "of_floor": round(seen["seconds"] / floor, 3),
                            "share_429": f"{seen['429'] / max(1, seen['requests']):.2%}",
                            **seen,
                            "target": f"<= {SLACK} x floor ({SLACK * floor:.1f} s), "
                            f"429s <= {MAX_429_SHARE:.0%}",
                        },
                    )
                )
        with sandbox_process(users, admin, *latency) as (url, _):
            for concurrency, rounds, against_plain in (
                (8, 1, ""),
                (32, ROUNDS, f"; of_plain_loop_over_requests >= {OF_PLAIN} (median of {ROUNDS})"),
            ):
                flags = ["--concurrency", str(concurrency)]
                # The plain loop first, then syncd and the loop in turn: each plan
                # beside the loop just before and just after it.
                plain = [_plain_rate(url, users, concurrency)]
                plans: list[dict[str, Any]] = []
                for round_ in range(rounds):
                    state = root / f"free{concurrency}-{round_}"
                    plans.append(_cold_plan(url, desired, state, credentials, flags, {}))
                    plain.append(_plain_rate(url, users, concurrency))
                whole = [each["requests"] / each["seconds"] for each in plans]
                over = [each["requests"] / each["requests_seconds"] for each in plans]
                rate = statistics.median(whole)
                of_plain = runs.ratios(whole, plain)
                of_plain_over = runs.ratios(over, plain)
                goal = BUSY_SHARE * concurrency / (LATENCY_MS / 1000)
                by_rate = sorted(plans, key=lambda each: each["requests"] / each["seconds"])
                figures.append(
                    Figure(
                        f"cold plan, {users:,} users, 30±10 ms, no limit, "
                        f"concurrency {concurrency}",
                        rate,
                        "req/s",
                        {
                            "of_concurrency_over_latency": round(
                                rate / (concurrency / (LATENCY_MS / 1000)), 2
                            ),
                            "plain_loop_req_s": ", ".join(f"{p:.0f}" for p in plain),
                            "of_plain_loop": round(statistics.median(of_plain), 2),
                            "of_plain_loop_over_requests": round(
                                statistics.median(of_plain_over), 2
                            ),
                            "of_plain_loop_each": of_plain,
                            "of_plain_loop_over_requests_each": of_plain_over,
                            "seconds_each": [each["seconds"] for each in plans],
                            **by_rate[len(plans) // 2],  # the median plan's own
                            "target": f">= {BUSY_SHARE} x {concurrency} / 30 ms ({goal:.0f})"
                            + against_plain,
                        },
                    )
                )
    return figures


def _plain_rate(url: str, users: int, concurrency: int) -> float:
    """What this sandbox allows at this concurrency: its own cost per request comes on
    top of the latency, for any client."""
    return asyncio.run(
        runs.plain_loop(
            url, users, PLAIN_REQUESTS, False, one_connection_each=True, workers=concurrency
        )
    )


def _cold_plan(
    url: str,
    desired: Path,
    state: Path,
    credentials: Path,
    flags: list[str],
    env: dict[str, str],
) -> dict[str, Any]:
    """One `syncd plan` with an empty cache: its time, requests, 429s and concurrency."""
    args = runs.plan_args(url, desired, state, credentials)
    # plan_args names the loopback figures' concurrency: here syncd's default unless asked.
    at = args.index("--concurrency")
    del args[at : at + 2]
    before = runs.stats(url)
    started = time.time()
    plan = runs.measured_syncd(url, ["plan", *args, *flags], {"SYNCD_ADAPTIVE": "true", **env})
    ended = time.time()
    after = runs.stats(url)
    child = plan.child
    if child.returncode not in (0, 2) or runs.summary_of(child).get("errors"):
        raise SystemExit(f"bench: a cold plan failed (exit {child.returncode})")
    refused = _count(after, 429) - _count(before, 429)
    peaks = [peak for second, peak in after["in_flight"] if started <= second <= ended]
    return {
        "seconds": round(child.seconds, 2),
        # From its first request's arrival to the last answer, as the sandbox saw them.
        "requests_seconds": round(plan.requests_seconds, 2),
        "requests": sum(plan.made.values()),
        "429": refused,
        "client_cpu_s": round(child.cpu_seconds, 1),
        "in_flight_settled": statistics.median(peaks[len(peaks) // 2 :]) if peaks else 0,
        "in_flight_by_5s": [
            round(statistics.median(peaks[i : i + 5])) for i in range(0, len(peaks), 5)
        ],
    }


def _count(stats: dict[str, Any], status: int) -> int:
    return sum(row["count"] for row in stats["requests"] if row["status"] == status)
