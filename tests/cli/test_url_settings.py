"""Every URL setting is checked as the settings load, in one line naming the setting and
where it was set, never quoting the URL (what looks like its port may start a password).

An adversarial trial (2026-12-07) found an API URL with `#frag` sharing the cache
with the plain URL, tracebacks for a port that is no number (in the API's, a
proxy's, a git URL), and notifier URLs that failed only at each delivery.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.desired.gitsource import parse_git_desired
from syncd.settings import load_settings

INVALID_PORT = "has an invalid port: the port after the host is a number from 1 to 65535"
UNENCODED = (
    "percent-encode a '/', '?', '#' or '@' in the URL's user or password (%2F, %3F, %23, %40)"
)
NOT_HTTP = "must be an http:// or https:// URL"
#: Nothing from the developer's environment steers these runs.
UNSET = {
    name: None
    for name in os.environ
    if name.startswith("SYNCD_") or name.lower().endswith("_proxy")
}


@pytest.mark.parametrize(
    ("command", "env", "config", "expected"),
    [
        pytest.param(
            ["plan", "--api-url", "http://127.0.0.1:8101#v2"],
            {},
            "",
            "api_url (--api-url): must not hold a query (?…) or a fragment (#…)",
            id="api-fragment",
        ),
        pytest.param(
            ["plan"],
            {"SYNCD_API_URL": "http://127.0.0.1:8101/?x"},
            "",
            "api_url (SYNCD_API_URL): must not hold a query (?…) or a fragment (#…)",
            id="api-query",
        ),
        pytest.param(
            ["plan"],
            {},
            'api_url = "http://127.0.0.1:APISECRET8"\n',
            f"api_url (config file {{config}}): {INVALID_PORT}",
            id="api-port-not-a-number",
        ),
        pytest.param(
            ["plan", "--api-url", "http://127.0.0.1:65536"],
            {},
            "",
            f"api_url (--api-url): {INVALID_PORT}",
            id="api-port-too-high",
        ),
        pytest.param(
            ["plan", "--api-url", "https://alice:API/SECRET2@127.0.0.1:8101"],
            {},
            "",
            "api_url (--api-url): must not hold a user name or password (user:password@…):"
            " put each user's credential in the credentials directory",
            id="api-password-with-a-slash",
        ),
        pytest.param(
            ["plan"],
            {"http_proxy": "http://alice:PROXYSECRET@127.0.0.1:notaport"},
            "",
            f"http_proxy (http_proxy): {INVALID_PORT}",
            id="proxy-port",
        ),
        pytest.param(
            ["plan"],
            {"HTTPS_PROXY": "alice:PX/SECRET2@127.0.0.1:3128"},
            "",
            f"https_proxy (HTTPS_PROXY): {UNENCODED}",
            id="proxy-password-with-a-slash",
        ),
        pytest.param(
            ["plan"],
            {"SYNCD_ALL_PROXY": "http://127.0.0.1:0"},
            "",
            f"all_proxy (SYNCD_ALL_PROXY): {INVALID_PORT}",
            id="proxy-port-0",
        ),
        pytest.param(
            ["plan", "-f", "git+https://alice:GITSECRET@127.0.0.1:bad/r.git"],
            {},
            "",
            f"desired (--file): {INVALID_PORT}",
            id="git-port",
        ),
        pytest.param(
            ["plan", "-f", "git+https://alice:GIT#SECRET3@127.0.0.1:9/r.git#main"],
            {},
            "",
            f"desired (--file): {UNENCODED}",
            id="git-password-with-a-hash",
        ),
        pytest.param(
            ["run", "--once"],
            {"SYNCD_NOTIFY_URL": "ftp://127.0.0.1/hook?token=X"},
            "",
            f"notify_url (SYNCD_NOTIFY_URL): {NOT_HTTP}",
            id="notify-ftp",
        ),
        pytest.param(
            ["run", "--once"],
            {"SYNCD_NOTIFY_URL": "http://127.0.0.1:bad/hook"},
            "",
            f"notify_url (SYNCD_NOTIFY_URL): {INVALID_PORT}",
            id="notify-port",
        ),
        pytest.param(  # its "port" parses: it was posted to host `alice`, port 123
            ["run", "--once"],
            {"SYNCD_NOTIFY_URL": "https://alice:123/xSECRET@hooks.example/h"},
            "",
            f"notify_url (SYNCD_NOTIFY_URL): {UNENCODED}",
            id="notify-password-with-a-slash-after-digits",
        ),
        pytest.param(
            ["run", "--once"],
            {},
            '[[notify]]\ntype = "slack"\nurl = "hooks.example/T0/SLACKSECRET"\n',
            f"notify.0.url (config file {{config}}): {NOT_HTTP}",
            id="notify-table-without-scheme",
        ),
    ],
)
def test_a_bad_url_setting_is_one_line_that_does_not_repeat_it(
    tmp_path: Path, command: list[str], env: dict[str, str], config: str, expected: str
):
    desired = tmp_path / "desired.yaml"
    desired.write_text("version: 1\nusers:\n  janedoe: {full_name: Jane}\n")
    env = {
        **UNSET,
        "SYNCD_STATE_DIR": str(tmp_path / "state"),
        "SYNCD_DESIRED": str(desired),
        "SYNCD_NOTIFY_SECRET_FILE": str(tmp_path / "notify.key"),
        **env,
    }
    if config:
        (tmp_path / "syncd.toml").write_text(config)
        (tmp_path / "syncd.toml").chmod(0o600)
        env["SYNCD_CONFIG"] = str(tmp_path / "syncd.toml")
    result = CliRunner().invoke(cli, command, env=env)
    assert result.exit_code == 1
    assert result.stderr == (
        f"syncd: invalid settings: {expected.format(config=tmp_path / 'syncd.toml')}\n"
    )
    assert "SECRET" not in result.output
    assert not (tmp_path / "state").exists()  # refused before anything was opened


def test_a_notifier_url_file_holding_no_http_url_is_refused_at_start(tmp_path: Path):
    # Accepted at start, then every delivery logged `"error": "'ftp'"`.
    url_file, key = tmp_path / "slack.url", tmp_path / "notify.key"
    for path, text in ((url_file, "ftp://hooks.example/T0/SLACKSECRET\n"), (key, "k\n")):
        path.write_text(text)
        path.chmod(0o600)
    config = tmp_path / "syncd.toml"
    config.write_text(f'[[notify]]\ntype = "slack"\nurl_file = "{url_file}"\n')
    desired = tmp_path / "desired.yaml"
    desired.write_text("version: 1\nusers:\n  janedoe: {full_name: Jane}\n")
    env = {
        **UNSET,
        "SYNCD_CONFIG": str(config),
        "SYNCD_STATE_DIR": str(tmp_path / "state"),
        "SYNCD_API_URL": "http://127.0.0.1:9",
    }
    result = CliRunner().invoke(cli, ["run", "--once", "-f", str(desired)], env=env)
    assert result.exit_code == 1
    assert result.stderr == (
        f"syncd: notifier URL file {url_file}: the URL in it must be an http:// or https:// URL\n"
    )


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param({"api_url": "https://api.example:8443/base/"}, id="api-with-port"),
        pytest.param({"https_proxy": "alice:p%2Fw@proxy.example:3128"}, id="proxy-encoded"),
        pytest.param({"http_proxy": "http://proxy.example"}, id="proxy-without-port"),
        pytest.param(  # an @ in the tree's path, after a user and a port
            {"desired": "git+ssh://git@git.example:2222/ops/accounts.git#main:dir@2026"},
            id="git-ssh-with-port",
        ),
        pytest.param(
            {"desired": "git+https://alice:tok%23en@git.example/ops/accounts.git#v2"},
            id="git-encoded-password",
        ),
        pytest.param(  # an @ in the tree's path, no user at all
            {"desired": "git+https://git.example/org/repo.git#main:teams@acme"},
            id="git-at-in-path",
        ),
        pytest.param(  # an @ in the repository's name: no password
            {"desired": "git+https://git.example/org/repo@v2.git#main"},
            id="git-at-in-repository",
        ),
        pytest.param(  # a notifier's own query is no API's base: kept as it is
            {"notify_url": "https://hooks.example/x?token=abc", "notify_secret_file": "/k"},
            id="notify-with-query",
        ),
    ],
)
def test_a_good_url_setting_loads(setting: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    for name in UNSET:
        monkeypatch.delenv(name)
    settings = load_settings(**setting)
    name, value = next(iter(setting.items()))
    assert getattr(settings, name) == value.rstrip("/")
    if name == "desired":  # and the git source takes it
        assert parse_git_desired(value) is not None
