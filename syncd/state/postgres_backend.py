"""The PostgreSQL backend: the state in one database, one active instance by an advisory lock.

`SYNCD_STATE_URL=postgresql://user@host/db` (libpq's URL; the password never in
it: from `SYNCD_STATE_PASSWORD_FILE`, or libpq's own PGPASSFILE, ~/.pgpass or
PGPASSWORD). Each process holds one session, autocommit, through which it
reads and writes everything: the history and the cache share the database and
so each group commit is one transaction (syncd.state.groupcommit).

The lock is the session-level advisory lock LOCK_KEY. `syncd run` waits for
it as a standby and keeps it while it lives; `plan` and `apply` take it or are
refused, naming the holder. Fencing: the intents of the active instance are
committed through the session that holds the lock, so an instance whose
session has ended (killed, cut off, the server restarted) can commit no
intent, and the applier sends no write without one. The server drops the
session of a host that vanished within about 25 s: the session asks for TCP
keepalives of its own.

Push hooks that reach a standby are passed on to the active instance by a
NOTIFY on HOOK_CHANNEL (the sender's name only: nothing secret); the active
instance LISTENs on a connection of its own, opened again when it is lost.

Every error is one StateError that names the URL, without a password.

The audit table's append-only triggers do not bind the role that owns it (an
owner may disable a trigger, or drop the table): a role that connects owning
the daemon (`syncd run`) is warned of when it connects (docs/postgresql-roles.md:
an owner role migrates, the daemon's role may only insert into the audit and read it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from syncd.errors import CredentialError, DaemonError, StateError
from syncd.secretfiles import read_secret_file
from syncd.settings import redact_url
from syncd.state.backend import (
    POSTGRESQL,
    Database,
    Holder,
    LockHeld,
    Rows,
    Session,
    StateStore,
    refusal_way_on,
)
from syncd.state.schema import CACHE, HISTORY, migrate

if TYPE_CHECKING:
    import psycopg

    from syncd.settings import Settings

log = structlog.get_logger("syncd.state.postgres_backend")

#: pg_advisory_lock's two keys for "the active instance": ('sync', 1).
LOCK_KEY = (0x73796E63, 1)
#: The writers' lock (syncd.state.backend.StateStore.write_lock): per cycle or apply.
WRITE_LOCK_KEY = (0x73796E63, 2)
#: How long one wait of a standby lasts before it looks at its stop signal again.
STANDBY_WAIT_MS = 1000
CONNECT_TIMEOUT = 10
#: What the server's side of the session does to find out that its host vanished.
SESSION_SETTINGS = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}
#: Where standbys pass hooks on to the active instance (LISTEN/NOTIFY).
HOOK_CHANNEL = "syncd_hooks"
#: Seconds one wait for a hook's notification lasts before the listener looks at its
#: stop signal again.
HOOK_WAIT = 1.0
#: The longest reason a notification carries, and the longest taken from one.
MAX_HOOK_REASON = 100
#: Seconds between attempts to listen again after the connection was lost, at most.
MAX_LISTEN_DELAY = 30.0
#: libpq's side of the listening connection: it only reads, so without keepalives of
#: its own it would never learn that the server's host vanished.
CLIENT_KEEPALIVES = {"keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
_LOCK_FILTER = (
    "l.locktype = 'advisory' AND l.classid = ? AND l.objid = ? AND l.objsubid = 2"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _describe(error: BaseException) -> str:
    # libpq's messages run over lines ("…failed: Connection refused\n\tIs the server…").
    return " ".join(str(error).split()) or type(error).__name__


class PostgresDatabase(Database):
    """The one session of this process, as a syncd.state.backend Database."""

    dialect = POSTGRESQL

    def __init__(self, connection: psycopg.Connection[Any], name: str) -> None:
        self.connection = connection
        self.name = name
        #: A block inside the open transaction failed before the server saw it (an
        #: error of ours, or of psycopg's encoding): the transaction must not commit.
        self._block_failed = False

    def error(self, error: BaseException) -> StateError:
        cause = _describe(error)
        if self.connection.broken:
            # After the statement that met the loss, psycopg says only "the connection is
            # closed", which reads as if syncd had closed it.
            cause = f"the server closed the session or went away ({cause})"
        return StateError(f"state database {self.name}: {cause}")

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        import psycopg

        try:
            if parameters:
                return self.connection.execute(_placeholders(sql), list(parameters))
            return self.connection.execute(sql.encode())
        except (psycopg.Error, UnicodeEncodeError) as error:
            raise self.error(error) from None

    def stream(self, sql: str, size: int) -> Iterator[list[Any]]:
        import psycopg

        # A server-side cursor: psycopg's usual one holds the whole result in memory.
        # It lives in a transaction (a read, so nothing is left half-written by a stop).
        with self.atomic():
            try:
                with self.connection.cursor(name="syncd_stream") as cursor:
                    cursor.execute(sql.encode())
                    while rows := cursor.fetchmany(size):
                        yield rows
            except psycopg.Error as error:
                raise self.error(error) from None

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        import psycopg

        try:
            with self.connection.cursor() as cursor:
                # psycopg sends the rows in a pipeline: one round trip, not one a row.
                cursor.executemany(_placeholders(sql), [list(row) for row in rows])
        except (psycopg.Error, UnicodeEncodeError) as error:
            raise self.error(error) from None

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """A transaction; inside one, the block joins it, with no savepoint.

        PostgreSQL aborts a transaction at its first failed statement, and
        `commit` then refuses it: so a block that fails inside one leaves none
        of its writes, nor any other of that transaction. That is what a crash
        loses, which the audit trail survives (an intent is committed before
        its write is sent, and an intent left open is re-read as interrupted);
        the two savepoint statements it saves are a third of an apply's
        round trips to the server. A block that fails on this side, before
        the server sees the statement, fails the transaction the same way.
        """
        if self.in_transaction:
            try:
                yield
            except BaseException:
                self._block_failed = True
                raise
            return
        self.begin()
        try:
            yield
        except BaseException:
            self._quietly_roll_back()
            raise
        self.commit()

    def _quietly_roll_back(self) -> None:
        # The error that brought us here is the one to report, not a broken session's.
        with contextlib.suppress(StateError):
            self.rollback()

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        status = self.connection.info.transaction_status
        return status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)

    def begin(self) -> None:
        self._block_failed = False
        self.execute("BEGIN")

    def commit(self) -> None:
        from psycopg.pq import TransactionStatus

        status = self.connection.info.transaction_status
        if status == TransactionStatus.IDLE:
            return
        if status == TransactionStatus.INERROR or self._block_failed:
            # PostgreSQL answers COMMIT in a failed transaction with a ROLLBACK, and no
            # error: the caller must not take its rows for durable.
            self._quietly_roll_back()
            raise StateError(
                f"state database {self.name}: a statement of the transaction failed, "
                "and it was rolled back"
            )
        # A lost connection (UNKNOWN) fails here: nothing is taken for committed.
        self.execute("COMMIT")

    def commit_and_begin(self) -> None:
        from psycopg.pq import TransactionStatus

        status = self.connection.info.transaction_status
        if status != TransactionStatus.INTRANS or self._block_failed:
            super().commit_and_begin()  # raises for a failed or lost transaction
            return
        # Two statements, one round trip (no parameters: the simple query protocol).
        self.execute("COMMIT; BEGIN")

    def rollback(self) -> None:
        self._block_failed = False
        if self.in_transaction:
            self.execute("ROLLBACK")

    def check_writable(self) -> None:
        # A write that changes nothing meets a read-only session, a missing grant
        # or a dead connection before any request is sent.
        with self.atomic():
            self.execute("UPDATE schema_migrations SET name = name WHERE false")
            self.execute("UPDATE live_accounts SET username = username WHERE false")

    def close(self) -> None:
        self.connection.close()


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> bytes:
    """syncd's `?` placeholders as psycopg's `%s` (no `?` is in a literal of ours)."""
    return sql.replace("%", "%%").replace("?", "%s").encode()


class _AdvisoryLock(LockHeld):
    """LOCK_KEY or WRITE_LOCK_KEY, held by the store's session."""

    def __init__(self, store: PostgresStore, key: tuple[int, int]) -> None:
        self.store, self.key = store, key

    def release(self) -> None:
        if not self.store.db.connection.closed:
            with contextlib.suppress(StateError):
                self.store.db.execute(f"SELECT pg_advisory_unlock({self.key[0]}, {self.key[1]})")


