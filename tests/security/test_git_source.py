"""A git+https:// desired state: its secret on no command line, and no git process left behind."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from pathlib import Path

import pytest

from syncd.desired.gitcredentials import GitCredential
from tests.conftest import Repository
from tests.daemon.harness import DaemonProcess
from tests.security.conftest import run_syncd
from tests.security.servers import (
    CA_FILE,
    AuthRecorder,
    GitAuthServer,
    GitHttpServer,
    GitRedirectServer,
    SilentServer,
    TlsFront,
    basic_secret,
    command_lines_containing,
)
from tests.world import World, write_secret

SECRET = "s3cr3t-git-token-4f1c"


@pytest.mark.parametrize("where", ["url", "url-user", "credentials-file", "credentials-directory"])
def test_a_git_password_reaches_git_on_no_command_line(tmp_path: Path, where: str):
    # A password in git+https://user:pass@… was on git-remote-https's command line,
    # readable by any local user in ps; so was a token written as the user alone
    # (https://TOKEN@…). The server reads every process's command line while git
    # waits for its answer.
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    env = {"GIT_SSL_CAINFO": str(CA_FILE), "SYNCD_STATE_DIR": str(tmp_path / "state")}
    with GitAuthServer(SECRET) as server:
        url = f"https://127.0.0.1:{server.port}/ops/accounts.git#main"
        if where == "url":
            env["SYNCD_DESIRED"] = f"git+https://deploy:{SECRET}@{url.removeprefix('https://')}"
        elif where == "url-user":  # the user and no password: sent as git would send it
            env["SYNCD_DESIRED"] = f"git+https://{SECRET}@{url.removeprefix('https://')}"
        else:
            env["SYNCD_DESIRED"] = f"git+{url}"
            file = credentials / "git.credentials"
            write_secret(file, f"username=deploy\npassword={SECRET}\n")
            if where == "credentials-file":
                env["SYNCD_GIT_CREDENTIALS_FILE"] = str(file)
            else:
                env["SYNCD_CREDENTIALS_DIR"] = str(credentials)
        finished = run_syncd("validate", env=env)
    assert finished.returncode == 1
    sent = f"{SECRET}:" if where == "url-user" else f"deploy:{SECRET}"
    assert [_basic(header) for header in server.authorizations] == [sent]
    assert server.command_lines_with_secret == []
    assert SECRET not in finished.stdout + finished.stderr
    assert "git fetch failed" in finished.stderr
    assert len(finished.stderr.splitlines()) == 1


def test_validate_shows_the_git_url_without_its_token(tmp_path: Path):
    # `syncd validate -f git+https://user:TOKEN@…` printed the token beside "valid".
    repository = Repository(tmp_path / "served" / "ops")
    repository.commit("version: 1\nusers:\n  alice: {full_name: Alice}\n")
    with GitHttpServer(tmp_path / "served") as backend, TlsFront(backend.port) as front:
        spec = f"git+https://deploy:{SECRET}@127.0.0.1:{front.port}/ops#main:accounts/"
        env = {"GIT_SSL_CAINFO": str(CA_FILE), "SYNCD_STATE_DIR": str(tmp_path / "state")}
        finished = run_syncd("validate", "-f", spec, env=env)
    assert finished.returncode == 0, finished.stderr
    shown = f"git+https://***@127.0.0.1:{front.port}/ops#main:accounts/"
    assert finished.stdout == f"{shown}: valid, 1 user\n"
    assert SECRET not in finished.stdout + finished.stderr


@pytest.mark.parametrize("ask_first", [False, True], ids=["at-once", "after-auth"])
def test_a_redirect_takes_the_git_credential_nowhere(tmp_path: Path, ask_first: bool):
    # An https remote answering 302 to http://127.0.0.2:… had git send it
    # `Authorization: Basic …` with the token, in clear.
    file = tmp_path / "git.credentials"
    write_secret(file, f"username=deploy\npassword={SECRET}\n")
    with (
        AuthRecorder() as elsewhere,
        GitRedirectServer(elsewhere.url, ask_first=ask_first) as server,
    ):
        env = {
            "GIT_SSL_CAINFO": str(CA_FILE),
            "SYNCD_STATE_DIR": str(tmp_path / "state"),
            "SYNCD_DESIRED": f"git+https://127.0.0.1:{server.port}/ops/accounts.git#main",
            "SYNCD_GIT_CREDENTIALS_FILE": str(file),
        }
        finished = run_syncd("validate", env=env)
    assert finished.returncode == 1
    assert [basic_secret(header) for header in server.authorizations] == [SECRET] * ask_first
    assert elsewhere.authorizations == []  # not followed at all
    assert SECRET not in finished.stdout + finished.stderr
    assert "git fetch failed" in finished.stderr


FOR = "https://127.0.0.1:8443/ops/accounts.git"


@pytest.mark.parametrize(
    ("asked", "answered"),
    [
        ("protocol=https\nhost=127.0.0.1:8443\n", True),
        ("protocol=https\nhost=127.0.0.1:8443\npath=ops/accounts.git\n", True),
        ("protocol=http\nhost=127.0.0.1:8443\n", False),
        ("protocol=https\nhost=127.0.0.2:8443\n", False),
        ("protocol=https\nhost=127.0.0.1\n", False),
        ("protocol=https\nhost=127.0.0.1:8443\npath=other/repo.git\n", False),
        ("host=127.0.0.1:8443\n", False),
    ],
    ids=["same", "same-path", "http", "other-host", "other-port", "other-path", "no-protocol"],
)
def test_the_credential_helper_answers_only_for_its_remote(asked: str, answered: bool):
    # git hands the helper what it wants a credential for; the helper answers only
    # for the URL it was configured with, whatever asks it.
    credential = GitCredential("deploy", "test", SECRET)
    environment = credential.environment({**os.environ, "GIT_TERMINAL_PROMPT": "0"}, FOR)
    filled = subprocess.run(
        ["git", "credential", "fill"],
        input=asked + "\n",
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (f"password={SECRET}" in filled.stdout) == answered, filled.stdout + filled.stderr
    assert (filled.returncode == 0) == answered


def test_a_git_credential_file_others_can_read_is_refused(tmp_path: Path):
    file = tmp_path / "git.credentials"
    file.write_text(SECRET + "\n")
    file.chmod(0o644)
    with GitAuthServer(SECRET) as server:
        env = {
            "GIT_SSL_CAINFO": str(CA_FILE),
            "SYNCD_STATE_DIR": str(tmp_path / "state"),
            "SYNCD_DESIRED": f"git+https://127.0.0.1:{server.port}/ops/accounts.git#main",
            "SYNCD_GIT_CREDENTIALS_FILE": str(file),
        }
        finished = run_syncd("validate", env=env)
    assert finished.returncode == 1
    assert "group or others may read it (mode 0644)" in finished.stderr
    assert server.authorizations == []  # git was not even started
    assert SECRET not in finished.stdout + finished.stderr


def test_the_git_timeout_bounds_the_fetch_and_kills_every_git_process(tmp_path: Path):
    # Killing git orphaned git-remote-https, which kept the pipes open: `plan` hung
    # past 40 s with a 4 s timeout. The server accepts and never answers.
    with SilentServer() as server:
        address = f"127.0.0.1:{server.port}"
        env = {
            "SYNCD_STATE_DIR": str(tmp_path / "state"),
            "SYNCD_DESIRED": f"git+https://{address}/ops/accounts.git#main",
            "SYNCD_GIT_TIMEOUT": "2",
        }
        finished = run_syncd("validate", env=env, timeout=60)
        left = command_lines_containing(address)
    assert finished.returncode == 1
    assert "took more than 2 s (SYNCD_GIT_TIMEOUT); git was stopped" in finished.stderr
    assert server.accepted.is_set()  # git was waiting for this server
    # Wall time, which the timeout is about: 2 s, and a margin for a loaded machine's
    # start of Python and git, well short of the hang (past 40 s; the kill at 60).
    assert finished.seconds < 2 + 20, f"{finished.seconds:.1f} s"
    assert left == []


def test_no_git_process_outlives_the_daemon(world: World, start_daemon, tmp_path: Path):
    with SilentServer() as server:
        address = f"127.0.0.1:{server.port}"
        daemon: DaemonProcess = start_daemon(
            SYNCD_DESIRED=f"git+https://{address}/ops/accounts.git#main", SYNCD_GIT_TIMEOUT="120"
        )
        assert server.accepted.wait(timeout=30), "git never reached the server"
        assert command_lines_containing(address) != []  # git is running, stuck
        assert daemon.stop() == 0
        left = _wait_until_gone(address, timeout=10)
    assert left == []


def _basic(authorization: str) -> str:
    """The `user:password` of a `Basic …` Authorization header."""
    return base64.b64decode(authorization.split(" ", 1)[1]).decode()


def _wait_until_gone(text: str, timeout: float) -> list[str]:
    """The processes still running with `text` in their command line, once none or at the
    deadline. A killed process is gone once its parent or init has reaped it."""
    deadline = time.monotonic() + timeout
    while (left := command_lines_containing(text)) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling /proc, as wait_for_run polls the state file
    return left
