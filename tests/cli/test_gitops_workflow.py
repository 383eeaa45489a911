"""deploy/gitops-workflow.example.yml: its scripts, run by bash as GitHub runs them.

The plan and report steps are taken out of the workflow and run with `bash -eo
pipefail` (GitHub's shell for run:) in a checkout-like directory with
accounts/, the environment their env: gives them, and the real `syncd` against
the sandbox; what they would post is read back from comment.md.
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

from tests.integration.conftest import World

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "deploy" / "gitops-workflow.example.yml"
HEAD_SHA = "1234567890abcdef1234567890abcdef12345678"
MERGE_SHA = "fedcba0987654321fedcba0987654321fedcba09"


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


def test_pull_requests_check_out_and_name_their_head_commit_not_the_merge_commit():
    jobs = workflow()["jobs"]
    head = "${{ github.event.pull_request.head.sha }}"
    assert jobs["plan"]["steps"][0]["with"]["ref"] == head
    assert jobs["validate"]["steps"][0]["with"]["ref"].startswith(head.removesuffix(" }}"))
    assert step("plan", "Plan")["env"]["HEAD_SHA"] == head
    for job in jobs.values():
        for each in job["steps"]:
            assert "${{" not in each.get("run", ""), "expressions go through env:"


def test_the_plan_is_posted_as_a_diff_block_named_by_the_head_commit(world: World):
    done = run_step(step("plan", "Plan"), world, HEAD_SHA=HEAD_SHA)
    assert done.returncode == 0, done.stdout + done.stderr  # 2 (changes pending) is a success
    posted = comment(world)
    assert posted.startswith("<!-- syncd-plan -->\n### syncd plan for 1234567890ab\n")
    assert MERGE_SHA[:12] not in posted
    block = posted.split("```diff\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    assert "+   jane.doe+other@example.com" in lines
    assert "-   old@example.com" in lines
    assert any(line.startswith("!   full_name: ") for line in lines)
    assert world.writes() == 0


def test_a_failed_plan_fails_the_check_and_says_so(world: World):
    (world.credentials_dir / "janedoe.token").write_text("not-a-token\n")
    done = run_step(step("plan", "Plan"), world, HEAD_SHA=HEAD_SHA)
    assert done.returncode == 1
    assert "**The plan failed (exit 1).**" in comment(world)


def test_after_the_merge_the_report_says_applied_once_the_accounts_match(world: World):
    world.apply()  # what the daemon does after the merge
    report = step("report", "Wait until the accounts match this commit")
    done = run_step(report, world, WAIT_SECONDS="720", CHECK_EVERY_SECONDS="60")
    assert done.returncode == 0, done.stdout + done.stderr
    posted = comment(world)
    assert posted.startswith("<!-- syncd-apply -->\n### syncd apply of fedcba098765\n")
    assert "Applied: the accounts match this commit." in posted
    assert "```diff" not in posted


def test_the_report_fails_with_what_is_still_pending_when_nothing_was_applied(world: World):
    report = step("report", "Wait until the accounts match this commit")
    done = run_step(report, world, WAIT_SECONDS="0", CHECK_EVERY_SECONDS="60")
    assert done.returncode == 1
    posted = comment(world)
    assert "**Not applied within 0 minutes.**" in posted
    assert "+   jane.doe+other@example.com" in posted.split("```diff\n", 1)[1]
    assert world.writes() == 0
