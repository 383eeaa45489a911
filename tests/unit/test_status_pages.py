"""The status pages' decisions (issue 25): who may look, what a query may ask, and that
every value is shown as text. tests/daemon/test_status_page.py drives them in Chromium."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from syncd.core.problem import Problem
from syncd.core.vocabulary import Code
from syncd.service.metrics import Metrics
from syncd.service.pages import FieldRow, UserPage, _described
from syncd.service.ui import (
    PAGE_THREADS,
    Access,
    StatusPages,
    _audit_filter,
    _BadQuery,
    authorized,
    page_access,
)
from syncd.settings import load_settings


@pytest.mark.parametrize(
    ("host", "token_set", "access"),
    [
        ("127.0.0.1", False, Access.OPEN),
        ("127.0.0.2", False, Access.OPEN),
        ("::1", False, Access.OPEN),
        ("localhost", False, Access.OPEN),
        ("", False, Access.OFF),  # `:9105`: every interface
        ("0.0.0.0", False, Access.OFF),
        ("::", False, Access.OFF),
        ("192.0.2.2", False, Access.OFF),
        ("192.0.2.2", True, Access.TOKEN),
        ("127.0.0.1", True, Access.TOKEN),  # a token set is always asked for
    ],
    ids=repr,
)
def test_who_may_look(host: str, token_set: bool, access: Access):
    assert page_access(host, token_set) is access


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("Bearer t0ken", True),
        ("bearer t0ken", True),
        (basic("anyone", "t0ken"), True),
        (basic("t0ken", ""), False),  # the token is the password, not the user
        ("Bearer t0ke", False),
        ("Bearer t0ken2", False),
        (basic("anyone", "wrong"), False),
        ("Basic %%%", False),
        ("Token t0ken", False),
        ("", False),
        (None, False),
    ],
    ids=repr,
)
def test_the_token_as_a_password_or_a_bearer(header: str | None, allowed: bool):
    assert authorized(header, "t0ken") is allowed


def test_the_audit_filter_takes_what_syncd_audit_takes():
    where, limit = _audit_filter(
        {"user": ["janedoe", ""], "action": ["add_email"], "result": ["ok"], "limit": ["5000"]}
    )
    assert (where.users, where.actions, where.results, limit) == (
        ("janedoe",),
        ("add_email",),
        ("ok",),
        1000,
    )
    for bad in ({"action": ["drop_table"]}, {"result": ["skipped"]}, {"limit": ["-1"]}):
        with pytest.raises(_BadQuery):
            _audit_filter(bad)


def pages(access: Access, token: str | None = None) -> StatusPages:
    def no_state() -> Any:
        raise AssertionError("the state is not read for this answer")

    settings = load_settings(state_dir="/nonexistent")
    return StatusPages(access, token, no_state, settings, Metrics(60))


def test_off_pages_say_why_and_show_nothing():
    status, body, _, _ = pages(Access.OFF).answer("/users/janedoe", None, "127.0.0.1:9105")
    assert status == 404
    assert b"the status pages are off" in body
    assert b"janedoe" not in body


def test_a_page_without_the_token_is_refused():
    status, _, _, headers = pages(Access.TOKEN, "t0ken").answer("/", None, "127.0.0.1:9105")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic")


def test_a_bad_username_or_query_is_answered_before_the_state_is_read():
    open_pages = pages(Access.OPEN)
    assert open_pages.answer("/users/<script>", None, "localhost")[0] == 404
    assert open_pages.answer("/users/ab", None, "localhost")[0] == 404
    assert open_pages.answer("/audit?action=nope", None, "localhost")[0] == 400
    assert open_pages.answer("/elsewhere", None, "localhost")[0] == 404


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("127.0.0.1:9105", True),
        ("127.0.0.2", True),
        ("[::1]:9105", True),
        ("LocalHost:9105", True),
        ("attacker.example:9105", False),  # a name rebound to 127.0.0.1
        ("127.0.0.1.nip.io", False),
        ("[::1", False),
        ("", False),
        (None, False),
    ],
    ids=repr,
)
def test_open_pages_answer_only_a_host_that_names_loopback(host: str | None, served: bool):
    status, body, _, _ = pages(Access.OPEN).answer("/elsewhere", None, host)
    assert (status == 404) is served  # past the check, the path is not a page
    if not served:
        assert status == 421
        assert body.count(b"\n") == 1


def test_values_render_as_text_with_controls_shown_as_syncd_shows_them():
    hostile = "<script>alert(1)</script>\x1b[2K\u202e"
    page = UserPage(
        "janedoe",
        True,
        (FieldRow("full_name", hostile, "Jane & co"),),
        None,
        None,
        (),
        (),
        None,
        None,
    )
    status, body, content_type, headers = pages(Access.OPEN)._page("user.html", page=page)
    html = body.decode()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[2K\\u202e" in html
    assert "Jane &amp; co" in html
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_pages_made_at_once_are_bounded_so_that_probes_keep_their_threads():
    open_pages = pages(Access.OPEN)
    for _ in range(PAGE_THREADS):  # as many pages being made
        assert open_pages._rendering.acquire(blocking=False)
    status, _, _, headers = open_pages.answer("/", None, "127.0.0.1:9105")
    assert (status, headers["Retry-After"]) == (503, "1")


def test_a_pending_change_is_quoted_as_the_plan_quotes_it():
    change = {
        "action": "update_profile",
        "fields": {"full_name": {"before": "", "after": "Carol"}},
    }
    assert _described(change) == 'full_name: "" → "Carol"'


@pytest.mark.parametrize(("failures", "said"), [(1, "(1 cycle)"), (3, "(3 cycles)")])
def test_a_users_failing_cycles_are_counted_in_words(failures: int, said: str):
    error = Problem(
        "carol_c", Code.FORBIDDEN, "HTTP 403", since="2026-12-07T17:00:00+00:00", failures=failures
    )
    page = UserPage("carol_c", True, (), None, None, (), (), error, None)
    html = pages(Access.OPEN)._page("user.html", page=page)[1].decode()
    assert said in html
