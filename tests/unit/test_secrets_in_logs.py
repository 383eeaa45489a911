"""Credentials stay out of log lines and tracebacks, whatever the renderer."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import pytest
import structlog

from syncd.api.credentials import basic, bearer
from syncd.logs import configure_logging
from syncd.settings import load_settings

TOKEN = "tok-very-secret-0123456789"


def fail_while_holding_a_credential() -> None:
    credential = bearer(TOKEN, "janedoe.token")
    header = credential.authorization()  # a local holding the secret itself
    raise RuntimeError(f"boom after building a header of {len(header)} characters")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_traceback_shows_no_secret(monkeypatch: pytest.MonkeyPatch, log_format: str):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(log_format)  # type: ignore[arg-type]
    try:
        fail_while_holding_a_credential()
    except RuntimeError:
        structlog.get_logger("test").exception("crashed")
    output = stream.getvalue()
    assert "boom after building a header" in output
    assert "fail_while_holding_a_credential" in output
    assert TOKEN not in output


def test_credentials_and_settings_hide_secrets_in_repr():
    credential = basic("janedoe", TOKEN, "janedoe.password")
    assert TOKEN not in repr(credential)
    assert TOKEN not in str(credential)
    settings = load_settings(token=TOKEN, password=TOKEN)
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.model_dump())
