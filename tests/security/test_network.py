"""Proxies, roots of trust and hostile answers: what travels where, and what an answer may cost."""

from __future__ import annotations

import pytest

from syncd.api.transport import bypasses_proxy
from tests.security.conftest import plan, run_syncd
from tests.security.servers import CA_FILE, RecordingProxy, TlsFront
from tests.world import STANDARD_SEED, World


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param({"HTTP_PROXY": "{proxy}", "HTTPS_PROXY": "{proxy}"}, id="HTTP_PROXY"),
        pytest.param({"http_proxy": "{proxy}", "ALL_PROXY": "{proxy}"}, id="ALL_PROXY"),
        pytest.param({"HTTP_PROXY": "{proxy}", "no_proxy": "127.0.0.0/8"}, id="no_proxy-CIDR"),
        pytest.param({"ALL_PROXY": "socks5://127.0.0.1:9"}, id="socks5-ALL_PROXY"),
    ],
)
def test_a_loopback_api_is_never_proxied(world: World, variables: dict[str, str]):
    # The bearer tokens of the plain-http-to-loopback exception went through HTTP_PROXY.
    with RecordingProxy() as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        variables = {name: value.format(proxy=url) for name, value in variables.items()}
        result = plan(world, **variables)
    assert result.exit_code == 0, result.output
    assert "Plan: 3 changes for 1 user" in result.stdout
    assert proxy.requests == []
    assert world.gets() >= 2


def test_a_remote_api_goes_through_the_proxy_and_trusts_the_private_ca(world: World):
    with TlsFront(target_port=int(world.sandbox.url.rsplit(":", 1)[1])) as front:
        tunnels = {"api.example:443": front.port}
        with RecordingProxy(tunnels) as proxy:
            proxied = {"HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}", "SSL_CERT_FILE": None}
            # First, while the cache is cold: the second plan reads no account.
            untrusted = plan(world, api_url="https://api.example", **proxied)
            trusted = plan(
                world, api_url="https://api.example", SYNCD_CA_FILE=str(CA_FILE), **proxied
            )
    assert trusted.exit_code == 0, trusted.output
    assert "Plan: 3 changes for 1 user" in trusted.stdout
    assert proxy.requests[0] == "CONNECT api.example:443 HTTP/1.1"
    # The public roots alone do not vouch for the test CA: the CA file is what adds it.
    assert untrusted.exit_code == 1
    # Said once, on stderr, as the run stops (issue 22, item 16).
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_an_https_proxy_is_verified_with_the_same_roots_as_the_api(world: World):
    # The proxy itself behind TLS with the test certificate (it names 127.0.0.1).
    sandbox_port = int(world.sandbox.url.rsplit(":", 1)[1])
    with (
        TlsFront(target_port=sandbox_port) as api,
        RecordingProxy({"api.example:443": api.port}) as proxy,
        TlsFront(target_port=proxy.port) as secure_proxy,
    ):
        result = plan(
            world,
            api_url="https://api.example",
            HTTPS_PROXY=f"https://127.0.0.1:{secure_proxy.port}",
            SSL_CERT_FILE=None,
            SYNCD_CA_FILE=str(CA_FILE),
        )
    assert result.exit_code == 0, result.output
    assert "Plan: 3 changes for 1 user" in result.stdout
    assert proxy.requests[0] == "CONNECT api.example:443 HTTP/1.1"


