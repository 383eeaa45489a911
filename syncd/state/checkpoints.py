"""WAL checkpoints on a thread of their own while an apply commits, commit after commit.

In WAL mode a commit appends its pages to the -wal file, and with
synchronous=NORMAL it waits for no fsync: it is durable against a crash of
the process at once, against the loss of power from the next checkpoint on
(that is the setting's meaning, and it is unchanged here). A checkpoint
copies the pages back into the database file and fsyncs both. SQLite makes
one itself, by default, in whichever commit finds more than 1,000 pages in
the -wal file: for the group commits of an apply, about one commit in twenty
then waits for two fsyncs, and the event loop with it (a commit takes about
half as long without them).

So while `checkpointing` is open, the apply's connection makes none
(wal_autocheckpoint=0), and a thread with a connection of its own makes them
instead, about as often as SQLite would (checkpoints every 0.2 s, each with
its fsyncs, made an apply a third slower): PASSIVE ones, which never wait for
the writer nor make it wait, and release the GIL while they copy and fsync.
A checkpoint that could not copy everything (the writer had committed more
meanwhile) is simply followed by the next. On leaving, the connection's own
checkpoints are back, so the -wal file is never left to grow.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

#: Seconds between two checkpoints: an apply's commits add a few hundred pages meanwhile.
EVERY = 2.0
#: SQLite's own default for wal_autocheckpoint, restored on leaving.
AUTOCHECKPOINT_PAGES = 1000


@contextlib.contextmanager
def checkpointing(connection: sqlite3.Connection, path: Path | str) -> Iterator[None]:
    """Checkpoints of the file at `path` on a thread, instead of in `connection`'s commits."""
    stop = threading.Event()
    thread = threading.Thread(
        target=_checkpoint_until, args=(str(path), stop), name="syncd-checkpoint", daemon=True
    )
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        connection.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")


def _checkpoint_until(path: str, stop: threading.Event) -> None:
    # The file exists and was checked (syncd.state.statefile.claim_database) by the
    # connection that writes: this one creates nothing and only reads the -wal file.
    try:
        connection = sqlite3.connect(path, timeout=0, check_same_thread=True)
    except sqlite3.Error:
        return  # the writer's own checkpoints come back at the end: nothing is lost
    try:
        while not stop.wait(EVERY):
            try:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                # Busy or failing: the next turn tries again, and a failure that
                # matters meets the writer's own statements, which report it.
                continue
    finally:
        connection.close()
