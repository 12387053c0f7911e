"""Placement decisions (broker_service/control/placement.py)."""

from __future__ import annotations

from broker_service.control.placement import LeastLoaded, owner

KEYS = [f"group-{i}" for i in range(6000)]


def moved(before: list[int], after: list[int]) -> float:
    return sum(owner(k, before) != owner(k, after) for k in KEYS) / len(KEYS)


def test_every_broker_gives_the_same_answer_whatever_the_order() -> None:
    assert all(owner(k, [1, 2, 3]) == owner(k, [3, 1, 2]) for k in KEYS[:500])


def test_losing_a_broker_moves_only_its_keys() -> None:
    lost = [k for k in KEYS if owner(k, [1, 2, 3]) == 3]
    assert 0.30 < len(lost) / len(KEYS) < 0.37  # about a third each
    assert moved([1, 2, 3], [1, 2]) == len(lost) / len(KEYS)
    # and they spread over the survivors
    to_1 = sum(owner(k, [1, 2]) == 1 for k in lost) / len(lost)
    assert 0.45 < to_1 < 0.55


def test_a_new_broker_takes_about_one_nth_and_only_from_the_others() -> None:
    fraction = moved([1, 2, 3], [1, 2, 3, 4])
    assert 0.22 < fraction < 0.28, fraction
    assert all(owner(k, [1, 2, 3, 4]) in (owner(k, [1, 2, 3]), 4) for k in KEYS)


def test_least_loaded_counts_as_it_assigns() -> None:
    pick = LeastLoaded({1: 3, 2: 0, 3: 1})
    assert [pick.pick() for _ in range(6)] == [2, 2, 3, 2, 3, 1]
