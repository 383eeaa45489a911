"""A git source reads the files that `-f DIR` reads in a checkout of the same commit.

CI validates and plans the checkout; the daemon reads the commit. A symlinked
file once read by the one and skipped in silence by the other made the pull
request's plan say "No changes" while the daemon deleted an owner's address.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from syncd.core.desired import DesiredState, EmailsMode
from syncd.desired.gitsource import DesiredSource
from syncd.desired.loading import load_desired
from syncd.errors import DesiredStateError
from tests.conftest import GIT_IDENTITY, Repository

USERS = "version: 1\nusers:\n  alice:\n    emails: [alice@example.com]\n"


def from_git(repository: Repository, tmp_path: Path, spec: str | None = None) -> DesiredState:
    source = DesiredSource(spec or repository.url, tmp_path / "state", 30)
    return asyncio.run(source.read()).desired


def problems_in_git(repository: Repository, tmp_path: Path) -> dict[str, str]:
    """Each problem of the commit, by path, without the commit id its message names."""
    with pytest.raises(DesiredStateError) as caught:
        from_git(repository, tmp_path)
    commit = repository._git("rev-parse", "HEAD")[:12]
    return {p.path: p.message.replace(f" in {commit}", "") for p in caught.value.problems}


def problems_in_checkout(repository: Repository) -> dict[str, str]:
    with pytest.raises(DesiredStateError) as caught:
        load_desired(repository.path / "accounts")
    prefix = f"{repository.path}/"
    return {p.path.removeprefix(prefix): p.message for p in caught.value.problems}


def test_a_symlinked_file_means_the_same_in_the_checkout_and_the_commit(
    repository: Repository, tmp_path: Path
):
    shared = repository.path / "shared" / "defaults.yaml"
    shared.parent.mkdir()
    shared.write_text("version: 1\ndefaults:\n  emails_mode: owned\n", encoding="utf-8")
    (repository.path / "accounts" / "defaults.yaml").symlink_to("../shared/defaults.yaml")
    repository.commit(USERS)

    committed, checked_out = (
        from_git(repository, tmp_path),
        load_desired(repository.path / "accounts"),
    )
    assert [user.emails_mode for user in committed.users] == [EmailsMode.OWNED]
    assert [user.emails_mode for user in checked_out.users] == [EmailsMode.OWNED]
    assert [source.path for source in committed.sources] == [
        "accounts/defaults.yaml",
        "accounts/users.yaml",
    ]
    assert [s.sha256 for s in committed.sources] == [s.sha256 for s in checked_out.sources]


def test_chains_of_links_and_links_through_a_linked_directory_are_followed(
    repository: Repository, tmp_path: Path
):
    groups = repository.path / "shared" / "groups.yaml"
    groups.parent.mkdir()
    groups.write_text("version: 1\ngroups:\n  berlin: {location: Berlin}\n", encoding="utf-8")
    (repository.path / "common").symlink_to("shared")
    accounts = repository.path / "accounts"
    # `second`, not a YAML name, is only a link on the way.
    (accounts / "first.yaml").symlink_to("second")
    (accounts / "second").symlink_to("../common/groups.yaml")
    repository.commit("version: 1\nusers:\n  alice: {groups: [berlin]}\n")

    for state in from_git(repository, tmp_path), load_desired(accounts):
        assert dict(state.users[0].profile) == {"location": "Berlin"}
        assert [Path(source.path).name for source in state.sources] == [
            "first.yaml",
            "users.yaml",
        ]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "/etc/hostname",
            "a symlink to /etc/hostname: syncd follows relative links within the repository only",
        ),
        (
            "../../outside.yaml",
            "a symlink to ../../outside.yaml: "
            "syncd follows relative links within the repository only",
        ),
        ("nowhere.yaml", "a symlink to nowhere.yaml, which is not a file"),
        ("linked.yaml", "a symlink in a loop, or a chain of more than 40 links"),
        ("../shared", "a symlink to a directory: syncd follows links to files only"),
    ],
    ids=["absolute", "out-of-the-repository", "dangling", "loop", "to-a-directory"],
)
def test_a_link_that_leads_to_no_file_of_the_repository_is_a_problem_in_both(
    repository: Repository, tmp_path: Path, target: str, message: str
):
    # A file out of the repository that a link could reach: valid, so that only the
    # link's problem can fail the read.
    (repository.path.parent / "outside.yaml").write_text(USERS, encoding="utf-8")
    (repository.path / "shared").mkdir()
    (repository.path / "shared" / "README").write_text("shared files\n", encoding="utf-8")
    (repository.path / "accounts" / "linked.yaml").symlink_to(target)
    repository.commit(USERS.replace("alice", "bobby"))

    expected = {"accounts/linked.yaml": message}
    assert problems_in_git(repository, tmp_path) == expected
    assert problems_in_checkout(repository) == expected


def test_a_submodule_is_not_read_and_one_with_a_yaml_name_is_a_problem(
    repository: Repository, tmp_path: Path
):
    other = Repository(tmp_path / "other")
    other.commit("version: 1\nusers:\n  mallory: {}\n")
    git = ["git", "-C", str(repository.path), *GIT_IDENTITY, "-c", "protocol.file.allow=always"]
    for name in ("vendor", "vendor.yaml"):
        add = ["submodule", "add", "--quiet", str(other.path), f"accounts/{name}"]
        subprocess.run([*git, *add], check=True, capture_output=True)
    assert (repository.path / "accounts" / "vendor" / "accounts" / "users.yaml").exists()
    repository.commit(USERS)

    expected = {"accounts/vendor.yaml": "a submodule: syncd does not read submodules"}
    assert problems_in_git(repository, tmp_path) == expected
    assert problems_in_checkout(repository) == expected


def test_the_suffix_is_matched_in_any_case(repository: Repository, tmp_path: Path):
    # new-hires.YAML was skipped in silence: its mistakes passed validation.
    hires = repository.path / "accounts" / "new-hires.YAML"
    hires.write_text("version: 1\nusers:\n  carol: {full_name: C, bogus: 1}\n", encoding="utf-8")
    repository.commit(USERS)

    expected = "unknown key 'bogus'"
    for problems in problems_in_git(repository, tmp_path), problems_in_checkout(repository):
        assert list(problems) == ["accounts/new-hires.YAML"]
        assert problems["accounts/new-hires.YAML"].startswith(expected)


def test_the_path_given_may_be_a_symlink(repository: Repository, tmp_path: Path):
    (repository.path / "desired").symlink_to("accounts")
    (repository.path / "alice.yaml").symlink_to("accounts/users.yaml")
    repository.commit(USERS)
    url = f"git+{repository.path.as_uri()}#main:"

    directory = from_git(repository, tmp_path, url + "desired")
    assert [source.path for source in directory.sources] == ["desired/users.yaml"]
    single = from_git(repository, tmp_path, url + "alice.yaml")
    assert [user.username for user in single.users] == ["alice"]
