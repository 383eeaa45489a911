"""Text from the API or the desired state shows as what it is: no control character passes."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
import structlog

from syncd.core.jsondoc import dumps_document
from syncd.core.live import LiveAccount, LiveEmail, LiveProfile
from syncd.desired.loading import parse_desired
from syncd.engine.importing import render_desired
from syncd.errors import BODY_EXCERPT_LIMIT, excerpt
from syncd.logs import configure_logging
from syncd.visible import visible, visible_lines


def test_printable_text_is_left_alone() -> None:
    assert visible("Jane Doe, Zürich 東京 🐳") == "Jane Doe, Zürich 東京 🐳"


def test_control_and_invisible_characters_are_escaped_as_repr_would() -> None:
    text = "a\x1b[2K\r\tb\x7f\x9b\u200b\u202e\U000e0001"
    assert visible(text) == repr(text)[1:-1]


def test_a_message_of_several_lines_keeps_its_line_breaks() -> None:
    assert visible_lines("one\x1b\ntwo") == "one\\x1b\ntwo"


def test_an_error_body_becomes_one_visible_line() -> None:
    page = "<html>\n  <body>\x1b]0;owned\x07Bad gateway</body>\r\n</html>"
    assert excerpt(page) == "<html> <body>\\x1b]0;owned\\x07Bad gateway</body> </html>"
    assert len(excerpt("x" * 10_000)) == BODY_EXCERPT_LIMIT + 1  # and "…"


@pytest.fixture
def console_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("console")
    yield stream
    structlog.reset_defaults()


def test_the_console_log_shows_control_characters_escaped(console_log: io.StringIO) -> None:
    structlog.get_logger("test").info("intent", target="old@example.com\x1b[2K\rgone")

    line = console_log.getvalue()
    assert "old@example.com\\x1b[2K\\rgone" in line
    assert "\r" not in line


STRANGE = "a\x1b[2K\rb\x7f\x9b\u200b\u202e\x85\U000e0001"


def only_printable(text: str) -> bool:
    return all(char == "\n" or char.isprintable() for char in text)


def test_a_json_document_escapes_what_does_not_print_and_reads_back_the_same() -> None:
    document = {"changes": [{"user": "janedoe", "email": f"old{STRANGE}@example.com"}]}
    text = dumps_document(document)
    assert only_printable(text)
    assert json.loads(text) == document


def test_a_json_log_line_escapes_what_does_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("json")
    try:
        structlog.get_logger("test").info("intent", target=STRANGE)
    finally:
        structlog.reset_defaults()
    line = stream.getvalue().rstrip("\n")
    assert only_printable(line)
    assert json.loads(line)["target"] == STRANGE


def test_a_traceback_on_the_console_shows_its_message_escaped(console_log: io.StringIO) -> None:
    try:
        raise ValueError(f"answer {STRANGE}")
    except ValueError:
        structlog.get_logger("test").exception("run_crashed")
    output = console_log.getvalue()
    assert "ValueError: answer a\\x1b[2K\\rb" in output
    assert "\x9b" not in output
    assert "\r" not in output


def test_an_import_keeps_strange_values_exactly() -> None:
    account = LiveAccount(
        "janedoe",
        LiveProfile(f"Jane{STRANGE}", "", "", "", "", "jane@example.com"),
        (LiveEmail("jane@example.com", verified=True, primary=True),),
    )
    text = render_desired([account])
    assert only_printable(text)
    [user] = parse_desired([("imported.yaml", text.encode())]).users
    assert user.profile["full_name"] == f"Jane{STRANGE}"
