"""Every relative link of the README and docs/ points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
PAGES = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_point_at_existing_files(page: Path):
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    relative = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t[0] != "#"]
    missing = [target for target in relative if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"


def test_the_readme_stays_an_introduction():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    lines = readme.splitlines()
    # The two commands for a fresh clone come first.
    assert lines.index(next(line for line in lines if "make demo" in line)) < 20
    # The API's paths are stated.
    assert "/api/v1.1/users/<u>/" in readme
    assert "/api/v1.1/users/<u>/emails/" in readme
