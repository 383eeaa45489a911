"""The state backend interface: what the engine and the service see of where the state lives.

Two implementations, chosen by `SYNCD_STATE_URL` (see `open_store`):

    sqlite_backend    two SQLite files in a directory (the default), through sqlite-utils
    postgres_backend  one PostgreSQL database shared by an active instance and its
                      standbys, through psycopg 3 (the extra `syncd[postgres]`)

A `StateStore` hands out `Database` handles: `history` (runs, the audit
trail, daemon_state, not_kept, user_failures) and, for a run, a `Session` of
the history and the cache. The state modules (audit, cache, not_kept,
user_failures) write their SQL once, in the subset both engines share: `?`
placeholders, `INSERT … ON CONFLICT … DO UPDATE`, the identifier "user" quoted,
and `Dialect.json_values` where a JSON array parameter stands for a list of
values. Every error of a backend reaches the user as one StateError
that names the file or the URL (never a password) and the cause.

The lock makes one writer: `StateStore.lock()` takes it or refuses naming the
holder; on PostgreSQL a daemon may also `wait_for_lock()` as a standby, and a
standby passes the push hooks it accepts on to the active instance
(`notify_hook()`, which the active one hears through `hook_notifications()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from syncd.errors import DaemonError

T = TypeVar("T")

if TYPE_CHECKING:
    from syncd.settings import Settings


#: Seconds between two tries of a writers' lock that another writer holds.
WRITE_LOCK_POLL = 0.2
#: Rows read at a time by `Database.read_by_key`, and copied at a time by `syncd state
#: migrate`: memory bounded whatever the table's size.
BATCH = 5000


class Rows(Protocol):
    """What a statement returns: a DB-API cursor (sqlite3's or psycopg's)."""

    @property
    def description(self) -> Any: ...

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


def as_dicts(rows: Rows) -> list[dict[str, Any]]:
    """Every row of a statement, as its columns by name."""
    columns = [description[0] for description in rows.description]
    return [dict(zip(columns, row, strict=True)) for row in rows.fetchall()]


@dataclass(frozen=True, slots=True)
class Dialect:
    """All the SQL that differs between the engines, the schema's (syncd.state.schema) included."""

    name: str
    #: A subquery of the text values of one JSON array parameter: `x IN (<json_values>)`.
    json_values: str
    #: Whether a text column may hold a NUL character (PostgreSQL's may not).
    text_holds_nul: bool
    #: The type of a key numbered by the database, after the largest number ever used.
    key: str
    #: After rows of `{table}` were copied with their numbers (its key `{column}`): what
    #: numbers new rows after them; "" where the key does so itself.
    advance_identity: str
    #: Opens the transaction of a schema change, which one process at a time may run.
    begin_migrations: str
    #: The (name, declared type) of each column of the table `?`, in order.
    columns: str
    #: One row when the table `?` exists, none when it does not.
    table_exists: str
    #: What makes the audit trail append-only: history is never rewritten, nor emptied.
    audit_append_only: tuple[str, ...]
    #: The same, but for the events at or before the last cut a prune recorded
    #: (syncd.state.retention): those may be deleted, oldest first.
    audit_prunable: tuple[str, ...]


_APPEND_ONLY = "the audit trail is append-only"

SQLITE = Dialect(
    "sqlite",
    "SELECT value FROM json_each(?)",
    text_holds_nul=True,
    key="INTEGER PRIMARY KEY AUTOINCREMENT",
    advance_identity="",  # AUTOINCREMENT numbers after the largest number ever used
    # A write lock from the start: a deferred transaction that read first could not take it.
    begin_migrations="BEGIN IMMEDIATE",
    columns="SELECT name, type FROM pragma_table_info(?)",
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    audit_append_only=tuple(
        f"CREATE TRIGGER IF NOT EXISTS audit_no_{change} BEFORE {change.upper()} ON audit"
        f" BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        for change in ("update", "delete")
    ),
    audit_prunable=(
        "DROP TRIGGER IF EXISTS audit_no_delete",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
        " WHEN OLD.seq > (SELECT COALESCE(MAX(seq), 0) FROM audit_cuts)"
        f" BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END",
    ),
)
POSTGRESQL = Dialect(
    "postgresql",
    "SELECT jsonb_array_elements_text(CAST(? AS jsonb))",
    text_holds_nul=False,
    # BY DEFAULT, not ALWAYS: `syncd state migrate` copies each event's number as
    # it was, since outcomes name their intent by it.
    key="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    advance_identity="SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
    " (SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}), false)",
    # Two instances that start together on a new database do not both create it ('sync', 0).
    begin_migrations="BEGIN; SELECT pg_advisory_xact_lock(1937337955, 0)",
    columns="SELECT column_name, data_type FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
    table_exists="SELECT 1 WHERE to_regclass(?) IS NOT NULL",
    audit_append_only=(
        "CREATE OR REPLACE FUNCTION syncd_audit_append_only() RETURNS trigger"
        f" LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$",
        # PostgreSQL 13 has no CREATE OR REPLACE TRIGGER.
        "DROP TRIGGER IF EXISTS audit_no_update ON audit",
        "CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit"
        " FOR EACH ROW EXECUTE FUNCTION syncd_audit_append_only()",
        "DROP TRIGGER IF EXISTS audit_no_truncate ON audit",
        "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit"
        " FOR EACH STATEMENT EXECUTE FUNCTION syncd_audit_append_only()",
    ),
    audit_prunable=(
        "CREATE OR REPLACE FUNCTION syncd_audit_append_only() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN"
        " IF TG_OP = 'DELETE' AND OLD.seq <= (SELECT COALESCE(MAX(seq), 0) FROM audit_cuts)"
        " THEN RETURN OLD; END IF;"
        f" RAISE EXCEPTION '{_APPEND_ONLY}'; END $$",
    ),
)


