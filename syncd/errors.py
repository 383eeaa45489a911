"""The one exception tree of syncd; each error knows its exit code.

    SyncdError                     exit 1, base of everything syncd raises on purpose
    ├── UsageError                 a flag or setting that cannot work (http:// to a remote host,
    │                              `resume --user` of a user a `suspend:` holds)
    ├── SettingsError              the settings file or environment is invalid
    ├── DesiredStateError          the desired state is invalid; carries every Problem
    ├── StateError                 the state directory or a file in it fails: named, in one line
    ├── CredentialError            a credential file that cannot be read or sent
    ├── PlanFileError              a saved plan cannot be read or is stale
    ├── GuardError                 exit 3: the deletion guard refused the run
    ├── DaemonError                `syncd run` cannot start (another instance holds the state dir)
    ├── GitSourceError             a git+ desired state cannot be fetched or read
    ├── ApiUnreachable             no request can succeed (no answer at all, TLS refused,
    │                              the proxy's 407): the run stops, said once
    ├── DeadlineExceeded           `plan` or `apply` outlived SYNCD_RUN_DEADLINE
    └── ApiError                   an answer of the accounts API for one user
        ├── TransportError         no answer (connect/read failure); retryable
        │   ├── TimedOut           no complete answer within SYNCD_TIMEOUT
        │   └── NotSent            no connection made: nothing sent, so a write failed
        ├── MissingCredential      nothing usable to authenticate this user: not sent
        ├── CredentialRefused      this user's credential file is refused or unreadable: not sent
        ├── MalformedResponse      an answer that is not the JSON the API document promises
        └── HttpStatusError        an answer with an unexpected status
            ├── BadRequest         400
            ├── Unauthorized       401
            ├── Forbidden          403
            ├── NotFound           404
            ├── RateLimited        429; retryable, honours Retry-After
            │   └── WaitTooLong    429 asking to wait longer than syncd waits: not retried
            └── ServerError        5xx; retryable

The CLI turns a SyncdError into one line and its exit code; anything else is a
bug and keeps its traceback. Messages never contain a credential: API errors
carry the user, the method, the path and at most 256 characters of the body.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.visible import counted, visible

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES_PENDING = 2
EXIT_GUARD = 3

BODY_EXCERPT_LIMIT = 256
#: The longest Retry-After that syncd waits for; a server asking more fails that user.
MAX_RETRY_AFTER = 300.0


class SyncdError(Exception):
    exit_code = EXIT_ERROR


class UsageError(SyncdError):
    pass


class SettingsError(SyncdError):
    pass


class StateError(SyncdError):
    """A state file that fails; the message names the file and the cause, in one line."""


class CredentialError(SyncdError):
    """A credential file that cannot be used; the message names the file, never the secret."""


class PlanFileError(SyncdError):
    pass


class GuardError(SyncdError):
    exit_code = EXIT_GUARD


class DaemonError(SyncdError):
    pass


class GitSourceError(SyncdError):
    pass


class ApiUnreachable(SyncdError):
    """Every request would fail alike: the run stops rather than try each user.

    Not an ApiError, which is one user's: the engine lets it through and ends the run.
    """


class DeadlineExceeded(SyncdError):
    pass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the desired state, at a place in a file."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class DesiredStateError(SyncdError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        summary = f"{counted(len(self.problems), 'problem')} in the desired state"
        super().__init__("\n".join([*map(str, self.problems), summary]))


def excerpt(body: str) -> str:
    """An error body as one line, cut short enough for a log line, safe for a terminal.

    Runs of whitespace (an HTML page's line breaks) become one space; any other
    character that does not print is shown escaped (see syncd.visible).
    """
    body = " ".join(body.split())
    if len(body) > BODY_EXCERPT_LIMIT:
        body = body[:BODY_EXCERPT_LIMIT] + "…"
    return visible(body)


class ApiError(SyncdError):
    retryable = False

    def __init__(self, user: str, method: str, path: str, detail: str) -> None:
        self.user = user
        self.method = method
        self.path = path
        self.detail = detail
        super().__init__(f"{user}: {method} {path}: {detail}")


class TransportError(ApiError):
    retryable = True


class TimedOut(TransportError):
    pass


class NotSent(TransportError):
    """No attempt made a connection: nothing was sent (retried as any TransportError)."""


class MalformedResponse(ApiError):
    pass


class MissingCredential(ApiError):
    pass


class CredentialRefused(ApiError):
    """A credential file exists for this user but may not be used: an error, not a warning."""


class HttpStatusError(ApiError):
    def __init__(
        self,
        user: str,
        method: str,
        path: str,
        status: int,
        body: str,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.body = excerpt(body)
        #: The Retry-After of a 429, or of a 503: when the server says it will be back
        #: (RFC 9110 10.2.3). status_error passes it to those alone.
        self.retry_after = retry_after
        super().__init__(user, method, path, self._detail())

    def _detail(self) -> str:
        return f"HTTP {self.status}" + (f": {self.body}" if self.body else "")


class BadRequest(HttpStatusError):
    pass


class Unauthorized(HttpStatusError):
    pass


class Forbidden(HttpStatusError):
    pass


class NotFound(HttpStatusError):
    pass


class RateLimited(HttpStatusError):
    retryable = True


class WaitTooLong(RateLimited):
    """A 429 whose Retry-After is beyond MAX_RETRY_AFTER: that user fails, naming the wait.

    status_error makes one only when the answer gave a Retry-After.
    """

    retryable = False

    def _detail(self) -> str:
        return (
            f"HTTP 429: the server asks to wait {self.retry_after:.0f} s (Retry-After), longer "
            f"than syncd waits ({MAX_RETRY_AFTER:.0f} s)"
        )


class ServerError(HttpStatusError):
    retryable = True


_BY_STATUS: dict[int, type[HttpStatusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
}


def status_error(
    user: str, method: str, path: str, status: int, body: str, retry_after: float | None = None
) -> HttpStatusError:
    """The HttpStatusError subclass for an answer's status."""
    if status == 429:
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            return WaitTooLong(user, method, path, status, body, retry_after)
        return RateLimited(user, method, path, status, body, retry_after)
    if status >= 500:
        return ServerError(user, method, path, status, body, retry_after)
    return _BY_STATUS.get(status, HttpStatusError)(user, method, path, status, body)
