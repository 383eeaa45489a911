"""deploy/syncd.env.example and deploy/syncd.toml.example say what syncd reads.

The env file is read two ways: by systemd as an EnvironmentFile= and by a
shell with the `set -a; . file; set +a` check of docs/operations.md. Both must
give the same variables, as shipped and with every commented setting switched on.
systemd's reader is not at hand without a running systemd, so
`environment_file` below follows the rules of systemd.exec(5), EnvironmentFile=,
and a table of that page's cases checks it first.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from syncd.settings import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV_EXAMPLE = DEPLOY / "syncd.env.example"
TOML_EXAMPLE = DEPLOY / "syncd.toml.example"

_SHELL_ESCAPABLE = '"\\`$'


def environment_file(text: str) -> dict[str, str]:
    """The variables that systemd reads from an EnvironmentFile= (systemd.exec(5)).

    Lines that are empty, start with # or ;, or have no = are ignored; the key
    is stripped. A value in '…' is verbatim; in "…" a backslash keeps one of
    "\\`$ and is kept before anything else, and one before a newline continues
    the line; unquoted, a backslash keeps the next character (a newline: the
    line continues), interior whitespace stays and the ends are stripped. Each
    may span lines. Text after a closing quote is not supported here: it fails.
    """
    found: dict[str, str] = {}
    position, end = 0, len(text)
    while position < end:
        line_end = text.find("\n", position)
        line_end = end if line_end < 0 else line_end
        line = text[position:line_end]
        stripped = line.lstrip(" \t\r")
        if not stripped or stripped[0] in "#;" or "=" not in stripped:
            position = line_end + 1
            continue
        key, _, _ = stripped.partition("=")
        position += len(line) - len(stripped) + len(key) + 1
        while position < end and text[position] in " \t\r":
            position += 1
        value, position = _value(text, position)
        found[key.strip(" \t\r")] = value
    return found


def _value(text: str, position: int) -> tuple[str, int]:
    """One value from `position`, and where the next line starts."""
    quote = text[position] if position < len(text) else ""
    out: list[str] = []
    if quote == "'":
        closing = text.index("'", position + 1)
        out.append(text[position + 1 : closing])
        position = closing + 1
    elif quote == '"':
        position += 1
        while text[position] != '"':
            if text[position] == "\\":
                following = text[position + 1]
                if following in _SHELL_ESCAPABLE:
                    out.append(following)
                elif following != "\n":
                    out.append("\\" + following)
                position += 2
            else:
                out.append(text[position])
                position += 1
        position += 1
    else:
        while position < len(text) and text[position] != "\n":
            if text[position] == "\\" and position + 1 < len(text):
                if text[position + 1] != "\n":
                    out.append(text[position + 1])
                position += 2
            else:
                out.append(text[position])
                position += 1
        return "".join(out).rstrip(" \t\r"), position + 1
    rest_end = text.find("\n", position)
    rest_end = len(text) if rest_end < 0 else rest_end
    assert text[position:rest_end].strip(" \t\r") == "", "text after a closing quote"
    return "".join(out), rest_end + 1


def sourced_by_bash(path: Path) -> dict[str, str]:
    """The variables that `set -a; . FILE; set +a` adds to an empty environment."""

    def environment(file: Path | str) -> dict[str, str]:
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", 'set -a; . "$1"; set +a; env -0', "-", file],
            env={},
            capture_output=True,
            check=False,
        )
        assert done.stderr == b"", done.stderr.decode()
        pairs = (entry.partition(b"=") for entry in done.stdout.split(b"\0") if entry)
        return {key.decode(): value.decode() for key, _, value in pairs}

    baseline = environment(os.devnull)
    return {k: v for k, v in environment(path).items() if baseline.get(k) != v}


def switched_on(text: str) -> str:
    """The file with every commented setting (`#NAME=…`) switched on."""
    return re.sub(r"^#([A-Z][A-Z0-9_]*=)", r"\1", text, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("A=b c", {"A": "b c"}, id="interior-whitespace-kept"),
        pytest.param("  A = b  \t", {"A": "b"}, id="ends-stripped"),
        pytest.param("A='b \\ \" $x'", {"A": 'b \\ " $x'}, id="single-quotes-verbatim"),
        pytest.param('A="a\\"b\\\\c\\$d\\q"', {"A": 'a"b\\c$d\\q'}, id="double-quote-escapes"),
        pytest.param("A=a\\\\b\\ c", {"A": "a\\b c"}, id="unquoted-backslash"),
        pytest.param("A=a\\\nb", {"A": "ab"}, id="continued-line"),
        pytest.param("A='a\nb'", {"A": "a\nb"}, id="quoted-spans-lines"),
        pytest.param("A=it's", {"A": "it's"}, id="quote-after-first-character-kept"),
        pytest.param("# A=b\n; C=d\nno equals sign", {}, id="comments-and-junk-ignored"),
        pytest.param("A=1\nA=2", {"A": "2"}, id="last-wins"),
    ],
)
def test_the_reader_follows_systemd_exec_5(line: str, expected: dict[str, str]):
    assert environment_file(line) == expected


@pytest.mark.parametrize("variant", ["as-shipped", "every-setting-on"])
def test_the_env_example_reads_the_same_in_systemd_and_in_a_shell(variant: str, tmp_path: Path):
    text = ENV_EXAMPLE.read_text()
    if variant == "every-setting-on":
        text = switched_on(text)
    path = tmp_path / "syncd.env"
    path.write_text(text)
    by_systemd = environment_file(text)
    assert by_systemd
    assert sourced_by_bash(path) == by_systemd
    if variant == "every-setting-on":
        ssh = by_systemd["GIT_SSH_COMMAND"]
        assert ssh.startswith("ssh -o BatchMode=yes -i ")
        assert ssh.endswith("known_hosts")


def test_an_unquoted_value_with_spaces_is_what_this_check_catches(tmp_path: Path):
    path = tmp_path / "syncd.env"
    path.write_text("GIT_SSH_COMMAND=ssh -o BatchMode=yes\n")
    # systemd keeps the whole command; bash runs `-o` with GIT_SSH_COMMAND=ssh.
    assert environment_file(path.read_text()) == {"GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}
    with pytest.raises(AssertionError):
        sourced_by_bash(path)


def test_the_env_example_with_every_setting_on_is_valid_for_syncd(
    monkeypatch: pytest.MonkeyPatch,
):
    for name in list(os.environ):
        if name.startswith("SYNCD_"):
            monkeypatch.delenv(name)
    variables = environment_file(switched_on(ENV_EXAMPLE.read_text()))
    # The file it names is the TOML example, where docs/operations.md installs it.
    assert variables.pop("SYNCD_CONFIG") == "/etc/syncd/syncd.toml"
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(str(TOML_EXAMPLE))
    assert settings.desired == variables["SYNCD_DESIRED"]
    assert settings.metrics_addr == variables["SYNCD_METRICS_ADDR"]
    assert settings.run_deadline == float(variables["SYNCD_RUN_DEADLINE"])


@pytest.mark.parametrize("variant", ["as-shipped", "every-setting-on"])
def test_load_settings_reads_the_toml_example(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for name in list(os.environ):
        if name.startswith("SYNCD_"):
            monkeypatch.delenv(name)
    text = TOML_EXAMPLE.read_text()
    if variant == "every-setting-on":
        text = re.sub(r"^# ([a-z_]+ = )", r"\1", text, flags=re.MULTILINE)
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    stated = tomllib.loads(text)
    settings = load_settings(str(path))
    assert stated
    for key, value in stated.items():
        assert getattr(settings, key) == value, key
    if variant == "every-setting-on":
        assert {"run_deadline", "metrics_addr"} <= set(stated)


@pytest.mark.parametrize("example", [ENV_EXAMPLE, TOML_EXAMPLE], ids=lambda path: path.name)
def test_the_examples_send_the_reader_to_the_reference_not_to_run_help(example: Path):
    # They said every setting was a flag of `syncd run`: most are not (SYNCD_MAX_DELETIONS).
    head = example.read_text().split("\n\n")[0]
    assert "docs/configuration.md" in head
    assert "--help" not in head
