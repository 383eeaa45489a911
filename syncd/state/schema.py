"""The state's tables on both backends: one ordered list of named migrations.

Each migration is written once, in the SQL both engines take; what differs
(the audit trail's key, its append-only trigger, how a table's columns are
listed) is the Dialect's (syncd.state.backend). Types are spelled so that
SQLite's affinity and PostgreSQL agree: BIGINT is an INTEGER to SQLite and
DOUBLE PRECISION a REAL (PostgreSQL's REAL would round the cache's Unix
seconds to the minute). Times are ISO 8601 text in UTC on both, so that they
compare and show alike and `syncd state migrate` copies them as they are.

A database records the migrations it has in schema_migrations; `migrate`
applies the others in order, in one transaction that one process at a time
may run, and refuses a database with a migration this syncd does not know: it
was made by a newer syncd, and an older one must not write to it. Every
migration may run on tables that exist already (IF NOT EXISTS, a column added
only where it is missing, a table whose rows are not worth a copy remade only
where it lacks its new key): that is how a state made before migrations were
recorded is brought up to date, its history kept.

    HISTORY  runs, the audit trail and its open intents, daemon_state, not_kept,
             user_failures, email_ownership, suspensions, held_changes,
             pending_changes: syncd.db
    CACHE    the live cache: cache.db; on PostgreSQL one database holds both lists

cache.db records nothing, so that it holds the cache alone: disposable, it has
its migrations run again at each open, which finds them done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.errors import StateError
from syncd.state.backend import Database


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    #: Statements separated by ";"; `{key}` is the dialect's numbered key.
    sql: str = ""
    #: Columns added to a table made before them, where missing: (table, column, type).
    columns: tuple[tuple[str, str, str], ...] = ()
    #: Whether it makes the audit trail append-only (the dialect's triggers).
    audit_append_only: bool = False
    #: Tables dropped where they lack a column, before `sql` makes them again: how a
    #: key changes on both engines (SQLite cannot alter a primary key) for tables
    #: whose rows are not worth a copy. (table, column)
    remade: tuple[tuple[str, str], ...] = ()
    #: Whether it lets a prune delete the events before a recorded cut (the dialect's).
    audit_prunable: bool = False


HISTORY = (
    Migration(
        "history",
        """
        CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            command TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            source TEXT,
            revision TEXT,
            result TEXT,
            counts TEXT
        );
        CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);

        CREATE TABLE IF NOT EXISTS audit (
            seq {key},
            run_id TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            event TEXT NOT NULL,
            intent_seq BIGINT,
            "user" TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            before TEXT,
            after TEXT,
            result TEXT,
            status INTEGER,
            message TEXT,
            source TEXT
        );
        CREATE INDEX IF NOT EXISTS audit_by_user ON audit ("user", timestamp);
        CREATE INDEX IF NOT EXISTS audit_by_intent ON audit (intent_seq);
        CREATE INDEX IF NOT EXISTS audit_by_run ON audit (run_id);

        -- What `syncd run` last said about itself (next run, failures, last good
        -- revision), for `syncd status`: one row per key, the value JSON.
        CREATE TABLE IF NOT EXISTS daemon_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        -- Writes the server accepted and did not keep (syncd.core.not_kept): the plan
        -- sends them again only when the desired or the live value changes. sent_key
        -- is the address sent, lower-cased, for an added address, and '' for a field.
        CREATE TABLE IF NOT EXISTS not_kept (
            username TEXT NOT NULL,
            field TEXT NOT NULL,
            sent_key TEXT NOT NULL,
            sent TEXT NOT NULL,
            kept TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (username, field, sent_key)
        );

        -- The daemon's users in error (syncd.state.user_failures): since when, how
        -- many cycles in a row, and when it reads the user again (NULL: next cycle).
        CREATE TABLE IF NOT EXISTS user_failures (
            username TEXT PRIMARY KEY,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            since TEXT NOT NULL,
            failures INTEGER NOT NULL,
            retry_at DOUBLE PRECISION
        );

        -- The one version number that schema_migrations replaces.
        DROP TABLE IF EXISTS schema_version
        """,
        audit_append_only=True,
    ),
    # Who ran each run: the OS user, the user behind sudo, the host, syncd's version, the process.
    Migration(
        "who_ran_each_run",
        columns=tuple(
            ("runs", column, kind)
            for column, kind in [
                ("os_user", "TEXT"),
                ("sudo_user", "TEXT"),
                ("host", "TEXT"),
                ("version", "TEXT"),
                ("pid", "INTEGER"),
            ]
        ),
    ),
    # What is remembered per account belongs to one API (design.md section 4): the
    # not-kept records and the users' backoff are keyed by the API's URL too
    # (syncd.core.api_url). The rows made before have no API: they are dropped, not
    # guessed at. A not-kept record lost costs one write sent again, which records it
    # again; a backoff lost, one read at the next cycle.
    Migration(
        "per_api",
        """
        CREATE TABLE IF NOT EXISTS not_kept (
            api TEXT NOT NULL,
            username TEXT NOT NULL,
            field TEXT NOT NULL,
            sent_key TEXT NOT NULL,
            sent TEXT NOT NULL,
            kept TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (api, username, field, sent_key)
        );
        CREATE TABLE IF NOT EXISTS user_failures (
            api TEXT NOT NULL,
            username TEXT NOT NULL,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            since TEXT NOT NULL,
            failures INTEGER NOT NULL,
            retry_at DOUBLE PRECISION,
            PRIMARY KEY (api, username)
        )
        """,
        remade=(("not_kept", "api"), ("user_failures", "api")),
    ),
    # The addresses syncd owns (syncd.state.ownership), for `emails_mode: owned`, per
    # API (its normalised URL) and user; and the users a run was limited to.
    Migration(
        "email_ownership_and_run_scope",
        """
        CREATE TABLE IF NOT EXISTS email_ownership (
            api TEXT NOT NULL,
            username TEXT NOT NULL,
            email_key TEXT NOT NULL,
            email TEXT NOT NULL,
            since TEXT NOT NULL,
            how TEXT NOT NULL,
            PRIMARY KEY (api, username, email_key)
        )
        """,
        columns=(("runs", "scope", "TEXT"),),
    ),
    # Open intents kept apart (syncd.state.audit): a cycle finds them without reading
    # the closed ones, however long the history. The intents open when it runs are
    # found once, the last time the whole trail is read for them. And the last good
    # run found by an index, whatever the number of runs.
    Migration(
        "open_intents_apart",
        """
        CREATE TABLE IF NOT EXISTS open_intents (seq BIGINT PRIMARY KEY);
        INSERT INTO open_intents (seq) SELECT i.seq FROM audit AS i
            WHERE i.event = 'intent'
            AND NOT EXISTS (SELECT 1 FROM audit AS o WHERE o.intent_seq = i.seq)
            ON CONFLICT DO NOTHING;
        CREATE INDEX IF NOT EXISTS runs_by_result ON runs (result, ended_at)
        """,
    ),
    # The audit trail hash-chained (syncd.state.chain): each event's hash and the one
    # before it, and the head, which each append moves. The events before it keep no
    # hash: the chain starts after the last of them.
    Migration(
        "audit_hash_chain",
        """
        CREATE TABLE IF NOT EXISTS audit_head (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            seq BIGINT NOT NULL,
            hash TEXT
        );
        INSERT INTO audit_head (one, seq, hash) SELECT 1, COALESCE(MAX(seq), 0), NULL
            FROM audit WHERE true ON CONFLICT DO NOTHING
        """,
        columns=(("audit", "prev_hash", "TEXT"), ("audit", "hash", "TEXT")),
    ),
    # Retention (syncd.state.retention): each prune records the last event it removed,
    # its hash (where the chain of the kept events starts) and what it removed; the
    # events up to the last cut, and those alone, may be deleted.
    Migration(
        "audit_cuts",
        """
        CREATE TABLE IF NOT EXISTS audit_cuts (
            run_id TEXT PRIMARY KEY,
            seq BIGINT NOT NULL,
            hash TEXT,
            cut_at TEXT NOT NULL,
            before TEXT NOT NULL,
            events BIGINT NOT NULL,
            runs BIGINT NOT NULL,
            export TEXT
        )
        """,
        audit_prunable=True,
    ),
    # The operator in the loop (design.md section 4.1): users suspended by `syncd
    # suspend` (syncd.state.suspensions; "*" is `--all`), the deletions a daemon's
    # guard held for `syncd approve` or `reject` (syncd.state.held_changes), and
    # each user's changes pending after the last cycle (syncd.state.pending).
    Migration(
        "operator_in_the_loop",
        """
        CREATE TABLE IF NOT EXISTS suspensions (
            username TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            until DOUBLE PRECISION,
            suspended_by TEXT NOT NULL,
            since TEXT NOT NULL
        );

        -- deletions: a JSON array of [user, address]. status: held, approved,
        -- rejected or applied. One set per revision at most is asked about.
        CREATE TABLE IF NOT EXISTS held_changes (
            id TEXT PRIMARY KEY,
            revision TEXT,
            held_at TEXT NOT NULL,
            deletions TEXT NOT NULL,
            status TEXT NOT NULL,
            decided_by TEXT,
            decided_at TEXT
        );
        CREATE INDEX IF NOT EXISTS held_changes_by_status ON held_changes (status);

        -- The changes each user still had after the daemon's last cycle, as the
        -- plan's JSON shows them (syncd.state.pending): for `syncd status --user`.
        CREATE TABLE IF NOT EXISTS pending_changes (
            username TEXT PRIMARY KEY,
            changes TEXT NOT NULL,
            as_of TEXT NOT NULL
        )
        """,
    ),
    # A held set is one API's deletions (design.md section 4): approved against one
    # API, it must not let the same deletions past the guard of another. The open
    # sets made before have no API: closed, their deletions are held and asked about
    # again.
    Migration("held_changes_per_api", columns=(("held_changes", "api", "TEXT"),)),
    Migration(
        "held_changes_without_api_closed",
        "UPDATE held_changes SET status = 'superseded'"
        " WHERE api IS NULL AND status IN ('held', 'approved')",
    ),
)

CACHE = (
    # The live-state cache (syncd.state.cache). A part that is not cached has a NULL
    # fetch time. The profile is in columns and the addresses a JSON array of
    # [email, verified, primary]: reading 10,000 users this way takes half the
    # time of parsing the API's JSON objects again.
    Migration(
        "live_cache",
        """
        CREATE TABLE IF NOT EXISTS live_accounts (
            username TEXT PRIMARY KEY,
            profile_fetched_at DOUBLE PRECISION,
            full_name TEXT,
            location TEXT,
            company TEXT,
            profile_url TEXT,
            gravatar_url TEXT,
            email TEXT,
            emails_fetched_at DOUBLE PRECISION,
            emails TEXT
        )
        """,
    ),
    # Answers belong to the API that gave them: keyed by its URL too (syncd.core.api_url).
    # The cache is disposable: a table without the API is dropped, its answers read again.
    Migration(
        "live_cache_per_api",
        """
        CREATE TABLE IF NOT EXISTS live_accounts (
            api TEXT NOT NULL,
            username TEXT NOT NULL,
            profile_fetched_at DOUBLE PRECISION,
            full_name TEXT,
            location TEXT,
            company TEXT,
            profile_url TEXT,
            gravatar_url TEXT,
            email TEXT,
            emails_fetched_at DOUBLE PRECISION,
            emails TEXT,
            PRIMARY KEY (api, username)
        )
        """,
        remade=(("live_accounts", "api"),),
    ),
)

#: Which migrations a database has, and since when.
RECORD = """
CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)
"""


def migrate(db: Database, migrations: tuple[Migration, ...]) -> None:
    """Apply the migrations `db` has not recorded, in order, and record them.

    Nothing is written when none is missing: a dry run may read a file it may not write.
    """
    missing = _missing(db, migrations)
    if not missing:
        return
    db.execute(db.dialect.begin_migrations)
    try:
        db.execute(RECORD)
        applied_at = datetime.now(UTC).isoformat(timespec="seconds")
        for migration in _missing(db, migrations):  # again: another process may have applied some
            run(db, migration)
            db.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                [migration.name, applied_at],
            )
    except BaseException as error:
        db.rollback()
        # PostgreSQL's insufficient_privilege, under the state's error: a role that may
        # not migrate (the daemon's, a reader's) meets a schema older than this syncd.
        if getattr(error.__context__, "sqlstate", None) == "42501":
            raise StateError(
                f"state {db.name}: its schema is behind this syncd (it lacks migration"
                f" {missing[0].name}), and this role may not migrate it: run this version's"
                " `syncd plan` as the owner role first (docs/postgresql-roles.md, Upgrades):"
                f" {' '.join(str(error.__context__).split())}"
            ) from None
        raise
    db.commit()


def _missing(db: Database, migrations: tuple[Migration, ...]) -> list[Migration]:
    applied: set[str] = set()
    if db.has_table("schema_migrations"):
        applied = {name for (name,) in db.execute("SELECT name FROM schema_migrations")}
    unknown = applied - {migration.name for migration in migrations}
    if unknown:
        # An older syncd (a rollback, a replica not yet upgraded) must not write to it.
        raise StateError(
            f"state {db.name}: schema migration {min(unknown)} was made by a newer syncd (this"
            f" one knows up to {migrations[-1].name}); run that version, or restore a backup"
            " of the state"
        )
    return [migration for migration in migrations if migration.name not in applied]


def run(db: Database, migration: Migration) -> None:
    """The statements of one migration, which find done what is done already."""
    for table, column in migration.remade:
        if db.has_table(table) and not has_column(db, table, column):
            db.execute(f"DROP TABLE {table}")
    for statement in migration.sql.format(key=db.dialect.key).split(";"):
        if statement.strip():
            db.execute(statement)
    for table, column, kind in migration.columns:
        if column not in columns(db, table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    if migration.audit_append_only:
        for statement in db.dialect.audit_append_only:
            db.execute(statement)
    if migration.audit_prunable:
        for statement in db.dialect.audit_prunable:
            db.execute(statement)


def columns(db: Database, table: str) -> dict[str, str]:
    """The columns of `table`, in order: name and declared type."""
    return dict(db.execute(db.dialect.columns, [table]))


def has_column(db: Database, table: str, column: str) -> bool:
    """Whether `table` exists with `column`: a read-only state (`syncd status`, the
    pages) is not migrated, and may be from before either."""
    return db.has_table(table) and column in columns(db, table)
