"""What went wrong with one user: the one value for an error or a warning about a user.

The plan carries them (a user that could not be read, a write known not to
converge, a primary address left in place), the applier adds one for each
write that failed, and the daemon keeps them, with since when and until when
it holds the user back, in the state (syncd.state.user_failures).
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.core.vocabulary import Code


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem with `user`, with a code of design.md section 4.

    `user` is empty for a warning about the whole plan, said once (`ownership_unknown`).
    `cause` says what went wrong in words that do not depend on the user (a
    status, a transport error, with the API's URL); `shared` marks a failure
    that every read of the run met alike, so that it is said once for all.
    """

    user: str
    code: Code
    message: str
    cause: str = ""
    shared: bool = False
    #: The daemon's record: since when the user fails (ISO 8601, UTC), how many
    #: cycles in a row, and when it is read again (Unix time; None: next cycle).
    since: str | None = None
    failures: int = 0
    retry_at: float | None = None

    def to_json(self) -> dict[str, str | None]:
        # A warning about the whole plan (`ownership_unknown`) has no user: null, as
        # a shared failure's entry says.
        return {"user": self.user or None, "code": self.code, "message": self.message}
