"""The JSON Schema of the desired-state format, and its agreement with the loader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.core.fields import PROFILE_FIELDS, USERNAME_PATTERN
from syncd.desired.fileformat import (
    DesiredStateFile,
    UserSettings,
    desired_state_json_schema,
)
from tests.unit.conftest import schema_validator, yaml_data
from tests.unit.desired_cases import BAD, GOOD

REPO = Path(__file__).resolve().parents[2]

SCHEMA = desired_state_json_schema()


def subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from subschemas(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from subschemas(item)


def test_the_models_hold_the_api_fields_and_emails() -> None:
    assert tuple(UserSettings.model_fields) == (
        *PROFILE_FIELDS,
        "emails_mode",
        "emails",
        "groups",
        "ignore",
        "suspend",
    )
    assert tuple(DesiredStateFile.model_fields) == ("version", "defaults", "groups", "users")


def test_schema_structure() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["type"] == "object"
    assert SCHEMA["additionalProperties"] is False
    assert SCHEMA["required"] == ["version"]
    # users, unless the file holds only defaults or groups (a team's shared file)
    assert SCHEMA["anyOf"] == [{"required": [key]} for key in ("users", "defaults", "groups")]
    assert SCHEMA["properties"]["version"]["const"] == 1
    user = SCHEMA["$defs"]["UserSettings"]
    assert user["additionalProperties"] is False
    assert set(user["properties"]) == {
        *PROFILE_FIELDS,
        "emails",
        "emails_mode",
        "groups",
        "ignore",
        "suspend",
    }
    group = SCHEMA["$defs"]["ProfileSettings"]
    assert set(group["properties"]) == {*PROFILE_FIELDS, "emails_mode"}
    assert group["additionalProperties"] is False
    (users_object,) = [o for o in SCHEMA["properties"]["users"]["anyOf"] if o["type"] == "object"]
    assert users_object["propertyNames"] == {"pattern": f"^{USERNAME_PATTERN.pattern}$"}
    assert "patternProperties" not in users_object


def test_every_property_has_a_description() -> None:
    for schema in subschemas(SCHEMA):
        for name, prop in schema.get("properties", {}).items():
            assert prop.get("description"), name


def test_schema_accepts_the_example_file() -> None:
    path = REPO / "desired-state.example.yaml"
    data = yaml_data(str(path), path.read_text(encoding="utf-8"))
    assert set(data["users"]) == {"janedoe", "johnsmith", "ops_robot"}
    is_valid = schema_validator()
    if is_valid is None:
        pytest.skip("no JSON Schema validator installed; the structure is checked above")
    assert is_valid(data)


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_schema_accepts_what_the_loader_accepts(text: str, expected: object) -> None:
    is_valid = schema_validator()
    if is_valid is None:
        pytest.skip("no JSON Schema validator installed")
    assert is_valid(yaml_data("d.yaml", text))


# Rejections that a schema can express (not duplicates, email or URL syntax).
SCHEMA_EXPRESSIBLE = {
    "near-miss",
    "top-level-near-miss",
    "user-at-top-level",
    "missing-version",
    "missing-users",
    "version-2",
    "version-string",
    "version-boolean",
    "top-level-list",
    "users-list",
    "username-case",
    "username-short",
    "user-list",
    "profile-number",
    "profile-list",
    "profile-mapping",
    "full-name-too-long",
    "emails-string",
    "emails-null-at-its-key",
    "email-not-string",
}


@pytest.mark.parametrize(
    ("text", "expected"), [case for case in BAD if case.id in SCHEMA_EXPRESSIBLE]
)
def test_schema_rejects_what_it_can_express(text: str, expected: object) -> None:
    is_valid = schema_validator()
    if is_valid is None:
        pytest.skip("no JSON Schema validator installed")
    assert not is_valid(yaml_data("d.yaml", text))


def test_schema_is_plain_json() -> None:
    assert json.loads(json.dumps(SCHEMA)) == SCHEMA
