"""A progress bar on stderr while live state is fetched, only when a person watches.

It appears only when stderr is a terminal and the fetch has already taken
longer than a moment, so quick and scripted runs print nothing extra.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from syncd.engine.fetching import ProgressCallback

#: Seconds a fetch may take before a bar is worth showing.
SHOW_AFTER = 0.5


@contextmanager
def fetch_progress(enabled: bool = True) -> Iterator[ProgressCallback | None]:
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "reading accounts",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    started = time.monotonic()
    task = progress.add_task("fetch", total=None)

    def on_progress(done: int, total: int) -> None:
        if not progress.live.is_started and time.monotonic() - started > SHOW_AFTER:
            progress.start()
        progress.update(task, completed=done, total=total)
        if done == total:
            progress.stop()  # before anything else is printed or asked

    try:
        yield on_progress
    finally:
        progress.stop()
