"""constraints.txt pins every package that the test venv holds, at the version it holds.

`make test` installs from it, so on a fresh clone this says that nothing was
installed unpinned: a new dependency (direct or not) shows up here until
`make constraints` has pinned it.
"""

from __future__ import annotations

import re
from importlib.metadata import distributions
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, equals, version = line.partition("==")
            assert equals, f"not an exact pin: {line}"
            found[normalized(name)] = version
    return found


def test_every_installed_package_is_pinned_at_its_version():
    pinned = pins()
    installed = {
        normalized(d.metadata["Name"]): d.version
        for d in distributions()
        if normalized(d.metadata["Name"]) != "syncd"
    }
    assert {n: v for n, v in installed.items() if pinned.get(n) != v} == {}
