"""Text that shows as what it is on a terminal.

Usernames, addresses, profile values and error bodies come from the desired
state and from the API, and are printed to terminals. A control character
there could move the cursor, erase a line of the plan or retitle the window:
an API that answers "\\x1b[2K" could hide a pending deletion from the person
about to approve it. An invisible one (a zero-width space, a bidirectional
override) would make two different values look the same in a diff. Every
character that Python does not count as printable is shown as its escape
instead, as repr() would show it.
"""

from __future__ import annotations


def visible(text: str) -> str:
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def visible_lines(text: str) -> str:
    """`visible` for each line of a message of several lines, keeping its line breaks."""
    return "\n".join(visible(line) for line in text.split("\n"))


_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
