"""The loader against hostile or broken files: the corpus in tests/data/bad, and generated ones.

Every file in tests/data/bad says on line 1 what is wrong with it and, after
`=>`, the `line:col message` that the loader must report among its problems.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from syncd import yaml_positions
from syncd.errors import DesiredStateError
from syncd.loading import MAX_FILE_BYTES, load_desired, parse_desired

BAD_DIR = Path(__file__).resolve().parents[1] / "data" / "bad"
BAD_FILES = sorted(BAD_DIR.iterdir())
# Files whose first line cannot carry a readable expectation.
WITHOUT_EXPECTATION = {"utf16.yaml"}
EXPECTATION = re.compile(r"=> (\d+):(\d+) (.+)$")


def rejected(path: Path) -> DesiredStateError:
    with pytest.raises(DesiredStateError) as caught:
        load_desired(path)
    return caught.value


def test_the_corpus_is_large_enough() -> None:
    assert len(BAD_FILES) >= 40


@pytest.mark.parametrize("path", BAD_FILES, ids=[path.name for path in BAD_FILES])
def test_every_bad_file_is_rejected_with_placed_problems(path: Path) -> None:
    started = time.perf_counter()
    error = rejected(path)
    assert time.perf_counter() - started < 10, "a small file must not take long to refuse"
    assert error.problems
    for problem in error.problems:
        assert problem.path == str(path)
        assert problem.line >= 1
        assert problem.column >= 1
        assert problem.message.strip()
    if path.name in WITHOUT_EXPECTATION:
        return
    first_line = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first_line.startswith("# ")
    match = EXPECTATION.search(first_line)
    assert match, f"line 1 of {path.name} names no expected problem"
    line, column, fragment = int(match[1]), int(match[2]), match[3]
    assert any(
        (p.line, p.column) == (line, column) and fragment in p.message for p in error.problems
    ), [str(p) for p in error.problems]


def test_utf16_is_not_utf8() -> None:
    (problem,) = rejected(BAD_DIR / "utf16.yaml").problems
    assert (problem.line, problem.column) == (1, 1)
    assert problem.message == "not valid UTF-8 (byte 0xff at offset 0)"


def refuse_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: str, text: str) -> None:
        raise AssertionError("parsed a file that should have been refused first")

    monkeypatch.setattr(yaml_positions, "read_yaml", fail)


def test_huge_file_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as stream:
        stream.truncate(50 * 1024 * 1024)  # sparse: 50 MiB without writing them
    refuse_parsing(monkeypatch)
    (problem,) = rejected(path).problems
    assert str(problem) == f"{path}:1:1: file is 50.0 MiB; the limit is 32 MiB"


def test_content_over_the_limit_is_refused_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refuse_parsing(monkeypatch)
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([("blob.yaml", b"#" * (MAX_FILE_BYTES + 1))])
    assert [str(p) for p in caught.value.problems] == [
        "blob.yaml:1:1: file is 33554433 bytes; the limit is 32 MiB"
    ]


def test_billion_laughs_is_refused_without_expanding() -> None:
    levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 30):
        aliases = ",".join([f"*a{level - 1}"] * 10)
        levels.append(f"a{level}: &a{level} [{aliases}]")
    text = "version: 1\nusers:\n  janedoe:\n    full_name: *a29\n" + "\n".join(levels) + "\n"
    started = time.perf_counter()
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([("bomb.yaml", text.encode())])
    assert time.perf_counter() - started < 10
    aliases_refused = [p for p in caught.value.problems if "YAML aliases" in p.message]
    assert len(aliases_refused) == 29 * 10 + 1


@pytest.mark.parametrize(
    "nested",
    [
        pytest.param("[" * 10_000 + "]" * 10_000, id="lists"),
        pytest.param("{a: " * 10_000 + "1" + "}" * 10_000, id="mappings"),
        pytest.param("\n" + "- " * 10_000 + "x", id="block-lists"),
    ],
)
def test_deep_nesting_is_a_problem_not_a_crash(nested: str) -> None:
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([("deep.yaml", f"version: 1\nusers: {nested}\n".encode())])
    (problem,) = caught.value.problems
    assert problem.message == "nested more than 64 levels deep: the desired state needs 5"
    assert problem.line >= 1


def test_nothing_recurses_if_the_depth_limit_is_lifted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_positions, "MAX_DEPTH", 1_000_000)
    nested = "- " * 900 + "x"  # ~3 Python frames a level would pass the recursion limit
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([("deep.yaml", f"version: 1\nusers:\n{nested}\n".encode())])
    assert [str(p) for p in caught.value.problems] == [
        "deep.yaml:3:1: 'users' must be a mapping of usernames to their settings, not a list"
    ]


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="a limit of libyaml's own")
@pytest.mark.parametrize(
    "nested",
    [
        pytest.param("[" * 2_000 + "]" * 2_000, id="lists"),
        pytest.param("\n" + "- " * 2_000 + "x", id="block-lists"),
    ],
)
def test_libyamls_own_depth_limit_is_a_problem_if_ours_is_lifted(
    monkeypatch: pytest.MonkeyPatch, nested: str
) -> None:
    monkeypatch.setattr(yaml_positions, "MAX_DEPTH", 1_000_000)
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([("deep.yaml", f"version: 1\nusers: {nested}\n".encode())])
    (problem,) = caught.value.problems
    assert problem.message == "nested too deeply to read"
    assert problem.line >= 2


def test_python_tags_construct_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').close()"
    text = (
        "version: 1\nusers:\n  janedoe:\n"
        f'    full_name: !!python/object/apply:builtins.exec ["{code}"]\n'
        f'    location: !!python/object/new:builtins.exec ["{code}"]\n'
    )
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([("tags.yaml", text.encode())])
    assert [(p.line, p.column) for p in caught.value.problems] == [(4, 16), (5, 15)]
    assert not marker.exists()


def test_a_tab_inside_a_value_is_fine() -> None:
    state = parse_desired([("t.yaml", b'version: 1\nusers:\n  janedoe:\n    company: "A\tB"\n')])
    assert state.users[0].profile == {"company": "A\tB"}


def test_an_unreadable_path_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "file.yaml").write_text("version: 1\nusers: {}\n")
    path = tmp_path / "file.yaml" / "inner.yaml"  # a file used as a directory
    (problem,) = rejected(path).problems
    assert str(problem) == f"{path}:1:1: cannot read: Not a directory"
