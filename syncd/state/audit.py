"""The audit trail's writer: an intent before every write, an outcome after it, and run records.

Each event goes two ways: to the structlog logger (JSON lines, or the console
on a terminal) and into the append-only `audit` table of the state file. The
intent is committed before the request is sent, so a crash leaves an intent
without an outcome; the next run reports it as `interrupted` and has the user
re-read. An outcome is written in the same transaction as the cache update
that the write's answer allows (see `outcome(..., then=...)`). The SQL is the
subset of syncd.state.backend that both engines share ("user" is quoted: a
reserved word in PostgreSQL).

The open intents are kept apart, in the table `open_intents`: an intent's row
goes in with it, in the same transaction, and its outcome takes it out, in the
same transaction too. So the table holds exactly the intents without an
outcome, whatever crashed when (an index on what is open cannot be had on an
append-only table, whose rows never change). What reads the trail back is
syncd.state.audit_queries.

Each event is chained to the one before by its hash (syncd.state.chain).

No event holds a credential: events carry users, fields, addresses and values.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from syncd import __version__
from syncd.core.plan import Action, AddEmail, UpdateProfile
from syncd.core.vocabulary import OperatorEvent, RunResult, WriteResult
from syncd.state.audit_queries import OpenIntent, open_intents
from syncd.state.backend import Database
from syncd.state.chain import Chain

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def change_target(action: Action) -> str:
    """What an action writes: the fields of a profile update, else the address."""
    if isinstance(action, UpdateProfile):
        return ",".join(c.field for c in action.changes)
    return action.email


def describe_change(action: Action) -> dict[str, Any]:
    """What an action changes, as audit fields: target, before and after."""
    if isinstance(action, UpdateProfile):
        return {
            "target": change_target(action),
            "before": {c.field: c.before for c in action.changes},
            "after": {c.field: c.after for c in action.changes},
        }
    if isinstance(action, AddEmail):
        return {"target": action.email, "before": None, "after": action.email}
    return {"target": action.email, "before": action.email, "after": None}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a run: recorded on it, so that the audit trail answers "who"."""

    os_user: str
    sudo_user: str | None
    host: str
    version: str
    #: Its process: two instances on one host (or one database) are told apart by it.
    pid: int


def actor() -> Actor:
    """The user, the user behind sudo, the host and syncd's version of this process.

    SUDO_USER is read here and not in syncd.settings: it is not a setting but
    sudo's word about who asked for the command, read as sudo(8) sets it.
    """
    try:
        os_user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a name (DynamicUser=, containers)
        os_user = str(os.getuid())
    sudo_user = os.environ.get("SUDO_USER") or None
    return Actor(os_user, sudo_user, socket.gethostname(), __version__, os.getpid())


