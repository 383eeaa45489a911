"""docs/configuration.md lists every setting of syncd.settings.Settings, with its default.

The reference is written by hand (the class's descriptions are terse, and some
defaults come from other variables); this test keeps it honest: a setting added
to the class, removed from it, or given another default fails here until the
table says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

from syncd.settings import Settings

REFERENCE = Path(__file__).parents[2] / "docs" / "configuration.md"


def rows() -> dict[str, tuple[str, str]]:
    """Each table row of the reference: variable -> (default, meaning)."""
    found: dict[str, tuple[str, str]] = {}
    for line in REFERENCE.read_text().splitlines():
        if match := re.match(r"\| `(SYNCD_[A-Z_]+)` \| (.*?) \| (.*) \|$", line):
            variable, default, meaning = match.groups()
            assert variable not in found, f"{variable} is listed twice"
            found[variable] = (default, meaning)
    return found


def shown(default: Any) -> str:
    """How the reference shows a literal default."""
    if default is None:
        return "–"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    if default == "":
        return '`""`'
    return f"`{default}`"


def test_every_setting_is_listed_and_nothing_else():
    expected = {f"SYNCD_{name.upper()}" for name in Settings.model_fields}
    listed = set(rows())
    assert not expected - listed, f"missing from {REFERENCE.name}: {sorted(expected - listed)}"
    assert not listed - expected, f"not settings any more: {sorted(listed - expected)}"


def test_every_literal_default_is_the_one_shown():
    table = rows()
    for name, field in Settings.model_fields.items():
        default, meaning = table[f"SYNCD_{name.upper()}"]
        assert meaning.strip(), f"SYNCD_{name.upper()} has no description"
        if field.default is PydanticUndefined:  # made by a function: described in words
            continue
        assert default.startswith(shown(field.default)), (
            f"SYNCD_{name.upper()}: the default is {field.default!r}, the reference says {default}"
        )


def test_the_issue_s_forgotten_settings_are_there():
    assert {"SYNCD_CREDENTIALS_PREFIX", "SYNCD_RUN_DEADLINE"} <= set(rows())
