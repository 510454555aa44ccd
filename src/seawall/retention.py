"""Which items of a series a retention policy keeps: restic's ``forget --keep-*`` rules.

One algorithm for every caller: the protect flow's ``ApplyRetention`` (through
``seawall.model.select_kept`` with a policy's :class:`~seawall.model.Retention`) and
``seawall repo forget`` (with :class:`KeepRules`). It is pure: ids and times in, ids out.

The rules, each counted per group of items and ORed together:

- ``last`` N keeps the N newest items;
- ``hourly``/``daily``/``weekly``/``monthly`` N keep the newest item of each of the
  last N hours / days / ISO weeks (Monday to Sunday) / months *that hold an item*, on
  natural UTC boundaries, not relative to now.

Items are ordered newest first by time, then by id (so ties are decided the same way
on every run). A policy with no rule keeps everything: refusing to forget with no rule
is the caller's decision. Unlike restic 0.17+, an unfilled bucket rule does not keep the
oldest item in addition (docs/design/repository-format.md §10 and the policy tests fix
the earlier rule).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Protocol

from seawall.errors import InvalidInput


class Rules(Protocol):
    """The keep counts a policy gives (``seawall.model.Retention`` is one)."""

    @property
    def last(self) -> int: ...
    @property
    def hourly(self) -> int: ...
    @property
    def daily(self) -> int: ...
    @property
    def weekly(self) -> int: ...
    @property
    def monthly(self) -> int: ...


@dataclass(frozen=True)
class KeepRules:
    """Keep counts with no other constraint (``repo forget``'s ``--keep-*`` options)."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise InvalidInput("keep counts cannot be negative")

    def __bool__(self) -> bool:
        """False when no rule is given (such a policy would keep everything)."""
        return any(getattr(self, f.name) for f in fields(self))


#: The calendar periods in the order restic applies them, with the bucket of a UTC time.
PERIODS: tuple[tuple[str, Callable[[datetime], tuple[int, ...]]], ...] = (
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: tuple(t.isocalendar())[:2]),
    ("monthly", lambda t: (t.year, t.month)),
)


def select_kept(created: Mapping[str, float], rules: Rules) -> set[str]:
    """The ids a policy keeps, given each item's creation time (UTC seconds).

    Times are compared as given (sub-microsecond differences still order items); the
    calendar buckets come from the UTC date and time.
    """
    counts = {"last": rules.last, **{name: getattr(rules, name) for name, _ in PERIODS}}
    if not any(counts.values()):
        return set(created)
    newest_first = sorted(created.items(), key=lambda kv: (-kv[1], kv[0]))
    keep = {cid for cid, _ in newest_first[: counts["last"]]}
    when = {cid: datetime.fromtimestamp(ts, UTC) for cid, ts in newest_first}
    for name, bucket_of in PERIODS:
        want = counts[name]
        seen: set[tuple[int, ...]] = set()
        for cid, _ in newest_first:
            if len(seen) >= want:
                break
            b = bucket_of(when[cid])
            if b not in seen:
                seen.add(b)
                keep.add(cid)
    return keep
