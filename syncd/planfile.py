"""Saved plans (`plan --out`): the plan contract plus the live state it was made against.

The `basis` lets `apply plan.json` check, before any write, that the accounts
have not changed since the plan was made.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from syncd.errors import PlanFileError
from syncd.live import LiveAccount, emails_json
from syncd.reconcile import PlanResult


def basis_of(result: PlanResult) -> dict[str, Any]:
    basis: dict[str, Any] = {}
    for username in result.plan.users_with_changes():
        account = result.live[username]
        assert isinstance(account, LiveAccount)  # only readable users have changes
        basis[username] = {
            "profile": account.profile.__dict__ if account.profile else None,
            "emails": emails_json(account.emails) if account.emails is not None else None,
        }
    return basis


def save_plan(path: str, result: PlanResult) -> None:
    """Write the plan atomically: a reader never sees half a file."""
    document = result.plan.to_json(result.source())
    document["basis"] = basis_of(result)
    target = Path(path)
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=target.parent or Path(), prefix=f".{target.name}.", delete=False
        ) as handle:
            json.dump(document, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(handle.name, target)
    except OSError as error:
        raise PlanFileError(f"cannot write the plan to {path}: {error}") from None
