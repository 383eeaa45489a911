"""docs/configuration.md lists every setting of syncd.settings.Settings, with its flags and
its default.

The reference is written by hand (the class's descriptions are terse, and some
defaults come from other variables); this test keeps it honest: a setting added
to the class, removed from it, or given another default fails here until the
table says so; and so does a flag that overrides a setting (its --help names the
variable, `[SYNCD_…]`) until the table's flag column names it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from pydantic_core import PydanticUndefined

from syncd.cli.main import cli
from syncd.settings import Settings

REFERENCE = Path(__file__).parents[2] / "docs" / "configuration.md"


def rows() -> dict[str, tuple[str, str, str]]:
    """Each table row of the reference: variable -> (flags, default, meaning)."""
    found: dict[str, tuple[str, str, str]] = {}
    for line in REFERENCE.read_text().splitlines():
        if match := re.match(r"\| `(SYNCD_[A-Z_]+)` \| (.*?) \| (.*?) \| (.*) \|$", line):
            variable, flags, default, meaning = match.groups()
            assert variable not in found, f"{variable} is listed twice"
            found[variable] = (flags, default, meaning)
    return found


def options(command: click.Command) -> Iterator[click.Option]:
    """Every option of a command and of the commands under it."""
    yield from (param for param in command.params if isinstance(param, click.Option))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from options(sub)


def flags_of_settings() -> dict[str, set[str]]:
    """Each variable -> the long flags whose --help says they override it."""
    found: dict[str, set[str]] = defaultdict(set)
    for option in options(cli):
        for variable in re.findall(r"\[(SYNCD_[A-Z_]+)", option.help or ""):
            found[variable].update(name for name in option.opts if name.startswith("--"))
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
        _, default, meaning = table[f"SYNCD_{name.upper()}"]
        assert meaning.strip(), f"SYNCD_{name.upper()} has no description"
        if field.default is PydanticUndefined:  # made by a function: described in words
            continue
        assert default.startswith(shown(field.default)), (
            f"SYNCD_{name.upper()}: the default is {field.default!r}, the reference says {default}"
        )


def test_the_issue_s_forgotten_settings_are_there():
    assert {"SYNCD_CREDENTIALS_PREFIX", "SYNCD_RUN_DEADLINE"} <= set(rows())


def test_every_flag_that_overrides_a_setting_is_in_its_row():
    expected = flags_of_settings()
    assert {"--interval", "--metrics-addr", "--state-dir"} <= set().union(*expected.values())
    for variable, (flags, _, _) in rows().items():
        shown_flags = set(re.findall(r"`(--[a-z-]+)", flags))
        assert shown_flags == expected.get(variable, set()), f"{variable}: flags {flags}"
