"""The state directory cannot be turned against its owner: no link followed, no foreign file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.world import World

NOBODY = 65534


def run(world: World, command: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [command, *world.cli_args(), *args], catch_exceptions=False)


def assert_refused(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("syncd: ")
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a directory made with default permissions is 0755."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_every_command_creates_the_state_directory_0700(world: World, umask_022: None):
    # `plan` created it 0755: the memo made it as a parent directory.
    assert run(world, "plan").exit_code == 0
    assert mode(world.state_dir) == 0o700
    assert mode(world.state_dir / "desired-memo") == 0o700
    assert mode(world.state_dir / "syncd.db") == 0o600
    assert {mode(entry) for entry in (world.state_dir / "desired-memo").iterdir()} == {0o600}


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_kept(world: World):
    # The link truncated its target and wrote a pid into it.
    victim = world.root / "victim.txt"
    victim.write_text("precious\n")
    world.state_dir.mkdir(mode=0o700)
    (world.state_dir / "syncd.state.lock").symlink_to(victim)
    result = run(world, "apply", "--yes")
    assert_refused(result, "syncd.state.lock is a symbolic link: refused")
    assert victim.read_text() == "precious\n"
    assert world.writes() == 0


@pytest.mark.parametrize("name", ["syncd.db", "syncd.db-wal"])
def test_a_dangling_database_link_is_refused_and_nothing_created(world: World, name: str):
    # A dangling syncd.db link created the database where it pointed, mode 0644.
    elsewhere = world.root / "elsewhere" / "stolen.db"
    elsewhere.parent.mkdir()
    world.state_dir.mkdir(mode=0o700)
    if name != "syncd.db":
        (world.state_dir / "syncd.db").touch(mode=0o600)
    (world.state_dir / name).symlink_to(elsewhere)
    result = run(world, "plan")
    assert_refused(result, f"{name} is a symbolic link: refused")
    assert list(elsewhere.parent.iterdir()) == []


def test_a_state_directory_others_can_write_is_refused(world: World):
    world.state_dir.mkdir()
    world.state_dir.chmod(0o777)
    result = run(world, "plan")
    assert_refused(result, "is writable by group or others (mode 0777): refused")
    assert list(world.state_dir.iterdir()) == []


def test_a_database_others_can_write_is_refused(world: World):
    assert run(world, "plan").exit_code == 0
    (world.state_dir / "syncd.db").chmod(0o666)
    result = run(world, "apply", "--yes")
    assert_refused(result, "syncd.db is writable by group or others (mode 0666)")
    assert world.writes() == 0


def test_state_others_may_read_is_made_private_with_a_warning(world: World):
    # A 0755 directory and 0644 databases were used as they were, while the docs said
    # 0700 and 0600: every local user could read the audit trail and the addresses.
    assert run(world, "plan").exit_code == 0
    world.state_dir.chmod(0o755)
    opened = ["syncd.db", "cache.db", "syncd.db-wal", "syncd.db-shm", "syncd.state.lock"]
    for name in opened:
        (world.state_dir / name).touch()
        (world.state_dir / name).chmod(0o644)
    result = run(world, "apply", "--yes")
    assert result.exit_code == 0, result.output
    assert mode(world.state_dir) == 0o700
    files = {entry.name: mode(entry) for entry in world.state_dir.iterdir() if entry.is_file()}
    assert files == dict.fromkeys(files, 0o600)
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    changed = {
        event["path"]: (event["was"], event["mode"])
        for event in events
        if event["event"] == "state_made_private" and event["level"] == "warning"
    }
    assert changed == {
        str(world.state_dir): ("0755", "0700"),
        **{str(world.state_dir / name): ("0644", "0600") for name in opened},
    }
    again = run(world, "plan")  # said once: nothing more to change
    assert "state_made_private" not in again.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's needs root")
@pytest.mark.parametrize("what", ["database", "directory", "memo entry"])
def test_state_that_belongs_to_another_user_is_refused(world: World, what: str):
    assert run(world, "plan").exit_code == 0
    target = {
        "database": world.state_dir / "syncd.db",
        "directory": world.state_dir,
        "memo entry": next((world.state_dir / "desired-memo").iterdir()),
    }[what]
    os.chown(target, NOBODY, NOBODY)
    result = run(world, "plan")
    assert_refused(result, f"belongs to uid {NOBODY}, not to the user running syncd")


def test_a_memo_entry_that_is_a_link_is_refused(world: World):
    # What a plan shows must not come from a file someone else chose.
    assert run(world, "plan").exit_code == 0
    [entry] = (world.state_dir / "desired-memo").iterdir()
    chosen = world.root / "chosen.jsonl"
    entry.rename(chosen)
    entry.symlink_to(chosen)
    result = run(world, "plan")
    assert_refused(result, "is a symbolic link: refused")


def test_a_saved_plan_that_is_a_link_or_a_fifo_is_refused(world: World):
    plan_file = world.root / "plan.json"
    assert run(world, "plan", "--out", str(plan_file)).exit_code == 0
    assert mode(plan_file) == 0o600
    link = world.root / "link.json"
    link.symlink_to(plan_file)
    fifo = world.root / "plan.fifo"
    os.mkfifo(fifo)
    assert_refused(run(world, "apply", str(link), "--yes"), "link.json is a symbolic link")
    assert_refused(run(world, "apply", str(fifo), "--yes"), "plan.fifo: not a regular file")
    assert world.writes() == 0


def test_a_plan_is_saved_private_and_never_over_a_link_or_a_fifo(world: World):
    # A link at --out is refused, neither written through nor replaced (/dev/stdout
    # is one); so is a FIFO; nothing written aside is left behind.
    saved = world.root / "plan.json"
    saved.write_text("an older plan\n")
    saved.chmod(0o644)
    assert run(world, "plan", "--out", str(saved)).exit_code == 0
    assert mode(saved) == 0o600
    elsewhere = world.root / "elsewhere"
    elsewhere.write_text("not syncd's\n")
    link = world.root / "linked.json"
    link.symlink_to(elsewhere)
    refused = run(world, "plan", "--out", str(link))
    assert_refused(refused, "linked.json: a symbolic link, so neither followed nor replaced")
    assert elsewhere.read_text() == "not syncd's\n"
    assert link.is_symlink()
    fifo = world.root / "plan.fifo"
    os.mkfifo(fifo)
    assert_refused(run(world, "plan", "--out", str(fifo)), "plan.fifo: not a regular file")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert [p.name for p in world.root.iterdir() if p.name.startswith(".plan")] == []


@pytest.mark.parametrize("volume_mode", [0o777, 0o2777], ids=["emptyDir", "emptyDir+fsGroup"])
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_syncd_makes_its_own_directory_in_a_volume_anyone_may_write(
    world: World, volume_mode: int, command: str
):
    # A Kubernetes emptyDir is root's, 0777 (2777 with fsGroup): refused as the
    # state directory, it is the parent of one (SYNCD_STATE_DIR=/var/lib/syncd/state).
    world.root.chmod(volume_mode)
    assert mode(world.root) == volume_mode
    args = ["--yes"] if command == "apply" else []
    assert run(world, command, *args).exit_code == 0
    info = os.lstat(world.state_dir)
    assert stat.S_ISDIR(info.st_mode)
    assert info.st_uid == os.geteuid()
    # The setgid bit of fsGroup's volume is inherited, and harmless: nobody else may write.
    assert mode(world.state_dir) & 0o777 == 0o700
    assert mode(world.state_dir / "syncd.db") == 0o600
    assert run(world, "plan").exit_code == 0  # and it is used again, as it was made


def test_a_state_directory_linked_from_a_volume_anyone_may_write_is_refused(world: World):
    # Anyone who may write the volume may have planted the link, to a directory of
    # ours that is private (a ~/.ssh): syncd would write its database there.
    ours = world.root / "elsewhere"
    ours.mkdir(mode=0o700)
    world.root.chmod(0o777)
    world.state_dir.symlink_to(ours)
    result = run(world, "plan")
    assert_refused(result, "state is a symbolic link: refused")
    assert list(ours.iterdir()) == []


def test_a_state_directory_linked_from_a_private_parent_is_followed(world: World):
    # systemd's DynamicUser= makes /var/lib/syncd a link into /var/lib/private (0755).
    ours = world.root / "private" / "syncd"
    ours.parent.mkdir(mode=0o700)
    ours.mkdir(mode=0o700)
    world.root.chmod(0o755)
    world.state_dir.symlink_to(ours)
    assert run(world, "plan").exit_code == 0
    assert (ours / "syncd.db").exists()
