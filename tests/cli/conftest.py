"""The CLI tests use the same world as the integration tests."""

from tests.integration.conftest import world  # noqa: F401  (re-exported fixture)