class AuditTrail:
    def __init__(self, db: Database, source: Mapping[str, Any], *, clock: Clock = utc_now) -> None:
        self.db = db
        self.chain = Chain(db)
        self.source = dict(source)
        self._source_json = json.dumps(self.source)  # on every row: encoded once
        self.run_id = uuid.uuid4().hex[:12]
        self.clock = clock
        import structlog  # not at module level: a plan needs only open_intents

        self.log = structlog.get_logger("syncd.state.audit").bind(run_id=self.run_id)

    # -- runs -------------------------------------------------------------------

    def set_source(self, source: Mapping[str, Any]) -> None:
        """Where the desired state came from, once it is known; recorded on the run."""
        self.source = dict(source)
        self._source_json = json.dumps(self.source)
        with self.db.atomic():
            scope = self.source.get("scope")  # the users the run was limited to, if it was
            self.db.execute(
                "UPDATE runs SET source = ?, revision = ?, scope = ? WHERE id = ?",
                [
                    self._source_json,
                    self.source.get("revision"),
                    None if scope is None else json.dumps(scope),
                    self.run_id,
                ],
            )
        self.log.info("run_source", source=self.source)

    def begin_run(self, command: str) -> None:
        who = actor()
        row = self.run_row(command, who)
        with self.db.atomic():
            self.db.execute(
                f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
        logged = {key: value for key, value in asdict(who).items() if value is not None}
        self.log.info("run_started", command=command, **logged)

    def end_run(self, result: RunResult, counts: Mapping[str, int]) -> None:
        row = self.end_row(result, counts)
        with self.db.atomic():
            self.db.execute(
                "UPDATE runs SET ended_at = ?, result = ?, counts = ? WHERE id = ?",
                [row["ended_at"], row["result"], row["counts"], self.run_id],
            )
        self.log.info("run_finished", result=result, counts=dict(counts))

    # The rows themselves, apart from their writing: the bench's history (bench/history.py)
    # writes many at once, and so stays what syncd writes.

    def run_row(self, command: str, who: Actor) -> dict[str, Any]:
        """The columns of this run's row in `runs` as it begins."""
        return {
            "id": self.run_id,
            "command": command,
            "started_at": self._now(),
            "source": self._source_json,
            "revision": self.source.get("revision"),
            "os_user": who.os_user,
            "sudo_user": who.sudo_user,
            "host": who.host,
            "version": who.version,
            "pid": who.pid,
        }

    def end_row(self, result: RunResult, counts: Mapping[str, int]) -> dict[str, Any]:
        """The columns that end this run's row."""
        return {"ended_at": self._now(), "result": result, "counts": json.dumps(dict(counts))}

    def intent_row(self, action: Action, change: Mapping[str, Any]) -> dict[str, Any]:
        """An intent's event (the chain adds its number and hashes); `change`: `action`'s."""
        return {
            "run_id": self.run_id,
            "timestamp": self._now(),
            "event": "intent",
            "user": action.user,
            "action": action.action,
            "target": change["target"],
            "before": json.dumps(change["before"]),
            "after": json.dumps(change["after"]),
            "source": self._source_json,
        }

    def outcome_row(
        self,
        intent_seq: int,
        user: str,
        action: str,
        target: str,
        result: WriteResult,
        status: int | None,
        message: str | None,
    ) -> dict[str, Any]:
        """An outcome's event (the chain adds its number and hashes)."""
        return {
            "run_id": self.run_id,
            "timestamp": self._now(),
            "event": "outcome",
            "intent_seq": intent_seq,
            "user": user,
            "action": action,
            "target": target,
            "result": str(result),
            "status": status,
            "message": message,
            "source": self._source_json,
        }

    # -- writes -----------------------------------------------------------------

    def intent(self, action: Action) -> int:
        """Record that a write is about to be sent; returns the intent's number."""
        change = describe_change(action)
        # Within an apply's open transaction it is committed with its group (see GroupCommit).
        with self.db.atomic():
            seq = self.chain.append(self.intent_row(action, change))
            self.db.execute("INSERT INTO open_intents (seq) VALUES (?)", [seq])
        self.log.info("intent", user=action.user, action=action.action, **change)
        return seq

    def outcome(
        self,
        intent_seq: int,
        action: Action,
        result: WriteResult,
        *,
        status: int | None = None,
        message: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Record how a write ended; `then` runs in the same transaction (the cache update)."""
        target = change_target(action)  # before and after are the intent's
        with self.db.atomic():
            self._insert_outcome(
                self.outcome_row(
                    intent_seq, action.user, action.action, target, result, status, message
                )
            )
            if then is not None:
                then()
        self.log.log(
            logging.INFO if result == WriteResult.OK else logging.WARNING,
            "outcome",
            user=action.user,
            action=action.action,
            target=target,
            result=result,
            status=status,
            message=message,
        )

    def _insert_outcome(self, row: Mapping[str, Any]) -> None:
        """Append an outcome's row (outcome_row's); its intent is open no more."""
        self.chain.append(row)
        self.db.execute("DELETE FROM open_intents WHERE seq = ?", [row["intent_seq"]])

    def decision(self, event: OperatorEvent, user: str, message: str) -> None:
        """An operator's decision about `user` (suspend, resume, approve, reject)."""
        with self.db.atomic():
            self.chain.append(  # through the chain, as every event: it is hashed too
                {
                    "run_id": self.run_id,
                    "timestamp": self._now(),
                    "event": str(event),
                    "user": user,
                    "action": str(event),
                    "result": str(WriteResult.OK),
                    "message": message,
                    "source": "{}",
                }
            )
        self.log.info("decision", decision=event, user=user, message=message)

    # -- crashes ----------------------------------------------------------------

    def close_dead_runs(self) -> list[str]:
        """Give the runs a killed process left without a result the result `interrupted`.

        Only for a caller that holds the lock of the state directory: then no
        other run is alive. Each ends at its last audit event (or its start),
        about when its process died.
        """
        with self.db.atomic():
            dead = [
                row[0]
                for row in self.db.execute(
                    "SELECT id FROM runs WHERE result IS NULL AND id != ?", [self.run_id]
                )
            ]
            self.db.execute(
                "UPDATE runs SET result = ?, ended_at = COALESCE("
                " (SELECT MAX(timestamp) FROM audit WHERE audit.run_id = runs.id), started_at)"
                " WHERE result IS NULL AND id != ?",
                [RunResult.INTERRUPTED, self.run_id],
            )
        for run_id in dead:
            self.log.warning("run_interrupted", interrupted_run=run_id)
        return dead

    def close_interrupted(self) -> list[OpenIntent]:
        """Mark writes left open by a crashed run as interrupted; their users must be re-read."""
        intents = open_intents(self.db)
        if not intents:
            return []
        with self.db.atomic():
            for intent in intents:
                self._insert_outcome(
                    self.outcome_row(
                        intent.seq,
                        intent.user,
                        intent.action,
                        intent.target,
                        WriteResult.INTERRUPTED,
                        None,
                        f"run {intent.run_id} stopped before this write's answer was recorded",
                    )
                )
        for intent in intents:
            self.log.warning(
                "interrupted",
                user=intent.user,
                action=intent.action,
                target=intent.target,
                interrupted_run=intent.run_id,
                started=intent.timestamp,
            )
        return intents

    def _now(self) -> str:
        return self.clock().isoformat(timespec="microseconds")
