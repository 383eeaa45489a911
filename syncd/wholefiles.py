"""Files that syncd writes for a person to keep: a saved plan, an imported desired
state, an audit export. A reader sees the old file or the whole new one.

Such a file is written aside under a hidden name in its directory (mkstemp:
mode 0600, O_EXCL), then renamed over its name. So:

- it is private whatever was there before: a plan and an export name users and
  addresses;
- a link at its name is refused, neither written through nor replaced: /dev/stdout
  is a link (to /proc/self/fd/1, a regular file when stdout is redirected to one),
  and renaming over it would break stdout for the whole host; a link of the
  operator's own is theirs to remove. Something else that is not a regular file
  there (a FIFO, a device, a directory) is refused too: such an output is made to
  be kept;
- it is synced before the rename and its directory after it: a crash leaves
  the old file or the whole new one under the name, never an empty one. (An
  export is what lets `audit prune` delete history; a saved plan is what
  `apply` will send.)
- a write that fails removes what it wrote aside and leaves the old file as it
  was.

The memo of valid desired-state files does not come here: it is a cache in
the state directory that checks its own digest, and needs no sync.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A new file to write, that takes `path`'s name once the block ends without error.

    OSError is for the caller to name; its `strerror` reads well after the path.
    The caller may close the file it was given (a TextIOWrapper does).
    """
    if path.is_symlink():
        raise OSError(errno.ELOOP, "a symbolic link, so neither followed nor replaced", str(path))
    if path.exists() and not path.is_file():
        raise OSError(errno.EEXIST, "not a regular file, so never replaced", str(path))
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with open(descriptor, "wb") as handle:
            yield handle
        _sync(partial)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    try:
        _sync(path.parent)
    except OSError as error:  # the file is whole under its name: say that much
        reason = f"in place, but its directory was not synced: {error.strerror or error}"
        raise OSError(error.errno, reason, str(path)) from None


def _sync(path: str | Path) -> None:
    # By name: the caller may have closed the descriptor it was given.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno != errno.EINVAL:  # EINVAL: a file system that syncs no directory
            raise
    finally:
        os.close(descriptor)
