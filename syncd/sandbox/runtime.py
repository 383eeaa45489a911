"""A running sandbox: its store, staff token, faults and request counts, and resets.

`SandboxConfig` is what a sandbox starts from (state, staff token, faults,
optional SQLite file). `Sandbox` holds what changes while it runs and knows
how to reset: to the state it started with, or to a new configuration given in
the body of `POST /_sandbox/reset`, as if the server had been started with it.
"""

from __future__ import annotations

import dataclasses
import hmac
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from syncd.errors import SyncdError
from syncd.sandbox import malformed, normalize, seed
from syncd.sandbox.database import SandboxDatabase
from syncd.sandbox.faults import FaultConfig, Faults
from syncd.sandbox.store import ADMIN, Principal, Snapshot, Store

_RESET_KEYS: Final = frozenset(
    {"seed", "generate", "admin_token", "faults", "malformed", "normalize"}
)
#: Status recorded for a request whose connection was dropped (no answer).
DROPPED: Final = 0
#: Status recorded for a request whose client went away before sending its whole body
#: (nginx's 499, "client closed request"): no answer reached anyone, no 400.
ABANDONED: Final = 499


@dataclass(frozen=True)
class SandboxConfig:
    snapshot: Snapshot = field(default_factory=Snapshot)
    admin_token: str | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: SQLite file: loaded instead of `snapshot` when it already holds a state.
    db_path: Path | None = None
    #: Test mode: username → kind of malformed answer its GETs get (sandbox.malformed).
    malformed: Mapping[str, str] = field(default_factory=dict)
    #: Test mode: field → what the server does to a value it keeps (sandbox.normalize).
    normalize: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.admin_token is not None:
            if not self.admin_token or any(c.isspace() for c in self.admin_token):
                raise SyncdError("admin token: must be non-empty, without spaces")
            if any(g.token == self.admin_token for g in self.snapshot.grants):
                raise SyncdError("admin token: also granted to a user in the seed")


#: Seconds of the per-second timeline kept: an hour of a long benchmark.
TIMELINE_SECONDS: Final = 3600


