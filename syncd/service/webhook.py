"""Reconcile on push: POST /hooks/git from GitHub or GitLab starts a cycle now.

A hook is accepted only when it proves it knows the secret
(SYNCD_WEBHOOK_SECRET_FILE): GitHub signs the body, `X-Hub-Signature-256:
sha256=<hex HMAC-SHA256 of the body>`; GitLab sends the secret itself,
`X-Gitlab-Token`. Both are compared in constant time. What the hook says is
not trusted beyond that: a valid one only asks for a cycle, which fetches
the source itself (coalesced with a cycle in progress). An invalid or missing
proof is 401 and starts nothing; a body over MAX_BODY_BYTES is 413 unread.
The secret never reaches a log, a metric or an answer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from syncd.errors import SettingsError
from syncd.secretfiles import read_secret_file

PATH = "/hooks/git"
MAX_BODY_BYTES = 1024 * 1024
#: The results of a hook, each a label of syncd_webhook_requests_total from the start.
RESULTS = ("accepted", "unauthorized", "too_large", "bad_request")


@dataclass
class Webhook:
    """The secret, and what to do with a valid hook (set once the daemon runs)."""

    secret: bytes = field(repr=False)
    #: Asks for a cycle now; called from the listener's thread.
    start_cycle: Callable[[str], None] | None = None

    @classmethod
    def from_file(cls, path: Path) -> Webhook:
        secret = read_secret_file(path).strip()
        if not secret:
            raise SettingsError(f"webhook secret file {path}: empty")
        return cls(secret.encode())

    def sender(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Who sent a hook that proves it knows the secret ("github", "gitlab"), else None.

        `headers`: their names lower-cased (HTTP's names are case-insensitive).
        """
        signature = headers.get("x-hub-signature-256")
        if signature is not None:
            expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            return "github" if hmac.compare_digest(expected.encode(), signature.encode()) else None
        token = headers.get("x-gitlab-token")
        if token is not None:
            return "gitlab" if hmac.compare_digest(self.secret, token.encode()) else None
        return None
