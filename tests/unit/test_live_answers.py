"""Answers of the API parsed into live values: text that no state database can hold is
a malformed answer, not a crash when its outcome is recorded after the write."""

from __future__ import annotations

import json

import pytest

from syncd.core.live import ShapeError, parse_email, parse_user


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"username": "janedoe", "full_name": "a\\u0000b"}', "'full_name' holds a NUL"),
        ('{"username": "janedoe", "location": "\\ud800"}', "'location' holds a lone surrogate"),
    ],
)
def test_text_a_database_cannot_hold_is_refused(raw: str, problem: str):
    with pytest.raises(ShapeError, match=problem):
        parse_user("janedoe", json.loads(raw))


def test_an_address_with_a_lone_surrogate_is_refused():
    data = json.loads('{"email": "j\\udc00@example.com", "verified": true, "primary": false}')
    with pytest.raises(ShapeError, match="'email' holds a lone surrogate"):
        parse_email(data)


def test_any_other_text_is_kept_as_it_is():
    profile = parse_user("janedoe", {"username": "janedoe", "full_name": "Zoë 👩‍💻 \u200bx"})
    assert profile.full_name == "Zoë 👩‍💻 \u200bx"


def test_the_answer_must_be_for_the_user_asked_in_ascii_case_only():
    assert parse_user("katek", {"username": "KateK", "full_name": "K"}).full_name == "K"
    with pytest.raises(ShapeError, match="the answer is for"):
        parse_user("katek", {"username": "\u212aatek"})  # KELVIN SIGN, not K
