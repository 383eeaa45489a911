"""What more than one integration test module uses."""

from __future__ import annotations

import asyncio
from typing import Any

from syncd.engine.reconcile import PlanResult, compute_plan
from syncd.settings import Settings
from tests.world import World


def plan_with(world: World, **kwargs: Any) -> PlanResult:
    """The plan of the world's desired state, as `syncd plan` computes it."""
    from syncd.desired.loading import load_desired

    settings: Settings = kwargs.pop("settings", None) or world.settings()
    return asyncio.run(compute_plan(settings, load_desired(world.desired_file), **kwargs))
