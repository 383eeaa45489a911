"""The desired states and usernames that the README and docs/ show are ones syncd takes.

A reader copies them: the "Defaults and groups" example named a user `bob`, which
a username of 4 to 30 characters can never be, so it failed validation as shown.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from syncd.core.fields import is_valid_username
from syncd.desired.loading import parse_desired

REPO = Path(__file__).parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_desired_state_shown_is_valid(page: Path):
    blocks = re.findall(r"```yaml\n(version: .*?)```", page.read_text(), re.DOTALL)
    for number, block in enumerate(blocks, 1):
        parse_desired([(f"{page.name}, example {number}", block.encode())])


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_user_named_in_a_command_is_a_valid_username(page: Path):
    named = re.findall(r"^ *syncd .*?--(?:user|exclude) (\S+)", page.read_text(), re.MULTILINE)
    assert not [name for name in named if name != "NAME" and not is_valid_username(name)]
