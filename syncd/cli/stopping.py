"""How `syncd plan` and `syncd apply` stop: on SIGTERM as on Ctrl-C.

On Ctrl-C asyncio.run cancels the command's task: the run ends `cancelled`,
each write in flight is audited as its outcome allows, what is left is
committed; then it raises KeyboardInterrupt, which the command line turns
into "Aborted." and exit 1 (syncd.cli.main). systemd, Kubernetes, CI runners
and `timeout` send SIGTERM instead, whose default kills the process at once:
outcomes already shown were never committed and the run was left open.
`run_stoppable` has SIGTERM cancel the task the same way, as the daemon's
stop does (syncd.service.daemon).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, which SIGTERM ends as Ctrl-C does: KeyboardInterrupt once
    `main` has stopped. A second SIGTERM changes nothing: the stop is under way, and
    cutting it short would lose the outcomes it is committing."""
    stopped = False

    async def stoppable() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                task.cancel()

        # As asyncio.run's own for Ctrl-C, a handler of the process, not the loop's
        # (add_signal_handler): a prompt that blocks the loop gives it another
        # (ApplyView.confirm), and the loop must not see that signal again later.
        # Not by way of SIGINT's handler: a shell script's `syncd apply &` ignores SIGINT.
        previous = signal.signal(signal.SIGTERM, lambda *_: loop.call_soon_threadsafe(stop))
        try:
            return await main
        finally:
            signal.signal(signal.SIGTERM, previous)

    try:
        return asyncio.run(stoppable())
    except asyncio.CancelledError:
        if not stopped:
            raise
        raise KeyboardInterrupt from None  # as asyncio.run ends after Ctrl-C
