"""A small world for reconciliation tests: seeded sandbox accounts, their
credentials directory, a desired-state file and the settings that tie them.

The fixtures `world`, `pg_world` and `any_world` (tests/conftest.py) make one."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from syncd.desired.loading import load_desired
from syncd.engine.reconcile import ConvergeResult, connect, converge, planning
from syncd.settings import Settings, load_settings
from tests.postgres import Database

ALL_SCOPES = ["profile_read", "profile_write", "email_read", "email_write"]


def account(
    emails: list[str], token: str, scopes: list[str] | None = None, **profile: str
) -> dict[str, Any]:
    """A seeded account: the first address is the primary, verified."""
    return {
        **profile,
        "tokens": [{"token": token, "scopes": scopes or ALL_SCOPES}],
        "emails": [{"email": emails[0], "primary": True, "verified": True}, *emails[1:]],
    }


STANDARD_SEED: dict[str, Any] = {
    "users": {
        "janedoe": account(
            ["jane.doe@example.com", "old@example.com"],
            "tok-jane",
            full_name="Jane",
            location="San Francisco, CA",
            company="Success, Inc.",
            profile_url="https://docker.io/",
        ),
        "johnsmith": account(["john@example.com"], "tok-john", full_name="John Smith"),
    }
}

STANDARD_DESIRED: dict[str, Any] = {
    "version": 1,
    "users": {
        "janedoe": {
            "full_name": "Jane Doe",
            "location": "Private Island",
            "emails": ["jane.doe@example.com", "jane.doe+other@example.com"],
        },
        "johnsmith": {"full_name": "John Smith"},
    },
}


def write_secret(path: Path, text: str) -> None:
    """A credential file as syncd accepts one: mode 0600 (it refuses a file others can read)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w") as handle:
        handle.write(text)


@dataclass
class World:
    sandbox: Any
    root: Path
    #: The PostgreSQL database of the state; None: the SQLite files in state_dir.
    database: Database | None = None

    @property
    def desired_file(self) -> Path:
        return self.root / "desired-state.yaml"

    @property
    def credentials_dir(self) -> Path:
        return self.root / "credentials"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def seed(self, seed: dict[str, Any], **reset: Any) -> None:
        self.sandbox.reset(seed=seed, **reset)
        self.credentials_dir.mkdir(exist_ok=True)
        for username, spec in seed["users"].items():
            for token in spec.get("tokens", [])[:1]:
                write_secret(self.credentials_dir / f"{username}.token", token["token"] + "\n")

    def desire(self, desired: dict[str, Any]) -> None:
        # Written aside and renamed: a running daemon must not read it half written.
        aside = self.desired_file.with_suffix(".tmp")
        with aside.open("w") as handle:
            YAML().dump(desired, handle)
        aside.replace(self.desired_file)

    def settings(self, **overrides: Any) -> Settings:
        given: dict[str, Any] = {
            "api_url": self.sandbox.url,
            "credentials_dir": str(self.credentials_dir),
            "state_dir": str(self.state_dir),
            "desired": str(self.desired_file),
        }
        if self.database is not None:
            given["state_url"] = self.database.url
            given["state_password_file"] = str(self.database.password_file)
        return load_settings(**{**given, **overrides})

    def state_env(self) -> dict[str, str]:
        """The environment that points a syncd process at this world's state backend."""
        if self.database is None:
            return {}
        return {
            "SYNCD_STATE_URL": self.database.url,
            "SYNCD_STATE_PASSWORD_FILE": str(self.database.password_file),
        }

    def query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of the history (`?` placeholders), read past syncd, on either backend."""
        if self.database is None:
            with sqlite3.connect(self.state_dir / "syncd.db") as db:
                db.row_factory = sqlite3.Row
                rows = [dict(row) for row in db.execute(sql, parameters)]
            db.close()
            return rows
        import psycopg
        from psycopg.rows import dict_row

        password = self.database.password_file.read_text().strip()
        with psycopg.connect(self.database.url, password=password, row_factory=dict_row) as db:
            return list(db.execute(sql.replace("?", "%s").encode(), parameters or None))

    def apply(self, settings: Settings | None = None, limit: int = 10) -> ConvergeResult:
        """One converge of the desired file, confirmed, as `syncd apply --yes` runs it."""
        desired = load_desired(self.desired_file)

        async def run() -> ConvergeResult:
            async with connect(settings or self.settings()) as connection:
                return await converge(
                    connection,
                    planning(desired),
                    command="apply",
                    deletion_limit=limit,
                    confirm=lambda _: True,
                )

        return asyncio.run(run())

    def api_args(self) -> list[str]:
        """The flags of a command that reads the API without a desired state (import)."""
        return [
            "--api-url",
            self.sandbox.url,
            "--credentials-dir",
            str(self.credentials_dir),
            "--state-dir",
            str(self.state_dir),
        ]

    def cli_args(self) -> list[str]:
        return [*self.api_args(), "-f", str(self.desired_file)]

    def emails_of(self, username: str) -> list[str]:
        """The addresses the sandbox holds for a user, read with the staff token."""
        response = httpx.get(
            f"{self.sandbox.url}/api/v1.1/users/{username}/emails/",
            headers={"Authorization": f"Bearer {self.sandbox.admin_token}"},
        )
        response.raise_for_status()
        return [entry["email"] for entry in response.json()]

    def writes(self) -> int:
        by_method = self.sandbox.stats()["by_method"]
        return sum(by_method.get(m, 0) for m in ("PATCH", "POST", "DELETE"))

    def gets(self) -> int:
        return int(self.sandbox.stats()["by_method"].get("GET", 0))


def make_world(
    sandbox: Any, root: Path, monkeypatch: pytest.MonkeyPatch, database: Database | None = None
) -> World:
    # Nothing from the developer's environment may steer a test.
    for name in ("SYNCD_TOKEN", "SYNCD_DESIRED", "SYNCD_CONFIG", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("SYNCD_STATE_URL", "SYNCD_STATE_PASSWORD_FILE", "PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(name, raising=False)
    made = World(sandbox, root, database)
    made.seed(STANDARD_SEED)
    made.desire(STANDARD_DESIRED)
    return made


def admin_patch(world: World, username: str, **fields: str) -> None:
    """Change an account's profile behind syncd's back, as the sandbox's staff."""
    response = httpx.patch(
        f"{world.sandbox.url}/api/v1.1/users/{username}/",
        json=fields,
        headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
    )
    response.raise_for_status()


def run_syncd(world: World, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A syncd command on the world, its log as JSON lines."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(world.root),
        "SYNCD_LOG_FORMAT": "json",
        "SYNCD_API_URL": world.sandbox.url,
        "SYNCD_CREDENTIALS_DIR": str(world.credentials_dir),
        "SYNCD_STATE_DIR": str(world.state_dir),
        "SYNCD_DESIRED": str(world.desired_file),
        **world.state_env(),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
