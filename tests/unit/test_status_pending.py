"""`syncd status`'s "pending" line says only what the last run's plan knew.

A run that never planned (an error, an invalid desired state) said "none as of
the last run", and users that could not be read were counted by findings, not
by users.
"""

from __future__ import annotations

from syncd.cli.status_command import _pending
from syncd.service.status import pending_changes

PLANNED = {"users": 3, "users_changed": 0, "users_unreadable": 0, "errors": 0}


def test_a_run_that_did_not_plan_knows_nothing_pending():
    line = _pending(pending_changes("error", {}))
    assert line == "unknown: the last run (error) did not get as far as a plan"


def test_a_complete_plan_with_nothing_to_do_says_none():
    assert (
        _pending(pending_changes("no_changes", PLANNED)) == "none as of the last run (no_changes)"
    )


def test_users_that_could_not_be_read_are_counted_as_users():
    # One finding shared by two users ("every read failed alike"): two users unknown.
    counts = {**PLANNED, "users_unreadable": 2, "errors": 1}
    assert _pending(pending_changes("failed", counts)) == (
        "none as of the last run (failed); not known for 2 users that could not be read"
    )


def test_changes_left_and_users_unknown_are_both_said():
    counts = {**PLANNED, "users_changed": 1, "update_profile": 2, "users_unreadable": 1}
    assert _pending(pending_changes("partial", counts)) == (
        "2 changes for 1 user (update_profile 2) after the last run;"
        " not known for 1 user that could not be read"
    )


def test_suspended_users_are_not_known_to_match():
    # Every user suspended: the run is no_changes, and nothing was compared.
    counts = {**PLANNED, "users_suspended": 3}
    assert _pending(pending_changes("no_changes", counts)) == (
        "none as of the last run (no_changes); not known for 3 users suspended (not read)"
    )


def test_the_users_a_run_left_with_changes_are_counted_exactly_when_it_counted_them():
    # Two users had changes, one was applied whole: the plan's 2 is only a bound.
    counts = {**PLANNED, "users_changed": 2, "update_profile": 1, "delete_email": 3}
    applied = {**counts, "applied_update_profile": 1}
    assert _pending(pending_changes("held", applied)) == (
        "3 changes for up to 2 users (delete_email 3) after the last run"
    )
    assert _pending(pending_changes("held", {**applied, "users_pending": 1})) == (
        "3 changes for 1 user (delete_email 3) after the last run"
    )


def test_an_interrupted_run_is_not_said_to_have_stopped_before_its_plan():
    # Killed, it counted neither its plan nor its writes (status counts those from its
    # audit trail): what is pending is unknown because it was interrupted.
    line = _pending(pending_changes("interrupted", {"applied_update_profile": 127}))
    assert line == "unknown: the last run was interrupted"
