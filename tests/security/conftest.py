"""The security tests: one test per attack of issue 13, each through `syncd` or HTTP.

They reuse the integration tests' world (a sandbox, credentials, a desired
state) and the daemon tests' `start_daemon`; the intermediaries and hostile
servers are in tests.security.servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.daemon.conftest import start_daemon  # noqa: F401  (re-exported fixture)
from tests.integration.conftest import world  # noqa: F401  (re-exported fixture)

#: Variables of the developer's environment that would steer a `syncd` child.
STEERING = ("SYNCD_", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET")
PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class Finished:
    """A `syncd` child process that has ended: its output, wall time and peak memory."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float


def run_syncd(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> Finished:
    """`python -m syncd ARGS` in a clean environment plus `env`; measured by wait4.

    wait4 gives the peak RSS of this child alone (RUSAGE_CHILDREN would be the
    largest child the test process ever waited for).
    """
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(STEERING) and key.lower() not in PROXIES
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**clean, **(env or {})},
        cwd=cwd,
        text=True,
    )
    output: dict[str, str] = {}

    def read(name: str, stream: IO[str]) -> None:
        output[name] = stream.read()

    readers = [
        threading.Thread(target=read, args=(name, stream), daemon=True)
        for name, stream in (("stdout", process.stdout), ("stderr", process.stderr))
    ]
    for reader in readers:
        reader.start()
    killer = threading.Timer(timeout, process.kill)  # a hung child fails the test, not CI
    killer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        killer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(timeout=30)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return Finished(
        process.returncode,
        output.get("stdout", ""),
        output.get("stderr", ""),
        time.monotonic() - started,
        usage.ru_maxrss / 1024,  # KiB on Linux
    )