def test_a_direct_https_api_trusts_the_private_ca_and_no_other(world: World):
    # No proxy: httpx makes the TLS connection, with the roots of syncd.api.transport.
    with TlsFront(target_port=int(world.sandbox.url.rsplit(":", 1)[1])) as front:
        api_url = f"https://127.0.0.1:{front.port}"  # the test certificate names 127.0.0.1
        untrusted = plan(world, api_url=api_url, SSL_CERT_FILE=None)
        trusted = plan(world, api_url=api_url, SSL_CERT_FILE=None, SYNCD_CA_FILE=str(CA_FILE))
    assert trusted.exit_code == 0, trusted.output
    assert "Plan: 3 changes for 1 user" in trusted.stdout
    assert untrusted.exit_code == 1
    assert "API unreachable" in untrusted.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        pytest.param(
            {"SYNCD_CA_FILE": "/nonexistent/ca.pem"},
            "syncd: SYNCD_CA_FILE /nonexistent/ca.pem: no such file",
            id="SYNCD_CA_FILE",
        ),
        pytest.param(
            {"SSL_CERT_FILE": "/nonexistent"},
            "syncd: SSL_CERT_FILE /nonexistent: no such file",
            id="SSL_CERT_FILE",
        ),
        pytest.param(
            {"SYNCD_SSL_CERT_FILE": "/nonexistent"},
            "syncd: SYNCD_SSL_CERT_FILE /nonexistent: no such file",
            id="SYNCD_SSL_CERT_FILE",
        ),
        pytest.param(
            {"SYNCD_SSL_CERT_DIR": "/nonexistent"},
            "syncd: SYNCD_SSL_CERT_DIR /nonexistent: no such directory",
            id="SYNCD_SSL_CERT_DIR",
        ),
        pytest.param(
            {"ALL_PROXY": "socks5://user:secret-pw@127.0.0.1:9"},
            "syncd: all_proxy is a socks5:// proxy (socks5://***@127.0.0.1:9): syncd speaks to"
            " http:// and https:// proxies only",
            id="socks5-proxy",
        ),
    ],
)
def test_an_unusable_trust_or_proxy_setting_is_one_line(
    world: World, variables: dict[str, str], expected: str
):
    # SSL_CERT_FILE=/nonexistent was a 75-line traceback, socks5:// an ImportError.
    result = plan(world, api_url="https://api.example", **variables)
    assert result.exit_code == 1
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "secret-pw" not in result.output
    assert world.gets() == 0


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypassed"),
    [
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("10.1.2.3", 443, "192.168.0.0/16, 10.1.2.0/24", True),
        ("10.1.2.3", 443, "192.168.0.0/16", False),
        ("10.1.2.3", 443, "10.1.2.3", True),
        ("10.1.2.3", 443, "10.1.2.3:8443", False),
        ("fd00::5", 443, "fd00::/8", True),
        ("fd00::5", 443, "[fd00::5]:443", True),
        ("fd00::5", 443, "10.0.0.0/8", False),
        ("api.example.org", 443, "example.org", True),
        ("api.example.org", 443, ".example.org", True),
        ("api.example.org", 443, "*.example.org", True),
        ("api.example.org", 443, "example.org:443", True),
        ("api.example.org", 443, "example.org:80", False),
        ("notexample.org", 443, "example.org", False),
        ("api.example.org", 443, "*", True),
        ("api.example.org", 443, "", False),
    ],
)
def test_no_proxy_entries(host: str, port: int, no_proxy: str, bypassed: bool):
    assert bypasses_proxy(host, port, no_proxy) is bypassed


def test_a_gzip_bomb_is_refused_within_a_bounded_memory(world: World, tmp_path):
    # Each answer inflated 512 MiB; the cap was checked after each chunk had been
    # inflated: 647 MB for one answer, 1.2 GB for 16 in flight. The cap now holds
    # while inflating: about 2 MiB an answer.
    seed = {"users": {}}
    for index in range(16):
        account = STANDARD_SEED["users"]["johnsmith"]
        seed["users"][f"bomb{index:04d}"] = {
            **account,
            "tokens": [{**account["tokens"][0], "token": f"tok-bomb-{index}"}],
        }
    world.seed(seed)
    world.sandbox.reset(seed=seed, malformed=dict.fromkeys(seed["users"], "gzip-bomb"))
    world.desired_file.write_text(
        "version: 1\nusers:\n" + "".join(f"  {name}: {{}}\n" for name in seed["users"])
    )
    finished = run_syncd("plan", *world.cli_args(), "--concurrency", "16")
    assert finished.returncode == 1, finished.stderr
    # The same failure for all 16: said once, with the users it struck.
    assert "every read failed alike, 16 users: malformed_response" in finished.stdout
    assert "answer is too large" in finished.stdout
    assert world.writes() == 0
    assert finished.peak_rss_mb < 200, f"peak RSS {finished.peak_rss_mb:.0f} MB"
