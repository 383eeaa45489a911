"""Plain scalars typed by the YAML 1.2 core schema, not by PyYAML's YAML 1.1 resolver.

`yes`, `no`, `on`, `off` and dates are text; null is `null`, `Null`, `NULL`,
`~` or nothing; a number is a number. syncd.desired.yaml_compose types every
plain scalar it reads with `typed`, after a look at its first character.
"""

from __future__ import annotations

import re
from typing import Any, Final

_MISSING: Final = object()

# The YAML 1.2 core schema: its words, then its numbers. A plain scalar that
# starts with none of TYPED_START is text at once: most are (names, addresses).
_WORDS: Final[dict[str, Any]] = {
    **dict.fromkeys(("null", "Null", "NULL", "~"), None),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **{s + "." + i: float(s + "inf") for s in ("", "+", "-") for i in ("inf", "Inf", "INF")},
    **dict.fromkeys((".nan", ".NaN", ".NAN"), float("nan")),
}
_INT_RE: Final = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_RE: Final = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
TYPED_START: Final = frozenset("0123456789+-.~nNtTfF")


def typed(text: str) -> Any:
    """A plain scalar's value by the YAML 1.2 core schema; ValueError for a huge integer."""
    value = _WORDS.get(text, _MISSING)
    if value is not _MISSING:
        return value
    if _INT_RE.fullmatch(text):
        # Not int(text, 0), which refuses leading zeros: "007" is 7.
        return (
            int(text[2:], 16 if text[1] == "x" else 8) if text[:2] in ("0x", "0o") else int(text)
        )
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return text
