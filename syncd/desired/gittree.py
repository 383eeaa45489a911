"""Which files of a git tree are the desired state: the same files a directory on disk gives.

A directory source reads the `*.yaml`/`*.yml` files of a checkout, and opening a
file follows its symlinks; so must the git source, or CI (which validates and
plans the checkout) and the daemon (which reads the commit) would mean two
different things by one commit. A symlink (mode 120000, whose blob is its target)
is followed within the commit by `git cat-file --batch-check --follow-symlinks`,
with git's own limit on a chain (40 links, the kernel's). A link that cannot be
followed to a file of the commit (out of the repository, absolute, dangling, in
a loop, to a directory) and a submodule with a YAML name are problems at that
file, never skipped in silence. This module parses what git prints; gitsource
runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.desired.sourcefiles import (
    LINK_IN_A_LOOP,
    LINK_TO_A_DIRECTORY,
    SUBMODULE,
    is_yaml_name,
    link_out_of_repository,
)
from syncd.errors import Problem

_REGULAR = ("100644", "100755")
_SYMLINK = "120000"
_SUBMODULE = "160000"


@dataclass(frozen=True, slots=True)
class Blob:
    """A file to read: its path for messages, its object, its size."""

    path: str
    object_id: str
    size: int


@dataclass(frozen=True, slots=True)
class Listed:
    """The desired-state entries of a tree: files, links still to follow (their own
    blobs: the targets), problems."""

    blobs: list[Blob]
    links: list[Blob]
    problems: list[Problem]


def listed_entries(listing: bytes, prefix: str) -> Listed:
    """The entries of `git ls-tree -r -z -l` output that syncd reads (is_yaml_name, as on
    disk), named `prefix/name`."""
    listed = Listed([], [], [])
    for entry in filter(None, listing.split(b"\0")):
        meta, _, raw_name = entry.partition(b"\t")
        mode, _, object_id, size = meta.decode().split()
        name = raw_name.decode("utf-8", "replace")
        if not is_yaml_name(name):
            continue
        path = f"{prefix}/{name}".lstrip("/")
        if mode in _REGULAR:
            listed.blobs.append(Blob(path, object_id, int(size)))
        elif mode == _SYMLINK:
            if "\n" in path:  # one path a line is what cat-file --batch-check reads
                listed.problems.append(
                    Problem(path, 1, 1, "a symlink with a line break in its name")
                )
            else:
                listed.links.append(Blob(path, object_id, int(size)))
        elif mode == _SUBMODULE:
            listed.problems.append(Problem(path, 1, 1, SUBMODULE))
    return listed


@dataclass(frozen=True, slots=True)
class Found:
    """What `<commit>:<path>` names, links followed: an object, or why there is none.

    `kind` is the object's type (blob, tree, commit), or git's word for a link that
    cannot be followed (symlink: out of the tree; dangling, loop, notdir, missing);
    `detail` is what git adds: the part of the link out of the tree, or the
    `<commit>:<path>` that is not there.
    """

    kind: str
    object_id: str = ""
    size: int = 0
    detail: str = ""


def found_objects(output: bytes) -> list[Found]:
    """Parse `git cat-file --batch-check --follow-symlinks` output, one Found a query."""
    found = []
    position = 0
    while position < len(output):
        end = output.index(b"\n", position)
        words = output[position:end].decode("utf-8", "replace").split(" ")
        position = end + 1
        if words[-1] in ("missing", "ambiguous"):  # `<name> missing`: the name may hold spaces
            found.append(Found(words[-1]))
        elif len(words) == 2:
            # `symlink|dangling|loop|notdir <size>`, then that many bytes (which may
            # hold a line break) and a line break.
            size = int(words[1])
            detail = output[position : position + size].decode("utf-8", "replace")
            position += size + 1
            found.append(Found(words[0], detail=detail))
        else:
            found.append(Found(words[1], words[0], int(words[2])))
    return found


def link_targets(output: bytes) -> list[str]:
    """Parse `git cat-file --batch` output for the blobs of symlinks: their targets."""
    targets = []
    position = 0
    while position < len(output):
        end = output.index(b"\n", position)
        size = int(output[position:end].rsplit(b" ", 1)[1])  # `<object> blob <size>`
        targets.append(output[end + 1 : end + 1 + size].decode("utf-8", "replace"))
        position = end + 1 + size + 1
    return targets


def not_a_file(found: Found, commit: str, target: str | None = None) -> str:
    """Why what a path names at `commit` is not a file syncd reads: a symlink's `target`
    followed, or the path given (then a directory is no problem: it is read as a tree).
    """
    at = f" in {commit[:12]}"
    shown = target if target is not None else found.detail
    match found.kind:
        case "tree":
            return LINK_TO_A_DIRECTORY
        case "commit":
            return SUBMODULE
        case "symlink":
            return link_out_of_repository(shown)
        case "loop":
            return LINK_IN_A_LOOP
        case "dangling" | "notdir":
            if target is None:  # git names the path that has a link, not where it leads
                return f"a symlink on the way, which leads to no file{at}"
            return f"a symlink to {target}, which is not a file{at}"
        case _:
            return f"no such file or directory{at}"
