"""How one converge ended: which users failed, why, and the run's result.

A run is `ok` or `no_changes` only when every managed user was read, compared
and written as planned; `partial` when some users failed and the others were
fine; `failed` when none was fine, or when every request it sent failed alike
(the API down: the users answered from the cache do not make it `partial`,
else a run that reached no API would look half-well for as long as cached
answers last); `drift` when it only observed (nothing is written) and found
changes to make; `held` when every user was suspended: none was read, so it
cannot say the accounts match (a success), nor did anything fail. A user fails
for an error in the plan (it could not be read, or a write is known not to
converge), a write that did not succeed, or a write the server did not keep.
"""

from __future__ import annotations

from syncd.core.plan import Plan
from syncd.core.problem import Problem
from syncd.core.vocabulary import ActionName, RunResult
from syncd.engine.applying import ApplyReport


def failing_users(plan: Plan, report: ApplyReport | None) -> dict[str, Problem]:
    """Each user that failed, with its first reason: the plan's, then its writes'."""
    failing: dict[str, Problem] = {}
    for error in plan.errors:
        failing.setdefault(error.user, error)
    if report is not None:
        for failure in report.failures:
            failing.setdefault(failure.user, failure)
    return failing


def run_result(
    plan: Plan,
    report: ApplyReport | None,
    failing: dict[str, Problem],
    *,
    observe: bool = False,
) -> RunResult:
    """ok, no_changes, partial or failed, as the module docstring says; `drift` when an
    observing run found changes for users that were otherwise fine."""
    if not failing:
        if observe and not plan.is_empty:
            return RunResult.DRIFT
        if plan.all_suspended:
            return RunResult.HELD
        return RunResult.OK if report is not None else RunResult.NO_CHANGES
    # The reads met one failure for all (syncd.engine.fetching.mark_shared), and no
    # write succeeded either.
    if any(error.shared for error in plan.errors) and (
        report is None or not any(report.counts[action] for action in ActionName)
    ):
        return RunResult.FAILED
    managed = plan.users or len(plan.users_with_changes())
    return RunResult.FAILED if len(failing) >= managed else RunResult.PARTIAL


def users_left(plan: Plan, sent: Plan, report: ApplyReport | None) -> set[str]:
    """The users left with a change of `plan` not made: not sent (held back from
    `sent`, or withheld by a suspension) or sent and not done."""
    sending = set(sent.changes)
    left = {action.user for action in plan.changes if action not in sending}
    if report is not None:
        left |= {failure.user for failure in report.failures} | set(report.withheld)
    return left