class Database(ABC):
    """One connection to the state, as the state modules use it."""

    #: The file or the URL (without a password), for messages.
    name: str
    dialect: Dialect
    #: Whether an apply's writes and group commits may run on a thread of their own,
    #: which then has the connection to itself until the apply ends (syncd.state.groupcommit).
    commits_on_a_thread = False

    @abstractmethod
    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        """Run one statement (`?` placeholders); a failure is a StateError naming `name`."""

    @abstractmethod
    def stream(self, sql: str, size: int) -> Iterator[list[Any]]:
        """The rows of one SELECT, `size` at a time, never all in memory at once."""

    def read_by_key(
        self, sql: str, parameters: Sequence[Any], key: str, after: Any
    ) -> Iterator[dict[str, Any]]:
        """The rows of `sql` after `after`, in the order of `key`, read BATCH at a time.

        `sql` selects `key` and ends in `… {key} > ? ORDER BY {key}`; its last `?`
        takes the last key read. Each batch is a query of its own, bounded by its
        LIMIT and answered through the key's index: unlike `stream`, nothing stays
        open between batches.
        """
        while batch := as_dicts(self.execute(f"{sql} LIMIT {BATCH}", [*parameters, after])):
            yield from batch
            after = batch[-1][key]

    @abstractmethod
    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once for each row of parameters (batched where the driver can)."""

    def advance_identity(self, table: str, column: str) -> None:
        """After rows were copied with their numbers: new rows are numbered after them."""
        if self.dialect.advance_identity:
            self.execute(self.dialect.advance_identity.format(table=table, column=column))

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

    def has_table(self, name: str) -> bool:
        return self.execute(self.dialect.table_exists, [name]).fetchone() is not None

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


def refusal_way_on(purpose: str) -> str:
    """What to do about a refused lock, said after the refusal: only an apply can wait."""
    if purpose != "apply":
        return ""
    # --lock-timeout waits for the writers' lock, which a daemon lets go between cycles.
    return "; wait for it with --lock-timeout 5m, or stop it"


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

    #: The state directory or the URL (without a password), for messages.
    where: str
    #: Whether hosts share the state (PostgreSQL): then a second `syncd run` waits as a
    #: standby instead of being refused, and a `plan` writes no cache, since its
    #: writes would race those of the active instance.
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

    @abstractmethod
    def try_write_lock(self, purpose: str) -> LockHeld | None:
        """The writers' lock, or None while another writer holds it.

        The daemon keeps `lock()` for its life and takes this one for each cycle
        only; `apply` takes both, or with `--lock-timeout` waits for this one
        between the daemon's cycles (`write_lock`).
        """

    async def write_lock(self, purpose: str, timeout: float) -> LockHeld:
        """The writers' lock, waiting up to `timeout` seconds for the writer that has it."""
        deadline = time.monotonic() + timeout
        while (held := self.try_write_lock(purpose)) is None:
            if time.monotonic() >= deadline:
                raise DaemonError(
                    f"another syncd still writes to the state at {self.where} after "
                    f"{timeout:g} s ({purpose} refused)"
                )
            await asyncio.sleep(WRITE_LOCK_POLL)
        return held

    async def wait_for_lock(self, stop: asyncio.Event) -> LockHeld | None:
        """Wait as a standby until the lock is ours (None: `stop` was set first)."""
        return self.lock("run")

    def cache_for_reading(self) -> Database | None:
        """The live cache, for `syncd status` (None: there is none yet); closed with the store."""
        return self.history

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


async def off_the_loop(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` on a thread, the event loop free meanwhile. A cancel waits for the
    thread to return before it goes on: the connection is the thread's until then, and
    closing it under a running statement crashes the process."""
    work = asyncio.ensure_future(asyncio.to_thread(call, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await work
        raise
