"""The GitOps source: a git+file:// repository as the desired state, fetched every run."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.desired.gitsource import DesiredSource, GitLocation, parse_git_desired
from syncd.errors import DesiredStateError, GitSourceError, UsageError
from tests.conftest import Repository
from tests.daemon.harness import DaemonProcess, audit_events, runs, wait_for_run
from tests.world import STANDARD_DESIRED, World


def test_the_daemon_applies_each_commit_and_records_its_revision(
    world: World, repository: Repository, start_daemon
):
    first = repository.commit(STANDARD_DESIRED, "the accounts as they must be")
    daemon: DaemonProcess = start_daemon(SYNCD_DESIRED=repository.url, SYNCD_INTERVAL="1")
    applied = wait_for_run(world, lambda run: run["revision"] == first, daemon=daemon)
    assert applied["result"] == "ok"
    assert "jane.doe+other@example.com" in world.emails_of("janedoe")

    changed = {**STANDARD_DESIRED, "users": {**STANDARD_DESIRED["users"]}}
    changed["users"]["johnsmith"] = {"full_name": "John Q. Smith"}
    before = len(runs(world))
    second = repository.commit(changed, "johnsmith's new name")
    # The next cycle fetches it (counted in cycles, not seconds, which load stretches):
    # before it, at most the one that had fetched when the commit was made.
    run = wait_for_run(world, lambda run: run["revision"] == second, daemon=daemon)
    older = [r for r in runs(world)[before:] if r["started_at"] < run["started_at"]]
    assert len(older) <= 1, older
    assert run["result"] == "ok"
    events = audit_events(world, run["id"])
    assert [event["user"] for event in events] == ["johnsmith", "johnsmith"]
    assert {json.loads(event["source"])["revision"] for event in events} == {second}
    assert json.loads(run["source"])["files"][0]["path"] == "accounts/users.yaml"

    writes = world.writes()
    broken = repository.commit("version: 1\nusers:\n  johnsmith:\n    ful_name: x\n", "typo")
    invalid = wait_for_run(world, lambda run: run["revision"] == broken, daemon=daemon)
    assert invalid["result"] == "invalid"
    problems = daemon.wait_for("desired_state_invalid", revision=broken)["problems"]
    assert problems[0].startswith("accounts/users.yaml:4:5: unknown key 'ful_name'")
    assert world.writes() == writes  # never applied

    status = CliRunner().invoke(
        cli, ["status", "--state-dir", str(world.state_dir)], catch_exceptions=False
    )
    assert status.exit_code == 0, status.output
    assert f"running, pid {daemon.pid}" in status.output
    assert f"revision     {second} (last applied)" in status.output
    assert f"invalid     {broken[:12]}" in status.output
    assert "next run     20" in status.output
    assert daemon.stop() == 0


def test_a_failed_fetch_keeps_the_last_good_revision(repository: Repository, tmp_path: Path):
    good = repository.commit(STANDARD_DESIRED)
    state = tmp_path / "state"
    first = asyncio.run(DesiredSource(repository.url, state, 30).read())
    assert (first.desired.revision, first.stale) == (good, None)

    moved = repository.path.with_name("elsewhere")
    shutil.move(repository.path, moved)
    # A new source (as after a restart) finds the good commit kept in the mirror.
    again = asyncio.run(DesiredSource(repository.url, state, 30).read())
    assert again.desired.revision == good
    assert again.stale is not None
    assert "git fetch failed" in again.stale

    with pytest.raises(GitSourceError, match="git fetch failed"):
        asyncio.run(DesiredSource(repository.url, tmp_path / "fresh", 30).read())


def test_a_name_is_the_branch_before_a_tag_of_that_name(repository: Repository, tmp_path: Path):
    # git's own order (refs/tags/<name> before refs/heads/<name>) had `#main` follow a
    # tag `main` on no branch: whoever could push a tag chose what was applied.
    branch = repository.commit(STANDARD_DESIRED)
    tagged = repository.commit("version: 1\nusers:\n  alice: {full_name: From a tag}\n")
    repository._git("tag", "main")
    repository._git("tag", "v1")
    repository._git("reset", "--quiet", "--hard", branch)
    state, where = tmp_path / "state", repository.path.as_uri()
    for ref, commit, followed in [
        ("main", branch, "refs/heads/main"),
        ("v1", tagged, "refs/tags/v1"),  # a name that no branch has: the tag
        ("refs/tags/main", tagged, "refs/tags/main"),
        (tagged, tagged, tagged),
    ]:
        source = DesiredSource(f"git+{where}#{ref}:accounts/", state, 30)
        assert asyncio.run(source.read()).desired.revision == commit, ref
        assert source.followed_ref == followed
    with pytest.raises(
        GitSourceError, match=r"#v2:accounts: the remote has no branch or tag 'v2'$"
    ):
        asyncio.run(DesiredSource(f"git+{where}#v2:accounts/", tmp_path / "fresh", 30).read())
    # Review: the branch followed, then deleted, switched to the tag `main` in silence,
    # in the next process too. A failed fetch, which keeps the last good commit.
    repository._git("checkout", "--quiet", "--detach")
    repository._git("branch", "-D", "main")
    again = asyncio.run(DesiredSource(f"git+{where}#main:accounts/", state, 30).read())
    assert again.desired.revision == branch
    assert again.stale is not None
    assert "refs/heads/main" in again.stale, again.stale


def test_an_invalid_commit_never_becomes_the_good_one(repository: Repository, tmp_path: Path):
    good = repository.commit(STANDARD_DESIRED)
    source = DesiredSource(repository.url, tmp_path / "state", 30)
    assert asyncio.run(source.read()).desired.revision == good
    bad = repository.commit("version: 2\nusers: {}\n")
    with pytest.raises(DesiredStateError, match="unsupported version 2"):
        asyncio.run(source.read())
    assert source.attempted_revision == bad

    shutil.rmtree(repository.path)  # now the fetch fails: back to the good commit, not the bad
    assert asyncio.run(source.read()).desired.revision == good


def test_a_git_directory_is_read_as_a_tree_without_hidden_directories(
    repository: Repository, tmp_path: Path
):
    groups = repository.path / "accounts" / "teams" / "groups.yaml"
    groups.parent.mkdir()
    groups.write_text("version: 1\ngroups:\n  berlin: {location: Berlin}\n", encoding="utf-8")
    hidden = repository.path / "accounts" / ".github" / "ci.yaml"
    hidden.parent.mkdir()
    hidden.write_text("not: [a desired state\n", encoding="utf-8")
    repository.commit("version: 1\nusers:\n  alice: {groups: [berlin]}\n")
    read = asyncio.run(DesiredSource(repository.url, tmp_path / "state", 30).read())
    paths = [source.path for source in read.desired.sources]
    assert paths == ["accounts/teams/groups.yaml", "accounts/users.yaml"]
    assert dict(read.desired.users[0].profile) == {"location": "Berlin"}


def test_plan_reads_a_git_desired_state(world: World, repository: Repository):
    commit = repository.commit(STANDARD_DESIRED)
    args = [arg if arg != str(world.desired_file) else repository.url for arg in world.cli_args()]
    result = CliRunner().invoke(cli, ["plan", *args, "--output", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["source"]["revision"] == commit
    assert document["summary"]["users_changed"] == 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "git+file:///tmp/repo#main:accounts/",
            GitLocation("file:///tmp/repo", "main", "accounts"),
        ),
        ("git+file:///tmp/repo", GitLocation("file:///tmp/repo", "HEAD", "")),
        (
            "git+https://example.org/ops/accounts.git#main:accounts/",
            GitLocation("https://example.org/ops/accounts.git", "main", "accounts"),
        ),
        (
            "git+ssh://git@example.org/ops/a.git#v1.2:users.yaml",
            GitLocation("ssh://git@example.org/ops/a.git", "v1.2", "users.yaml"),
        ),
        (
            "git+https://example.org/a.git#:team/accounts",
            GitLocation("https://example.org/a.git", "HEAD", "team/accounts"),
        ),
        ("accounts/", None),
    ],
    ids=["file", "file-no-fragment", "https", "ssh-tag-file", "path-only", "plain-path"],
)
def test_git_urls_are_parsed(spec: str, expected: GitLocation | None):
    assert parse_git_desired(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "git+http://example.org/a.git",
        "git+file://host/tmp/repo",
        "git+https:///nohost.git",
        "git+https://example.org/a.git#--upload-pack=evil",
        "git+https://example.org/a.git#main:../etc",
        "git+https://example.org/a.git#a..b",
    ],
    ids=["plain-http", "file-with-host", "no-host", "option-as-ref", "path-escape", "dotdot-ref"],
)
def test_bad_git_urls_are_refused(spec: str):
    with pytest.raises(UsageError):
        parse_git_desired(spec)


def test_a_refused_git_url_is_quoted_as_given_without_its_token():
    # It was quoted with a made-up "#HEAD::" in place of the ref and path given.
    with pytest.raises(UsageError) as caught:
        parse_git_desired("git+http://deploy:s3cr3t-token@127.0.0.1:9/a.git#main:accounts/")
    assert str(caught.value) == (
        "git+http://***@127.0.0.1:9/a.git#main:accounts/: a git desired state is "
        "git+https://, git+ssh:// or git+file:// "
        "(not plain http: anyone on the way could change what is fetched)"
    )


def test_credentials_in_a_git_url_are_never_shown(tmp_path: Path):
    spec = "git+https://deploy:s3cr3t-token@127.0.0.1:9/ops/a.git#main"
    location = parse_git_desired(spec)
    assert location is not None
    assert "s3cr3t" not in str(location)
    assert str(location) == "git+https://***@127.0.0.1:9/ops/a.git#main"
    with pytest.raises(GitSourceError) as caught:
        asyncio.run(DesiredSource(spec, tmp_path, 30).read())
    assert "s3cr3t" not in str(caught.value)
    # With no path, messages ended the location with "#main::".
    assert str(caught.value).startswith("git+https://***@127.0.0.1:9/ops/a.git#main: git fetch")
    assert "127.0.0.1" in str(caught.value)
