"""JSON documents for people and programs alike: one list item or member per line.

    {
      "format_version": 1,
      "changes": [
        {"user": "janedoe", "action": "add_email", "email": "jane@example.com"},
        {"user": "johnsmith", "action": "delete_email", "email": "old@example.com"}
      ],
      "summary": {
        "users_changed": 2
      }
    }

Any JSON parser reads it; grep and diff see one change per line. It is also
fast: `indent=` makes the json module fall back to its pure-Python encoder,
while each line here is encoded by the C encoder. A character that does not
print is written as a \\u escape (syncd.visible), so a document shown on a
terminal cannot drive it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from syncd.visible import visible_json

_encode = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def dumps_document(document: Mapping[str, Any] | Sequence[Any]) -> str:
    """`document` (an object or an array); a member that is an array or an object has
    each of its items on a line of its own, and every other value is on one line."""
    if isinstance(document, Mapping):
        members = [f"{_encode(key)}: {_value(value, '  ')}" for key, value in document.items()]
        return visible_json(_block("{", members, "}", ""))
    return visible_json(_value(document, ""))


def _value(value: Any, indent: str) -> str:
    if isinstance(value, list | tuple) and value:
        return _block("[", [_encode(item) for item in value], "]", indent)
    if isinstance(value, Mapping) and value:
        members = [f"{_encode(key)}: {_encode(item)}" for key, item in value.items()]
        return _block("{", members, "}", indent)
    return _encode(value)


def _block(opening: str, lines: list[str], closing: str, indent: str) -> str:
    if not lines:
        return opening + closing
    inner = ",\n".join(f"{indent}  {line}" for line in lines)
    return f"{opening}\n{inner}\n{indent}{closing}"
