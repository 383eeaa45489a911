"""What more than one unit test module uses: a live profile, and the desired-state
JSON Schema as a validator of YAML text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syncd.core.live import LiveProfile
from syncd.desired.fileformat import desired_state_json_schema
from syncd.desired.yaml_positions import read_yaml


def profile(**values: str) -> LiveProfile:
    """A live profile, all empty but `values` and its primary address."""
    base = dict.fromkeys(("full_name", "location", "company", "profile_url", "gravatar_url"), "")
    base["email"] = "jane@example.com"
    return LiveProfile(**{**base, **values})


def schema_validator() -> Callable[[Any], bool] | None:
    """A JSON Schema validator when one is installed (jsonschema, or jsonschema_rs)."""
    schema = desired_state_json_schema()
    try:
        import jsonschema  # type: ignore[import-untyped,unused-ignore]

        return jsonschema.Draft202012Validator(schema).is_valid  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        import jsonschema_rs

        return jsonschema_rs.validator_for(schema).is_valid
    except ImportError:
        return None


def yaml_data(path: str, text: str) -> Any:
    document = read_yaml(path, text)
    assert document.parsed
    assert not document.problems
    return document.data
