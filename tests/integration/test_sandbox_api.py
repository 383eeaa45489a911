"""The sandbox's five endpoints over real HTTP: successes, auth, scopes and every error status."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncd.core import fields

ALL = ["profile_read", "profile_write", "email_read", "email_write"]
JANE_ALL = "jane-all"  # every scope
JANE_DEFAULT = "jane-default"  # no scopes given: profile_read email_read
JANE_NONE = "jane-none"  # scopes: []
JOHN_ALL = "john-all"
USER = "/api/v1.1/users/janedoe/"
EMAILS = "/api/v1.1/users/janedoe/emails/"
FORBIDDEN = (
    "authenticated user must be the user whose data is being requested or updated; "
    "OAuth access tokens must have the {} scope"
)

SEED: dict[str, Any] = {
    "users": {
        "janedoe": {
            "full_name": "Jane Doe",
            "location": "San Francisco, CA",
            "company": "Success, Inc.",
            "profile_url": "https://docker.io/",
            "gravatar_email": "Jane.Doe@Example.com",
            "password": "s3cret",
            "tokens": [
                {"token": JANE_ALL, "scopes": ALL},
                JANE_DEFAULT,
                {"token": JANE_NONE, "scopes": []},
            ],
            "emails": [
                {"email": "jane.doe@example.com", "verified": True, "primary": True},
                "jane.other@example.com",
            ],
        },
        "johndoe": {
            "password": "hunter22",
            "tokens": [{"token": JOHN_ALL, "scopes": ALL}],
            "emails": ["john@example.com"],
        },
    }
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(username: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@pytest.fixture(scope="module")
def http(sandbox_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_server) as client:
        yield client


@pytest.fixture
def client(sandbox: Any, http: httpx.Client) -> httpx.Client:
    sandbox.reset(seed=SEED)
    return http


def delete(client: httpx.Client, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return client.request("DELETE", path, json=body, headers=headers)


def emails_of(client: httpx.Client) -> list[str]:
    response = client.get(EMAILS, headers=bearer(JANE_ALL))
    assert response.status_code == 200
    return [e["email"] for e in response.json()]


# GET /users/{username}/


def test_get_user_returns_the_twelve_fields(client: httpx.Client, sandbox: Any) -> None:
    response = client.get(USER, headers=bearer(JANE_DEFAULT))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    user = response.json()
    assert tuple(user) == fields.USER_OBJECT_FIELDS
    assert user["id"] == 1
    assert user["username"] == "janedoe"
    assert user["url"] == f"{sandbox.url}{USER}"
    assert user["type"] == "User"
    assert user["full_name"] == "Jane Doe"
    assert user["email"] == "jane.doe@example.com"
    assert user["is_active"] is True
    assert user["date_joined"].endswith("Z")


def test_gravatar_url_is_the_md5_of_the_trimmed_lowercased_address(client: httpx.Client) -> None:
    user = client.get(USER, headers=bearer(JANE_ALL)).json()
    digest = hashlib.md5(b"jane.doe@example.com").hexdigest()
    assert user["gravatar_url"] == (
        f"https://secure.gravatar.com/avatar/{digest}.jpg?s=80&r=g&d=mm"
    )
    assert "gravatar_email" not in user


def test_basic_auth_has_every_scope(client: httpx.Client) -> None:
    assert client.get(USER, headers=basic("janedoe", "s3cret")).status_code == 200
    patched = client.patch(USER, json={"company": "Retired"}, headers=basic("janedoe", "s3cret"))
    assert patched.status_code == 200
    assert patched.json()["company"] == "Retired"


def test_admin_token_acts_on_anyone(client: httpx.Client, sandbox: Any) -> None:
    admin = bearer(sandbox.admin_token)
    assert client.get("/api/v1.1/users/johndoe/", headers=admin).status_code == 200
    response = client.post(
        "/api/v1.1/users/johndoe/emails/", json={"email": "j@x.io"}, headers=admin
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param(bearer("no-such-token"), id="unknown-token"),
        pytest.param(basic("janedoe", "wrong"), id="wrong-password"),
        pytest.param(basic("nobody", "s3cret"), id="unknown-user"),
        pytest.param(basic("johndoe", ""), id="empty-password"),
        pytest.param({"Authorization": "Basic !!!"}, id="basic-not-base64"),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}, id="no-colon"
        ),
        pytest.param({"Authorization": "Bearer"}, id="bearer-without-token"),
        pytest.param({"Authorization": "Token jane-all"}, id="unknown-scheme"),
    ],
)
def test_missing_or_wrong_credentials_are_401_with_both_challenges(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    response = client.get(USER, headers=headers)
    assert response.status_code == 401
    challenges = response.headers.get_list("www-authenticate")
    assert any(c.startswith("Basic") for c in challenges)
    assert any(c.startswith("Bearer") for c in challenges)
    assert "detail" in response.json()


def test_bearer_scheme_is_case_insensitive(client: httpx.Client) -> None:
    assert client.get(USER, headers={"Authorization": f"bearer {JANE_ALL}"}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", USER, "profile_read"),
        ("PATCH", USER, "profile_write"),
        ("GET", EMAILS, "email_read"),
        ("POST", EMAILS, "email_write"),
        ("DELETE", EMAILS, "email_write"),
    ],
)
def test_a_token_without_the_scope_is_403_naming_it(
    client: httpx.Client, method: str, path: str, scope: str
) -> None:
    body = {"email": "jane.other@example.com"} if path == EMAILS else {}
    json_body = body if method != "GET" else None
    response = client.request(method, path, json=json_body, headers=bearer(JANE_NONE))
    assert response.status_code == 403
    assert response.json() == {"detail": FORBIDDEN.format(scope)}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", USER, True),
        ("PATCH", USER, False),
        ("GET", EMAILS, True),
        ("POST", EMAILS, False),
        ("DELETE", EMAILS, False),
    ],
)
def test_a_token_granted_without_scopes_reads_but_does_not_write(
    client: httpx.Client, method: str, path: str, allowed: bool
) -> None:
    body = None if method == "GET" else {"email": "new@example.com"} if path == EMAILS else {}
    response = client.request(method, path, json=body, headers=bearer(JANE_DEFAULT))
    assert (response.status_code == 403) is not allowed


@pytest.mark.parametrize("path", [USER, EMAILS])
def test_an_account_may_not_act_on_another(client: httpx.Client, path: str) -> None:
    response = client.get(path, headers=bearer(JOHN_ALL))
    assert response.status_code == 403
    response = client.get(path, headers=basic("johndoe", "hunter22"))
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1.1/users/nobody/"),
        ("PATCH", "/api/v1.1/users/nobody/"),
        ("GET", "/api/v1.1/users/nobody/emails/"),
        ("POST", "/api/v1.1/users/nobody/emails/"),
        ("DELETE", "/api/v1.1/users/nobody/emails/"),
    ],
)
def test_unknown_user_is_404_for_admin_and_403_for_anyone_else(
    client: httpx.Client, sandbox: Any, method: str, path: str
) -> None:
    # Invalid bodies: 404 comes before 400.
    body = None if method == "GET" else {"bogus": 1}
    response = client.request(method, path, json=body, headers=bearer(sandbox.admin_token))
    assert response.status_code == 404
    assert "detail" in response.json()
    assert client.request(method, path, json=body, headers=bearer(JANE_ALL)).status_code == 403


def test_wrong_credentials_are_401_before_403(client: httpx.Client) -> None:
    response = client.get("/api/v1.1/users/johndoe/", headers=bearer("wrong"))
    assert response.status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1.1/users/janedoe",
        "/api/v1.1/users/janedoe/emails",
        "/api/v1.1/users/JaneDoe/",
        "/api/v1.1/users/abc/",
        "/api/v1.1/users/" + "a" * 31 + "/",
        "/api/v1.1/users/jane%00doe/",
        "/api/v1.1/users/",
        "/api/v1.0/users/janedoe/",
    ],
)
def test_paths_that_cannot_exist_are_404(client: httpx.Client, path: str) -> None:
    response = client.get(path, headers=bearer(JANE_ALL))
    assert response.status_code == 404
    assert "detail" in response.json()


def test_other_methods_are_405_in_json(client: httpx.Client) -> None:
    response = client.put(USER, json={}, headers=bearer(JANE_ALL))
    assert response.status_code == 405
    assert "detail" in response.json()


# PATCH /users/{username}/


def test_patch_with_json_updates_and_returns_the_user(client: httpx.Client) -> None:
    changes = {
        "location": "Private Island",
        "profile_url": "http://janedoe.com/",
        "company": "Retired",
    }
    response = client.patch(USER, json=changes, headers=bearer(JANE_ALL))
    assert response.status_code == 200
    user = response.json()
    assert tuple(user) == fields.USER_OBJECT_FIELDS
    assert {k: user[k] for k in changes} == changes
    assert client.get(USER, headers=bearer(JANE_ALL)).json() == user


def test_patch_with_a_form_body(client: httpx.Client) -> None:
    response = client.patch(
        USER, data={"full_name": "Jane Q. Doe", "location": ""}, headers=bearer(JANE_ALL)
    )
    assert response.status_code == 200
    assert response.json()["full_name"] == "Jane Q. Doe"
    assert response.json()["location"] == ""


def test_patch_empty_string_clears_and_empty_body_changes_nothing(client: httpx.Client) -> None:
    before = client.get(USER, headers=bearer(JANE_ALL)).json()
    unchanged = client.patch(USER, json={}, headers=bearer(JANE_ALL))
    assert unchanged.status_code == 200
    assert unchanged.json() == before
    cleared = client.patch(USER, json={"company": "", "profile_url": ""}, headers=bearer(JANE_ALL))
    assert cleared.json()["company"] == ""
    assert cleared.json()["profile_url"] == ""


def test_patch_gravatar_email_changes_only_the_url(client: httpx.Client) -> None:
    response = client.patch(
        USER, json={"gravatar_email": "New@Example.com"}, headers=bearer(JANE_ALL)
    )
    user = response.json()
    assert "gravatar_email" not in user
    assert user["gravatar_url"] == fields.gravatar_url("new@example.com")
    assert fields.gravatar_matches("new@example.com", user["gravatar_url"])
    cleared = client.patch(USER, json={"gravatar_email": ""}, headers=bearer(JANE_ALL)).json()
    assert cleared["gravatar_url"] == ""


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"nickname": "jd"}, id="unknown-field"),
        pytest.param({"email": "x@example.com"}, id="email-is-not-patchable"),
        pytest.param({"gravatar_url": "x"}, id="read-only-field"),
        pytest.param({"full_name": 3}, id="int"),
        pytest.param({"full_name": None}, id="null"),
        pytest.param({"location": ["x"]}, id="list"),
        pytest.param({"company": True}, id="bool"),
        pytest.param({"profile_url": "not a url"}, id="bad-url"),
        pytest.param({"profile_url": "ftp://example.com/"}, id="not-http-url"),
        pytest.param({"gravatar_email": "nope"}, id="bad-gravatar-email"),
        pytest.param({"full_name": "x" * 256}, id="too-long"),
    ],
)
def test_patch_bad_data_is_400_and_changes_nothing(client: httpx.Client, body: Any) -> None:
    before = client.get(USER, headers=bearer(JANE_ALL)).json()
    response = client.patch(USER, json=body, headers=bearer(JANE_ALL))
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)
    assert client.get(USER, headers=bearer(JANE_ALL)).json() == before


# GET/POST/DELETE /users/{username}/emails/


def test_get_emails(client: httpx.Client) -> None:
    response = client.get(EMAILS, headers=bearer(JANE_DEFAULT))
    assert response.status_code == 200
    assert response.json() == [
        {"email": "jane.doe@example.com", "verified": True, "primary": True},
        {"email": "jane.other@example.com", "verified": False, "primary": False},
    ]


def test_post_email_adds_it_unverified_and_not_primary(client: httpx.Client) -> None:
    response = client.post(
        EMAILS, json={"email": "Jane+New@example.com"}, headers=bearer(JANE_ALL)
    )
    assert response.status_code == 201
    assert response.json() == {
        "email": "Jane+New@example.com",
        "verified": False,
        "primary": False,
    }
    assert emails_of(client)[-1] == "Jane+New@example.com"


def test_post_email_with_a_form_body(client: httpx.Client) -> None:
    response = client.post(EMAILS, data={"email": "form@example.com"}, headers=bearer(JANE_ALL))
    assert response.status_code == 201
    assert "form@example.com" in emails_of(client)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"email": "JANE.OTHER@example.com"}, id="duplicate-any-case"),
        pytest.param({"email": "jane.doe@example.com"}, id="duplicate-primary"),
        pytest.param({"email": "not-an-address"}, id="invalid"),
        pytest.param({"email": 5}, id="not-a-string"),
        pytest.param({}, id="missing"),
        pytest.param({"email": "a@example.com", "primary": True}, id="unknown-field"),
    ],
)
def test_post_email_bad_data_is_400(client: httpx.Client, body: Any) -> None:
    before = emails_of(client)
    response = client.post(EMAILS, json=body, headers=bearer(JANE_ALL))
    assert response.status_code == 400
    assert "detail" in response.json()
    assert emails_of(client) == before


def test_delete_email_answers_204_empty(client: httpx.Client) -> None:
    response = delete(client, EMAILS, {"email": "Jane.Other@Example.com"}, bearer(JANE_ALL))
    assert response.status_code == 204
    assert response.content == b""
    assert emails_of(client) == ["jane.doe@example.com"]


def test_delete_email_with_a_form_body(client: httpx.Client) -> None:
    response = client.request(
        "DELETE",
        EMAILS,
        content=b"email=jane.other%40example.com",
        headers={**bearer(JANE_ALL), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 204


def test_deleting_the_primary_address_is_400(client: httpx.Client) -> None:
    response = delete(client, EMAILS, {"email": "jane.doe@example.com"}, bearer(JANE_ALL))
    assert response.status_code == 400
    assert "primary" in response.json()["detail"]
    assert "jane.doe@example.com" in emails_of(client)


def test_deleting_an_address_the_user_lacks_is_404(client: httpx.Client) -> None:
    response = delete(client, EMAILS, {"email": "john@example.com"}, bearer(JANE_ALL))
    assert response.status_code == 404
    assert "detail" in response.json()


@pytest.mark.parametrize("body", [{"email": "nope"}, {}, {"email": None}, {"address": "a@b.io"}])
def test_delete_email_bad_data_is_400(client: httpx.Client, body: Any) -> None:
    assert delete(client, EMAILS, body, bearer(JANE_ALL)).status_code == 400
