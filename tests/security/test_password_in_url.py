"""A password in a URL is found however it is written, refused, and never shown (trialadv 2).

urlsplit ends a URL's authority at the first `/`, `?` or `#`, where git, libpq
and curl read on to the last `@`: a password holding one of them got past the
checks that refuse a password in a URL, and was printed whole. Each case is one
line, exit 1, without the password (syncd.redaction).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.conftest import Finished, run_syncd
from tests.world import World

GIT = {
    "slash": "git+https://alice:GIT/SECRET2@127.0.0.1:9/r.git#main",
    "question": "git+https://alice:GIT?SECRET2@127.0.0.1:9/r.git",
    "hash": "git+https://alice:GIT#SECRET2@127.0.0.1:9/r.git#main",
}
STATE = {
    "hash": "postgresql://u:PG#SECRET2@127.0.0.1:1/db",
    "slash": "postgresql://u:PG/SECRET2@127.0.0.1:1/db",
    "question": "postgresql://u:PG?SECRET2@127.0.0.1:1/db",
}
API = {
    "port-like": "https://alice:8443/xSECRET2@127.0.0.1:8101",
    "slash": "https://alice:API/SECRET2@127.0.0.1:8101",
}


def refused(finished: Finished) -> str:
    """The one line of a run refused without the secret (and without a traceback)."""
    output = finished.stdout + finished.stderr
    assert finished.returncode == 1, output
    assert "SECRET2" not in output
    assert "Traceback" not in output
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("spec", GIT.values(), ids=GIT)
def test_a_git_url_whose_password_urlsplit_misreads_is_refused(tmp_path: Path, spec: str):
    # It reached git (in GIT_CONFIG_VALUE_0) and every message: "git fetch failed:
    # fatal: unable to access 'https://alice:GIT/SECRET2@…'", or named `SECRET2@…` a ref.
    env = {"SYNCD_STATE_DIR": str(tmp_path / "state")}
    line = refused(run_syncd("validate", "-f", spec, env=env, cwd=tmp_path))
    # Refused as the setting loads, naming where it was set.
    assert line.startswith("syncd: invalid settings: desired (--file): "), line
    assert "percent-encode a '/', '?', '#' or '@'" in line
    assert not (tmp_path / "state" / "git").exists()  # nothing fetched


@pytest.mark.parametrize("url", STATE.values(), ids=STATE)
def test_a_state_url_whose_password_urlsplit_misreads_is_refused(tmp_path: Path, url: str):
    # libpq used `PG#SECRET2` as the password (and syncd printed it with the error).
    env = {"SYNCD_STATE_URL": url, "SYNCD_STATE_DIR": str(tmp_path / "state")}
    line = refused(run_syncd("status", env=env, cwd=tmp_path))
    assert "must not hold a password" in line


@pytest.mark.parametrize("url", API.values(), ids=API)
def test_an_api_url_whose_password_urlsplit_misreads_is_refused(world: World, url: str):
    # One was taken for the host `alice`, port 8443, and shown; the other was a
    # traceback: "Port could not be cast to integer value as 'API'".
    args = world.cli_args()
    args[args.index("--api-url") + 1] = url
    line = refused(run_syncd("plan", *args, cwd=world.root))
    assert "must not hold a user name or password" in line


def test_a_proxy_url_whose_password_urlsplit_misreads_is_one_line(world: World):
    # It was a traceback: httpx.InvalidURL: Invalid port: 'PX' (the password's start).
    args = world.cli_args()
    args[args.index("--api-url") + 1] = "http://10.9.9.9:8101"
    env = {"http_proxy": "http://alice:PX/SECRET2@127.0.0.1:9"}
    line = refused(run_syncd("plan", *args, "--insecure-http", env=env, cwd=world.root))
    assert line == (
        "syncd: invalid settings: http_proxy (http_proxy): percent-encode a '/', '?', '#' "
        "or '@' in the URL's user or password (%2F, %3F, %23, %40)"
    )
