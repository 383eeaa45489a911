"""The version comes from the git tags, also in a `git archive` tarball, and has a fallback.

Tags are made in a clone of this repository in tmp_path, never in the repository
itself; the version is what setuptools-scm, the build's own version source,
computes there (`python -m setuptools_scm`).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

import syncd
from syncd.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


def git(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout


def scm_version(root: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "setuptools_scm", "--root", str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def tagged(tmp_path: Path) -> Path:
    """A clone of this repository's HEAD, tagged v7.8.9 (a tag nobody will push)."""
    clone = tmp_path / "clone"
    git("clone", "--quiet", "--no-checkout", REPO, clone, cwd=tmp_path)
    git("checkout", "--quiet", git("rev-parse", "HEAD", cwd=REPO).strip(), cwd=clone)
    git("tag", "v7.8.9", cwd=clone)
    return clone


def test_syncd_version_is_the_installed_distributions():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"syncd, version {version('syncd')}\n"
    assert syncd.__version__ == version("syncd")


def test_a_tag_is_the_version(tagged: Path):
    assert scm_version(tagged) == "7.8.9"


def test_a_git_archive_of_a_tag_knows_its_version(tagged: Path, tmp_path: Path):
    tarball = tmp_path / "syncd.tar"
    git("archive", "--format=tar", "-o", tarball, "v7.8.9", cwd=tagged)
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    assert not (tmp_path / "unpacked" / ".git").exists()
    assert scm_version(tmp_path / "unpacked") == "7.8.9"


def test_a_tree_without_git_or_archive_data_falls_back(tmp_path: Path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    assert scm_version(tree) == "0.0.0"
