"""Writes the server accepted and did not keep: what was sent, and what it keeps instead.

A server may store something else than it was sent: trim a name, append "/"
to a URL, lower-case an address, or ignore a field. Compared with the desired
state, such a value differs for ever, and every run would send the same
write again and report success. So after every successful write the answer
is compared with what was sent (`after_update`, `after_add`); a difference is
a NotKept, which the plan turns into a `does_not_converge` error instead of
the same write, as long as both the desired value and the live value are the
ones it recorded. A new desired value is sent as usual.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from syncd.core.fields import email_key, gravatar_matches
from syncd.core.live import LiveEmail, LiveProfile

#: The `field` of a NotKept about an added address.
EMAILS = "emails"


@dataclass(frozen=True, slots=True)
class NotKept:
    """What was sent to `field` of `user`, and what the server kept of it."""

    user: str
    field: str  # a profile field, or EMAILS
    sent: str
    #: The value the server answered with (for gravatar_email: its gravatar_url).
    kept: str

    @property
    def key(self) -> tuple[str, str, str]:
        """One record per user, field and (for addresses) the address sent."""
        return self.user, self.field, email_key(self.sent) if self.field == EMAILS else ""

    def message(self) -> str:
        """What happened, and what to write in the desired state to converge."""
        sent = json.dumps(self.sent, ensure_ascii=False)
        kept = json.dumps(self.kept, ensure_ascii=False)
        if self.field == EMAILS:
            return (
                f"emails: added {sent}, the server keeps {kept}; to converge, list {kept} "
                f"instead of {sent} in the desired state"
            )
        if self.field == "gravatar_email":
            return (
                f"gravatar_email: sent {sent}, the server's gravatar_url {kept} is not its "
                "Gravatar; remove gravatar_email from the desired state to stop managing it"
            )
        return (
            f"{self.field}: sent {sent}, the server keeps {kept}; to converge, write "
            f"{self.field}: {kept} in the desired state (or leave {self.field} out)"
        )

    def matches_profile(self, field: str, wanted: str, profile: LiveProfile) -> bool:
        """Whether this is the write the plan would send again for `field`, to no effect."""
        if self.field != field or self.sent != wanted:
            return False
        current = profile.gravatar_url if field == "gravatar_email" else profile.value(field)
        return current == self.kept


def after_update(user: str, sent: dict[str, str], answered: LiveProfile) -> list[NotKept]:
    """The fields of a PATCH body that the answer does not hold as they were sent."""
    missed = []
    for field, value in sent.items():
        if field == "gravatar_email":
            if not gravatar_matches(value, answered.gravatar_url):
                missed.append(NotKept(user, field, value, answered.gravatar_url))
        elif answered.value(field) != value:
            missed.append(NotKept(user, field, value, answered.value(field)))
    return missed


def after_add(user: str, sent: str, answered: LiveEmail) -> NotKept | None:
    """The added address, if the server keeps another (addresses compare case-insensitively)."""
    if email_key(answered.email) == email_key(sent):
        return None
    return NotKept(user, EMAILS, sent, answered.email)