@dataclass(frozen=True, slots=True)
class _Conninfo:
    """How to connect again (no password kept: its file is read at each connection)."""

    url: str
    where: str
    password_file: Path | None
    options: str

    def connect(self, purpose: str, **extra: Any) -> psycopg.Connection[Any]:
        import psycopg

        kwargs: dict[str, Any] = dict(extra)
        if self.password_file is not None:
            try:
                kwargs["password"] = read_secret_file(
                    self.password_file, what="password file", refused_then=""
                )
            except CredentialError as error:
                raise StateError(f"state database {self.where}: {error}") from None
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                application_name=instance_name(purpose),
                options=self.options,
                **kwargs,
            )
        except psycopg.Error as error:
            raise StateError(f"state database {self.where}: {_describe(error)}") from None


class PostgresStore(StateStore):
    shared = True

    def __init__(self, db: PostgresDatabase, where: str, conninfo: _Conninfo) -> None:
        self.db = db
        self.where = where
        self._conninfo = conninfo

    @classmethod
    def open(cls, settings: Settings, purpose: str, *, read_only: bool = False) -> PostgresStore:
        """Connect as `syncd <purpose>`, and (unless `read_only`) create or migrate the schema."""
        url = settings.state_url
        assert url is not None
        where = redact_url(url)
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise StateError(
                f"state database {where}: the PostgreSQL backend needs psycopg: "
                "install syncd[postgres]"
            ) from None
        options = " ".join(f"-c {key}={value}" for key, value in SESSION_SETTINGS.items())
        if read_only:
            options += " -c default_transaction_read_only=on"
        conninfo = _Conninfo(url, where, settings.state_password_file, options)
        connection = conninfo.connect(purpose)
        store = cls(PostgresDatabase(connection, where), where, conninfo)
        if not read_only:
            try:
                migrate(store.db, HISTORY + CACHE)
                if purpose == "run":  # the daemon's role; an operator's may be the owner
                    warn_if_audit_owner(store.db)
            except BaseException:
                store.close()
                raise
        return store

    @property
    def history(self) -> Database:
        return self.db

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        yield Session(self.db, self.db)

    def _try_lock(self, key: tuple[int, int]) -> LockHeld | None:
        (taken,) = self.db.execute(f"SELECT pg_try_advisory_lock({key[0]}, {key[1]})").fetchone()
        return _AdvisoryLock(self, key) if taken else None

    def try_write_lock(self, purpose: str) -> LockHeld | None:
        return self._try_lock(WRITE_LOCK_KEY)

    def lock(self, purpose: str) -> LockHeld:
        if (held := self._try_lock(LOCK_KEY)) is None:
            active = next((h for h in self.holders() if h.active), None)
            who = active.name if active else "another syncd"
            raise DaemonError(
                f"{who} holds the state at {self.where}: one run or apply at a time"
                f" ({purpose} refused){refusal_way_on(purpose)}"
            )
        return held

    async def wait_for_lock(self, stop: asyncio.Event) -> LockHeld | None:
        while not stop.is_set():
            # In a thread: the wait blocks, and the event loop must hear signals.
            if await asyncio.to_thread(self._wait_once):
                held = _AdvisoryLock(self, LOCK_KEY)
                if stop.is_set():  # told to stop while it waited: stand down, not up
                    held.release()
                    return None
                return held
        return None

    def _wait_once(self) -> bool:
        """Wait up to STANDBY_WAIT_MS for the lock: queued by the server, so that the
        standby gets it the moment the active session ends."""
        import psycopg

        connection = self.db.connection
        try:
            connection.execute(f"SET lock_timeout = {STANDBY_WAIT_MS}".encode())
            try:
                connection.execute(
                    f"SELECT pg_advisory_lock({LOCK_KEY[0]}, {LOCK_KEY[1]})".encode()
                )
            except psycopg.errors.LockNotAvailable:
                return False
            finally:
                connection.execute(b"RESET lock_timeout")
        except psycopg.Error as error:
            raise self.db.error(error) from None
        return True

    def holds_lock(self) -> bool:
        if self.db.connection.broken or self.db.connection.closed:
            return False
        try:
            row = self.db.execute(
                f"SELECT EXISTS (SELECT 1 FROM pg_locks AS l WHERE {_LOCK_FILTER}"
                " AND l.pid = pg_backend_pid() AND l.granted)",
                LOCK_KEY,
            ).fetchone()
        except StateError:  # a session that cannot answer holds nothing
            return False
        return row is not None and bool(row[0])

    def notify_hook(self, reason: str) -> None:
        # Through the standby's session: it may be waiting for the lock in a thread
        # (psycopg takes turns), at most STANDBY_WAIT_MS.
        self.db.execute("SELECT pg_notify(?, ?)", [HOOK_CHANNEL, reason[:MAX_HOOK_REASON]])

    def hook_notifications(self, stop: threading.Event) -> Iterator[str]:
        import psycopg

        connection: psycopg.Connection[Any] | None = None
        delay, lost = 1.0, False
        try:
            while not stop.is_set():
                try:
                    if connection is None:
                        # Not "syncd run …": `syncd status` would list it as a standby.
                        connection = self._conninfo.connect("hooks", **CLIENT_KEEPALIVES)
                        connection.execute(f"LISTEN {HOOK_CHANNEL}".encode())
                        log.info("hooks_listening", state=self.where, again=lost)
                        delay = 1.0
                        if lost:  # a hook passed on meanwhile was heard by nobody
                            lost = False
                            yield ""
                    for notification in connection.notifies(timeout=HOOK_WAIT):
                        yield notification.payload[:MAX_HOOK_REASON]
                except (psycopg.Error, StateError) as error:
                    log.warning(
                        "hooks_listening_lost",
                        state=self.where,
                        error=_describe(error),
                        retry_in=delay,
                    )
                    lost = True
                    if connection is not None:
                        connection.close()
                        connection = None
                    stop.wait(delay)
                    delay = min(2 * delay, MAX_LISTEN_DELAY)
        finally:
            if connection is not None:
                connection.close()

    def holders(self) -> list[Holder]:
        """The session that holds the lock (any command), then the `syncd run` standing by."""
        rows = self.db.execute(
            "SELECT * FROM (SELECT a.application_name, a.backend_start,"
            f" EXISTS (SELECT 1 FROM pg_locks AS l WHERE {_LOCK_FILTER}"
            "  AND l.pid = a.pid AND l.granted) AS active"
            " FROM pg_stat_activity AS a WHERE a.datname = current_database()"
            " AND a.application_name LIKE 'syncd %' AND a.pid <> pg_backend_pid()) AS s"
            " WHERE active OR application_name LIKE 'syncd run %'"
            " ORDER BY active DESC, backend_start",
            LOCK_KEY,
        ).fetchall()
        return [Holder(name, since=_iso(started), active=held) for name, started, held in rows]

    def close(self) -> None:
        self.db.close()


def _iso(started: datetime | None) -> str | None:
    # None: the session is another role's, whose start the server shows only to a
    # superuser or a member of pg_read_all_stats (its name it shows to all).
    return None if started is None else started.astimezone(UTC).isoformat(timespec="seconds")


def warn_if_audit_owner(db: PostgresDatabase) -> None:
    """Say so when the role connected owns the audit table: its triggers cannot
    stop the owner from rewriting or deleting the history."""
    owns = db.execute(
        "SELECT tableowner = current_user FROM pg_tables"
        " WHERE schemaname = current_schema() AND tablename = 'audit'"
    ).fetchone()
    if owns is not None and owns[0]:
        log.warning(
            "audit_table_owned",
            state=db.name,
            message="this role owns the audit table, so it may disable its append-only "
            "triggers: connect as a role that may only insert into it and read it "
            "(docs/postgresql-roles.md)",
        )


def instance_name(command: str) -> str:
    """Who this process is, as the server shows it (application_name, at most 63 bytes)."""
    return f"syncd {command} on {socket.gethostname()} pid {os.getpid()}"[:63]
