"""Text that shows as what it is on a terminal.

Usernames, addresses, profile values and error bodies come from the desired
state and from the API, and are printed to terminals. A control character
there could move the cursor, erase a line of the plan or retitle the window:
an API that answers "\\x1b[2K" could hide a pending deletion from the person
about to approve it. An invisible one (a zero-width space, a bidirectional
override) would make two different values look the same in a diff. Every
character that Python does not count as printable is shown as an escape
instead: in repr()'s notation in text, as a \\u escape in JSON.
"""

from __future__ import annotations

import json


def visible(text: str) -> str:
    if text.isprintable():  # the common case, checked in C
        return text
    # repr() of a character that does not print is its escape: \t, \x1b, \u200b, \U000e0001.
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def counted(count: int, word: str, plural: str | None = None) -> str:
    """`1 user`, `2 users`: a count and its noun, as every command and page says one."""
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def quoted(value: str | None) -> str:
    """A profile value as a plan shows it, wherever it is shown (the plan, `syncd status`,
    the status pages): quoted, visible; None is write-only."""
    if value is None:
        return "(write-only, differs)"
    return visible(json.dumps(value, ensure_ascii=False))


def visible_lines(text: str) -> str:
    """`visible` for each line of a message of several lines, keeping its line breaks."""
    return "\n".join(visible(line) for line in text.split("\n"))


def visible_json(document: str) -> str:
    """A JSON text with each character that does not print written as a \\u escape.

    json.dumps(ensure_ascii=False) escapes only the C0 controls: DEL, the C1
    controls (U+009B starts an escape sequence on some terminals) and invisible
    characters stay raw. The result decodes to the same data. Line breaks are
    kept: in a JSON text they can only be whitespace between tokens.
    """
    if document.isprintable():
        return document
    return "\n".join(
        line
        if line.isprintable()
        else "".join(char if char.isprintable() else json.dumps(char)[1:-1] for char in line)
        for line in document.split("\n")
    )
