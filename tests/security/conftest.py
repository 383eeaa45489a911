"""The security tests: one test per attack of issue 13, each through `syncd` or HTTP.

They use the world (a sandbox, credentials, a desired state) and
`start_daemon` of tests/conftest.py; the intermediaries and hostile
servers are in tests.security.servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.world import World

#: Variables of the developer's environment that would steer a `syncd` child.
STEERING = ("SYNCD_", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET")
PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class Finished:
    """A `syncd` child process that has ended: its output, wall time, CPU time and peak
    memory. A bound on work done is one on CPU time: load stretches the wall time."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float


# Runs `python ARGS` as its child and writes the child's peak RSS (KiB) and CPU time
# (user and system, seconds) to the file named first. The child is forked from this
# small interpreter: a child forked from the test process would count the test
# process's pages in its peak.
_MEASURED = """
import os, sys
measure, arguments = sys.argv[1], sys.argv[2:]
child = os.fork()
if child == 0:
    os.execv(sys.executable, [sys.executable, *arguments])
_, status, usage = os.wait4(child, 0)
with open(measure, "w") as report:
    report.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def run_syncd(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> Finished:
    """`python -m syncd ARGS` in a clean environment plus `env`: its wall time and peak RSS."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(STEERING) and key.lower() not in PROXIES
    }
    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as measure:
        started = time.monotonic()
        command = [sys.executable, "-c", _MEASURED, measure.name, "-m", "syncd", *args]
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**clean, **(env or {})},
            cwd=cwd,
            text=True,
            start_new_session=True,  # a hung child is killed with its launcher
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        seconds = time.monotonic() - started
        rss, cpu = (measure.read() or "0 0").split()
    return Finished(process.returncode, stdout, stderr, seconds, int(rss) / 1024, float(cpu))


#: Nothing from the developer's environment: every test sets what it needs.
UNSET = dict.fromkeys([*PROXIES, *(name.upper() for name in PROXIES), "SYNCD_CA_FILE"])


def plan(world: World, *args: str, api_url: str | None = None, **env: str | None) -> Result:
    flags = world.cli_args()
    if api_url is not None:
        flags[flags.index("--api-url") + 1] = api_url
    runner = CliRunner(env={**UNSET, **env})
    return runner.invoke(cli, ["plan", *flags, *args], catch_exceptions=False)
