"""The import-linter contracts of pyproject.toml hold, and would break on an upward import.

`make lint` checks the real tree; here a copy of the package is given one
import that a layer must not make, and `lint-imports` must refuse it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAYERS = "Layers: ways in > engine > edges > core"
PURE = "Pure core: no I/O library"


def lint_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    shutil.copytree(REPO / "syncd", tmp_path / "syncd", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "syncd" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_real_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_copy(tmp_path, "core/plan.py", "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{LAYERS} KEPT" in result.stdout
    assert f"{PURE} KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        pytest.param(
            "api/pool.py", "import syncd.engine.reconcile", LAYERS, id="edge-imports-engine"
        ),
        pytest.param(
            "engine/fetching.py", "import syncd.cli.render", LAYERS, id="engine-imports-cli"
        ),
        pytest.param(
            "state/cache.py", "import syncd.api.client", LAYERS, id="edge-imports-sibling"
        ),
        pytest.param("core/plan.py", "import syncd.state.cache", LAYERS, id="core-imports-state"),
        pytest.param("core/live.py", "import httpx", PURE, id="core-imports-httpx"),
    ],
)
def test_an_import_against_the_layers_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    result = lint_copy(tmp_path, module, line)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout
