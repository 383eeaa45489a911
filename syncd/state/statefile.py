"""The SQLite files of the state directory: where they live, how they are opened, their tables.

Two files (design.md section 5), each created with mode 0600 in a directory of
mode 0700, in WAL mode so that `syncd status` can read while a run writes:

    syncd.db  runs, the audit trail, what the daemon says about itself: history,
              never disposable
    cache.db  the live-state cache: disposable, deleting it costs one cold read

They are apart so that deleting "the cache" can never delete the history. An
empty cache.db is made again, a damaged one set aside (NamedConnection.damaged);
a syncd.db without its tables (emptied by a failed restore, a full disk) is
refused, never taken for a new history, and syncd makes its own whole or not at
all. Both are never opened through a link (see
syncd.privatefiles). Every error of either file reaches the user as one
StateError that names the file and the cause (disk full, read-only, corrupt),
whichever statement or fetch met it. Each is opened as a
`SqliteDatabase`, the SQLite side of syncd.state.backend's `Database`, its
tables those of syncd.state.schema.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import sqlite_utils

from syncd.errors import StateError
from syncd.privatefiles import private_directory, private_file
from syncd.state.backend import SQLITE, Database, Rows
from syncd.state.checkpoints import checkpointing
from syncd.state.schema import CACHE, HISTORY, migrate, run

STATE_NAME = "syncd.db"
CACHE_NAME = "cache.db"

#: What syncd.db held before cache.db: the live cache, in two formats.
LEFT_BEHIND = ("live_accounts", "live_users")


def describe(error: sqlite3.Error) -> str:
    """SQLite's words for what went wrong, without the class name."""
    return str(error) or error.__class__.__name__


class NamedConnection(sqlite3.Connection):
    """A connection whose every failed statement raises a StateError naming its file.

    sqlite-utils sends every statement through `execute` (BEGIN and COMMIT
    included), so this one place turns "database or disk is full" anywhere in
    a run into one line that says which file, instead of a traceback.
    """

    path = "?"
    #: The file's inode when it is cache.db opened to be written (open_cache), else None;
    #: and whether it was met damaged: then it is set aside once closed, so that the next
    #: run makes a new one instead of failing until someone deletes it.
    disposable: int | None = None
    damaged = False

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        with self.named():
            # SQLite steps a query as its rows are fetched: the fetches are named too.
            return NamedCursor(self).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        # Not through `execute`: a batch (`state migrate`'s copy) must fail as one does.
        with self.named():
            return super().executemany(sql, parameters)

    @contextlib.contextmanager
    def named(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise self.failed(error) from None
        except UnicodeEncodeError:  # a lone surrogate in a value: not text SQLite takes
            raise StateError(f"state file {self.path}: a value is not valid text") from None

    def failed(self, error: sqlite3.Error) -> StateError:
        """The StateError for a statement or fetch of this connection that failed."""
        self.damaged |= self.disposable is not None and _code(error) in _DAMAGED
        aside = _damaged(Path(self.path))  # said only where it can be done
        can = self.damaged and os.access(aside.parent, os.W_OK) and not aside.is_dir()
        return state_error(self.path, error, set_aside=can)


class NamedCursor(sqlite3.Cursor):
    """A cursor whose fetches fail as NamedConnection's statements do: a damaged page is
    met while the rows are read (a verify, an export, a migrate), not when asked for."""

    connection: NamedConnection

    def fetchone(self) -> Any:
        with self.connection.named():
            return super().fetchone()

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        with self.connection.named():
            return super().fetchmany(size)

    def fetchall(self) -> list[Any]:
        with self.connection.named():
            return super().fetchall()

    def __next__(self) -> Any:
        try:  # per row: no context manager to enter
            return super().__next__()
        except sqlite3.Error as error:
            raise self.connection.failed(error) from None


def state_error(
    path: str | Path, error: sqlite3.Error | OSError, *, set_aside: bool = False
) -> StateError:
    cause = describe(error) if isinstance(error, sqlite3.Error) else error.strerror or str(error)
    code = _code(error)
    if code in _UNWRITABLE and (why := _why_unwritable(Path(path))) is not None:
        cause += f" ({why})"
    elif code in _DAMAGED and Path(path).name == CACHE_NAME:
        cause += (
            f" (it only holds the live cache: it is set aside as {_damaged(Path(path)).name}, and "
            "the next run reads every user again)"
            if set_aside
            else " (it only holds the live cache: delete it, which costs one cold read)"
        )
    return StateError(f"state file {path}: {cause}")


def _code(error: sqlite3.Error | OSError) -> int:
    # Not every sqlite3.Error comes from SQLite's C code with a code; an OSError none.
    return getattr(error, "sqlite_errorcode", 0) & 0xFF


#: SQLite's codes for a file it could not open or write, without saying why.
_UNWRITABLE = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY})
#: SQLite's codes for a damaged file, or none of its.
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def _why_unwritable(path: Path) -> str | None:
    """What keeps SQLite from writing `path` or its -wal and -shm files beside it."""
    directory = path.parent
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"{directory} is on a read-only file system"
    except OSError:
        return None
    if not os.access(directory, os.W_OK):
        return f"the running user may not create files in {directory}"
    return None


