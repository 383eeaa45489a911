"""deploy/: the systemd unit passes systemd-analyze, and the examples match the settings."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from syncd.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
INSTALLED_AT = "/opt/syncd/bin/syncd"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with ExecStart= at this checkout's syncd: verify checks that it exists."""
    text = (DEPLOY / "syncd.service").read_text()
    assert INSTALLED_AT in text  # the path docs/operations.md installs to
    local = Path(sys.executable).parent / "syncd"
    path = tmp_path / "syncd.service"
    path.write_text(text.replace(INSTALLED_AT, str(local)))
    return path


@needs_systemd_analyze
def test_the_unit_verifies_cleanly(unit: Path):
    # verify exits 0 even on unknown keys; what it has to say goes to stderr.
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@needs_systemd_analyze
def test_the_unit_is_hardened(unit: Path):
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=15", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert level is not None, done.stdout[-500:]
    assert float(level.group(1)) <= 1.1


def test_the_unit_has_what_the_service_needs():
    keys = {}
    for line in (DEPLOY / "syncd.service").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    assert keys["Type"] == ["notify"]
    assert keys["DynamicUser"] == ["yes"]
    assert keys["StateDirectory"] == ["syncd"]
    assert keys["StateDirectoryMode"] == ["0700"]
    assert keys["UMask"] == ["0077"]
    assert keys["EnvironmentFile"] == ["-/etc/syncd/syncd.env"]
    assert keys["Restart"] == ["on-failure"]
    assert "WatchdogSec" in keys
    assert keys["MemoryMax"] == ["1G"]
    assert keys["TasksMax"] == ["64"]
    (credential,) = keys["LoadCredential"]
    name, _, directory = credential.partition(":")
    assert directory == "/etc/syncd/credentials"
    # LoadCredential= of a directory names the files <name>_<file>: syncd strips that.
    assert f"SYNCD_CREDENTIALS_PREFIX={name}_" in keys["Environment"]


def test_the_env_example_names_only_real_settings():
    text = (DEPLOY / "syncd.env.example").read_text()
    named = set(re.findall(r"^#?(SYNCD_[A-Z_]+)=", text, flags=re.MULTILINE))
    fields = {f"SYNCD_{name.upper()}" for name in Settings.model_fields}
    fields.add("SYNCD_CONFIG")  # the settings file, named before the settings are read
    assert named
    assert named <= fields, named - fields


def test_the_workflow_example_plans_pull_requests():
    workflow = YAML(typ="safe").load((DEPLOY / "gitops-workflow.example.yml").read_text())
    assert "pull_request" in workflow["on"]
    steps = workflow["jobs"]["plan"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "syncd plan -f accounts/ --detailed-exitcode" in runs
    assert any("github-script" in step.get("uses", "") for step in steps)
    assert "syncd validate -f accounts/" in str(workflow["jobs"]["validate"]["steps"])
    assert "apply" not in runs  # the daemon applies, after the merge
