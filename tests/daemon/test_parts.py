"""The daemon's small parts, in process: backoff, notify protocol, lock, metrics address."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from syncd.errors import DaemonError, UsageError
from syncd.service.listener import parse_address
from syncd.service.metrics import Metrics
from syncd.service.notifications import Notifications
from syncd.service.notify import Notifier
from syncd.service.schedule import MAX_BACKOFF, backoff_delay, jitter_for
from syncd.settings import NotifyProvider, Settings
from syncd.state.lock import acquire, holder


@pytest.mark.parametrize(
    ("interval", "failures", "delay"),
    [
        (300, 0, 300),
        (300, 1, 300),
        (300, 2, 600),
        (300, 3, 1200),
        (300, 4, 2400),
        (300, 5, MAX_BACKOFF),
        (300, 50, MAX_BACKOFF),
        (7200, 3, 7200),
    ],
    ids=["none", "one", "two", "three", "four", "capped", "many", "interval-over-cap"],
)
def test_backoff_doubles_up_to_an_hour(interval: float, failures: int, delay: float):
    assert backoff_delay(interval, failures) == delay


def test_jitter_is_a_tenth_of_the_interval_at_most_30_s():
    assert jitter_for(1) == 0.1
    assert jitter_for(3600) == 30


def _receiver(address: str) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)
    receiver.settimeout(5)
    return receiver


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_notify_sends_datagrams(kind: str, tmp_path: Path):
    address = str(tmp_path / "n.sock") if kind == "path" else f"@syncd-{uuid.uuid4().hex}"
    with _receiver(address) as receiver:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
        assert notifier.ready("started\nnow")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=started now"
        assert notifier.stopping("x" * 500)
        stopping = receiver.recv(4096).decode()
        assert stopping.startswith("STOPPING=1\nSTATUS=xxx")
        assert len(stopping) < 250


def test_a_full_notify_socket_drops_messages_instead_of_blocking(tmp_path: Path):
    address = str(tmp_path / "slow.sock")
    with _receiver(address) as receiver:  # a listener that never reads
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
        sent = [notifier.status(f"cycle {n}") for n in range(5000)]
        assert not sent[-1]  # the queue filled up, and the call came back
        assert sent[0]
        assert receiver.recv(4096) == b"STATUS=cycle 0"
        assert notifier.status("after a read")  # room again


def test_notify_without_a_socket_does_nothing():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready("started")
    assert notifier.watchdog_interval is None


def test_notify_to_a_missing_socket_fails_quietly(tmp_path: Path):
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notifier.status("ok")
    assert not notifier.status("ok")  # warned once, never raises


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
    ids=["set", "our-pid", "other-pid", "zero", "garbage"],
)
def test_watchdog_pings_at_half_the_timeout(environ: dict[str, str], interval: float | None):
    assert Notifier.from_environment(environ).watchdog_interval == interval


def test_one_lock_per_state_directory(tmp_path: Path):
    assert holder(tmp_path) is None
    with acquire(tmp_path) as lock:
        assert lock.path == tmp_path / "syncd.state.lock"
        assert holder(tmp_path) == os.getpid()
        with pytest.raises(DaemonError, match=rf"pid {os.getpid()}\b"):
            acquire(tmp_path)
    assert holder(tmp_path) is None
    with acquire(tmp_path):  # released: free again
        pass
    assert (tmp_path / "syncd.state.lock").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:9105", ("127.0.0.1", 9105)),
        ("[::1]:9105", ("::1", 9105)),
        (":9105", ("", 9105)),
        ("localhost:0", ("localhost", 0)),
    ],
    ids=["v4", "v6", "any", "port-0"],
)
def test_metrics_addresses(address: str, parsed: tuple[str, int]):
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["9105", "host:", "host:http", "host:70000"])
def test_bad_metrics_addresses_are_refused(address: str):
    with pytest.raises(UsageError):
        parse_address(address)


def test_readiness_needs_a_good_cycle_within_three_intervals_and_a_current_source():
    now = [1000.0]
    metrics = Metrics(interval=10, clock=lambda: now[0])
    assert metrics.readiness() == (False, "no cycle has finished yet")
    metrics.observe_cycle("partial")
    assert metrics.readiness()[0]
    now[0] = 1030.0
    assert metrics.readiness() == (False, "the last cycle ended 30 s ago (limit 30 s)")
    metrics.observe_cycle("invalid")
    assert metrics.readiness() == (False, "the last cycle ended invalid 0 s ago")
    metrics.observe_cycle("ok")
    metrics.observe_source("git fetch failed: could not resolve host")
    ready, reason = metrics.readiness()
    assert not ready
    assert reason.endswith("not current: git fetch failed: could not resolve host")
    metrics.observe_source(None)
    assert metrics.readiness()[0]


def test_the_readiness_probe_tells_a_short_reason_and_no_detail():
    # /readyz told anyone who reached it the git URL, git's message, the database
    # URL and the active host and pid; `syncd status` keeps them.
    metrics = Metrics(interval=10)
    metrics.observe_cycle("ok")
    metrics.observe_source("git+https://git.example/ops.git: git fetch failed: fatal: …")
    assert metrics.probe_readiness() == (False, "the desired state's source is not current")
    metrics.observe_source(None)
    assert metrics.probe_readiness() == (True, "the last cycle ended ok 0 s ago")
    metrics.standby = (True, "waiting for the lock of postgresql://syncd@db/s1 (a 4242)")
    assert metrics.probe_readiness() == (True, "standby")
    assert "postgresql://" in metrics.readiness()[1]


def test_a_notifier_s_failures_are_counted_from_zero_and_no_notifier_has_none():
    """A configured provider's series is there at 0 before any failure, so a rate() sees
    the first one; without a notifier there is no provider to count for (operations.md)."""
    slack = NotifyProvider(type="slack", url="https://hooks.slack.com/services/T0/B0/x")
    series = {"provider": "slack:hooks.slack.com"}
    for providers, expected in [((), None), ((slack,), 0.0)]:
        metrics = Metrics(interval=10)
        Notifications(Settings(notify=providers, notify_url=None), metrics, "test")
        found = metrics.registry.get_sample_value("syncd_notifications_failed_total", series)
        assert found == expected


def test_liveness_asks_the_event_loop_itself():
    metrics = Metrics(interval=10)
    assert metrics.liveness() == (True, "starting")
    metrics.loop_probe = lambda timeout: False
    assert metrics.liveness() == (False, "the event loop did not answer within 5 s")
    metrics.loop_probe = lambda timeout: True
    assert metrics.liveness()[0]


def test_each_metrics_has_its_own_registry():
    first, second = Metrics(interval=1), Metrics(interval=1)
    first.runs.labels("ok").inc()
    assert second.registry.get_sample_value("syncd_runs_total", {"result": "ok"}) == 0
    assert first.registry.get_sample_value("syncd_runs_total", {"result": "ok"}) == 1
