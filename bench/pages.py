"""How long each status page takes to answer over HTTP, with a state of many users.

The issue's target: every page within 200 ms for 10,000 users. The state is
made directly through syncd.state (a run, an audit trail of two events per
user, every user in error, every user cached), the listener is started in this
process on loopback, and each page is asked for several times; the slowest
answer is the figure. Run alone: `python -m bench.pages --users 10000`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from bench.runs import Figure, fill_cache
from syncd.settings import Settings

ASKED = 5
PAGES = ("/", "/users/user000001", "/audit", "/audit?action=add_email&result=ok")


def make_state(settings: Settings, users: int) -> None:
    from syncd.core.api_url import normal_api_url
    from syncd.core.plan import AddEmail
    from syncd.core.problem import Problem
    from syncd.core.vocabulary import Code, RunResult, WriteResult
    from syncd.state.audit import AuditTrail
    from syncd.state.backend import open_store
    from syncd.state.user_failures import UserFailures

    with open_store(settings, "bench") as store:
        db = store.history
        audit = AuditTrail(db, {"files": [], "revision": "0" * 40})
        audit.begin_run("run")
        db.begin()
        for index in range(users):
            action = AddEmail(f"user{index + 1:06d}", f"new{index}@example.com")
            audit.outcome(audit.intent(action), action, WriteResult.OK)
        db.commit()
        failing = [
            Problem(f"user{index + 1:06d}", Code.FETCH_FAILED, "HTTP 503 after 4 attempts")
            for index in range(users)
        ]
        UserFailures(db, normal_api_url(settings.api_url)).update(
            time.time(), failing, (), lambda _: None
        )
        audit.end_run(RunResult.PARTIAL, {"users": users, "errors": users})


def page_latency(users: int) -> list[Figure]:
    from syncd.core.desired import DesiredState, DesiredUser
    from syncd.service.listener import MetricsServer
    from syncd.service.metrics import Metrics
    from syncd.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        settings = load_settings(state_dir=str(state), desired=str(Path(tmp) / "none.yaml"))
        make_state(settings, users)
        fill_cache(state, users, settings.api_url)
        metrics = Metrics(settings.interval)
        metrics.desired = DesiredState(
            tuple(
                DesiredUser(f"user{i + 1:06d}", {"full_name": f"User {i}"}) for i in range(users)
            )
        )
        server = MetricsServer("127.0.0.1:0", settings, metrics, None)  # builds its pages
        server.start()
        slowest: dict[str, float] = {}
        try:
            with httpx.Client(base_url=f"http://{server.address}", timeout=30) as client:
                for page in PAGES:
                    times = []
                    for _ in range(ASKED):
                        started = time.perf_counter()
                        response = client.get(page)
                        times.append(time.perf_counter() - started)
                        if response.status_code != 200:
                            raise SystemExit(f"bench: {page} answered {response.status_code}")
                    slowest[page] = max(times[1:])  # the first one loads the templates
        finally:
            server.close()
    return [
        Figure(
            f"status page {page}, {users} users",
            seconds * 1000,
            "ms",
            {"target": "< 200 ms", "asked": ASKED, "figure": "the slowest but the first"},
        )
        for page, seconds in slowest.items()
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    for figure in page_latency(parser.parse_args().users):
        print(f"{figure.name}: {figure.value:.1f} {figure.unit}")