def open_state(path: Path) -> SqliteDatabase:
    """Open syncd.db, the runs and the audit trail, private to its owner; made where none is."""
    # Looked for first: a -wal appears only once syncd.db is there and open, so one seen
    # before syncd.db is found missing is what is left of a history, and SQLite would
    # replay its pages onto a new file (old runs back, or a malformed file).
    wal = os.path.lexists(f"{path}-wal")
    if not os.path.lexists(path):
        if wal:
            raise StateError(
                f"state file {path}: missing, but its {path.name}-wal is there: "
                f"{_set_aside(path)}, then restore {path.name}, or begin a new, empty history"
            )
        _create_state(path)
    _remove_second_names(path)
    db = _open(path, history=True)
    with _closed_on_error(db):
        # Each commit reaches the disk before it returns: in WAL mode NORMAL syncs only at
        # checkpoints, and an intent must be on disk before its write is sent (a power
        # cut after the write would leave no trace of it). The cache keeps NORMAL: it is
        # committed before the history, and disposable.
        db.execute("PRAGMA synchronous=FULL")
        # A cache is disposable, and history must not share a file with it.
        for table in LEFT_BEHIND:
            db.execute(f"DROP TABLE IF EXISTS {table}")
        migrate(db, HISTORY)
    return db


def _create_state(path: Path) -> None:
    """Make syncd.db whole or not at all: its tables written aside, then linked in.

    An existing syncd.db without them is refused, never taken for a new history
    (_open_history), so none may be seen before its tables are in it: a crash
    half-way leaves a hidden file aside, and the next start makes another (and
    removes it if it was already linked in: _remove_second_names). On a file
    system without hard links (vfat, exFAT, SMB, some FUSE), it is copied in.
    """
    private_directory(path.parent)
    descriptor, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(descriptor)
    try:
        # A rollback journal, not WAL: the whole file is in `aside` once it is closed.
        db = _connect(path, aside)
        try:
            db.execute("PRAGMA synchronous=FULL")
            migrate(db, HISTORY)
        finally:
            db.close()
        # A link, not a rename: a syncd.db another process made meanwhile stays as it is;
        # and not a copy: another process never sees a syncd.db partly written, which
        # it would refuse.
        with contextlib.suppress(FileExistsError):
            try:
                os.link(aside, path)
            except OSError as error:
                if error.errno not in _NO_HARD_LINKS:
                    raise
                _copy_new(aside, path)
    except OSError as error:
        raise state_error(path, error) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)


#: link(2)'s errors on a file system without hard links.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})


