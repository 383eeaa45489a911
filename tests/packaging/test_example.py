"""The example desired state: at the top level for readers, in the package for `syncd demo`.

The wheel can ship only files inside the package, so the package keeps a copy;
this test keeps the two identical (edit the top-level file, then copy it).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).parents[2]


def test_the_packaged_example_is_the_top_level_one():
    top = REPO / "desired-state.example.yaml"
    packaged = REPO / "syncd" / "desired-state.example.yaml"
    assert packaged.read_bytes() == top.read_bytes(), (
        f"{packaged} differs from {top}: edit the top-level file, then "
        f"cp {top.name} syncd/{top.name}"
    )
