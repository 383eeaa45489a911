"""How one converge ended: which users failed, why, and the run's result.

A run is `ok` or `no_changes` only when every managed user was read, compared
and written as planned; `partial` when some users failed and the others were
fine; `failed` when none was fine; `drift` when it only observed (nothing is
written) and found changes to make. A user fails for an error in the plan (it
could not be read, or a write is known not to converge), a write that did not
succeed, or a write the server did not keep.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.core.plan import DOES_NOT_CONVERGE, Plan
from syncd.engine.applying import ApplyReport

#: The code of a user whose write failed, by the answer's status.
_WRITE_CODES = {401: "unauthorized", 403: "forbidden", 404: "user_not_found"}
WRITE_FAILED = "write_failed"


@dataclass(frozen=True, slots=True)
class UserFailure:
    """Why a user failed this run; `shared` when every read of the run failed alike."""

    code: str
    message: str
    shared: bool = False
    #: What the failure was, in words alike for every user it struck.
    cause: str = ""


def failing_users(plan: Plan, report: ApplyReport | None) -> dict[str, UserFailure]:
    """Each user that failed, with its first reason: the plan's, then its writes'."""
    failing: dict[str, UserFailure] = {}
    for error in plan.errors:
        found = UserFailure(error.code, error.message, error.shared, error.cause)
        failing.setdefault(error.user, found)
    if report is not None:
        for failure in report.failures:
            if failure.result == DOES_NOT_CONVERGE:
                code = DOES_NOT_CONVERGE
            else:
                code = _WRITE_CODES.get(failure.status or 0, WRITE_FAILED)
            message = f"{failure.description}: {failure.message}"
            failing.setdefault(failure.user, UserFailure(code, message))
    return failing


#: The result of a run that planned changes and, observing only, wrote none.
DRIFT = "drift"


def run_result(
    plan: Plan,
    report: ApplyReport | None,
    failing: dict[str, UserFailure],
    *,
    observe: bool = False,
) -> str:
    """ok, no_changes, partial or failed, as the module docstring says; `drift` when an
    observing run found changes for users that were otherwise fine."""
    if not failing:
        if observe and not plan.is_empty:
            return DRIFT
        return "ok" if report is not None else "no_changes"
    managed = plan.users or len(plan.users_with_changes())
    return "failed" if len(failing) >= managed else "partial"
