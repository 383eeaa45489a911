"""Health that means something (issue 12, item 6): liveness, readiness, the source's state.

/healthz turned 503 on an invalid commit, so a liveness probe would have
restarted a healthy process; there was no readiness endpoint, and a failed
git fetch showed only in the log. Now /healthz is the event loop answering,
/readyz the last cycle and the source, and a failed fetch shows in /readyz,
`syncd status` and the metrics.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.service.daemon import loop_probe
from syncd.service.metrics import readiness_at
from tests.conftest import Repository
from tests.daemon.harness import DEFAULT_WAIT, DaemonProcess, once
from tests.daemon.harness import http_get as get
from tests.security.servers import SilentServer
from tests.world import STANDARD_DESIRED, World


def test_an_invalid_desired_state_is_not_ready_and_still_alive(world: World, start_daemon: Any):
    daemon: DaemonProcess = start_daemon(SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    assert get(f"http://{address}/readyz", until=200)[0] == 200
    world.desired_file.write_text("version: 1\nusers:\n  janedoe:\n    ful_name: x\n")
    daemon.wait_for("cycle_finished", result="invalid")
    status, body = get(f"http://{address}/readyz", until=503)
    assert (status, body) == (503, "not ready: the last cycle ended invalid 0 s ago\n")
    assert get(f"http://{address}/healthz") == (200, "ok: the event loop answers\n")
    assert daemon.stop() == 0


def test_run_once_on_the_last_good_revision_exits_1_and_status_says_why(
    world: World, repository: Repository, tmp_path: Path
):
    # cron's `run --once` whose git fetch failed converged on the last good revision and
    # exited 0, and `syncd status` showed the source only while a daemon ran: every
    # signal green while new commits were no longer applied.
    good = repository.commit(STANDARD_DESIRED)
    assert once(world, tmp_path, SYNCD_DESIRED=repository.url) == 0
    shutil.move(repository.path, tmp_path / "gone")
    assert once(world, tmp_path, SYNCD_DESIRED=repository.url) == 1
    shown = CliRunner().invoke(cli, ["status", "--state-dir", str(world.state_dir)]).stdout
    assert "daemon       not running" in shown
    assert f"revision     {good} (last applied)" in shown
    assert "source       NOT CURRENT: git+file://" in shown
    assert "git fetch failed" in shown

    shutil.move(tmp_path / "gone", repository.path)
    assert once(world, tmp_path, SYNCD_DESIRED=repository.url) == 0
    shown = CliRunner().invoke(cli, ["status", "--state-dir", str(world.state_dir)]).stdout
    assert "source       current (read 20" in shown


def test_a_failed_fetch_shows_in_readiness_status_and_metrics(
    world: World, start_daemon: Any, tmp_path: Path
):
    repository = Repository(tmp_path / "ops")
    repository.commit(STANDARD_DESIRED)
    daemon: DaemonProcess = start_daemon(
        SYNCD_DESIRED=repository.url, SYNCD_METRICS_ADDR="127.0.0.1:0"
    )
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="ok")
    shutil.move(repository.path, tmp_path / "gone")  # the git server is away

    daemon.wait_for("desired_fetch_failed")
    stale = daemon.wait_for("cycle_finished")
    assert stale["result"] == "no_changes"  # the last good revision is still applied
    status, body = get(f"http://{address}/readyz", until=503)
    # Anyone who reaches the probe learns that much: no git URL, no git stderr.
    assert (status, body) == (503, "not ready: the desired state's source is not current\n")
    assert get(f"http://{address}/healthz")[0] == 200

    metrics = httpx.get(f"http://{address}/metrics").text
    failures = re.search(r"^syncd_source_fetch_failures_total (\S+)$", metrics, re.M)
    assert failures is not None
    assert float(failures.group(1)) >= 1
    assert re.search(r"^syncd_source_last_success_timestamp_seconds \d", metrics, re.M)

    shown = CliRunner().invoke(cli, ["status", "--state-dir", str(world.state_dir)]).stdout
    assert "source       NOT CURRENT, last read" in shown
    assert "git fetch failed" in shown
    assert "readiness    NOT READY: the desired state's source is not current" in shown

    shutil.move(tmp_path / "gone", repository.path)  # back: ready again
    assert get(f"http://{address}/readyz", until=200)[0] == 200
    assert daemon.stop() == 0


def test_status_and_the_page_say_the_readiness_age_as_of_when_they_are_read(
    world: World, start_daemon: Any
):
    # The reason was a sentence made when the cycle ended and kept: "0 s ago" in
    # `syncd status` and on `/` for as long as no other cycle ended (a wedged loop
    # too), while /readyz said 15 s.
    daemon: DaemonProcess = start_daemon(SYNCD_INTERVAL="3600", SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="ok")
    deadline = time.monotonic() + DEFAULT_WAIT
    while (probed := age_in(get(f"http://{address}/readyz")[1])) < 2:  # the probe, as a clock
        assert time.monotonic() < deadline, "/readyz never aged"
        time.sleep(0.1)

    shown = CliRunner().invoke(cli, ["status", "--state-dir", str(world.state_dir)]).stdout
    (line,) = [line for line in shown.splitlines() if line.startswith("readiness")]
    assert line.startswith("readiness    ready: the last cycle ended ok ")
    assert age_in(line) >= probed
    page = httpx.get(f"http://{address}/").text
    assert age_in(page) >= probed
    assert daemon.stop() == 0


def age_in(text: str) -> int:
    """The age of "the last cycle ended ok N s ago" in `text`."""
    found = re.search(r"the last cycle ended ok (\d+) s ago", text)
    assert found is not None, text
    return int(found.group(1))


def test_a_kept_readiness_is_judged_at_the_time_it_is_read():
    # What `syncd status` does with what the daemon kept: a loop wedged since (no
    # cycle for three intervals) is not ready, whatever the cycle said then.
    basis = {
        "result": "ok",
        "ended_at": 1_000.0,
        "interval": 10.0,
        "api_down": False,
        "source_error": None,
    }
    assert readiness_at(1_012.0, basis) == (True, "the last cycle ended ok 12 s ago")
    assert readiness_at(1_040.0, basis) == (
        False,
        "the last cycle ended 40 s ago (limit 30 s)",
    )


def test_the_loop_probe_fails_when_the_event_loop_is_stuck():
    loop = asyncio.new_event_loop()
    stuck, release = threading.Event(), threading.Event()

    def hang() -> None:
        stuck.set()
        release.wait(10)  # as a blocking call on the loop would

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    probe = loop_probe(loop)
    try:
        assert probe(5)
        loop.call_soon_threadsafe(hang)
        assert stuck.wait(5)
        assert not probe(0.2)
    finally:
        release.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert not probe(0.2)  # a closed loop does not answer either


def test_the_api_down_in_steady_state_is_not_ready_and_backs_off(world: World, start_daemon: Any):
    # A long window: each cycle reads one of the two users, the other from the
    # cache; with the API down such a cycle is failed all the same (issue 22, item 2).
    daemon: DaemonProcess = start_daemon(
        SYNCD_METRICS_ADDR="127.0.0.1:0", SYNCD_DRIFT_WINDOW="3600"
    )
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="ok")
    assert get(f"http://{address}/readyz", until=200)[0] == 200

    world.sandbox.set_faults({"error_rate": 1.0})
    down = daemon.wait_for("cycle_finished", result="failed")
    status, body = get(f"http://{address}/readyz", until=503)
    assert status == 503
    assert "the API answered none of the last cycle's requests" in body
    assert down["failures"] == 1
    assert daemon.wait_for("cycle_finished")["failures"] == 2  # backing off, as for an error
    metrics = httpx.get(f"http://{address}/metrics").text
    assert re.search(r"^syncd_consecutive_failures [1-9]", metrics, re.M)

    world.sandbox.set_faults({})
    back = daemon.wait_for("cycle_finished", timeout=15, result="no_changes")
    assert back["failures"] == 0
    assert get(f"http://{address}/readyz", until=200)[0] == 200
    assert daemon.stop() == 0


def test_a_silent_api_fails_the_cycle_in_one_line_naming_it(world: World, start_daemon: Any):
    # Issue 22, item 15: no per-user errors for an API that never answers; the cycle
    # fails (and the schedule backs off) with one message naming the URL.
    with SilentServer() as silent:
        url = f"http://127.0.0.1:{silent.port}"
        daemon: DaemonProcess = start_daemon(
            SYNCD_API_URL=url, SYNCD_TIMEOUT="0.2", SYNCD_METRICS_ADDR="127.0.0.1:0"
        )
        address = daemon.wait_for("metrics_listening")["address"]
        failed = daemon.wait_for("cycle_finished", timeout=30)
        # A trial: such cycles were counted as no failure and kept the interval.
        again = daemon.wait_for("cycle_finished", timeout=30)
        metrics = httpx.get(f"http://{address}/metrics").text
        assert daemon.stop() == 0
    assert failed["result"] == "failed"  # as its run record says: the API failed, not syncd
    assert failed["message"].startswith(
        f"API unreachable: {url}: none of 5 attempts got an answer"
    )
    assert (failed["failures"], again["failures"]) == (1, 2)
    assert again["next_run_in"] > 1.5  # the interval (1 s) doubled
    assert re.search(r"^syncd_consecutive_failures 2\.0$", metrics, re.M)
