"""The sandbox against syncd/openapi.yaml, with schemathesis over real HTTP.

For every operation, schemathesis generates requests from the document
(valid ones, then invalid ones) and sends them to the live sandbox; each
answer must be no 5xx, a documented status, a documented content type and a
body that matches the documented schema. The number of examples is bounded so
the whole module runs in seconds; `derandomize` makes every run the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import syncd

DOCUMENT = Path(syncd.__file__).parent / "openapi.yaml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
TOKEN = "jane-all"
SEED = {
    "users": {
        "janedoe": {
            "full_name": "Jane Doe",
            "gravatar_email": "jane@example.com",
            "tokens": [
                {
                    "token": TOKEN,
                    "scopes": ["profile_read", "profile_write", "email_read", "email_write"],
                }
            ],
            "emails": ["jane@example.com", "jane.other@example.com"],
        }
    }
}
SCHEMA = schemathesis.openapi.from_path(DOCUMENT)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def test_the_document_is_valid_openapi_with_the_five_calls() -> None:
    SCHEMA.validate()
    assert sorted(op.label for op in OPERATIONS) == [
        "DELETE /api/v1.1/users/{username}/emails/",
        "GET /api/v1.1/users/{username}/",
        "GET /api/v1.1/users/{username}/emails/",
        "PATCH /api/v1.1/users/{username}/",
        "POST /api/v1.1/users/{username}/emails/",
    ]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
@pytest.mark.parametrize(
    "mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)
def test_the_sandbox_conforms(sandbox: Any, operation: Any, mode: Any) -> None:
    sandbox.reset(seed=SEED)
    # Janedoe's own path and token most of the time, so that writes get past
    # authorisation and reach body validation; generated usernames and other
    # credentials the rest of the time (404, 403 and 401).
    credentials = st.sampled_from(
        [f"Bearer {TOKEN}", f"Bearer {TOKEN}", f"Bearer {sandbox.admin_token}", "Bearer nope"]
    )
    own_path = operation.as_strategy(mode, path_parameters={"username": "janedoe"})
    any_path = operation.as_strategy(mode)

    @given(case=st.one_of(own_path, own_path, any_path), authorization=credentials)
    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: Any, authorization: str) -> None:
        response = case.call(base_url=sandbox.url, headers={"Authorization": authorization})
        case.validate_response(response, checks=CHECKS)

    conforms()
    assert not any(r["status"] >= 500 for r in sandbox.stats()["requests"])