class Stats:
    """Counts of API requests by method, route and status (not /_sandbox/ ones), and by
    second of the wall clock, so that a test can see how a client spreads its requests
    and how many it keeps in flight; and, since a mark, the requests answered and the
    time from the first one's arrival to the last one's answer: a client's rate over
    its requests alone, measured the same way for any client (its start-up not in it)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._with_cookie = 0
        self._per_second: dict[int, Counter[str]] = {}
        #: API requests being answered now, and the most at once in each second.
        self._in_flight = 0
        self._peak_in_flight: dict[int, int] = {}
        self.mark()

    def mark(self) -> None:
        """Start the span afresh (mark when no request is in flight: one answered after
        the mark is counted in it)."""
        self._answered_since_mark = 0
        self._first_arrived: float | None = None
        self._last_answered: float | None = None

    def entered(self) -> None:
        """An API request has arrived; `record` says when it is over."""
        self._in_flight += 1
        if self._first_arrived is None:
            self._first_arrived = time.monotonic()
        second = int(time.time())
        peaks = self._peak_in_flight
        if peaks.get(second, 0) < self._in_flight:
            if second not in peaks and len(peaks) >= TIMELINE_SECONDS:
                del peaks[next(iter(peaks))]
            peaks[second] = self._in_flight

    def record(self, method: str, route: str, status: int, *, with_cookie: bool = False) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        self._answered_since_mark += 1
        self._last_answered = time.monotonic()
        self._counts[method, route, status] += 1
        self._with_cookie += with_cookie
        second = int(time.time())
        if second not in self._per_second:
            if len(self._per_second) >= TIMELINE_SECONDS:
                del self._per_second[next(iter(self._per_second))]
            self._per_second[second] = Counter()
        self._per_second[second][method] += 1

    def as_json(self) -> dict[str, object]:
        by_method: Counter[str] = Counter()
        for (method, _, _), count in self._counts.items():
            by_method[method] += count
        return {
            "total": sum(self._counts.values()),
            "by_method": dict(sorted(by_method.items())),
            "with_cookie": self._with_cookie,
            # [unix second, method, requests]: only the seconds that had any.
            "per_second": [
                [second, method, count]
                for second, methods in self._per_second.items()
                for method, count in sorted(methods.items())
            ],
            # [unix second, the most API requests in the server at once in it]: how
            # many a client kept in flight, seen from the server.
            "in_flight": [[second, peak] for second, peak in self._peak_in_flight.items()],
            "since_mark": {"requests": self._answered_since_mark, "seconds": self._span()},
            "requests": [
                {"method": method, "path": route, "status": status, "count": count}
                for (method, route, status), count in sorted(
                    self._counts.items(), key=lambda item: (item[0][1], item[0][0], item[0][2])
                )
            ],
        }

    def _span(self) -> float:
        if self._first_arrived is None or self._last_answered is None:
            return 0.0
        return max(0.0, self._last_answered - self._first_arrived)


class Sandbox:
    """The mutable state of one sandbox server."""

    def __init__(self, config: SandboxConfig) -> None:
        self.database = SandboxDatabase(config.db_path) if config.db_path else None
        stored = self.database.load() if self.database else None
        #: True when the state came from the SQLite file rather than the config.
        self.loaded_from_db = stored is not None
        if stored is not None:
            config = dataclasses.replace(config, snapshot=stored)
        self.initial = config
        self.stats = Stats()
        self.config = config
        self.faults = Faults(config.faults)
        self.store = Store(config.snapshot, self.database)
        self.store.normalize = config.normalize
        if self.database is not None and not self.loaded_from_db:
            self.database.replace(config.snapshot)

    def close(self) -> None:
        if self.database is not None:
            self.database.close()

    def principal_for_token(self, token: str) -> Principal | None:
        admin = self.config.admin_token
        if admin is not None and hmac.compare_digest(admin.encode(), token.encode()):
            return ADMIN
        return self.store.principal_for_token(token)

    def set_faults(self, faults: FaultConfig) -> None:
        """New faults from now on; the accounts and counts stay as they are."""
        self.config = dataclasses.replace(self.config, faults=faults)
        self.faults = Faults(faults)

    def reset(self, config: SandboxConfig | None = None) -> None:
        """Zero the counts and start over from `config`, or from the initial config."""
        config = config or self.initial
        self.config = config
        self.stats = Stats()
        self.faults = Faults(config.faults)
        self.store.replace(config.snapshot)
        self.store.normalize = config.normalize


def config_from_reset(body: object, db_path: Path | None) -> SandboxConfig:
    """The configuration a reset body asks for; ValueError or SyncdError says why not.

    Keys left out take the defaults of a server started without the matching
    option: no users, no staff token, no faults.
    """
    if not isinstance(body, Mapping):
        raise ValueError("expected a JSON object")
    unknown = sorted(str(key) for key in body if key not in _RESET_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0][:100]!r}")
    generate = body.get("generate", 0)
    if isinstance(generate, bool) or not isinstance(generate, int):
        raise ValueError("generate: must be an integer")
    admin_token = body.get("admin_token")
    if admin_token is not None and not isinstance(admin_token, str):
        raise ValueError("admin_token: must be a string")
    snapshot = seed.generate(generate)
    if body.get("seed") is not None:
        seeded = seed.snapshot_from_mapping(body["seed"], "seed", generated=generate)
        snapshot = seed.combine(snapshot, seeded)
    return SandboxConfig(
        snapshot,
        admin_token,
        FaultConfig.from_mapping(body.get("faults")),
        db_path,
        malformed.check_kinds(body.get("malformed")),
        normalize.check_rules(body.get("normalize")),
    )
