"""Every long option of every command is named somewhere in the README or docs/: an
operator who meets one in --help can look it up, and a new one fails here until a
page says what it is for."""

from __future__ import annotations

import re
from pathlib import Path

from syncd.cli.main import cli
from tests.docs.test_configuration_reference import options

REPO = Path(__file__).parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_option_is_named_in_a_page():
    text = "\n".join(page.read_text() for page in PAGES)
    names = {name for option in options(cli) for name in [*option.opts, *option.secondary_opts]}
    assert {"--interval", "--workdir", "--fault-seed"} <= names
    unnamed = [
        name
        for name in sorted(names)
        if name.startswith("--")
        and name != "--help"
        and not re.search(re.escape(name) + r"(?![\w-])", text)
    ]
    assert not unnamed, f"options in no page: {unnamed}"
