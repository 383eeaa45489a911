"""Conditions worth telling someone about, and when each starts and resolves.

The daemon works out, after each cycle, which conditions hold (drift, failed
writes, held deletions, a failing source…); `transitions` compares them with
the ones that held before, so that a condition is told once when it starts
and once when it resolves, never every cycle; one whose key changed (another
held set) is another condition: the old one resolves, the new one starts.
The daemon keeps the ones told in its state, so that a restart, a takeover
or the next `run --once` goes on from them. One-shot events (the instance
became active, a suspension expired) have no resolution and are told as they
happen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd.core.vocabulary import NotificationEvent


@dataclass(frozen=True, slots=True)
class Condition:
    event: NotificationEvent
    users: tuple[str, ...] = ()
    message: str = ""
    #: What changed or would change, as the plan's JSON shows it.
    changes: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)
    #: What the receiver acts on, beyond the event: the held set (`syncd approve` names
    #: it), so that a set replaced is told again. The users and words may change
    #: while it holds: more drift is the same condition, still open.
    key: str = ""

    def cleared(self) -> Condition:
        """The condition as its resolution tells it: who and what it was about, not the
        words of its firing (which say what to do about it)."""
        said = f"{self.key} cleared" if self.key else "cleared"
        return Condition(self.event, self.users, said, key=self.key)


@dataclass(frozen=True, slots=True)
class Notice:
    condition: Condition
    #: "firing" when it starts (or happens, for a one-shot), "resolved" when it clears.
    status: str


def transitions(
    before: Mapping[NotificationEvent, Condition], now: Mapping[NotificationEvent, Condition]
) -> list[Notice]:
    """What to tell: each condition that resolved, then each that started; first the
    resolution of one replaced, so that a receiver keyed on the event closes the old
    one before the new one opens."""
    resolved = [
        Notice(condition.cleared(), "resolved")
        for event, condition in before.items()
        if event not in now or now[event].key != condition.key
    ]
    started = [
        Notice(condition, "firing")
        for event, condition in now.items()
        if event not in before or before[event].key != condition.key
    ]
    return resolved + started
