"""The CLI tests use the same worlds as the integration tests."""

from tests.integration.conftest import any_world, pg_world, world  # noqa: F401  (re-exported)
