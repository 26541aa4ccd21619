"""What a replica remembers of the shared windows: bounded, expiring, never evicted for others."""

from __future__ import annotations

from gateway.reservations import ReservationMemory
from gateway.state import Window


class _Clock:
    """A clock the test advances."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _user(name: str) -> Window:
    return Window("username", f"fail-user:{name}", 5, 900)


def test_remembered_reservations_expire_with_their_window() -> None:
    clock = _Clock()
    memory = ReservationMemory(capacity=10, clock=clock)
    memory.admitted([_user("victim")], [5], "t1", server_ms=1)
    memory.refused([_user("other")], [5])
    assert len(memory) == 2
    clock.now += 899
    assert memory.offline_full([_user("victim")], replicas=2) is not None
    clock.now += 2
    assert len(memory) == 0
    assert list(memory.replays()) == []
    assert memory.offline_full([_user("victim")], replicas=2) is None  # a fresh window


def test_a_full_memory_keeps_the_users_it_holds_and_refuses_new_ones_while_redis_is_away() -> None:
    memory = ReservationMemory(capacity=2, clock=_Clock())
    memory.admitted([_user("victim")], [5], "t1", server_ms=1)
    memory.admitted([_user("attacker-0")], [1], "t2", server_ms=1)
    for i in range(1, 50):  # other users' traffic while Redis answers: not remembered
        memory.admitted([_user(f"attacker-{i}")], [1], f"a{i}", server_ms=1)
    assert len(memory) == 2
    assert memory.offline_full([_user("victim")], replicas=2) == _user("victim")
    assert [r.token for r in memory.replays() if r.key == "fail-user:victim"] == ["t1"]
    assert memory.offline_full([_user("newcomer")], replicas=2) is None
    assert memory.reserve_offline([_user("newcomer")], "t3") is False  # the caller fails closed
    assert len(memory) == 2
