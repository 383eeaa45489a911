"""Which files on disk are the desired state: a file, or the YAML files of a directory's tree.

A directory is read as the `*.yaml`/`*.yml` files in its whole tree (the suffix
in any case: a `users.YAML` left out would pass a file nobody checked), sorted
by path; hidden files and directories are skipped, so that pointing at a
repository root does not read .github/ or .pre-commit-config.yaml.

A symlink to a file is followed, as a git source follows it within its commit
(syncd.desired.gittree): CI, which validates a checkout, and the daemon, which
reads the commit, must read the same files. In a git work tree (a parent holds
`.git`), a link that leads out of it, or is absolute, is a problem, as it is in
a commit, where there is nothing beyond the repository: a pull request cannot
make CI read the runner's files. Out of a work tree a link may lead anywhere: the
files are the operator's own. A YAML-named link that leads to no file (dangling,
a loop, a directory) is a problem at the link, never skipped in silence, and so
is a YAML-named FIFO or socket. Links to directories are not walked (no loops),
nor is a directory holding `.git` (a submodule's checkout: a commit does not
hold its files), which is a problem if it has a YAML name, as a submodule is in
a commit.

A file over MAX_FILE_BYTES is refused before it is read, and so are files over
MAX_SOURCE_BYTES or MAX_SOURCE_FILES in all (source_too_large); one that is not a
regular file (a FIFO would hang the read) without reading it.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Final

from syncd.desired.yaml_positions import MAX_FILE_BYTES, file_too_large
from syncd.errors import Problem

YAML_SUFFIXES: Final = (".yaml", ".yml")

#: The whole desired state (the files of a directory, or of a git tree), whatever
#: each file's size: one blob listed under 40 names in a 344 KB repository was
#: 344 MB to parse (54 s, 1.4 GB). Checked before any file is read.
MAX_SOURCE_BYTES: Final = MAX_FILE_BYTES
MAX_SOURCE_FILES: Final = 1000

#: What a symlink that is not followed to a file is, said alike by both sources.
#: 40 links: git's limit on a chain, and Linux's.
LINK_IN_A_LOOP: Final = "a symlink in a loop, or a chain of more than 40 links"
LINK_TO_A_DIRECTORY: Final = "a symlink to a directory: syncd follows links to files only"
SUBMODULE: Final = "a submodule: syncd does not read submodules"
NOT_A_FILE: Final = "not a regular file: refused"


def link_out_of_repository(target: str) -> str:
    return f"a symlink to {target}: syncd follows relative links within the repository only"


def is_yaml_name(path: str) -> bool:
    """A desired-state file's `/`-separated path: `*.yaml` or `*.yml` in any case, and
    nothing hidden (a name starting with `.`) on the way."""
    hidden = any(part.startswith(".") for part in path.split("/"))
    return not hidden and path.lower().endswith(YAML_SUFFIXES)


def read_yaml_files(path: str) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    """The content of a file, or of the YAML files in a directory's tree, sorted by path;
    and the problems of those that cannot be read."""
    try:
        if not os.path.isdir(path):
            return _read_file(path)
        names, problems = _yaml_tree(path)
        sizes = [os.stat(os.path.join(path, name)).st_size for name in names]
    except OSError as error:
        return [], [Problem(path, 1, 1, _os_message(error))]
    if not names and not problems:
        return [], [Problem(path, 1, 1, "no *.yaml or *.yml file in this directory")]
    if (too_large := source_too_large(path, len(names), sum(sizes))) is not None:
        return [], [too_large]
    files: list[tuple[str, bytes]] = []
    for name in names:
        found, failed = _read_file(os.path.join(path, name))
        files += found
        problems += failed
        # Files that grew since: the bound holds for what is read.
        if (too_large := source_too_large(path, 0, sum(len(c) for _, c in files))) is not None:
            return [], [too_large]
    return files, problems


def _yaml_tree(path: str) -> tuple[list[str], list[Problem]]:
    """The YAML files under `path`, relative to it, sorted; and the problems of the
    YAML-named links that are not followed."""
    names, problems = [], []
    work_tree = _work_tree(path)
    for top, directories, files in os.walk(path, onerror=_raise):
        # os.walk lists a link to a directory among the directories, and never enters it.
        links = [name for name in directories if os.path.islink(os.path.join(top, name))]
        # A directory holding .git is another repository (a submodule's checkout),
        # which a commit does not hold: it is not read, here either.
        others = [name for name in directories if _holds_git(os.path.join(top, name))]
        directories[:] = [
            name for name in directories if not name.startswith(".") and name not in others
        ]
        relative = os.path.relpath(top, path)
        for name in others:
            if is_yaml_name(name):
                shown = os.path.join(path, os.path.normpath(os.path.join(relative, name)))
                problems.append(Problem(shown, 1, 1, SUBMODULE))
        for name in files + links:
            if not is_yaml_name(name):
                continue
            full = os.path.join(top, name)
            why = _not_followed(full, work_tree) if os.path.islink(full) else None
            if why is None and not os.path.isfile(full):  # a FIFO, a socket: stat, never opened
                why = NOT_A_FILE
            relative_name = os.path.normpath(os.path.join(relative, name))
            if why is not None:
                problems.append(Problem(os.path.join(path, relative_name), 1, 1, why))
            else:
                names.append(relative_name)
    return sorted(names, key=lambda name: name.split(os.sep)), problems


def _holds_git(directory: str) -> bool:
    return os.path.lexists(os.path.join(directory, ".git"))


def _work_tree(directory: str) -> str | None:
    """The git work tree `directory` is in (the nearest directory holding `.git`), if any."""
    current = os.path.realpath(directory)
    while not _holds_git(current):
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    return current


def _not_followed(link: str, work_tree: str | None) -> str | None:
    """Why the symlink `link` is not read as a file, or None if it is."""
    target = os.readlink(link)
    if work_tree is not None and (
        os.path.isabs(target)
        or os.path.commonpath([work_tree, os.path.realpath(link)]) != work_tree
    ):
        return link_out_of_repository(target)
    try:
        mode = os.stat(link).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return LINK_IN_A_LOOP
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"a symlink to {target}, which is not a file"
        return f"a symlink to {target}: {error.strerror or error}"
    if stat.S_ISDIR(mode):
        return LINK_TO_A_DIRECTORY
    return None if stat.S_ISREG(mode) else f"a symlink to {target}, which is not a regular file"


def _raise(error: OSError) -> None:
    raise error


def source_too_large(path: str, count: int, size: int) -> Problem | None:
    """Why `count` files of `size` bytes in all are more than a desired state may be."""
    if count > MAX_SOURCE_FILES:
        message = f"{count:,} desired-state files; the limit is {MAX_SOURCE_FILES:,}"
        return Problem(path, 1, 1, message)
    if size > MAX_SOURCE_BYTES:
        message = (
            f"the desired-state files are {size:,} bytes in all; "
            f"the limit is {MAX_SOURCE_BYTES // 2**20} MiB"
        )
        return Problem(path, 1, 1, message)
    return None


def _read_file(path: str) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    try:
        # O_NONBLOCK: opening a FIFO would wait for a writer; it is refused below.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode):
                return [], [Problem(path, 1, 1, NOT_A_FILE)]
            os.set_blocking(stream.fileno(), True)
            size = info.st_size
            # Read one byte more than allowed: a growing file has no true size.
            content = b"" if size > MAX_FILE_BYTES else stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        return [], [Problem(path, 1, 1, _os_message(error))]
    if size > MAX_FILE_BYTES or len(content) > MAX_FILE_BYTES:
        return [], [file_too_large(path, max(size, len(content)))]
    return [(path, content)], []


def _os_message(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file or directory"
    return f"cannot read: {error.strerror or error}"
