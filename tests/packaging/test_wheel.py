"""The wheel, installed into a fresh venv outside the repository, runs `syncd demo`.

One test, in steps, because each step needs the one before: build the wheel
from this tree; install it alone (no web framework comes with it, and the
sandbox commands say which extra to install); add the extra `sandbox`; run
the demo from a directory that is not the repository, so that it can only
find its example desired state inside the installed package.

For speed: the wheel is built without build isolation (the dev venv has
setuptools and setuptools-scm); the fresh venv is made without pip and
filled by this venv's pip (`pip --python`), from constraints.txt, with pip's
cache, and without compiling bytecode.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"


def run(*command: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: nothing may reach the repository's code but the wheel.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SYNCD_"))}
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**clean, "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def build_wheel(tmp_path: Path) -> Path:
    # setuptools would put whatever an earlier build left in the tree's build/lib
    # into the wheel: its build directories go to tmp_path instead.
    config = tmp_path / "setup.cfg"
    config.write_text(
        f"[build]\nbuild_base = {tmp_path / 'build'}\n[egg_info]\negg_base = {tmp_path}\n"
    )
    dist = tmp_path / "dist"
    pip = (sys.executable, "-m", "pip")
    # setuptools-scm writes the version file into the source tree: put back the
    # one that `make` installed, or `syncd --version` would stop matching the
    # installed distribution for the rest of the session.
    version_file = REPO / "syncd" / "_version.py"
    installed = version_file.read_bytes() if version_file.exists() else None
    try:
        done = run(
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            dist,
            REPO,
            cwd=tmp_path,
            DIST_EXTRA_CONFIG=str(config),
        )
    finally:
        if installed is not None:
            version_file.write_bytes(installed)
    assert done.returncode == 0, done.stderr
    (wheel,) = dist.glob("syncd-*.whl")
    return wheel


def test_the_wheel_installs_without_a_web_framework_and_runs_the_demo_with_its_extra(
    tmp_path: Path,
):
    wheel = build_wheel(tmp_path)
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"syncd-{version}.dist-info/METADATA").decode()
    assert "syncd/desired-state.example.yaml" in names
    assert "syncd/service/templates/home.html" in names  # the status pages' templates
    assert f"syncd-{version}.dist-info/licenses/LICENSE" in names
    required = [
        Requirement(line.removeprefix("Requires-Dist: "))
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ")
    ]
    runtime = {r.name for r in required if r.marker is None}
    sandbox = {r.name for r in required if r.marker and r.marker.evaluate({"extra": "sandbox"})}
    assert sandbox == {"starlette", "uvicorn"}
    assert not runtime & {"starlette", "uvicorn", "ruamel.yaml"}
    for requirement in required:
        if requirement.name in runtime | sandbox:
            assert any(s.operator == "<" for s in requirement.specifier), requirement

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python, syncd = venv / "bin" / "python", venv / "bin" / "syncd"
    pip = (sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-compile")
    pip += ("--disable-pip-version-check", "-c", CONSTRAINTS)
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    installed = run(*pip, wheel, cwd=outside)
    assert installed.returncode == 0, installed.stderr
    shown = run(syncd, "--version", cwd=outside)
    assert shown.stdout == f"syncd, version {version}\n"
    found = run(
        python,
        "-c",
        "import importlib.util as u, syncd; print(syncd.__file__);"
        "print([m for m in ('starlette', 'uvicorn', 'ruamel') if u.find_spec(m)])",
        cwd=outside,
    )
    location, modules = found.stdout.splitlines()
    assert Path(location).is_relative_to(venv)
    assert modules == "[]"
    for command in ("sandbox", "demo"):
        refused = run(syncd, command, cwd=outside)
        assert refused.returncode == 1
        assert refused.stdout == ""
        assert refused.stderr.endswith(
            "needs the extra syncd[sandbox] (starlette and uvicorn"
            " not installed): pip install 'syncd[sandbox]'\n"
        )
        assert len(refused.stderr.splitlines()) == 1, refused.stderr

    installed = run(*pip, f"{wheel}[sandbox]", cwd=outside)
    assert installed.returncode == 0, installed.stderr
    demo = run(syncd, "demo", "--workdir", tmp_path / "demo", cwd=outside)
    # Exit 0 also says that the apply step succeeded (the demo exits 1 if not).
    assert demo.returncode == 0, demo.stdout + demo.stderr
    example = Path(location).parent / "desired-state.example.yaml"
    assert f"differ from {example}." in demo.stdout
    assert (tmp_path / "demo" / "state" / "syncd.db").is_file()
