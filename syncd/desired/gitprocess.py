"""Running git so that none of its processes outlives the wait for it.

git starts helpers of its own (git-remote-https, ssh, credential helpers).
Killing git alone orphaned git-remote-https, which kept git's pipes open:
`plan` hung past 40 s with a 4 s SYNCD_GIT_TIMEOUT, and helpers outlived the
daemon's exit. So git runs in a process group of its own, and whatever ends the
wait early kills the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal


async def run_in_own_group(
    command: list[str], environment: dict[str, str], stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    """Run `command` in a process group of its own, given `stdin`: its exit status,
    stdout and stderr.

    However the wait ends early (a timeout, the run's deadline, a shutdown: a
    cancellation, all of them), the whole group is killed and reaped before the
    cancellation goes on.
    """
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
        process_group=0,
        umask=0o077,  # the mirror's files: the owner's only, whatever syncd's umask
    )
    try:
        stdout, stderr = await process.communicate(stdin)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.shield(process.wait())
        raise
    assert process.returncode is not None
    return process.returncode, stdout, stderr
