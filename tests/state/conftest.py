"""The state test suite runs on both backends: each test gets a new, empty state on each.

    def test_something(store):        # a StateStore: SQLite files, then a PostgreSQL database
        store.history.execute(...)

On PostgreSQL each test has a database of its own (tests/postgres.py).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.settings import Settings, load_settings
from syncd.state.backend import StateStore, open_store
from syncd.state.sqlite_backend import SqliteStore
from tests.postgres import Cluster

BACKENDS = ["sqlite", "postgresql"]
#: The APIs the rows are kept for (syncd.core.api_url's form).
API, OTHER_API = "https://accounts.example", "https://staging.accounts.example"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def state_settings(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings that name a new, empty state on the test's backend."""
    for name in ("SYNCD_STATE_URL", "SYNCD_STATE_PASSWORD_FILE", "PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(name, raising=False)
    if backend == "sqlite":
        yield load_settings(state_dir=str(tmp_path / "state"))
        return
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    database = cluster.new_database()
    try:
        yield load_settings(
            state_dir=str(tmp_path / "state"),
            state_url=database.url,
            state_password_file=str(database.password_file),
        )
    finally:
        cluster.drop_database(database.name)


@pytest.fixture
def open_new(state_settings: Settings) -> Iterator[Callable[..., StateStore]]:
    """Opens stores on the test's state (as many as the test wants); all closed after it."""
    opened: list[StateStore] = []

    def open_one(purpose: str = "apply", **kwargs: bool) -> StateStore:
        store = open_store(state_settings, purpose, **kwargs)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_new: Callable[..., StateStore]) -> StateStore:
    return open_new()


def tamper(store: StateStore, *statements: str) -> None:
    """Run `statements` as the owner of the history, past the append-only triggers."""
    if isinstance(store, SqliteStore):
        store.close()  # the file is changed by another process's connection
        with contextlib.closing(sqlite3.connect(store.history_file)) as db:
            db.execute("DROP TRIGGER IF EXISTS audit_no_update")
            db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
            for statement in statements:
                db.execute(statement)
            db.commit()
        return
    db = store.history
    db.execute("ALTER TABLE audit DISABLE TRIGGER USER")
    for statement in statements:
        db.execute(statement)
