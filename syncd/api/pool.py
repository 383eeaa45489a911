"""Bounded concurrency: handle a stream of work items with a fixed number of workers.

A TaskGroup rather than asyncio.gather: when one worker fails, the others are
cancelled at once instead of writing on while the run is torn down around
them. The first real error is raised as itself, not inside an ExceptionGroup,
so callers catch it like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

Item = TypeVar("Item")


async def for_each(
    items: Iterable[Item], concurrency: int, handle: Callable[[Item], Awaitable[None]]
) -> None:
    work = iter(items)

    async def worker() -> None:
        # One shared iterator: each item goes to exactly one worker.
        for item in work:
            await handle(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, concurrency)):
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
