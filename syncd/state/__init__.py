"""What syncd keeps on disk: the state file, the live-state cache, the audit trail, the lock.

    statefile  the SQLite file: where it lives, how it is opened, its tables, group commits
    cache      the last GET answers per user, with when each part was read
    audit      an intent before every write, an outcome after it, and the run records
    not_kept   the writes the server accepted and did not keep
    user_failures  the daemon's users in error, each with its own retry time
    lock       one writer per state directory

May import `syncd.core` and the top-level modules; not the API, the
desired-state reader or anything above.
"""
