"""The state backend interface: what the engine and the service see of where the state lives.

Two implementations, chosen by `SYNCD_STATE_URL` (see `open_store`):

    sqlite_backend    two SQLite files in a directory (the default), through sqlite-utils
    postgres_backend  one PostgreSQL database shared by an active instance and its
                      standbys, through psycopg 3 (the extra `syncd[postgres]`)

A `StateStore` hands out `Database` handles: `history` (runs, the audit
trail, daemon_state, not_kept, user_failures) and, for a run, a `Session` of
the history and the cache. The state modules (audit, cache, not_kept,
user_failures) write their SQL once, in the subset both engines share: `?`
placeholders, `INSERT … ON CONFLICT … DO UPDATE`, `Database.insert`, the identifier
"user" quoted, and `Dialect.json_values` where a JSON array parameter stands for
a list of values. Every error of a backend reaches the user as one StateError
that names the file or the URL (never a password) and the cause.

The lock makes one writer: `StateStore.lock()` takes it or refuses naming the
holder; on PostgreSQL a daemon may also `wait_for_lock()` as a standby, and a
standby passes the push hooks it accepts on to the active instance
(`notify_hook()`, which the active one hears through `hook_notifications()`).
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from syncd.errors import StateError

if TYPE_CHECKING:
    from syncd.settings import Settings


def newer_schema(where: object, version: int, known: int) -> StateError:
    """A state made by a newer syncd: an older one (a rollback, a replica not yet
    upgraded) must not write to a schema it does not know."""
    return StateError(
        f"state {where}: schema version {version} was made by a newer syncd (this one "
        f"knows {known}); run that version, or restore a backup of the state"
    )


class Rows(Protocol):
    """What a statement returns: a DB-API cursor (sqlite3's or psycopg's)."""

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few pieces of SQL that differ between the engines."""

    name: str
    #: A subquery of the text values of one JSON array parameter: `x IN (<json_values>)`.
    json_values: str
    #: Whether a text column may hold a NUL character (PostgreSQL's may not).
    text_holds_nul: bool


SQLITE = Dialect("sqlite", "SELECT value FROM json_each(?)", text_holds_nul=True)
POSTGRESQL = Dialect(
    "postgresql", "SELECT jsonb_array_elements_text(CAST(? AS jsonb))", text_holds_nul=False
)


class Database(ABC):
    """One connection to the state, as the state modules use it."""

    #: The file or the URL (without a password), for messages.
    name: str
    dialect: Dialect

    @abstractmethod
    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        """Run one statement (`?` placeholders); a failure is a StateError naming `name`."""

    @abstractmethod
    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once for each row of parameters (batched where the driver can)."""

    @abstractmethod
    def advance_identity(self, table: str, column: str) -> None:
        """After rows were copied with their numbers: new rows are numbered after them."""

    @abstractmethod
    def insert(self, sql: str, parameters: Sequence[Any], key: str) -> int:
        """Run one INSERT of one row; the number the database gave its column `key`."""

    @abstractmethod
    def atomic(self) -> AbstractContextManager[None]:
        """All of the block's writes or none: a transaction, or a savepoint inside one."""

    @property
    @abstractmethod
    def in_transaction(self) -> bool: ...

    @abstractmethod
    def begin(self) -> None:
        """Open a transaction that stays open until `commit` (the group commit's)."""

    @abstractmethod
    def commit(self) -> None: ...

    def commit_and_begin(self) -> None:
        """Commit, and open the next transaction (one round trip where the engine allows)."""
        self.commit()
        self.begin()

    @abstractmethod
    def rollback(self) -> None: ...

    def many_commits(self) -> AbstractContextManager[None]:
        """While commit follows commit (an apply's group commits): what makes each cheaper.

        Nothing by default; never anything that makes a commit less durable.
        """
        return nullcontext()

    @abstractmethod
    def check_writable(self) -> None:
        """Raise the StateError a write would meet, by a write that changes nothing.

        BEGIN proves nothing: a read-only file would fail only at its first
        write, after a request was sent.
        """

    @abstractmethod
    def has_table(self, name: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Session:
    """What one run writes through: the history and the cache (one handle on PostgreSQL)."""

    history: Database
    cache: Database


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the lock, or stands by for it, as `syncd status` shows them."""

    #: Who the instance says it is: "syncd run on HOST pid PID".
    name: str
    #: Its process id, when it runs on this host (SQLite); 0: it could not say.
    pid: int | None = None
    #: When its session began (ISO 8601), where the backend knows.
    since: str | None = None
    active: bool = True


class LockHeld(ABC):
    """The lock, held until `release()` (or the end of the process or of its session)."""

    @abstractmethod
    def release(self) -> None: ...

    def __enter__(self) -> LockHeld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class StateStore(ABC):
    """Where the state lives: its handles, the lock and who holds it."""

    #: "sqlite" or "postgresql".
    kind: str
    #: The state directory or the URL (without a password), for messages.
    where: str
    #: Whether hosts share the state (PostgreSQL): then a second `syncd run` waits as a
    #: standby instead of being refused, and `plan` takes the lock too, since its
    #: cache writes would race those of the active instance.
    shared: bool = False

    @property
    @abstractmethod
    def history(self) -> Database:
        """The long-lived handle to the history, opened on first use, closed with the store."""

    @abstractmethod
    def session(self) -> AbstractContextManager[Session]:
        """The handles of one run; on SQLite files of their own, opened and closed with it."""

    @abstractmethod
    def lock(self, purpose: str) -> LockHeld:
        """Take the lock now, or raise DaemonError naming its holder (`purpose`: the command)."""

    async def wait_for_lock(self, stop: asyncio.Event) -> LockHeld | None:
        """Wait as a standby until the lock is ours (None: `stop` was set first)."""
        return self.lock("run")

    def holds_lock(self) -> bool:
        """Whether the lock taken is still ours (on PostgreSQL: whether its session lives)."""
        return True

    def notify_hook(self, reason: str) -> None:  # noqa: B027  (most backends: nothing)
        """Tell the active instance that a hook asks for a cycle (`reason`: who sent it,
        nothing secret); a StateError when it cannot be told. Only a standby has another
        instance to tell: on SQLite there is none, and nothing is sent."""

    def hook_notifications(self, stop: threading.Event) -> Iterator[str]:
        """Blocking: the reason of each hook a standby passed on, as it comes, until
        `stop` is set (within a second or so); "" when hooks may have been missed (the
        listening connection was lost, and is back). None on SQLite: no standby."""
        return iter(())

    @abstractmethod
    def holders(self) -> list[Holder]:
        """The instance that holds the lock, if any, first; then those standing by."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(settings: Settings, purpose: str, *, read_only: bool = False) -> StateStore:
    """The backend `SYNCD_STATE_URL` names: PostgreSQL for a postgresql:// URL, else SQLite.

    `purpose` is the command (run, apply, plan…), for who holds the lock.
    `read_only` (for `syncd status`): nothing is created or written.
    """
    if settings.on_postgresql:
        from syncd.state.postgres_backend import PostgresStore

        return PostgresStore.open(settings, purpose, read_only=read_only)
    from syncd.state.sqlite_backend import SqliteStore

    return SqliteStore(settings.sqlite_dir, read_only=read_only)
