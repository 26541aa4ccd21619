"""Names, passwords and expected verdicts of the generated benchmark users (shared by both sides).

Passwords are derived from the user index and exist only in memory; nothing here prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from emulators.demo import okta_payload

PASSWORD_TEMPLATE = "Bench-{i}-pw"  # generated load-test users only
MFA_PASSWORD_TEMPLATE = "Mfa-{i}-pw"  # generated load-test users only
# One request in 20: 16 right password, 3 wrong, 1 MFA user (80% / 15% / 5%).
MIX: tuple[str, ...] = ("right",) * 16 + ("wrong",) * 3 + ("mfa",)
_MARK_USER, _MARK_PASSWORD, _MARK_IP = "\x00bench-user\x00", "\x00bench-pw\x00", "\x00bench-ip\x00"


def normal_user(i: int, domain: str) -> str:
    """Username of generated user `i` (as `EmulatedDirectory.with_generated_users` names it)."""
    return f"user{i}@{domain}"


def mfa_user(i: int, domain: str) -> str:
    """Username of MFA user `i`."""
    return f"mfa{i}@{domain}"


def users_needed(requests: int) -> tuple[int, int]:
    """Normal and MFA users a stream of `requests` fresh requests consumes (with slack)."""
    mfa = sum(1 for k in range(len(MIX)) if MIX[k] == "mfa")
    rounds = requests // len(MIX) + 1
    return rounds * (len(MIX) - mfa) + 16, rounds * mfa + 16


def client_ip(n: int) -> str:
    """The end user's address Okta reports for sign-in `n` (one per user, as in a migration).

    The gateway limits failures per client IP; one address for all the load would trip that limit
    after a few dozen wrong passwords and measure refusals instead of verifications.
    """
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


class PayloadEncoder:
    """Hook request bodies built by concatenating pre-encoded pieces (no per-request dict dumps)."""

    def __init__(self) -> None:
        payload = okta_payload(_MARK_USER, _MARK_PASSWORD)
        payload["data"]["context"]["request"]["ipAddress"] = _MARK_IP
        text = json.dumps(payload, separators=(",", ":"))
        pieces = []  # the markers appear in this order in the payload; unpacking fails otherwise
        for mark in (_MARK_IP, _MARK_USER, _MARK_PASSWORD):
            head, text = text.split(json.dumps(mark)[1:-1])
            pieces.append(head.encode())
        self._ip_head, self._user_head, self._password_head = pieces
        self._tail = text.encode()

    def encode(self, username: str, password: str, ip: str) -> bytes:
        """The JSON body for one sign-in."""
        return b"".join(
            (
                self._ip_head,
                ip.encode(),
                self._user_head,
                json.dumps(username)[1:-1].encode(),
                self._password_head,
                json.dumps(password)[1:-1].encode(),
                self._tail,
            )
        )


@dataclass(frozen=True, slots=True)
class Planned:
    """One hook request ready to send: its body and the verdict it must get."""

    body: bytes
    expect_verified: bool


def planned(kind: str, index: int, domain: str, encoder: PayloadEncoder, ip: str) -> Planned:
    """Build request `kind` (right / wrong / mfa) for user `index` of `domain`, from `ip`."""
    if kind == "mfa":
        username, password = mfa_user(index, domain), MFA_PASSWORD_TEMPLATE.format(i=index)
        return Planned(encoder.encode(username, password, ip), True)
    username = normal_user(index, domain)
    if kind == "wrong":
        return Planned(encoder.encode(username, f"Wrong-{index}-pw", ip), False)
    return Planned(encoder.encode(username, PASSWORD_TEMPLATE.format(i=index), ip), True)


class FreshUsers:
    """Every request a user not used before in the run, in the 80/15/5 mix; `limit` caps the count."""

    def __init__(self, domain: str, limit: int | None = None) -> None:
        self.domain = domain
        self.limit = limit
        self.issued = 0
        self._normal = 0
        self._mfa = 0
        self._encoder = PayloadEncoder()

    def next(self, worker: int) -> Planned | None:
        """The next request, or None when `limit` requests were issued."""
        if self.limit is not None and self.issued >= self.limit:
            return None
        kind = MIX[self.issued % len(MIX)]
        ip = client_ip(self.issued)
        self.issued += 1
        if kind == "mfa":
            self._mfa += 1
            return planned(kind, self._mfa - 1, self.domain, self._encoder, ip)
        self._normal += 1
        return planned(kind, self._normal - 1, self.domain, self._encoder, ip)


class HotUsers:
    """A small fixed set of (user, password) pairs, each worker cycling through its own share.

    Workers never share a user, so the requests in flight are always for distinct users, and each
    pair comes back every few round trips (well inside any verdict-cache TTL).
    """

    def __init__(self, domain: str, workers: int, per_worker: int = 2) -> None:
        encoder = PayloadEncoder()
        self.size = workers * per_worker
        self._plans = [
            planned(MIX[k % len(MIX)], k, domain, encoder, client_ip(k)) for k in range(self.size)
        ]
        self._workers = workers
        self._turn = [0] * workers
        self.issued = 0

    def next(self, worker: int) -> Planned | None:
        """The next request of `worker`: its own users, round robin."""
        turn = self._turn[worker]
        self._turn[worker] = turn + 1
        self.issued += 1
        return self._plans[(worker + turn * self._workers) % self.size]
