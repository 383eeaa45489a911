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

from syncd.desired import loading, yaml_positions
from syncd.desired.loading import MAX_FILE_BYTES, MAX_PROBLEMS, load_desired, parse_desired
from syncd.errors import DesiredStateError

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


def test_a_bad_byte_is_shown_at_its_line_and_column() -> None:
    # It was shown at 1:1 wherever it was. A column counts characters: "é" is one.
    content = b'version: 1\nusers:\n  alice:\n    full_name: "\xc3\xa9\xff"\n'
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([("latin.yaml", content)])
    (problem,) = caught.value.problems
    assert str(problem) == "latin.yaml:4:18: not valid UTF-8 (byte 0xff at offset 45)"


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


def problems_of(name: str, text: str) -> list[str]:
    started = time.perf_counter()
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([(name, text.encode())])
    assert time.perf_counter() - started < 10
    return [str(problem) for problem in caught.value.problems]


def test_reading_stops_at_the_problem_limit() -> None:
    aliases = ", ".join(["*a"] * 1_000_000)  # 4 MB: 1,000,000 problems if all were kept
    text = f"version: 1\nusers:\n  janedoe:\n    emails: &a []\n    company: [{aliases}]\n"
    problems = problems_of("a.yaml", text)
    assert len(problems) == MAX_PROBLEMS == 1000
    assert problems[0] == ("a.yaml:5:15: YAML aliases are not allowed ('*a'): write the value out")
    assert problems[-1] == "a.yaml:5:4011: too many problems (1,000): stopped reading here"


def test_repeated_keys_count_against_the_problem_limit() -> None:
    text = "version: 1\nusers:\n  janedoe:\n" + "    company: x\n" * 5000
    problems = problems_of("k.yaml", text)
    assert len(problems) == MAX_PROBLEMS
    assert problems[0] == (
        "k.yaml:4:5: duplicate key 'company' (also at k.yaml:5:5, k.yaml:6:5, k.yaml:7:5,"
        " k.yaml:8:5, k.yaml:9:5 and 993 more)"
    )
    assert problems[-1] == "k.yaml:1003:5: too many problems (1,000): stopped reading here"


def test_invalid_addresses_stop_reading_at_the_problem_limit() -> None:
    # Invalid addresses (as unknown keys and usernames) are refused as they are
    # read: a hostile file costs no more than its first thousand problems.
    users = "".join(f"  user{n:04d}:\n    emails: [user{n}]\n" for n in range(2500))
    problems = problems_of("u.yaml", f"version: 1\nusers:\n{users}")
    assert len(problems) == MAX_PROBLEMS
    assert problems[0] == "u.yaml:4:14: invalid email address 'user0'"
    assert problems[998] == "u.yaml:2000:14: invalid email address 'user998'"
    assert problems[-1] == "u.yaml:2002:14: too many problems (1,000): stopped reading here"


def test_problems_past_the_limit_are_counted_not_shown() -> None:
    users = "".join(f"  user{n:04d}:\n    location: 1\n    company: 2\n" for n in range(600))
    problems = problems_of("u.yaml", f"version: 1\nusers:\n{users}")
    assert len(problems) == MAX_PROBLEMS
    assert problems[0].startswith("u.yaml:4:15: location must be a string")
    # the first one not shown is where the rest start
    assert problems[-1] == "u.yaml:1502:14: … and 201 more problems not shown, from here on"


def test_the_limit_is_for_each_file() -> None:
    def text(name: str) -> bytes:
        return (
            "version: 1\nusers:\n" + "".join(f"  {name}{n:04d}: 1\n" for n in range(1500))
        ).encode()

    with pytest.raises(DesiredStateError) as caught:
        parse_desired([("a.yaml", text("anna")), ("b.yaml", text("bert"))])
    for name in ("a.yaml", "b.yaml"):
        shown = [p for p in caught.value.problems if p.path == name]
        assert len(shown) == MAX_PROBLEMS
        # the first 1,000 users make 1,000 problems: the next 500 are not checked
        assert shown[-1].message == "too many problems (1,000): stopped checking here"


def test_a_place_repeated_many_times_names_a_few_others() -> None:
    emails = "".join("      - j@example.com\n" for _ in range(20_000))  # not 4 * 10^8 places
    problems = problems_of("e.yaml", f"version: 1\nusers:\n  janedoe:\n    emails:\n{emails}")
    assert problems[0] == (
        "e.yaml:5:9: duplicate email 'j@example.com' (also at e.yaml:6:9, e.yaml:7:9,"
        " e.yaml:8:9, e.yaml:9:9, e.yaml:10:9 and 19,994 more)"
    )
    assert problems[-1] == "e.yaml:1004:9: … and 19,001 more problems not shown, from here on"


def test_users_are_validated_in_chunks_as_if_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ["version: 2", "users:"]
    for n in range(2500):  # a problem in each of the three chunks, one at the top
        lines.append(f"  user{n:04d}:")
        lines.append(f"    emails: [{'bad' if n % 997 == 0 else f'u{n}@example.com'}]")
    lines.append("uzers: {}")
    text = "\n".join(lines) + "\n"
    chunked = problems_of("c.yaml", text)
    monkeypatch.setattr(loading, "_CHUNK", 1_000_000)
    assert problems_of("c.yaml", text) == chunked
    assert len(chunked) == 5  # version, three emails, uzers
    good = text.replace("version: 2", "version: 1").replace("[bad]", "[b@example.com]")
    state = parse_desired([("c.yaml", good.replace("uzers: {}\n", "").encode())])
    assert [str(user.location) for user in state.users[999:1001]] == [
        "c.yaml:2001:3",
        "c.yaml:2003:3",
    ]
    assert state.users[-1].emails == ("u2499@example.com",)


def test_a_lone_surrogate_is_refused_where_the_parser_lets_it_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # libyaml refuses "\ud800" itself; PyYAML's pure-Python parser (used without
    # libyaml) makes it a lone surrogate, which the live reader refuses.
    monkeypatch.setattr(yaml_positions, "_LOADER", yaml.SafeLoader)
    text = 'version: 1\nusers:\n  janedoe:\n    company: "x\\ud800"\n'
    assert problems_of("s.yaml", text) == [
        "s.yaml:4:14: this text holds a lone surrogate (not text), which syncd could not read"
        " back from the API"
    ]
