"""The problems of the desired state as they are found, at most MAX_PROBLEMS shown a file."""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import Final

from syncd.desired import yaml_positions
from syncd.errors import Problem

_ORDER: Final = attrgetter("path", "line", "column", "message")  # a Problem's, faster


class ProblemList:
    """Problems as they are found, of which at most MAX_PROBLEMS a file are shown.

    A file's problems shown are its first ones by place; when there are more,
    the last one shown says how many. Only those are kept as they come, so that
    a file that makes a million problems costs little more than one that makes
    a thousand.
    """

    def __init__(self, problems: Iterable[Problem] = ()) -> None:
        self.limit = yaml_positions.MAX_PROBLEMS  # read now, so that a test can change it
        self.found: dict[str, list[Problem]] = {}
        self.counts: dict[str, int] = {}
        self.stopped: set[str] = set()
        self.extend(problems)

    def __len__(self) -> int:
        return sum(self.counts.values())

    def full(self, path: str) -> bool:
        """Whether `path` has as many problems as are shown: checking it further is for nobody."""
        return self.counts.get(path, 0) >= self.limit

    def stop(self, path: str) -> None:
        """Checking `path` stopped once it was full: say so, rather than count what is left."""
        self.stopped.add(path)

    def extend(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            found = self.found.setdefault(problem.path, [])
            found.append(problem)
            self.counts[problem.path] = self.counts.get(problem.path, 0) + 1
            if len(found) >= 2 * self.limit:  # sorted once every `limit` problems
                found.sort(key=_ORDER)
                del found[self.limit :]

    def shown(self) -> list[Problem]:
        shown: list[Problem] = []
        for path, found in self.found.items():
            found.sort(key=_ORDER)
            hidden = self.counts[path] - self.limit + 1
            message = None
            if path in self.stopped and hidden >= 1:
                message = f"too many problems ({self.limit:,}): stopped checking here"
            elif hidden > 1:
                message = f"… and {hidden:,} more problems not shown, from here on"
            if message is not None:
                first = found[self.limit - 1]  # of those not shown
                found[self.limit - 1 :] = [Problem(path, first.line, first.column, message)]
            shown += found
        return shown
