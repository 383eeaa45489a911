"""Saved plans (`plan --out`, `apply plan.json`): the plan contract plus its basis.

The `basis` is the live state each touched user had when the plan was made.
Before a saved plan is applied the users are read again; if anything differs
the plan is stale and is refused, naming the user and the field, because
applying it would write decisions made against a world that no longer exists.

A saved plan also names the API it was made against (syncd.core.api_url) and
when: applied with another API URL it is refused, since its basis is another
server's accounts; a plan that does not say (saved by an older syncd) is
refused too, to be made again. Its `source` names the desired state it was made
from: applied with other files or at another revision, it is refused unread.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any

from syncd.core.desired import DesiredState, Scope
from syncd.core.fields import (
    PROFILE_FIELDS,
    email_key,
    is_valid_email,
    is_valid_username,
    unstorable,
)
from syncd.core.jsondoc import dumps_document
from syncd.core.live import (
    LiveAccount,
    LiveProfile,
    ShapeError,
    parse_emails,
)
from syncd.core.plan import (
    PLAN_FORMAT_VERSION,
    Action,
    AddEmail,
    DeleteEmail,
    FieldChange,
    Plan,
    UpdateProfile,
)
from syncd.core.problem import Problem
from syncd.core.vocabulary import ActionName, Code
from syncd.engine.fetching import Wanted
from syncd.errors import PlanFileError
from syncd.wholefiles import replacing

#: A saved plan larger than this is not a plan: refuse before parsing it.
MAX_PLAN_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class SavedPlan:
    path: str
    #: The plan as it was made, its findings (warnings, errors) included: what `syncd
    #: show` prints. It is applied by its changes.
    plan: Plan
    source: dict[str, Any]
    basis: dict[str, dict[str, Any]]
    #: The API it was made against (normal form) and when (ISO 8601, UTC); None in a
    #: plan saved by an older syncd, which can be shown and not applied.
    api: str | None = None
    created_at: str | None = None
    #: From `source`: the desired state's files (path: sha256), and the users it planned.
    files: dict[str, str] = field(default_factory=dict)
    scope: Scope = field(default_factory=Scope)

    def check_api(self, api: str) -> None:
        """Refuse to apply this plan to any API but the one it was made against."""
        if self.api is None or self.created_at is None:
            raise PlanFileError(
                f"{self.path} was saved by an older syncd and does not say which API it was "
                "made against: nothing was applied. Make a new plan (syncd plan --out)."
            )
        if self.api != api:
            raise PlanFileError(
                f"{self.path} was made against the API at {self.api}, not {api}: nothing "
                "was applied. Make a new plan against this API."
            )

    def check_source(self, desired: DesiredState) -> None:
        """Refuse this plan unless `desired` is the desired state it was made from: the
        same files, byte for byte, at the same git revision. Their contents decide: the
        same files named `ds/`, `./ds/` or from another directory are the same."""
        then = {os.path.normpath(path): sha256 for path, sha256 in self.files.items()}
        now = {os.path.normpath(source.path): source.sha256 for source in desired.sources}
        revision = self.source.get("revision")
        if sorted(then.values()) != sorted(now.values()):
            # Named as given now where it can be: the plan's paths may be another checkout's.
            new = [path for path, sha256 in now.items() if sha256 not in then.values()]
            gone = [path for path, sha256 in then.items() if sha256 not in now.values()]
            what = f"{new[0]} differs" if new else f"{gone[0]} is gone" if gone else "files differ"
        elif revision != desired.revision:
            what = f"revision {desired.revision}, not {revision}"
        else:
            return
        raise PlanFileError(
            f"{self.path}: the desired state changed since the plan was made ({what}): "
            "nothing was applied. Make a new plan."
        )

    def wanted(self) -> list[Wanted]:
        """The parts of each touched account that the basis recorded, to read them again."""
        return [
            Wanted(
                username,
                profile=self.basis[username].get("profile") is not None,
                emails=self.basis[username].get("emails") is not None,
            )
            for username in self.plan.users_with_changes()
        ]


def basis_of(plan: Plan, live: Mapping[str, LiveAccount | Problem]) -> dict[str, Any]:
    basis: dict[str, Any] = {}
    for username in plan.users_with_changes():
        account = live[username]
        assert isinstance(account, LiveAccount)  # only readable users have changes
        basis[username] = {
            "profile": asdict(account.profile) if account.profile else None,
            "emails": None if account.emails is None else [asdict(e) for e in account.emails],
        }
    return basis


def save_plan(
    path: str,
    plan: Plan,
    live: Mapping[str, LiveAccount | Problem],
    source: dict[str, Any],
    *,
    api: str,
    read_at: float,
) -> None:
    """Write the plan, made against `api` from what was read at `read_at` (Unix time),
    atomically: a reader never sees half a file.

    The plan is private, a link or a FIFO at `path` is refused, and a crash leaves
    the old plan or the whole new one (syncd.wholefiles).
    """
    document = plan.to_json(source)
    document["api_url"] = api
    document["created_at"] = datetime.fromtimestamp(read_at, UTC).isoformat(timespec="seconds")
    document["basis"] = basis_of(plan, live)
    try:
        with replacing(Path(path)) as handle:
            handle.write((dumps_document(document) + "\n").encode())
    except OSError as error:
        reason = error.strerror or error
        raise PlanFileError(f"cannot write the plan to {path}: {reason}") from None


def load_plan(path: str) -> SavedPlan:
    """Read a saved plan, refusing anything that is not exactly what `plan --out` writes."""
    try:
        # Not through a link, and not from a FIFO, which would hang the apply.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PlanFileError(f"{path}: no such file") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise PlanFileError(f"{path} is a symbolic link: refused") from None
        raise PlanFileError(f"{path}: cannot read: {error.strerror}") from None
    try:
        with open(descriptor, encoding="utf-8") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise PlanFileError(f"{path}: not a regular file")
            if info.st_size > MAX_PLAN_BYTES:
                raise PlanFileError(f"{path}: too large to be a saved plan")
            os.set_blocking(handle.fileno(), True)
            document = json.load(handle)
    except json.JSONDecodeError as error:
        raise PlanFileError(
            f"{path}:{error.lineno}:{error.colno}: not JSON: {error.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise PlanFileError(f"{path}: cannot read: {error}") from None
    try:
        return _parse(path, document)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise PlanFileError(f"{path}: not a saved syncd plan: {error}") from None


def _parse(path: str, document: Any) -> SavedPlan:
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object")
    if document.get("format_version") != PLAN_FORMAT_VERSION:
        raise ValueError(f"format_version must be {PLAN_FORMAT_VERSION}")
    if "basis" not in document:
        raise ValueError("no 'basis': only plans saved with `syncd plan --out` can be applied")
    actions = tuple(_action(entry) for entry in document["changes"])
    basis = document["basis"]
    if not isinstance(basis, dict):
        raise ValueError("'basis' must be an object")
    for action in actions:
        _check_basis(action, basis.get(action.user))
    source = document.get("source") or {}
    files = {
        _text(f["path"], "path"): _text(f["sha256"], "sha256") for f in source.get("files", ())
    }
    scope = source.get("scope") or {}
    summary = document.get("summary") or {}
    users = summary.get("users") if isinstance(summary, dict) else None
    plan = Plan(
        actions,
        _findings(document.get("warnings")),
        _findings(document.get("errors")),
        users if isinstance(users, int) else 0,
    )
    api, created_at = document.get("api_url"), document.get("created_at")
    if api is not None:
        api = _text(api, "api_url")
    if created_at is not None:
        created_at = _text(created_at, "created_at")
    names = (tuple(map(str, scope.get(key, ()))) for key in ("users", "exclude", "groups"))
    return SavedPlan(path, plan, dict(source), basis, api, created_at, files, Scope(*names))


def _findings(entries: Any) -> tuple[Problem, ...]:
    """Warnings or errors as `to_json` wrote them, one that struck many users included.

    Only shown, never acted upon: a saved plan is applied by its changes.
    """
    if not isinstance(entries, list):
        return ()
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        code, message = Code(str(entry.get("code"))), str(entry.get("message", ""))
        users = entry.get("users")
        if entry.get("user") is None and isinstance(users, list):
            found += [Problem(str(user), code, message, message, shared=True) for user in users]
        else:
            # A warning about the whole plan names no user (null): not "None".
            found.append(Problem(str(entry.get("user") or ""), code, message))
    return tuple(found)


def _check_basis(action: Action, recorded: Any) -> None:
    """The basis must hold what the staleness check compares for this action.

    Without it a hand-edited plan could skip the check and write blind.
    """
    if not isinstance(recorded, dict):
        raise ValueError(f"no basis recorded for user {action.user!r}")
    if isinstance(action, UpdateProfile):
        _whole_profile(recorded, action.user)
        return
    try:
        emails = parse_emails(recorded.get("emails"))
    except ShapeError as error:
        raise ValueError(f"the basis emails of {action.user!r}: {error}") from None
    try:
        profile: LiveProfile | None = _whole_profile(recorded, action.user)
    except ValueError:
        profile = None  # only a whole profile may say which address is the primary
    _check_allowed(action, LiveAccount(action.user, profile, emails))


def _check_allowed(action: AddEmail | DeleteEmail, then: LiveAccount) -> None:
    """The action must be one that planning against its basis could have made.

    A plan is planned, not written by hand: a hand-edited one that deletes the
    primary, or an address the account did not have, is refused before anything
    is read or sent.
    """
    key = email_key(action.email)
    present = any(email_key(e.email) == key for e in then.emails or ())
    if isinstance(action, AddEmail) and present:
        raise ValueError(f"it adds {action.email} to {action.user!r}, whose basis has it")
    if isinstance(action, DeleteEmail):
        if not present:
            raise ValueError(
                f"it deletes {action.email} from {action.user!r}, whose basis does not have it"
            )
        if then.may_be_primary(action.email):
            raise ValueError(
                f"it deletes {action.email}, which by its basis is (or may be) the primary "
                f"address of {action.user!r}: the primary is never deleted"
            )


def _whole_profile(recorded: dict[str, Any], user: str) -> LiveProfile:
    """The recorded profile; ValueError unless it is a whole one."""
    profile = recorded.get("profile")
    expected = {f.name for f in fields(LiveProfile)}
    if not isinstance(profile, dict) or set(profile) != expected:
        raise ValueError(f"the basis of {user!r} lacks its profile")
    if not all(isinstance(value, str) for value in profile.values()):
        raise ValueError(f"the basis profile of {user!r} holds a non-string")
    return LiveProfile(**profile)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    # What the desired state may not ask for, a plan may not either.
    if (why := unstorable(value)) is not None:
        raise ValueError(f"{what} {why}")
    return value


def _action(entry: Any) -> Action:
    if not isinstance(entry, dict):
        raise ValueError("each change must be an object")
    user = _text(entry["user"], "user")
    if not is_valid_username(user):
        raise ValueError(f"invalid username {user!r}")
    try:
        kind = ActionName(entry["action"])
    except ValueError:
        raise ValueError(f"unknown action {entry['action']!r}") from None
    if kind == ActionName.UPDATE_PROFILE:
        changes = []
        for field, change in dict(entry["fields"]).items():
            if field not in PROFILE_FIELDS:
                raise ValueError(f"unknown profile field {field!r}")
            before = change["before"]
            after = _text(change["after"], f"{field}.after")
            changes.append(FieldChange(field, None if before is None else str(before), after))
        if not changes:
            raise ValueError(f"update_profile for {user!r} changes nothing")
        return UpdateProfile(user, tuple(changes))
    email = _text(entry["email"], "email")
    if not is_valid_email(email):
        raise ValueError(f"invalid email {email!r}")
    return AddEmail(user, email) if kind == ActionName.ADD_EMAIL else DeleteEmail(user, email)


def staleness(saved: SavedPlan, live: Mapping[str, LiveAccount | Problem]) -> list[str]:
    """What changed since the plan was made, as `user: field` lines; empty when nothing did."""
    changed = []
    for username in saved.plan.users_with_changes():
        recorded, now = saved.basis[username], live.get(username)
        if not isinstance(now, LiveAccount):
            reason = now.code if isinstance(now, Problem) else "not read"
            changed.append(f"{username}: cannot be read again ({reason})")
            continue
        profile = recorded.get("profile")
        if profile is not None and now.profile is not None:
            for field, before in profile.items():
                current = getattr(now.profile, field, None)
                if current != before:
                    was, now_is = _shown(before), _shown(current)
                    changed.append(f"{username}: {field} was {was}, is now {now_is}")
        emails = recorded.get("emails")
        if emails is not None and now.emails is not None:
            then_keys = {email_key(e["email"]) for e in emails}
            now_keys = {email_key(e.email) for e in now.emails}
            if then_keys != now_keys:
                was, now_are = _shown(sorted(then_keys)), _shown(sorted(now_keys))
                changed.append(f"{username}: emails were {was}, are {now_are}")
    return changed


def primary_deletions(saved: SavedPlan, live: Mapping[str, LiveAccount | Problem]) -> list[str]:
    """The plan's deletions of an address that the fresh read says is, or may be, the
    primary (LiveAccount.may_be_primary), as `user: address` lines.

    Its basis may say otherwise only if the plan was edited: the fresh read decides.
    """
    return [
        f"{action.user}: {action.email} is the primary address"
        for action in saved.plan.changes
        if isinstance(action, DeleteEmail)
        and isinstance(now := live.get(action.user), LiveAccount)
        and now.may_be_primary(action.email)
    ]


def first_difference(saved: Sequence[Action], planned: Sequence[Action]) -> list[str]:
    """The first change in which a saved plan and the plan made now differ, as lines; empty
    when they have the same changes in the same order."""
    for then, now in zip_longest(saved, planned):
        if then != now:
            return [
                f"{what}: {_shown(action.to_json()) if action else 'nothing'}"
                for what, action in (("in the plan", then), ("planned now", now))
            ]
    return []


def _shown(value: Any) -> str:
    """A value in a message for people: JSON, not a Python repr."""
    return json.dumps(value, ensure_ascii=False)
