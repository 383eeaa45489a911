"""`syncd sandbox` as a process: start-up line, seed errors, generation, credentials, --db."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from syncd.sandbox import seed
from syncd.sandbox.command import sandbox

SEED = """\
users:
  janedoe:
    full_name: Jane Doe
    password: s3cret
    tokens:
      - token: jane-all
        scopes: [profile_read, profile_write, email_read, email_write]
    emails:
      - {email: jane@example.com, verified: true, primary: true}
      - jane.other@example.com
  johndoe:
    emails: [john@example.com]
"""


def sandbox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "syncd", "sandbox", "--port", "0", *args]


@contextmanager
def running_sandbox(*args: str) -> Iterator[str]:
    """Run `syncd sandbox --port 0 ARGS`; yield the URL it prints; stop it with SIGTERM."""
    process = subprocess.Popen(
        sandbox_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the server is serving
        if not line.startswith("syncd sandbox: serving http://"):
            process.kill()
            _, errors = process.communicate()
            raise AssertionError(f"no URL printed: {line!r}, stderr: {errors}")
        yield line.removeprefix("syncd sandbox: serving ").strip()
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert "Traceback" not in errors, errors


def test_port_zero_prints_the_url_and_serves_it(tmp_path: Path) -> None:
    (tmp_path / "seed.yaml").write_text(SEED)
    with running_sandbox("--seed", str(tmp_path / "seed.yaml")) as url:
        response = httpx.get(
            f"{url}/api/v1.1/users/janedoe/", headers={"Authorization": "Bearer jane-all"}
        )
        assert response.status_code == 200
        assert response.json()["url"] == f"{url}/api/v1.1/users/janedoe/"
        assert httpx.get(f"{url}/api/v1.1/users/janedoe/", auth=("janedoe", "s3cret")).is_success


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param("users: [\n", 2, "expected", id="yaml-syntax"),
        pytest.param(
            "users:\n  janedoe: {}\n  janedoe: {}\n", 3, "duplicate", id="duplicate-user"
        ),
        pytest.param("people: {}\n", 1, "unknown key", id="unknown-top-key"),
        pytest.param("users:\n  janedoe: &a {}\n  johndoe: *a\n", 3, "alias", id="alias"),
        pytest.param(
            "users:\n  janedoe:\n    emails:\n      - {email: a@example.com, verified: yes}\n",
            4,
            "true or false",  # YAML 1.2, as in the desired state: `yes` is text
            id="yes-is-text",
        ),
        pytest.param("users:\n  JaneDoe: {}\n", 2, "username", id="bad-username"),
        pytest.param("users:\n  janedoe:\n    nickname: jd\n", 3, "unknown key", id="unknown-key"),
        pytest.param("users:\n  janedoe:\n    full_name: 3\n", 3, "string", id="not-a-string"),
        pytest.param(
            "users:\n  janedoe:\n    profile_url: nope\n", 3, "not a valid URL", id="bad-url"
        ),
        pytest.param(
            "users:\n  janedoe:\n    emails:\n      - a@example.com\n      - nope\n",
            5,
            "not a valid email",
            id="bad-email",
        ),
        pytest.param(
            "users:\n  janedoe:\n    emails: [a@example.com, A@Example.com]\n",
            3,
            "duplicate address",
            id="duplicate-email",
        ),
        pytest.param(
            "users:\n  janedoe:\n    emails:\n"
            "      - {email: a@example.com, primary: true}\n"
            "      - {email: b@example.com, primary: true}\n",
            5,
            "more than one primary",
            id="two-primaries",
        ),
        pytest.param(
            "users:\n  janedoe:\n    tokens:\n      - token: t\n        scopes: [admin]\n",
            5,
            "scopes",
            id="unknown-scope",
        ),
        pytest.param(
            "users:\n  janedoe:\n    tokens:\n      - token: t\n        scopes: [{a: b}]\n",
            5,
            "scopes",
            id="scope-not-a-name",
        ),
        pytest.param(
            "users:\n  janedoe:\n    tokens: [t]\n  johndoe:\n    tokens: [t]\n",
            5,
            "already granted",
            id="token-twice",
        ),
        pytest.param(
            "users:\n  janedoe:\n    password: 0123\n",
            3,
            'must be a non-empty string (quote it to mean the text: "0123")',
            id="password-a-number",
        ),
    ],
)
def test_a_bad_seed_file_stops_with_one_line_naming_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(text)
    result = subprocess.run(
        sandbox_command("--seed", str(path)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"syncd: {path}:{line}: ")
    assert message in lines[0]


def test_a_missing_seed_file_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        sandbox_command("--seed", str(tmp_path / "nope.yaml")), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"syncd: {tmp_path / 'nope.yaml'}: cannot read the seed file: No such file or directory"
    )


def test_generate_with_credentials_out(tmp_path: Path) -> None:
    credentials = tmp_path / "creds" / "nested"
    with running_sandbox("--generate", "25", "--credentials-out", str(credentials)) as url:
        files = sorted(p.name for p in credentials.iterdir())
        assert files == [f"user{i:06d}.token" for i in range(1, 26)]
        token_file = credentials / "user000007.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert token == seed.generated_token("user000007")
        headers = {"Authorization": f"Bearer {token}"}
        user = httpx.get(f"{url}/api/v1.1/users/user000007/", headers=headers).json()
        assert user["id"] == 7
        assert user["username"] == "user000007"
        assert user["email"] == "user000007@example.com"
        emails = httpx.get(f"{url}/api/v1.1/users/user000007/emails/", headers=headers).json()
        assert emails == [{"email": "user000007@example.com", "verified": True, "primary": True}]
        # All four scopes, but only on itself.
        patch = httpx.patch(
            f"{url}/api/v1.1/users/user000007/", json={"company": "X"}, headers=headers
        )
        assert patch.status_code == 200
        assert httpx.get(f"{url}/api/v1.1/users/user000008/", headers=headers).status_code == 403


def test_generation_is_deterministic() -> None:
    # How fast it is belongs to a benchmark, not to this test (a loaded machine is slow).
    big = seed.generate(100_000)
    assert len(big.accounts) == 100_000
    assert big.accounts[-1].username == "user100000"
    again = seed.generate(3)
    assert again.accounts == big.accounts[:3]
    assert again.grants == big.grants[:3]


def test_db_keeps_the_state_across_restarts(tmp_path: Path) -> None:
    (tmp_path / "seed.yaml").write_text(SEED)
    db = tmp_path / "sandbox.db"
    jane = {"Authorization": "Bearer jane-all"}
    with running_sandbox("--seed", str(tmp_path / "seed.yaml"), "--db", str(db)) as url:
        users = f"{url}/api/v1.1/users/janedoe/"
        assert httpx.patch(users, json={"location": "Moon"}, headers=jane).status_code == 200
        added = httpx.post(f"{users}emails/", json={"email": "new@example.com"}, headers=jane)
        assert added.status_code == 201
        gone = httpx.request(
            "DELETE", f"{users}emails/", json={"email": "jane.other@example.com"}, headers=jane
        )
        assert gone.status_code == 204
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    # Restarted without the seed: the file's state, changes included.
    with running_sandbox("--db", str(db)) as url:
        users = f"{url}/api/v1.1/users/janedoe/"
        assert httpx.get(users, headers=jane).json()["location"] == "Moon"
        emails = httpx.get(f"{users}emails/", headers=jane).json()
        assert emails == [
            {"email": "jane@example.com", "verified": True, "primary": True},
            {"email": "new@example.com", "verified": False, "primary": False},
        ]
        assert httpx.get(users, auth=("janedoe", "s3cret")).status_code == 200
        # A bare reset restores the state loaded at start, and writes it through.
        httpx.patch(users, json={"location": "Mars"}, headers=jane)
        assert httpx.post(f"{url}/_sandbox/reset").status_code == 200
        assert httpx.get(users, headers=jane).json()["location"] == "Moon"


def test_a_global_rate_limit_and_a_latency_with_jitter_from_the_command_line() -> None:
    with running_sandbox(
        "--generate", "1", "--global-rate-limit", "2/s", "--latency-ms", "40±20"
    ) as url:
        token = seed.generated_token("user000001")
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        answer = httpx.get(f"{url}/api/v1.1/users/user000001/", headers=headers)
        assert time.perf_counter() - started >= 0.02
        assert answer.status_code == 200
        assert answer.headers["RateLimit-Limit"] == "2"
        assert answer.headers["RateLimit-Remaining"] == "1"
        assert answer.headers["RateLimit-Policy"] == "2;w=1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--latency-ms", "30±x"], "expected milliseconds", id="latency-text"),
        pytest.param(["--latency-ms", "10±30"], "must not exceed", id="jitter-above-mean"),
        pytest.param(
            ["--latency-ms", "30±10", "--latency-jitter-ms", "5"], "give one", id="two-jitters"
        ),
        pytest.param(["--global-rate-limit", "3/m"], "requests per second", id="rate-unit"),
        pytest.param(["--global-rate-limit", "-1"], "requests per second", id="rate-negative"),
    ],
)
def test_bad_latency_or_rate_values_are_refused_naming_the_option(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(sandbox, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "--latency-ms" in result.output or "--global-rate-limit" in result.output
