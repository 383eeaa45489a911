"""The JSON documents syncd prints and saves: valid JSON, one list item per line."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.jsondoc import dumps_document

scalars = st.none() | st.booleans() | st.integers() | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), values, max_size=6))
def test_an_object_reads_back_unchanged(document: dict[str, Any]) -> None:
    assert json.loads(dumps_document(document)) == document


@given(st.lists(values, max_size=6))
def test_an_array_reads_back_unchanged(document: list[Any]) -> None:
    assert json.loads(dumps_document(document)) == document


def test_each_change_is_one_line_and_text_is_not_escaped() -> None:
    changes = [
        {"user": "janedoe", "action": "add_email", "email": "jané@example.com"},
        {"user": "johnsmith", "action": "delete_email", "email": "old@example.com"},
    ]
    summary = {"users_changed": 2, "add_email": 1}
    document = {"format_version": 1, "changes": changes, "warnings": [], "summary": summary}
    assert dumps_document(document).splitlines() == [
        "{",
        '  "format_version": 1,',
        '  "changes": [',
        '    {"user": "janedoe", "action": "add_email", "email": "jané@example.com"},',
        '    {"user": "johnsmith", "action": "delete_email", "email": "old@example.com"}',
        "  ],",
        '  "warnings": [],',
        '  "summary": {',
        '    "users_changed": 2,',
        '    "add_email": 1',
        "  }",
        "}",
    ]
