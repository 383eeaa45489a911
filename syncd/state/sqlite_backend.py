"""The SQLite backend, the default: two files and an flock in one private directory.

syncd.db (the history) and cache.db (the live cache) are the files of
syncd.state.statefile; the lock is syncd.state.lock's flock on
`syncd.state.lock`. A run opens its own handles to both files and closes them
when it ends, so that a cache.db deleted between two daemon cycles costs one
cold read and nothing more. One writer at a time: a second `syncd run` is
refused, not kept as a standby (that takes a database two hosts share).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from syncd.state.backend import Database, Holder, LockHeld, Session, StateStore
from syncd.state.lock import acquire, holder, try_write_lock
from syncd.state.statefile import (
    CACHE_NAME,
    STATE_NAME,
    SqliteDatabase,
    open_cache,
    open_readonly,
    open_state,
)


class SqliteStore(StateStore):
    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.directory = directory
        self.where = str(directory)
        self.read_only = read_only
        self._history: Database | None = None
        self._cache: Database | None = None

    @property
    def history_file(self) -> Path:
        return self.directory / STATE_NAME

    def _open(self, path: Path, writable: Callable[[Path], SqliteDatabase]) -> SqliteDatabase:
        # Read-only (status and its pages): nothing created, a missing file a StateError.
        if not self.read_only:
            return writable(path)
        return open_readonly(path, history=path == self.history_file)

    @property
    def history(self) -> Database:
        if self._history is None:
            self._history = self._open(self.history_file, open_state)
        return self._history

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        with contextlib.ExitStack() as files:
            history = self._open(self.history_file, open_state)
            files.callback(history.close)
            cache = self._open(self.directory / CACHE_NAME, open_cache)
            files.callback(cache.close)
            yield Session(history, cache)

    def cache_for_reading(self) -> Database | None:
        path = self.directory / CACHE_NAME
        if self._cache is None and path.exists():
            self._cache = open_readonly(path)
        return self._cache

    def lock(self, purpose: str) -> LockHeld:
        return acquire(self.directory, purpose)

    def try_write_lock(self, purpose: str) -> LockHeld | None:
        return try_write_lock(self.directory)

    def holders(self) -> list[Holder]:
        pid = holder(self.directory)
        return [] if pid is None else [Holder(f"pid {pid}" if pid else "a process", pid)]

    def close(self) -> None:
        for db in (self._cache, self._history):
            if db is not None:
                db.close()
        self._cache = self._history = None
