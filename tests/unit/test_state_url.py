"""SYNCD_STATE_URL: a PostgreSQL URL is one whatever its scheme's case, never a directory.

`POSTGRESQL://…` passed validation and was then taken for a relative SQLite
directory: two replicas would each have locked their own and both been active.
"""

from __future__ import annotations

import pytest

from syncd.errors import SettingsError
from syncd.settings import load_settings


@pytest.mark.parametrize(
    "url", ["postgresql://syncd@db/syncd", "POSTGRESQL://syncd@db/syncd", "Postgres://db/x"]
)
def test_a_postgresql_url_in_any_case_is_postgresql(url: str):
    settings = load_settings(state_url=url)
    assert settings.on_postgresql
    assert settings.state_url is not None
    assert settings.state_url.split("://")[0] in {"postgresql", "postgres"}


@pytest.mark.parametrize("url", ["postgresql:/db/x", "postgres:db"])
def test_a_postgresql_scheme_without_its_slashes_is_refused(url: str):
    with pytest.raises(SettingsError, match="a PostgreSQL URL starts with postgres"):
        load_settings(state_url=url)


def test_a_directory_is_sqlite():
    settings = load_settings(state_url="/var/lib/syncd")
    assert not settings.on_postgresql
    assert str(settings.sqlite_dir) == "/var/lib/syncd"


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        pytest.param("https://www.docker.io", "https://www.docker.io", id="as-is"),
        pytest.param("HTTPS://WWW.Docker.io:443/", "https://www.docker.io", id="case-port-slash"),
        pytest.param("http://127.0.0.1:80/api/", "http://127.0.0.1/api", id="default-http-port"),
        pytest.param("http://127.0.0.1:8080", "http://127.0.0.1:8080", id="other-port-kept"),
        pytest.param("http://[::1]:9/", "http://[::1]:9", id="ipv6"),
    ],
)
def test_one_spelling_of_an_api_url(url: str, normalized: str) -> None:
    from syncd.settings import normalized_api_url

    assert normalized_api_url(url) == normalized
