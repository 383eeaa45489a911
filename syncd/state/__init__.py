"""What syncd keeps: the cache, the audit trail, the runs and the lock, on one of two backends.

    backend           the interface the engine and the service see: stores, handles, the lock
    sqlite_backend    the default: two SQLite files and an flock in the state directory
    statefile         those SQLite files: where they live, how they are opened
    lock              the flock: one writer per state directory
    postgres_backend  one PostgreSQL database, one active instance by an advisory lock
    schema            the tables of both: one ordered list of named migrations
    groupcommit       one commit for the rows of many concurrent writes; an intent first
    cache             the last GET answers per user, with when each part was read
    audit             an intent before every write, an outcome after it, and the run records
    audit_queries     the audit trail and the runs read back: a cycle, a takeover, status, audit
    chain             the audit trail's hash chain: each event carries the hash of the one before
    retention         the history before a date exported, checked and pruned
    checkpoints       the WAL checkpointed on a thread of its own while an apply commits
    not_kept          the writes the server accepted and did not keep
    user_failures     the daemon's users in error, each with its own retry time
    daemon_state      what the daemon says about itself, for `syncd status`
    pending           what each user still had to change after the daemon's last cycle
    suspensions       the users `syncd suspend` left alone, until when, and who said so
    held_changes      the deletions a daemon's guard held, and what the operator decided
    ownership         the addresses syncd owns on each account (`emails_mode: owned`)
    migrate           the history copied from one backend to another (`syncd state migrate`)

May import `syncd.core` and the top-level modules; not the API, the
desired-state reader or anything above.
"""
