"""Reconcile on push: POST /hooks/git from GitHub or GitLab starts a cycle now.

A hook is accepted only when it proves it knows the secret
(SYNCD_WEBHOOK_SECRET_FILE): GitHub signs the body, `X-Hub-Signature-256:
sha256=<hex HMAC-SHA256 of the body>`; GitLab sends the secret itself,
`X-Gitlab-Token`. Both are compared in constant time. What the hook says is
not trusted beyond that: a valid one only asks for a cycle, which fetches
the source itself (coalesced by the daemon: see Daemon.run_now). An invalid
or missing proof is 401 and starts nothing; a body over MAX_BODY_BYTES is 413
unread. The secret never reaches a log, a metric or an answer.

A valid hook is still answered 202 and ignored when it is a delivery already
seen (its `X-GitHub-Delivery` or `X-Gitlab-Event-UUID`: one signed body sent
20 times started 20 cycles), or when a git desired state is read and the push
is to another ref than the one the source follows (its `ref`: `refs/heads/<branch>`,
or `refs/tags/<tag>` for a source that follows a tag).

A hook is accepted where it arrives, and its cycle runs on the active instance:
a standby passes it on (syncd.service.hook_relay). When nothing can start a
cycle (the instance is starting, or cannot reach the state database to tell
the active one), the hook is answered 503 with Retry-After and its delivery is
not remembered, so that the sender's retry is served.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.secretfiles import read_secret_file

PATH = "/hooks/git"
MAX_BODY_BYTES = 1024 * 1024
#: The results of a hook, each a label of syncd_webhook_requests_total from the start.
RESULTS = (
    "accepted",
    "duplicate",
    "ignored",
    "unauthorized",
    "too_large",
    "bad_request",
    "unavailable",
)
#: A hook's answer, by where its cycle runs: here, or on the active instance.
STARTS_HERE = "accepted: a cycle starts soon"
PASSED_ON = "accepted: the active instance was told, and starts a cycle soon"
#: Seconds after which a hook answered 503 may be sent again.
RETRY_AFTER = 5
#: Delivery ids remembered: far more than a forge retries, a bounded memory all the same.
REMEMBERED_DELIVERIES = 1024


@dataclass
class Webhook:
    """The secret, and what to do with a valid hook (set once the daemon runs)."""

    secret: bytes = field(repr=False)
    #: Asks for a cycle now, with who asks; returns the hook's answer, or raises a
    #: StateError when the cycle cannot be asked for. Called from the listener's thread.
    start_cycle: Callable[[str], str] | None = None
    #: The ref the git desired state follows (`refs/heads/main`; "HEAD": the default
    #: branch); None: a file, and any push asks for a cycle.
    ref: str | None = None
    _deliveries: OrderedDict[str, None] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_file(cls, path: Path) -> Webhook:
        secret = read_secret_file(path, what="webhook secret file", refused_then="")
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

    def first_delivery(self, headers: Mapping[str, str]) -> bool:
        """Whether a valid hook's delivery (its id, if it has one) is new; remembers it.

        `headers`: their names lower-cased. Only hooks that proved the secret are
        remembered, so that nobody else can make a delivery look seen.
        """
        delivery = headers.get("x-github-delivery") or headers.get("x-gitlab-event-uuid")
        if not delivery:
            return True
        with self._lock:  # the listener serves connections in threads
            if delivery in self._deliveries:
                return False
            self._deliveries[delivery] = None
            if len(self._deliveries) > REMEMBERED_DELIVERIES:
                self._deliveries.popitem(last=False)
        return True

    def forget_delivery(self, headers: Mapping[str, str]) -> None:
        """A delivery that started nothing after all (answered 503): its retry is new."""
        delivery = headers.get("x-github-delivery") or headers.get("x-gitlab-event-uuid")
        with self._lock:
            self._deliveries.pop(delivery or "", None)

    def concerns(self, body: bytes) -> bool:
        """Whether a valid hook's push is to the ref that is read (any, for a file).

        For the remote's default branch ("HEAD"), the push event names it
        (GitHub's `repository`, GitLab's `project`: `default_branch`); an event
        that does not is taken to concern it: a cycle too many is the safe side.
        """
        if self.ref is None:
            return True
        try:
            event: Any = json.loads(body)
        except ValueError:
            return False
        if not isinstance(event, dict) or not isinstance(event.get("ref"), str):
            return False  # not a push (GitHub's ping, GitLab's other events)
        wanted: Any = self.ref
        if wanted == "HEAD":
            holders = [event.get("repository"), event.get("project")]
            defaults = [h.get("default_branch") for h in holders if isinstance(h, dict)]
            wanted = next((d for d in defaults if isinstance(d, str) and d), None)
            if wanted is None:
                return True
            wanted = f"refs/heads/{wanted}"
        return bool(event["ref"] == wanted)
