"""One API, one name: the spellings of a URL that reach the same API key its rows alike."""

from __future__ import annotations

import pytest

from syncd.core.api_url import normal_api_url


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        pytest.param("https://www.docker.io", "https://www.docker.io", id="as-is"),
        pytest.param("HTTPS://WWW.Docker.IO/", "https://www.docker.io", id="case-and-slash"),
        pytest.param("https://www.docker.io:443", "https://www.docker.io", id="default-port"),
        pytest.param("http://127.0.0.1:80/", "http://127.0.0.1", id="http-default-port"),
        pytest.param("http://127.0.0.1:8443", "http://127.0.0.1:8443", id="own-port"),
        pytest.param("https://h.example/Accounts/", "https://h.example/Accounts", id="path-kept"),
        pytest.param("http://[::1]:8080/", "http://[::1]:8080", id="ipv6"),
        pytest.param("https://h.example/?x=1#f", "https://h.example", id="no-query"),
    ],
)
def test_spellings_of_one_api_have_one_name(url: str, normal: str) -> None:
    assert normal_api_url(url) == normal


def test_other_apis_have_other_names() -> None:
    names = {
        normal_api_url(url)
        for url in (
            "https://www.docker.io",
            "http://www.docker.io",
            "https://www.docker.io:8443",
            "https://staging.docker.io",
            "https://www.docker.io/v2",
        )
    }
    assert len(names) == 5
