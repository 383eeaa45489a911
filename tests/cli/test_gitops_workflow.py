"""deploy/gitops-workflow.example.yml: its scripts, run by bash as GitHub runs them.

The plan and report steps are taken out of the workflow and run with `bash -eo
pipefail` (GitHub's shell for run:) in a checkout-like directory with
accounts/, the environment their env: gives them, and the real `syncd` against
the sandbox (the plan) or the daemon's PostgreSQL state (the report, in a git
checkout of main); what they would post is read back from comment.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from syncd.state.backend import open_store
from tests.cli.conftest import Reader
from tests.world import World

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "deploy" / "gitops-workflow.example.yml"
HEAD_SHA = "1234567890abcdef1234567890abcdef12345678"
MERGE_SHA = "fedcba0987654321fedcba0987654321fedcba09"
PRIMARY, OLD = "jane.doe@example.com", "old@example.com"  # janedoe's (tests/world.py)


def workflow() -> Any:
    return YAML(typ="safe").load(WORKFLOW.read_text())


def step(job: str, name: str) -> dict[str, Any]:
    steps = workflow()["jobs"][job]["steps"]
    (found,) = [s for s in steps if s.get("name") == name]
    return found


def run_step(found: dict[str, Any], world: World, **env: str) -> subprocess.CompletedProcess[str]:
    """The step's script in a checkout of accounts/, with the env it is given, and GitHub's."""
    checkout = world.root / "checkout"
    (checkout / "accounts").mkdir(parents=True, exist_ok=True)
    shutil.copy(world.desired_file, checkout / "accounts" / "accounts.yaml")
    given = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(world.root),
        "NO_COLOR": "1",
        "GITHUB_SHA": MERGE_SHA,
        "RUNNER_TEMP": str(world.root / "runner"),
        # What the step's env: says, with ${{ runner.temp }} filled in.
        "SYNCD_CREDENTIALS_DIR": str(world.credentials_dir),
        "SYNCD_STATE_DIR": str(world.root / "runner" / "state"),
        "SYNCD_STATE_URL": "",  # the secret, when the daemon's state is not PostgreSQL
        "SYNCD_STATE_PASSWORD_FILE": str(world.root / "runner" / "state-password"),
        "SYNCD_API_URL": world.sandbox.url,
        **env,
    }
    assert set(found["env"]) <= set(given), "the test gives the step what its env: names"
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", found["run"]],
        cwd=checkout,
        env=given,
        capture_output=True,
        text=True,
        timeout=120,
    )


def comment(world: World) -> str:
    return (world.root / "checkout" / "comment.md").read_text()


def test_the_pinned_syncd_is_a_commit_of_this_repository():
    package = workflow()["env"]["SYNCD_PACKAGE"]
    ref = package.rpartition("@")[2]
    assert re.fullmatch(r"[0-9a-f]{40}", ref), f"pin a full commit SHA, not {ref!r}"
    shallow = subprocess.run(
        ["git", "rev-parse", "--is-shallow-repository"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    if shallow.stdout.strip() == "true":
        pytest.skip("a shallow clone may not hold the pinned commit")
    exists = subprocess.run(["git", "cat-file", "-e", f"{ref}^{{commit}}"], cwd=REPO)
    assert exists.returncode == 0, f"{ref} is not a commit of this repository"


def test_pull_requests_plan_the_merge_result_and_name_their_head_commit():
    # The head commit of a branch behind main showed main's later changes as reverts.
    # actions/checkout without a ref takes GITHUB_SHA: on pull_request, the merge commit.
    jobs = workflow()["jobs"]
    for job in ("validate", "plan"):
        (checkout,) = [s for s in jobs[job]["steps"] if "checkout" in s.get("uses", "")]
        assert "ref" not in checkout.get("with", {}), job
    plan = step("plan", "Plan")["env"]
    assert plan["HEAD_SHA"] == "${{ github.event.pull_request.head.sha }}"
    assert plan["BASE_REF"] == "${{ github.base_ref }}"
    for job in jobs.values():
        for each in job["steps"]:
            assert "${{" not in each.get("run", ""), "expressions go through env:"


def test_the_plan_is_posted_as_a_diff_block_named_by_the_head_commit(world: World):
    done = run_step(step("plan", "Plan"), world, HEAD_SHA=HEAD_SHA, BASE_REF="main")
    assert done.returncode == 0, done.stdout + done.stderr  # 2 (changes pending) is a success
    posted = comment(world)
    assert posted.startswith(
        "<!-- syncd-plan -->\n### syncd plan for 1234567890ab merged into main\n"
    )
    assert MERGE_SHA[:12] not in posted
    block = posted.split("```diff\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    assert "+   jane.doe+other@example.com" in lines
    assert "-   old@example.com" in lines
    assert any(line.startswith("!   full_name: ") for line in lines)
    assert world.writes() == 0


def test_a_failed_plan_fails_the_check_and_says_so(world: World):
    (world.credentials_dir / "janedoe.token").write_text("not-a-token\n")
    done = run_step(step("plan", "Plan"), world, HEAD_SHA=HEAD_SHA, BASE_REF="main")
    assert done.returncode == 1
    assert "**The plan failed (exit 1).**" in comment(world)


def test_a_plan_that_cannot_show_what_the_daemon_deletes_says_so(world: World):
    # The daemon's state owns old@example.com (listed and read); the pull request drops
    # it, and the job's fresh state cannot know: it said "No changes", exit 0.
    owned = {"emails_mode": "owned"}
    world.desire({"version": 1, "users": {"janedoe": {**owned, "emails": [PRIMARY, OLD]}}})
    world.apply()
    world.desire({"version": 1, "users": {"janedoe": {**owned, "emails": [PRIMARY]}}})
    done = run_step(step("plan", "Plan"), world, HEAD_SHA=HEAD_SHA, BASE_REF="main")
    assert done.returncode == 1, done.stdout + done.stderr
    posted = comment(world)
    assert "**Deletions of addresses syncd owns are not shown.**" in posted
    assert "No changes: the accounts already match." not in posted
    assert f"= janedoe: {OLD} is not managed (no claim of syncd's in this state)" in posted
    assert "ownership_unknown" in posted
    accepted = run_step(
        step("plan", "Plan"),
        world,
        HEAD_SHA=HEAD_SHA,
        BASE_REF="main",
        ACCEPT_UNSHOWN_DELETIONS="true",
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "**Deletions of addresses syncd owns are not shown.**" in comment(world)
    assert workflow()["env"]["ACCEPT_UNSHOWN_DELETIONS"] == "false"  # fails by default


def test_a_plan_with_the_daemons_state_shows_what_it_deletes(pg_world: World, reader: Reader):
    # The same pull request, planned with the daemon's PostgreSQL state through the
    # reading role: its ownership ledger shows the deletion before the merge.
    owned = {"emails_mode": "owned"}
    pg_world.desire({"version": 1, "users": {"janedoe": {**owned, "emails": [PRIMARY, OLD]}}})
    pg_world.apply()
    pg_world.desire({"version": 1, "users": {"janedoe": {**owned, "emails": [PRIMARY]}}})
    with open_store(pg_world.settings(), "run") as daemon, daemon.lock("run"):
        done = run_step(
            step("plan", "Plan"), pg_world, HEAD_SHA=HEAD_SHA, BASE_REF="main", **reader.env()
        )
    assert done.returncode == 0, done.stdout + done.stderr
    posted = comment(pg_world)
    assert "After the merge, the syncd daemon makes these changes" in posted
    assert f"-   {OLD}" in posted.split("```diff\n", 1)[1].splitlines()
    assert "ownership_unknown" not in posted


REPORT = "Wait until the daemon has applied this commit"


class MainBranch:
    """The GitOps repository's main, checked out where the steps run: accounts/ in git."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.path = world.root / "checkout"
        (self.path / "accounts").mkdir(parents=True)
        self._git("init", "--quiet", "-b", "main")

    def commit(self, full_name: str) -> str:
        desired = {"version": 1, "users": {"johnsmith": {"full_name": full_name}}}
        self.world.desire(desired)  # run_step copies it into accounts/ too
        shutil.copy(self.world.desired_file, self.path / "accounts" / "accounts.yaml")
        self._git("add", "-A")
        self._git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "c")
        return self._git("rev-parse", "HEAD").strip()

    def daemon_applies(self) -> None:
        """What the daemon does: apply main's last commit, which its state records."""
        done = subprocess.run(
            [sys.executable, "-m", "syncd", "apply", "--yes"],
            env={
                "PATH": os.environ["PATH"],
                "HOME": str(self.world.root),
                "SYNCD_API_URL": self.world.sandbox.url,
                "SYNCD_CREDENTIALS_DIR": str(self.world.credentials_dir),
                "SYNCD_STATE_DIR": str(self.world.root / "daemon"),
                "SYNCD_DESIRED": f"git+{self.path.as_uri()}#main:accounts/",
                **self.world.state_env(),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def _git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True
        )
        return done.stdout


def report(world: World, commit: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The report step after the merge of `commit`, on the daemon's state database."""
    given = {
        "GITHUB_SHA": commit,
        "WAIT_SECONDS": "720",
        "CHECK_EVERY_SECONDS": "60",
        **world.state_env(),
        **env,
    }
    return run_step(step("report", REPORT), world, **given)


def test_the_report_reads_the_daemons_state_not_the_accounts(pg_world: World):
    # It planned with --refresh every 60 s: every account read again, against the
    # rate limit the daemon works under.
    main = MainBranch(pg_world)
    merged = main.commit("John Smith")
    later = main.commit("John Q. Smith")
    main.daemon_applies()
    reads = pg_world.gets()
    done = report(pg_world, merged)
    assert done.returncode == 0, done.stdout + done.stderr
    posted = comment(pg_world)
    assert posted.startswith(f"<!-- syncd-apply -->\n### syncd apply of {merged[:12]}\n")
    # A later commit applied holds this one.
    assert f"Applied: the daemon's run of {later[:12]} (this commit or a later one)" in posted
    assert pg_world.gets() == reads


def test_the_report_fails_with_the_daemons_status_when_nothing_was_applied(pg_world: World):
    main = MainBranch(pg_world)
    applied = main.commit("John Smith")
    main.daemon_applies()
    merged = main.commit("John Q. Smith")  # not fetched by the daemon yet
    reads = pg_world.gets()
    done = report(pg_world, merged, WAIT_SECONDS="0")
    assert done.returncode == 1
    posted = comment(pg_world)
    assert "**Not applied within 0 minutes.**" in posted
    status = posted.split("```\n", 1)[1]
    assert f"revision     {applied} (last applied)" in status, status  # `syncd status`
    assert pg_world.gets() == reads
    assert pg_world.writes() == 0


def test_the_report_says_when_the_state_cannot_be_read(pg_world: World):
    wrong = pg_world.root / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    MainBranch(pg_world)
    done = report(pg_world, MERGE_SHA, SYNCD_STATE_PASSWORD_FILE=str(wrong))
    assert done.returncode == 1
    posted = comment(pg_world)
    assert "**Could not read the daemon's state.**" in posted
    assert "not-the-password" not in posted
