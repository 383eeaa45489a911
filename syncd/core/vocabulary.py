"""The words syncd records and reports: actions, write results, run results, problem codes.

Each is a StrEnum whose values are the strings of the plan's JSON, the audit
trail, the runs table and the metrics' labels, so one member serves them all
and a value read back from the database compares equal to it.
"""

from __future__ import annotations

from enum import StrEnum


class ActionName(StrEnum):
    """What a planned change does: `action` in the plan's JSON and the audit trail."""

    UPDATE_PROFILE = "update_profile"
    ADD_EMAIL = "add_email"
    DELETE_EMAIL = "delete_email"


class WriteResult(StrEnum):
    """How one write ended: an audit outcome's `result`."""

    OK = "ok"
    FAILED = "failed"
    #: The answer was lost: the write may or may not have happened.
    UNKNOWN = "unknown"
    #: Its run died before the answer was recorded.
    INTERRUPTED = "interrupted"
    #: Accepted, and the server did not keep what was sent.
    DOES_NOT_CONVERGE = "does_not_converge"
    #: Not sent (so never in the audit trail): an earlier failure of the same user
    #: made it unsafe or pointless.
    SKIPPED = "skipped"


class RunResult(StrEnum):
    """How a run ended: `runs.result`, the daemon's status and its metrics."""

    OK = "ok"
    NO_CHANGES = "no_changes"
    PARTIAL = "partial"
    FAILED = "failed"
    #: Observing only: changes are pending and nothing was written.
    DRIFT = "drift"
    #: The deletion guard refused the plan.
    BLOCKED = "blocked"
    #: The daemon's deletion guard held deletions back, the rest applied: held for
    #: `syncd approve`, or left out as `syncd reject` said (by `apply` too); or every
    #: user suspended, none read. Not a success: changes remain, or may.
    HELD = "held"
    #: The desired state did not validate; nothing applied.
    INVALID = "invalid"
    #: Settings, credentials, state or git failed before a converge could end.
    ERROR = "error"
    DEADLINE = "deadline"
    CANCELLED = "cancelled"
    #: The operator said no at the prompt.
    DECLINED = "declined"
    #: Its process died; recorded by the next run.
    INTERRUPTED = "interrupted"


#: Runs that read, compared and wrote everything they meant to.
SUCCESSFUL_RUNS = frozenset({RunResult.OK, RunResult.NO_CHANGES})


class Code(StrEnum):
    """What went wrong with a user (design.md section 4): errors and warnings alike."""

    NO_CREDENTIALS = "no_credentials"
    CREDENTIAL_REFUSED = "credential_refused"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    USER_NOT_FOUND = "user_not_found"
    FETCH_FAILED = "fetch_failed"
    MALFORMED_RESPONSE = "malformed_response"
    DOES_NOT_CONVERGE = "does_not_converge"
    WRITE_FAILED = "write_failed"
    #: A warning: the primary address is not listed, and the API cannot delete it.
    PRIMARY_EMAIL_NOT_DESIRED = "primary_email_not_desired"
    #: A warning about the whole plan, not one user: users are in `emails_mode: owned`
    #: and the state planned with holds no ownership record for the API, so the
    #: deletions of addresses syncd owns elsewhere (a daemon's state) cannot be shown.
    OWNERSHIP_UNKNOWN = "ownership_unknown"


#: The codes that mean "this user's live state could not be read".
READ_ERRORS = frozenset(
    {
        Code.NO_CREDENTIALS,
        Code.CREDENTIAL_REFUSED,
        Code.UNAUTHORIZED,
        Code.FORBIDDEN,
        Code.USER_NOT_FOUND,
        Code.FETCH_FAILED,
        Code.MALFORMED_RESPONSE,
    }
)


class SuspensionSource(StrEnum):
    """Who suspended a user: the desired state's `suspend:`, or `syncd suspend`."""

    YAML = "yaml"
    CLI = "cli"


class OperatorEvent(StrEnum):
    """An operator's decision, as the audit trail's `event` and `action` record it."""

    SUSPEND = "suspend"
    RESUME = "resume"
    APPROVE = "approve"
    REJECT = "reject"


class HeldStatus(StrEnum):
    """Where a set of deletions held by the daemon's guard stands: `held_changes.status`."""

    HELD = "held"
    APPROVED = "approved"
    REJECTED = "rejected"
    #: Approved, and given to a cycle to apply.
    APPLIED = "applied"
    #: Held, then replaced by a newer set before anyone decided.
    SUPERSEDED = "superseded"


class NotificationEvent(StrEnum):
    """A condition the daemon notifies about (design.md section 4.1), once until it resolves."""

    DRIFT_DETECTED = "drift_detected"
    APPLY_FAILED = "apply_failed"
    GUARD_HELD = "guard_held"
    DOES_NOT_CONVERGE = "does_not_converge"
    SOURCE_FAILED = "source_failed"
    #: The API answered none of a cycle's requests: nothing is read or written.
    API_DOWN = "api_down"
    BECAME_ACTIVE = "became_active"
    SUSPENSION_EXPIRED = "suspension_expired"
