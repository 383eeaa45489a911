"""syncd.wholefiles on real files: the old file or the whole new one, never half."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from syncd.wholefiles import replacing


def test_a_write_that_fails_leaves_the_old_file_and_nothing_aside(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.write_text("the old one\n")

    def cut_off() -> None:
        with replacing(kept) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("cut off")

    with pytest.raises(RuntimeError):
        cut_off()
    assert kept.read_text() == "the old one\n"
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]


def test_the_file_may_be_closed_by_a_layer_above_it(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    with replacing(kept) as handle, io.TextIOWrapper(handle, encoding="utf-8") as text:
        text.write("whole\n")
    assert kept.read_text() == "whole\n"


def test_a_directory_is_refused_not_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "out"
    directory.mkdir()
    with pytest.raises(OSError, match="not a regular file"), replacing(directory):
        pass
    assert directory.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_link_is_refused_even_to_a_regular_file_so_dev_stdout_is_never_replaced(
    tmp_path: Path,
) -> None:
    # /dev/stdout is a link to /proc/self/fd/1, which leads to a regular file when
    # stdout is redirected to one: replacing the link broke /dev/stdout for the host.
    captured = tmp_path / "captured.txt"
    with captured.open("wb") as redirected:
        stdout_like = tmp_path / "out.json"
        stdout_like.symlink_to(f"/proc/self/fd/{redirected.fileno()}")
        assert stdout_like.is_file()
        refused = pytest.raises(OSError, match="a symbolic link, so neither followed nor replaced")
        with refused, replacing(stdout_like) as handle:
            handle.write(b"the plan")
        assert stdout_like.is_symlink()
    assert captured.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captured.txt", "out.json"]
