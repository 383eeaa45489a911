"""The state directory tells the truth: history apart from the cache, dead runs closed,
and every storage failure one line that names the file, in every command.

The failures are real ones, met by the real command in a child process: a file
that is not a database, a file the user may not write, and a disk that takes
no more bytes (RLIMIT_FSIZE, the limit a full disk looks like to a writer).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.world import World


def run(world: World, *args: str) -> Result:
    command, *rest = args
    return CliRunner().invoke(cli, [command, *world.cli_args(), *rest], catch_exceptions=False)


def syncd_process(
    world: World,
    *args: str,
    preexec: Callable[[], None] | None = None,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(world.root),
        "PYTHONDONTWRITEBYTECODE": "1",
        "SYNCD_API_URL": world.sandbox.url,
        "SYNCD_CREDENTIALS_DIR": str(world.credentials_dir),
        "SYNCD_STATE_DIR": str(world.state_dir),
        "SYNCD_DESIRED": str(world.desired_file),
        "SYNCD_INTERVAL": "60",
        "SYNCD_LOG_FORMAT": "json",
    }
    return subprocess.run(
        [*prefix, sys.executable, "-m", "syncd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec,
    )


def audit_rows(world: World) -> int:
    with sqlite3.connect(world.state_dir / "syncd.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM audit").fetchone()[0])


def test_history_and_cache_are_two_files(world: World):
    assert run(world, "apply", "--yes").exit_code == 0
    with sqlite3.connect(world.state_dir / "syncd.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    with sqlite3.connect(world.state_dir / "cache.db") as db:
        cached = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"runs", "audit"} <= tables
    assert "live_accounts" not in tables
    assert cached == {"live_accounts", "sqlite_autoindex_live_accounts_1"}


def test_deleting_the_cache_costs_one_cold_read_and_loses_no_event(world: World):
    assert run(world, "apply", "--yes").exit_code == 0
    events = audit_rows(world)
    assert events == 6  # three writes, an intent and an outcome each
    for path in world.state_dir.glob("cache.db*"):
        path.unlink()
    before = world.gets()
    result = run(world, "plan", "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    assert world.gets() - before == 3  # janedoe's profile and emails, johnsmith's profile
    assert audit_rows(world) == events
    audit = CliRunner().invoke(
        cli, ["audit", "--state-dir", str(world.state_dir), "--output", "json"]
    )
    assert len(json.loads(audit.stdout)) == events


def test_a_state_file_from_before_the_split_keeps_its_history(world: World):
    assert run(world, "apply", "--yes").exit_code == 0
    with sqlite3.connect(world.state_dir / "syncd.db") as db:  # as the old layout had it
        db.execute("CREATE TABLE live_accounts (username TEXT PRIMARY KEY)")
    events = audit_rows(world)
    assert run(world, "plan").exit_code == 0
    with sqlite3.connect(world.state_dir / "syncd.db") as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "live_accounts" not in names
    assert audit_rows(world) == events


def test_a_run_whose_process_died_is_closed_as_interrupted(world: World):
    assert run(world, "apply", "--yes").exit_code == 0
    with sqlite3.connect(world.state_dir / "syncd.db") as db:  # what SIGKILL leaves
        db.execute(
            "INSERT INTO runs (id, command, started_at) VALUES ('deadbeef0000', 'run', ?)",
            ["2026-01-01T00:00:00.000000+00:00"],
        )
    status = CliRunner().invoke(
        cli, ["status", "--state-dir", str(world.state_dir), "--output", "json"]
    )
    shown = {entry["id"]: entry for entry in json.loads(status.stdout)["runs"]}
    assert shown["deadbeef0000"]["result"] == "interrupted"  # nothing holds the lock

    assert run(world, "apply", "--yes").exit_code == 0  # takes the lock, closes it
    with sqlite3.connect(world.state_dir / "syncd.db") as db:
        row = db.execute("SELECT result, ended_at FROM runs WHERE id = 'deadbeef0000'").fetchone()
    assert row == ("interrupted", "2026-01-01T00:00:00.000000+00:00")


# -- storage failures -----------------------------------------------------------------


def one_line_naming(result: subprocess.CompletedProcess[str], path: Path) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("syncd: ")]
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0], lines[0]
    return lines[0]


COMMANDS = [
    pytest.param(["plan"], id="plan"),
    pytest.param(["apply", "--yes"], id="apply"),
    pytest.param(["status"], id="status"),
    pytest.param(["audit"], id="audit"),
    pytest.param(["run"], id="run"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_corrupt_history_file_is_one_line(world: World, command: list[str]):
    assert run(world, "apply", "--yes").exit_code == 0
    path = world.state_dir / "syncd.db"
    for extra in world.state_dir.glob("syncd.db-*"):
        extra.unlink()
    path.write_bytes(b"this is not a database, it was overwritten by mistake\n" * 100)
    line = one_line_naming(syncd_process(world, *command), path)
    assert "not a database" in line


def overwritten(path: Path) -> bytes:
    path.write_bytes(b"garbage" * 1000)
    return path.read_bytes()


def page_damaged(path: Path) -> bytes:
    """The pages after the first (the schema) overwritten: met as rows are read, mid-run."""
    with path.open("r+b") as file:
        page_size = int.from_bytes(file.read(18)[16:18], "big")
        file.seek(page_size)
        file.write(b"\xff" * (path.stat().st_size - page_size))
    return path.read_bytes()


@pytest.mark.parametrize("damage", [overwritten, page_damaged])
@pytest.mark.parametrize("command", COMMANDS[:2])
def test_a_corrupt_cache_file_is_one_line(
    world: World, command: list[str], damage: Callable[[Path], bytes]
):
    assert run(world, "apply", "--yes").exit_code == 0
    path = world.state_dir / "cache.db"
    with sqlite3.connect(path) as cache:
        cache.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for extra in world.state_dir.glob("cache.db-*"):
        extra.unlink()
    damaged = damage(path)
    line = one_line_naming(syncd_process(world, *command), path)
    # The trial (hist D10): it did not say that the file is disposable. Then it stayed
    # in place, and every run (the daemon's every cycle) failed until someone deleted it.
    assert line.endswith(
        "(it only holds the live cache: it is set aside as cache.db.damaged, and the next"
        " run reads every user again)"
    ), line
    assert (world.state_dir / "cache.db.damaged").read_bytes() == damaged
    again = syncd_process(world, *command)
    assert again.returncode == 0, again.stdout + again.stderr
    with sqlite3.connect(path) as cache:  # a new one, the users read again into it
        assert cache.execute("SELECT COUNT(*) FROM live_accounts").fetchone() == (2,)


def test_a_corrupt_cache_that_cannot_be_set_aside_says_to_delete_it(world: World):
    # Review: the message promised the set-aside where it could not be done.
    assert run(world, "apply", "--yes").exit_code == 0
    path = world.state_dir / "cache.db"
    (world.state_dir / "cache.db.damaged").mkdir()  # in the way of the rename
    overwritten(path)
    line = one_line_naming(syncd_process(world, "plan"), path)
    assert line.endswith("(it only holds the live cache: delete it, which costs one cold read)")


def test_status_without_a_history_table_is_one_line(world: World):
    world.state_dir.mkdir(mode=0o700)
    sqlite3.connect(world.state_dir / "syncd.db").close()  # an empty database
    result = syncd_process(world, "status")
    one_line_naming(result, world.state_dir / "syncd.db")


@pytest.mark.parametrize(
    "command",
    [*COMMANDS, pytest.param(["suspend", "--user", "janedoe", "--reason", "x"], id="suspend")],
)
def test_an_emptied_history_file_is_refused_not_begun_again(world: World, command: list[str]):
    # A failed restore or copy, a full disk: taken for a new state, it lost the history
    # and the suspensions without a word, and apply wrote to a suspended user.
    suspended = ["suspend", "--state-dir", str(world.state_dir), "--user", "janedoe"]
    assert CliRunner().invoke(cli, [*suspended, "--reason", "INC-7"]).exit_code == 0
    assert run(world, "plan").exit_code == 0  # cache.db, lock files: a directory in use
    path = world.state_dir / "syncd.db"
    leave_a_wal(path, INSERT_A_RUN)
    path.write_bytes(b"")  # the -wal of the old file still beside it
    wal = companions(path)
    line = one_line_naming(syncd_process(world, *command), path)
    assert line.endswith(
        "is empty (0 bytes), so its history is not there: move syncd.db-wal and "
        "syncd.db-shm aside (a restored file takes them for its own) if they are there, "
        "then restore it from a backup, or remove it to begin a new, empty one"
    ), line
    assert path.stat().st_size == 0  # left as it was found, for whoever restores it
    # Review 2 (F4): SQLite deleted the -wal, the newest part of the history, as it opened.
    assert companions(path) == wal
    assert world.writes() == 0


INSERT_A_RUN = (
    "INSERT INTO runs (id, command, started_at) "
    "VALUES ('deadbeef0000', 'run', '2026-01-01T00:00:00.000000+00:00')"
)


def leave_a_wal(path: Path, sql: str) -> None:
    """What a writer killed (SIGKILL, the OOM killer) leaves: its last commits in the -wal."""
    code = (
        f"import os, sqlite3; db = sqlite3.connect({str(path)!r}); "
        "db.execute('PRAGMA journal_mode=WAL'); db.execute('PRAGMA wal_autocheckpoint=0'); "
        f"db.executescript({sql!r}); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert Path(f"{path}-wal").stat().st_size > 0


def companions(path: Path) -> dict[str, bytes]:
    """The file and its -wal (not the -shm: SQLite's index of the -wal, which a reader
    may rebuild from it)."""
    found = path.parent.glob(f"{path.name}*")
    return {extra.name: extra.read_bytes() for extra in found if extra.suffix != ".db-shm"}


def test_a_file_without_syncd_tables_is_refused_as_it_was_found(world: World):
    world.state_dir.mkdir(mode=0o700)
    path = world.state_dir / "syncd.db"
    leave_a_wal(path, "CREATE TABLE other (x); INSERT INTO other VALUES (1)")
    found = companions(path)
    line = one_line_naming(syncd_process(world, "plan"), path)
    assert "holds no syncd tables" in line, line
    assert companions(path) == found  # the file and its -wal, byte for byte


@pytest.mark.parametrize("command", [COMMANDS[0], COMMANDS[4]])
def test_a_wal_without_its_history_file_is_refused(world: World, command: list[str]):
    # Review 2 (F1): after a kill, `rm syncd.db` to begin again: the new syncd.db took
    # the old -wal as its own (old runs back in the new history, or a malformed file).
    assert run(world, "apply", "--yes").exit_code == 0
    path = world.state_dir / "syncd.db"
    leave_a_wal(path, INSERT_A_RUN)
    path.unlink()
    left = companions(path)
    line = one_line_naming(syncd_process(world, *command), path)
    assert line.endswith(
        "syncd.db: missing, but its syncd.db-wal is there: move syncd.db-wal and "
        "syncd.db-shm aside (a restored file takes them for its own), then restore "
        "syncd.db, or begin a new, empty history"
    ), line
    assert companions(path) == left
    for extra in world.state_dir.glob("syncd.db-*"):
        extra.unlink()
    assert run(world, "plan").exit_code == 0  # as the message says
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id FROM runs").fetchall() == []  # nothing of the old one


@pytest.mark.parametrize(
    "code", [errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS], ids=["EPERM", "EOPNOTSUPP", "ENOSYS"]
)
def test_a_first_start_on_a_file_system_without_hard_links(
    world: World, monkeypatch: pytest.MonkeyPatch, code: int
):
    # Review 2 (F2): vfat, exFAT, SMB, some FUSE: link(2) fails so, and no start worked.
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_links)
    suspend = ["suspend", "--state-dir", str(world.state_dir), "--reason", "x", "--user"]
    assert CliRunner().invoke(cli, [*suspend, "janedoe"]).exit_code == 0
    assert CliRunner().invoke(cli, [*suspend, "bobsmith"]).exit_code == 0
    path = world.state_dir / "syncd.db"
    assert (path.stat().st_mode & 0o777, path.stat().st_nlink) == (0o600, 1)
    assert not list(world.state_dir.glob(".syncd.db.*"))
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (2,)


def test_a_second_name_left_by_a_killed_first_start_is_removed(world: World):
    # Review 2 (F5): killed between its link and its unlink, a first start left the
    # history a hidden second name for good (backed up twice, kept after `rm syncd.db`).
    assert run(world, "plan").exit_code == 0
    path = world.state_dir / "syncd.db"
    os.link(path, world.state_dir / ".syncd.db.k1ll3d00")
    in_progress = world.state_dir / ".syncd.db.n0tm1ne0"  # another process's, being made
    in_progress.write_bytes(b"")
    assert run(world, "plan").exit_code == 0
    assert sorted(p.name for p in world.state_dir.glob(".syncd.db.*")) == [in_progress.name]
    assert path.stat().st_nlink == 1


def test_a_first_start_cut_short_leaves_no_history_file_to_refuse(world: World):
    # syncd.db appears with its tables or not at all: an empty one, which every
    # command refuses, is never syncd's own.
    result = syncd_process(world, "plan", preexec=disk_full)
    assert result.returncode == 1, result.stderr
    assert not (world.state_dir / "syncd.db").exists()
    assert [path.name for path in world.state_dir.iterdir() if "syncd.db" in path.name] == []
    assert run(world, "plan").exit_code == 0


def applied_history(world: World, writes: int) -> None:
    """A history of one apply that added `writes` addresses to janedoe."""
    from syncd.core.plan import AddEmail
    from syncd.core.vocabulary import RunResult, WriteResult
    from syncd.state.audit import AuditTrail
    from syncd.state.sqlite_backend import SqliteStore

    with SqliteStore(world.state_dir) as store:
        audit = AuditTrail(store.history, {})
        audit.begin_run("apply")
        for n in range(writes):
            action = AddEmail("janedoe", f"jane.{n}@example.com")
            audit.outcome(audit.intent(action), action, WriteResult.OK, status=201)
        audit.end_run(RunResult.OK, {})


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["audit", "verify"], id="verify"),
        pytest.param(
            ["audit", "export", "--before", "2100-01-01", "--out", "{root}/e"], id="export"
        ),
        pytest.param(["state", "migrate", "--to", "{root}/copy"], id="migrate"),
    ],
)
def test_a_damaged_page_met_while_the_rows_are_read_is_one_line(world: World, command: list[str]):
    applied_history(world, 300)  # pages enough that reading steps to the damage
    path = world.state_dir / "syncd.db"
    with sqlite3.connect(path) as db:
        leaves = "SELECT pageno FROM dbstat WHERE name = 'audit' AND pagetype = 'leaf'"
        pages = [page for (page,) in db.execute(leaves)]
    with path.open("r+b") as file:  # a page of the middle of the trail, overwritten
        file.seek((pages[len(pages) // 2] - 1) * 4096)
        file.write(os.urandom(4096))
    named = [part.format(root=world.root) for part in command]
    line = one_line_naming(syncd_process(world, *named), path)
    assert line == f"syncd: state file {path}: database disk image is malformed"


def disk_full() -> None:
    # As a full disk does, the kernel refuses to grow any file; the writer sees
    # EFBIG instead of a signal.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


@pytest.mark.parametrize("command", [*COMMANDS[:2], COMMANDS[4]])
def test_a_full_disk_is_one_line_and_loses_nothing(world: World, command: list[str]):
    assert run(world, "plan").exit_code == 0  # the files exist; now the disk fills up
    events = audit_rows(world)
    result = syncd_process(world, *command, preexec=disk_full)
    line = one_line_naming(result, world.state_dir)
    assert "disk" in line or "full" in line, line
    assert audit_rows(world) == events
    assert world.writes() == 0  # no write leaves without its intent on disk


def without_root_privilege() -> list[str]:
    """A command prefix under which even root meets file modes (root writes any file)."""
    if os.geteuid() != 0:
        return []
    # setpriv (util-linux) execs with the capabilities that override modes dropped.
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


@pytest.mark.parametrize(
    ("command", "name"),
    [
        # A dry run only reads the history: a read-only syncd.db is no error for it.
        pytest.param(["plan", "--refresh"], "cache.db", id="plan-cache"),
        pytest.param(["apply", "--yes"], "syncd.db", id="apply-history"),
        pytest.param(["apply", "--yes"], "cache.db", id="apply-cache"),
    ],
)
def test_a_read_only_state_file_is_one_line(world: World, command: list[str], name: str):
    assert run(world, "plan").exit_code == 0
    for extra in world.state_dir.glob("*.db-*"):
        extra.unlink()
    path = world.state_dir / name
    path.chmod(0o400)
    result = syncd_process(world, *command, prefix=without_root_privilege())
    line = one_line_naming(result, path)
    assert "readonly" in line or "read-only" in line or "denied" in line, line
    assert world.writes() == 0


def read_only_mount(directory: Path) -> list[str]:
    """A command prefix that runs the command with `directory` mounted read-only over
    itself, in a mount namespace of its own (nothing outside sees the mount)."""
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("no mount namespace here (unshare --mount needs CAP_SYS_ADMIN)")
    remount = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", remount, str(directory)]


def test_a_state_directory_on_a_read_only_file_system_says_so(world: World):
    # It said "unable to open database file", and never why.
    assert run(world, "plan").exit_code == 0
    for extra in world.state_dir.glob("*.db-*"):
        extra.unlink()
    result = syncd_process(world, "plan", prefix=read_only_mount(world.state_dir))
    line = one_line_naming(result, world.state_dir / "syncd.db")
    assert line.endswith(f"({world.state_dir} is on a read-only file system)"), line


def test_a_state_directory_the_user_may_not_write_says_so(world: World):
    assert run(world, "plan").exit_code == 0
    for extra in world.state_dir.glob("*.db-*"):
        extra.unlink()
    world.state_dir.chmod(0o500)
    try:
        result = syncd_process(world, "plan", prefix=without_root_privilege())
    finally:
        world.state_dir.chmod(0o700)
    line = one_line_naming(result, world.state_dir / "syncd.db")
    assert line.endswith(f"(the running user may not create files in {world.state_dir})"), line


def test_status_follows_no_link_planted_as_the_state_file(world: World, tmp_path: Path):
    assert run(world, "plan").exit_code == 0
    elsewhere = tmp_path / "someone-elses.db"
    (world.state_dir / "syncd.db").rename(elsewhere)
    (world.state_dir / "syncd.db").symlink_to(elsewhere)
    one_line_naming(syncd_process(world, "status"), world.state_dir / "syncd.db")


def test_a_settings_file_the_user_may_not_read_is_one_line(world: World):
    # pydantic-settings' PermissionError was a traceback: the advice to chmod 600 a
    # root-owned syncd.toml that holds a token leads a service's user right there.
    config = world.root / "syncd.toml"
    config.write_text("max_deletions = 5\n")
    config.chmod(0o600)
    os.chown(config, 65534, 65534)  # nobody's
    result = syncd_process(world, "plan", "--config", str(config), prefix=without_root_privilege())
    line = one_line_naming(result, config)
    assert "Permission denied" in line, line
    assert world.gets() == 0


def test_a_migrate_that_fills_the_target_disk_is_one_line(world: World):
    # The trial (hist D10): the copy's batched inserts bypassed the wrapper that names
    # the file, and a full disk was a traceback.
    applied_history(world, 3000)  # more history than the target may hold
    target = world.root / "copy"

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    result = syncd_process(world, "state", "migrate", "--to", str(target), preexec=small_disk)
    line = one_line_naming(result, target / "syncd.db")
    assert "disk" in line, line  # EFBIG: "disk I/O error"
