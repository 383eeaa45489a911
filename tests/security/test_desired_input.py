"""A hostile desired-state file is rejected early and within bounds; `-f` takes regular files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.security.conftest import run_syncd

SIZE = 15_000_000  # bytes: the issue's file


def _file(path: Path, head: str, line: str) -> Path:
    """`head`, then `line` formatted with a counter, until the file has SIZE bytes."""
    with path.open("w") as handle:
        handle.write(head)
        written, index = len(head), 0
        while written < SIZE:
            text = line.format(index)
            handle.write(text)
            written, index = written + len(text), index + 1
    return path


HOSTILE = {
    "unknown-top-keys": ("version: 1\nusers: {}\n", "unknown_key_{:08d}: some value\n"),
    "unknown-user-keys": ("version: 1\nusers:\n  janedoe:\n", "    unknown_{:08d}: x\n"),
    "users-with-unknown-keys": ("version: 1\nusers:\n", "  user{:08d}:\n    bogus: x\n"),
    "invalid-usernames": ("version: 1\nusers:\n", "  User-{:08d}: {{}}\n"),
    "invalid-addresses": ("version: 1\nusers:\n  janedoe:\n    emails:\n", "      - no{:08d}\n"),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_15_mb_of_problems_are_rejected_in_under_5_s_and_300_mb(tmp_path: Path, kind: str):
    # 15 MB of unknown keys took 34.6 s and 1.35 GB: pydantic found them after the
    # whole file had been composed. The reader refuses them as it reads, and stops
    # at the problem limit.
    head, line = HOSTILE[kind]
    path = _file(tmp_path / f"{kind}.yaml", head, line)
    finished = run_syncd("validate", "-f", str(path), env={"SYNCD_STATE_DIR": str(tmp_path)})
    assert finished.returncode == 1
    lines = finished.stderr.splitlines()
    assert len(lines) == 1000 + 1  # the problems shown, then their count
    assert lines[-2].endswith(": too many problems (1,000): stopped reading here")
    assert finished.seconds < 5, f"{finished.seconds:.1f} s"
    assert finished.peak_rss_mb < 300, f"{finished.peak_rss_mb:.0f} MB"


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_a_fifo_given_to_f_is_refused_at_once(tmp_path: Path, command: str):
    # It hung, waiting for a writer.
    fifo = tmp_path / "desired.yaml"
    os.mkfifo(fifo)
    env = {"SYNCD_STATE_DIR": str(tmp_path / "state"), "SYNCD_API_URL": "http://127.0.0.1:9"}
    finished = run_syncd(command, "-f", str(fifo), env=env, timeout=60)
    assert finished.returncode == 1
    assert f"{fifo}:1:1: not a regular file: refused" in finished.stderr
    assert finished.seconds < 30
