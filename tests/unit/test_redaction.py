"""syncd.redaction: a URL's user information found as git, libpq and curl find it."""

from __future__ import annotations

import pytest

from syncd.redaction import has_password, misread, redacted, scrub
from syncd.settings import redact_url

URLS = {
    # url: (shown by redacted, has a password, misread by urlsplit)
    "plain": ("https://h:1/p?q#f", "https://h:1/p?q#f", False, False),
    "user": ("https://tok@h/p", "https://***@h/p", False, False),
    "password": ("https://u:pw@h/p", "https://***@h/p", True, False),
    "slash": ("https://u:a/SECRET@h:1/p", "https://***@h:1/p", True, True),
    "question": ("https://u:a?SECRET@h/p", "https://***@h/p", True, True),
    "hash": ("git+https://u:a#SECRET@h/r.git#main", "git+https://***@h/r.git#main", True, True),
    "at-in-password": ("http://u:a@SECRET@h:3128", "http://***@h:3128", True, False),
    "port-like": ("https://u:8443/SECRET@h", "https://***@h", True, True),
}


@pytest.mark.parametrize(("url", "shown", "password", "misread_"), URLS.values(), ids=URLS)
def test_userinfo_is_everything_before_the_last_at(
    url: str, shown: str, password: bool, misread_: bool
):
    assert redacted(url) == shown
    assert has_password(url) is password
    assert misread(url) is misread_
    assert "SECRET" not in redacted(url, keep_user=True)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:PG/SECRET@h:1/db", "postgresql://u@h:1/db"),
        ("postgresql://u:PG#SECRET@h:1/db", "postgresql://u@h:1/db"),
        ("postgresql://h/db?application_name=SECRET@x", "postgresql://***@x"),
    ],
    ids=["slash", "hash", "at-in-query"],
)
def test_a_state_url_is_shown_with_its_user_alone(url: str, shown: str):
    assert redact_url(url) == shown


def test_scrub_takes_each_form_an_answer_may_quote():
    secret = 'a/b+c"d'
    said = " ".join([secret, "a%2Fb%2Bc%22d", 'a/b+c\\"d', 'a\\/b+c\\"d'])
    assert scrub(said, secret, "") == "*** *** *** ***"
    assert scrub("nothing here", "") == "nothing here"