def _copy_new(source: str, path: Path) -> None:
    """Copy `source` to `path`, a new file (FileExistsError if there is one), synced.

    Until it is whole, a first start at the same instant may see it and refuse it:
    a link has no such window, a copy is for file systems without links.
    """
    data = Path(source).read_bytes()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(target, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(path)  # ours (O_EXCL), and not whole
        raise


def _remove_second_names(path: Path) -> None:
    """Remove what a start killed between its link and its unlink (_create_state) left:
    a hidden second name of syncd.db. The same file only, never another process's
    creation in progress."""
    for aside in path.parent.glob(f".{path.name}.*"):
        with contextlib.suppress(OSError):
            if os.path.samefile(aside, path):
                aside.unlink()


def _open_history(path: Path, query: str) -> SqliteDatabase:
    """syncd.db through its URI with `query`, refused without syncd's tables.

    Such a file is a failed copy or restore, a full disk, a truncation: taken
    for a new state, it would drop the history and the operator's suspensions
    without a word. It is left as it was found, with its -wal (the newest part
    of the history, which a restore may miss): so its size is read before SQLite
    opens it, which deletes the -wal beside a file of 0 bytes.
    """
    try:
        empty = path.stat().st_size == 0
    except OSError as error:
        raise state_error(path, error) from None
    if not empty:
        db = _connect(path, f"{path.resolve().as_uri()}?{query}", uri=True)
        with _closed_on_error(db):
            if db.has_table("runs"):
                return db
        db.close()
    what = "is empty (0 bytes)" if empty else "holds no syncd tables"
    raise StateError(
        f"state file {path}: {what}, so its history is not there: {_set_aside(path)} if "
        "they are there, then restore it from a backup, or remove it to begin a new, empty one"
    )


def _set_aside(path: Path) -> str:
    # SQLite would replay a -wal left beside it onto a file restored from a backup.
    name = path.name
    return f"move {name}-wal and {name}-shm aside (a restored file takes them for its own)"


def open_cache(path: Path) -> SqliteDatabase:
    """Open (creating if needed) cache.db, the live-state cache, private to its owner."""
    db = _open(path)
    with _closed_on_error(db):
        for migration in CACHE:  # recorded nowhere: see syncd.state.schema
            run(db, migration)
    return db


def _open(path: Path, *, history: bool = False) -> SqliteDatabase:
    claim_database(path)
    if history:  # read-only: a read-write connection may checkpoint and delete the -wal
        _open_history(path, "mode=ro").close()
    db = _connect(path, path, timeout=30, check_same_thread=False)
    if not history:  # cache.db, before its first statement: which may meet its damage
        connection = cast(NamedConnection, db.db.conn)
        connection.disposable = os.stat(path, follow_symlinks=False).st_ino
    with _closed_on_error(db):
        db.db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
    return db


def open_readonly(path: Path, *, history: bool = False) -> SqliteDatabase:
    """The state file, read-only, creating nothing beside it; its errors name it.

    `history`: it is syncd.db, refused without its tables as open_state refuses it.

    A read-only SQLite connection still creates the -wal and -shm files when they
    are missing; made by root next to a service's database, they would lock the
    service out. So when they are missing (no writer), the file is opened immutable.
    """
    # status runs as root against a service's directory: a link planted there
    # must not make it read (and show) another file.
    for name in (path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm"))):
        if name.is_symlink():
            raise StateError(
                f"{name} is a symbolic link: refused (syncd does not follow links here)"
            )
    live = all(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm"))
    query = "mode=ro" if live else "immutable=1"
    if history:
        return _open_history(path, query)
    return _connect(path, f"{path.resolve().as_uri()}?{query}", uri=True)


def _connect(path: Path, target: Path | str, **options: Any) -> SqliteDatabase:
    """A connection to `target` (`path`, or its URI), whose every error names `path`."""
    try:
        connection = sqlite3.connect(target, factory=NamedConnection, **options)
    except (OSError, sqlite3.Error) as error:
        raise state_error(path, error) from None
    connection.path = str(path)
    return SqliteDatabase(sqlite_utils.Database(connection), path)


@contextlib.contextmanager
def _closed_on_error(db: SqliteDatabase) -> Iterator[None]:
    try:
        yield
    except StateError:
        db.close()
        raise


def claim_database(path: Path) -> None:
    """Make sure a SQLite file and its directory are private (syncd.privatefiles), or refuse.

    The file is created 0600 from its first byte, so SQLite gives its -wal and
    -shm files the same mode; those, when they exist, are checked too: a link
    planted as `syncd.db-wal` would be followed by SQLite.
    """
    private_directory(path.parent)
    private_file(path)
    for companion in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            private_file(path.with_name(path.name + companion), create=False)


class SqliteDatabase(Database):
    """One SQLite file as a syncd.state.backend Database, through sqlite-utils."""

    dialect = SQLITE
    # A run's own connection (check_same_thread=False), used by nothing else while it applies.
    commits_on_a_thread = True

    def __init__(self, db: sqlite_utils.Database, path: Path | str) -> None:
        self.db = db
        self.name = str(path)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        # sqlite-utils commits a write made outside a transaction at once.
        return self.db.execute(sql, parameters)

    def stream(self, sql: str, size: int) -> Iterator[list[Any]]:
        # sqlite3 steps the statement as rows are fetched.
        cursor = self.db.execute(sql)
        while rows := cursor.fetchmany(size):
            yield rows

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.atomic():
            self.db.conn.executemany(sql, rows)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """All of the block's writes or none of them, inside the open transaction if any.

        sqlite-utils' atomic() does the same with a random savepoint name (an
        os.urandom call and two more statements per block): for the two rows of
        every write of an apply, a fixed name nested as SQLite allows is enough.
        """
        conn = self.db.conn
        if not conn.in_transaction:
            self.begin()
            try:
                yield
            except BaseException:
                self.rollback()  # a no-op where the error already ended the transaction
                raise
            try:
                self.commit()
            except BaseException:
                self.rollback()
                raise
            return
        conn.execute("SAVEPOINT syncd")
        try:
            yield
        except BaseException:
            # An error such as a trigger's RAISE(ROLLBACK) can end the transaction itself.
            if conn.in_transaction:
                conn.execute("ROLLBACK TO syncd")
                conn.execute("RELEASE syncd")
            raise
        conn.execute("RELEASE syncd")

    @property
    def in_transaction(self) -> bool:
        return self.db.conn.in_transaction

    def begin(self) -> None:
        # IMMEDIATE: the write lock from the start (waiting up to the busy timeout). A
        # deferred transaction that reads and then writes (the audit chain's head) fails
        # at once, "database is locked", when another process wrote in between (WAL).
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        self.db.rollback()

    def many_commits(self) -> contextlib.AbstractContextManager[None]:
        # The checkpoints, and their fsyncs, on a thread (syncd.state.checkpoints).
        return checkpointing(self.db.conn, self.name)

    def check_writable(self) -> None:
        # Setting user_version to itself is a write that changes nothing.
        if self.in_transaction:
            return
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        self.db.begin()
        try:
            self.db.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            self.db.execute("ROLLBACK")

    def close(self) -> None:
        connection = self.db.conn
        self.db.close()
        if isinstance(connection, NamedConnection) and connection.damaged:
            _set_damaged_cache_aside(Path(connection.path), connection.disposable)


def _set_damaged_cache_aside(path: Path, inode: int | None) -> None:
    """Rename a damaged cache.db, its -wal and -shm (or SQLite would take them for the
    next file's), to cache.db.damaged*: once closed, for SQLite removes the -wal of a
    file it closes by its name, which would be the next file's; and only the file it
    opened, for another run may have set it aside already and begun a new one."""
    with contextlib.suppress(OSError):
        if os.stat(path, follow_symlinks=False).st_ino == inode:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{path}{suffix}", f"{_damaged(path)}{suffix}")


def _damaged(cache: Path) -> Path:
    """Where a damaged cache.db is set aside: cache.db.damaged, beside it."""
    return cache.with_name(f"{cache.name}.damaged")
