"""Shell completion as the README sets it up, and the pre-commit hook of .pre-commit-hooks.yaml.

Both run the installed `syncd` console script in a child process, as a shell
or pre-commit would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "desired-state.example.yaml"
PATH = f"{Path(sys.executable).parent}:{os.environ['PATH']}"


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        cwd=cwd,
        env={"PATH": PATH, "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def bash_completions(words: list[str], tmp_path: Path) -> list[str]:
    """What bash offers for the last of `words`, with the README's line in ~/.bashrc."""
    script = f"""
        eval "$(_SYNCD_COMPLETE=bash_source syncd)"
        COMP_WORDS=({" ".join(words)}); COMP_CWORD={len(words) - 1}
        _syncd_completion syncd
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    done = bash(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.split()


def test_bash_completes_commands(tmp_path: Path):
    assert bash_completions(["syncd", "pl"], tmp_path) == ["plan"]
    assert {"apply", "plan", "run", "validate", "demo"} <= set(
        bash_completions(["syncd", "''"], tmp_path)
    )


def test_bash_completes_options(tmp_path: Path):
    assert bash_completions(["syncd", "plan", "--detailed"], tmp_path) == ["--detailed-exitcode"]
    assert bash_completions(["syncd", "plan", "--output", "''"], tmp_path) == ["text", "json"]


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("zsh", "#compdef syncd"), ("fish", "complete --no-files --command syncd")],
)
def test_the_other_shells_get_their_script(shell: str, marker: str, tmp_path: Path):
    done = bash(f"_SYNCD_COMPLETE={shell}_source syncd", tmp_path)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    if shutil.which(shell):  # where the shell is installed, it reads the script
        check = ["zsh", "-n"] if shell == "zsh" else ["fish", "--no-execute"]
        parsed = subprocess.run(check, input=done.stdout, capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr


def hook() -> dict[str, object]:
    (only,) = YAML(typ="safe").load((REPO / ".pre-commit-hooks.yaml").read_text())
    return dict(only)


def test_the_hook_manifest_names_a_python_hook_run_once_on_yaml_changes():
    found = hook()
    # The keys that pre-commit requires of a hook (pre-commit.com, "Creating new hooks").
    assert {"id", "name", "entry", "language"} <= found.keys()
    assert found["id"] == "syncd-validate"
    assert found["language"] == "python"  # pre-commit pip-installs this repository
    assert found["pass_filenames"] is False  # the whole directory: duplicates across files
    files = re.compile(str(found["files"]))
    assert files.search("accounts/team.yaml")
    assert files.search("accounts/team.yml")
    assert not files.search("README.md")


def test_the_hook_validates_the_directory_as_the_readme_configures_it(tmp_path: Path):
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    shutil.copy(EXAMPLE, accounts / "team.yaml")
    # What pre-commit runs: entry, then args (docs/operations.md's [-f, accounts/]), no file names.
    command = f"{hook()['entry']} -f accounts/"
    done = bash(command, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "accounts/: valid, 3 users\n"

    (accounts / "more.yml").write_text("version: 1\nusers:\n  janedoe: {}\n")
    done = bash(command, tmp_path)
    assert done.returncode == 1
    assert "accounts/more.yml:3:3: " in done.stderr
    assert "janedoe" in done.stderr
