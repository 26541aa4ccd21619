"""What one replica remembers of the shared attempt windows, so a Redis outage or restart forgets nothing.

Per window key: the highest count Redis returned to this replica (still inside its window) and
this replica's own reservations (the same token and score it wrote to the Redis sorted set).
While Redis is away the replica allows `(limit - seen) // replicas` more of its own; when Redis
comes back, empty or not, it writes its reservations back (the same members, so re-adding is
idempotent). Keys are HMACs already; nothing here sees a password or a clear username.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.state import Window


@dataclass(slots=True)
class Reservation:
    """One attempt this replica reserved: the sorted-set member and its score (Redis clock, ms)."""

    token: str
    score_ms: int
    until: float  # local clock: when it leaves its window
    # Inside the count `seen` holds. A reservation made while Redis was away is not until Redis
    # answers a count again: written back, it still counts against the offline share, so a
    # second outage in the same window cannot hand out the same share twice.
    counted: bool


@dataclass(slots=True)
class _Remembered:
    """One window key's state as this replica knows it."""

    span_ms: int
    seen: int = 0  # highest count Redis returned, all of whose members leave by `seen_until`
    seen_until: float = 0.0
    own: list[Reservation] = field(default_factory=list)

    def expire(self, now: float) -> None:
        if self.seen_until <= now:
            self.seen = 0
        self.own = [r for r in self.own if r.until > now]

    @property
    def empty(self) -> bool:
        return self.seen == 0 and not self.own


@dataclass(frozen=True, slots=True)
class Replay:
    """A reservation to write back to Redis: ZADD `key` `score_ms` `token`, expiring after `span_ms`."""

    key: str
    token: str
    score_ms: int
    span_ms: int


class ReservationMemory:
    """Bounded per-replica memory of window counts and own reservations.

    At most `capacity` keys; a live key is never evicted for another's traffic (old entries
    expire with their window). Each key holds at most `limit` reservations, since Redis and the
    offline share both refuse beyond it.
    """

    def __init__(self, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._clock = clock
        self._keys: dict[str, _Remembered] = {}
        self._offset_ms = 0  # Redis clock minus ours, to score offline reservations alike

    def __len__(self) -> int:
        self._expire_all(self._clock())
        return len(self._keys)

    def _expire_all(self, now: float) -> None:
        for entry in self._keys.values():
            entry.expire(now)
        for key in [k for k, v in self._keys.items() if v.empty]:
            del self._keys[key]

    def _entry(self, window: Window, now: float) -> _Remembered | None:
        """The live entry for a window, or a new one if there is room (None when full)."""
        entry = self._keys.get(window.key)
        if entry is not None:
            entry.expire(now)
            return entry
        if len(self._keys) >= self.capacity:
            self._expire_all(now)
            if len(self._keys) >= self.capacity:
                return None
        entry = _Remembered(span_ms=max(1, int(window.seconds * 1000)))
        self._keys[window.key] = entry
        return entry

    def _see(self, entry: _Remembered, window: Window, count: int, now: float) -> None:
        # Keep the highest count still inside its window: a lower later answer may come from a
        # set another replica has not rebuilt yet.
        if count >= entry.seen:
            entry.seen, entry.seen_until = count, now + window.seconds
            # Redis answers only after this replica wrote its reservations back, so this
            # count includes every one of them.
            for reservation in entry.own:
                reservation.counted = True

    def admitted(
        self, windows: Sequence[Window], counts: Sequence[int], token: str, server_ms: int
    ) -> None:
        """Redis reserved `token` in every window; `counts` include it."""
        now = self._clock()
        self._offset_ms = server_ms - int(now * 1000)
        for window, count in zip(windows, counts, strict=True):
            entry = self._entry(window, now)
            if entry is None:  # full: Redis still holds it; only an outage would forget it
                continue
            self._see(entry, window, count, now)
            entry.own.append(Reservation(token, server_ms, now + window.seconds, counted=True))

    def refused(self, windows: Sequence[Window], counts: Sequence[int]) -> None:
        """Redis refused; `counts` are what it holds in the first windows (the full one last)."""
        now = self._clock()
        for window, count in zip(windows, counts, strict=False):
            entry = self._keys.get(window.key)
            if entry is not None:
                entry.expire(now)
                self._see(entry, window, count, now)
            elif count >= window.limit:
                entry = self._entry(window, now)
                if entry is not None:
                    self._see(entry, window, count, now)

    def offline_full(self, windows: Sequence[Window], replicas: int) -> Window | None:
        """The first window whose offline share is used up: `(limit - seen) // replicas`.

        This replica's reservations that Redis has not counted yet use up its share; those
        behind `seen` (its own included) are in `seen` already.
        """
        now = self._clock()
        for window in windows:
            entry = self._keys.get(window.key)
            seen = uncounted = 0
            if entry is not None:
                entry.expire(now)
                seen = entry.seen
                uncounted = sum(1 for r in entry.own if not r.counted)
            if uncounted >= max(0, window.limit - seen) // replicas:
                return window
        return None

    def reserve_offline(self, windows: Sequence[Window], token: str) -> bool:
        """Remember a reservation made while Redis is away; False (nothing kept) when full."""
        now = self._clock()
        entries: list[_Remembered] = []
        for window in windows:
            entry = self._entry(window, now)
            if entry is None:
                for done, kept in zip(windows, entries, strict=False):
                    self._drop_if_empty(done.key, kept)
                return False
            entries.append(entry)
        score = int(now * 1000) + self._offset_ms
        for window, entry in zip(windows, entries, strict=True):
            entry.own.append(Reservation(token, score, now + window.seconds, counted=False))
        return True

    def _drop_if_empty(self, key: str, entry: _Remembered) -> None:
        if entry.empty:
            del self._keys[key]

    def release(self, keys: Sequence[str], token: str) -> None:
        """Forget a reservation that provably never left (and the count it added)."""
        for key in keys:
            entry = self._keys.get(key)
            if entry is None:
                continue
            gone = [r for r in entry.own if r.token == token]
            if any(r.counted for r in gone) and entry.seen > 0:
                entry.seen -= 1  # Redis counted it in `seen`; the ZREM takes it out there too
            entry.own = [r for r in entry.own if r.token != token]
            self._drop_if_empty(key, entry)

    def replays(self) -> Iterator[Replay]:
        """Own reservations still inside their window, to write back to Redis."""
        self._expire_all(self._clock())
        for key, entry in self._keys.items():
            for r in entry.own:
                yield Replay(key, r.token, r.score_ms, entry.span_ms)
