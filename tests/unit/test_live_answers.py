"""Answers of the API parsed into live values: text that no state database can hold is
a malformed answer, not a crash when its outcome is recorded after the write."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from syncd.core.live import LiveProfile, ShapeError, parse_email, parse_user

PROFILE_KEYS = tuple(field.name for field in dataclasses.fields(LiveProfile))


def user(username: str = "janedoe", **fields: Any) -> dict[str, Any]:
    """A user object with every profile key (null unless given)."""
    return {"username": username, **dict.fromkeys(PROFILE_KEYS), **fields}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"username": "janedoe", "full_name": "a\\u0000b"}', "'full_name' holds a NUL"),
        ('{"username": "janedoe", "location": "\\ud800"}', "'location' holds a lone surrogate"),
    ],
)
def test_text_a_database_cannot_hold_is_refused(raw: str, problem: str):
    with pytest.raises(ShapeError, match=problem):
        parse_user("janedoe", {**user(), **json.loads(raw)})


def test_an_address_with_a_lone_surrogate_is_refused():
    data = json.loads('{"email": "j\\udc00@example.com", "verified": true, "primary": false}')
    with pytest.raises(ShapeError, match="'email' holds a lone surrogate"):
        parse_email(data)


def test_any_other_text_is_kept_as_it_is():
    profile = parse_user("janedoe", user(full_name="Zoë 👩‍💻 \u200bx"))
    assert profile.full_name == "Zoë 👩‍💻 \u200bx"


def test_the_answer_must_be_for_the_user_asked_in_ascii_case_only():
    assert parse_user("katek", user("KateK", full_name="K")).full_name == "K"
    with pytest.raises(ShapeError, match="the answer is for"):
        parse_user("katek", user("\u212aatek"))  # KELVIN SIGN, not K


@pytest.mark.parametrize("key", PROFILE_KEYS)
def test_a_profile_key_absent_is_refused_and_null_is_empty(key: str):
    assert parse_user("janedoe", user()).value(key) == ""
    absent = {k: v for k, v in user().items() if k != key}
    with pytest.raises(ShapeError, match=f"user object without '{key}'"):
        parse_user("janedoe", absent)
