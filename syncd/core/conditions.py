"""Conditions worth telling someone about, and when each starts and resolves.

The daemon works out, after each cycle, which conditions hold (drift, failed
writes, held deletions, a failing source…); `transitions` compares them with
the ones that held before, so that a condition is told once when it starts
and once when it resolves, never every cycle. One-shot events (the instance
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


@dataclass(frozen=True, slots=True)
class Notice:
    condition: Condition
    #: "firing" when it starts (or happens, for a one-shot), "resolved" when it clears.
    status: str


def transitions(
    before: Mapping[NotificationEvent, Condition], now: Mapping[NotificationEvent, Condition]
) -> list[Notice]:
    """What to tell: each condition that started, then each that resolved."""
    started = [
        Notice(condition, "firing") for event, condition in now.items() if event not in before
    ]
    resolved = [
        Notice(condition, "resolved") for event, condition in before.items() if event not in now
    ]
    return started + resolved
