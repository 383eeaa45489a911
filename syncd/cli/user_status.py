"""`syncd status --user U`: what syncd knows of one user, as text.

When it was last read, the changes still pending after the daemon's last
cycle (as the plan shows them), the last write and how it ended, its error
and since when, its suspension and its held deletions: "what is wrong with
alice?" without a plan. syncd.service.status gathers it from the state alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncd.core.vocabulary import SuspensionSource
from syncd.visible import quoted, visible


def render_users(users: list[Mapping[str, Any]]) -> list[str]:
    lines = []
    for entry in users:
        lines.append(f"user {visible(entry['user'])}")
        if not _known(entry):  # else a record of dashes, as for a user that is fine
            lines.append(
                "  unknown      syncd knows nothing of this user: no read, pending change "
                "or write of it in this state (a typo, or not in the desired state?)"
            )
            continue
        read = entry["last_read"]
        lines.append(
            f"  last read    profile {read['profile'] or '-'}, addresses {read['emails'] or '-'}"
        )
        pending = entry["pending"]
        if pending is None and entry["suspension"] is not None:  # the cycles do not read it
            lines.append("  pending      not known (suspended, not read)")
        elif pending is None:
            lines.append("  pending      none after the last cycle")
        else:
            lines.append(f"  pending      as of {pending['as_of']}:")
            lines.extend(f"    {_change(change)}" for change in pending["changes"])
        write = entry["last_write"]
        if write is None:
            lines.append("  last write   none recorded")
        else:
            message = f": {visible(write['message'])}" if write["message"] else ""
            lines.append(
                f"  last write   {write['timestamp'][:19]} {write['action']} "
                f"{visible(write['target'] or '')} {write['result']}{message}"
            )
        error = entry["error"]
        if error is not None:
            lines.append(
                f"  error        {error['code']} since {error['since']}: "
                f"{visible(error['message'])}"
            )
        suspension = entry["suspension"]
        if suspension is not None:
            until, by = suspension["until"] or "resumed", f"by {visible(suspension['by'] or '-')}"
            if suspension["source"] == SuspensionSource.YAML:
                until = suspension["until"] or "removed"
                by = f"suspend: at {visible(suspension['by'])} in the desired state"
            lines.append(f"  suspended    {visible(suspension['reason'])} (until {until}, {by})")
        for held in entry["held_deletions"]:
            lines.append(
                f"  held         delete {visible(held['email'])} ({held['status']}, set "
                f"{held['id']}: syncd approve {held['id']} or syncd reject {held['id']})"
            )
    return lines


def _known(entry: Mapping[str, Any]) -> bool:
    """Whether the state holds anything of the user's own: a suspension may be everyone's."""
    facts = ("pending", "last_write", "error", "held_deletions")
    own = (
        entry["suspension"] is not None and entry["suspension"]["source"] == SuspensionSource.YAML
    )
    return own or any(entry["last_read"].values()) or any(entry[fact] for fact in facts)


def _change(change: Mapping[str, Any]) -> str:
    """One pending change as the plan shows it."""
    if change["action"] == "update_profile":
        return "; ".join(
            f"~ {name}: {quoted(values['before'])} → {quoted(values['after'])}"
            for name, values in change["fields"].items()
        )
    sign = "+" if change["action"] == "add_email" else "-"
    return f"{sign} {visible(change['email'])}"
