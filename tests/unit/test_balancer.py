"""Balancer plans, table-driven: within the band, skew, new empty brokers, tiny moves,
the move cap, idle clusters, partitions of dead brokers."""

from __future__ import annotations

from broker_service.control.balancer import BalancerPolicy, plan_moves

MiB = 1 << 20
POLICY = BalancerPolicy(band=0.10, min_mean_bytes_per_s=1 * MiB, min_move_fraction=0.05,
                        max_moves=10)  # fmt: skip


def _apply(leaders: dict[tuple[str, int], int], plan_moves_: list) -> dict[tuple[str, int], int]:
    out = dict(leaders)
    for m in plan_moves_:
        assert out[(m.topic, m.partition)] == m.source
        out[(m.topic, m.partition)] = m.target
    return out


def _loads(leaders: dict[tuple[str, int], int], load: dict[tuple[str, int], float],
           brokers: list[int]) -> dict[int, float]:  # fmt: skip
    out = {b: 0.0 for b in brokers}
    for tp, b in leaders.items():
        out[b] += load.get(tp, 0.0)
    return out


def test_all_on_one_broker_spreads_within_the_band() -> None:
    leaders = {("t", p): 1 for p in range(6)}
    load = {("t", p): 3.0 * MiB for p in range(6)}
    plan = plan_moves(leaders, load, [1, 2, 3], POLICY)
    assert plan.mode == "load" and len(plan.moves) == 4
    after = _loads(_apply(leaders, plan.moves), load, [1, 2, 3])
    assert after == {1: 6 * MiB, 2: 6 * MiB, 3: 6 * MiB}
    assert plan.after == after


def test_balanced_cluster_moves_nothing() -> None:
    leaders = {("t", 0): 1, ("t", 1): 2, ("t", 2): 3}
    load = {("t", 0): 10.0 * MiB, ("t", 1): 10.5 * MiB, ("t", 2): 9.6 * MiB}
    plan = plan_moves(leaders, load, [1, 2, 3], POLICY)
    assert plan.moves == [] and "within the band" in plan.reason


def test_a_new_empty_broker_is_filled() -> None:
    leaders = {("t", p): 1 + p % 2 for p in range(8)}  # brokers 1 and 2 share 8 partitions
    load = {("t", p): 2.0 * MiB for p in range(8)}
    plan = plan_moves(leaders, load, [1, 2, 3], POLICY)
    after = _loads(_apply(leaders, plan.moves), load, [1, 2, 3])
    mean = 16 * MiB / 3
    assert all(abs(v - mean) <= mean * 0.25 for v in after.values()), after  # 6/6/4 MiB
    assert after[3] > 0


def test_one_giant_partition_is_left_where_it_is() -> None:
    """Moving the only hot partition would just move the hot spot: no move helps."""
    leaders = {("hot", 0): 1, ("t", 1): 2, ("t", 2): 3}
    load = {("hot", 0): 30.0 * MiB, ("t", 1): 1.0 * MiB, ("t", 2): 1.0 * MiB}
    plan = plan_moves(leaders, load, [1, 2, 3], POLICY)
    assert plan.moves == []


def test_tiny_partitions_are_not_worth_a_move() -> None:
    leaders = {("t", p): 1 for p in range(50)}
    leaders[("big", 0)] = 2
    load = {("t", p): 0.01 * MiB for p in range(50)}  # each under 5 % of the mean
    load[("big", 0)] = 10.0 * MiB
    plan = plan_moves(leaders, load, [1, 2], POLICY)
    assert plan.moves == []


def test_the_move_cap_holds() -> None:
    leaders = {("t", p): 1 for p in range(12)}
    load = {("t", p): 2.0 * MiB for p in range(12)}
    plan = plan_moves(leaders, load, [1, 2, 3, 4], BalancerPolicy(max_moves=3))
    assert len(plan.moves) == 3 and "cap" in plan.reason


def test_idle_cluster_spreads_partition_counts_instead() -> None:
    leaders = {("t", p): 1 for p in range(7)}
    plan = plan_moves(leaders, {}, [1, 2, 3], POLICY)
    assert plan.mode == "count"
    counts = {b: 0 for b in (1, 2, 3)}
    for b in _apply(leaders, plan.moves).values():
        counts[b] += 1
    assert sorted(counts.values()) == [2, 2, 3]


def test_partitions_of_brokers_not_live_are_left_to_recovery() -> None:
    leaders = {("t", 0): 9, ("t", 1): 9, ("t", 2): 1, ("t", 3): 1}
    load = {tp: 4.0 * MiB for tp in leaders}
    plan = plan_moves(leaders, load, [1, 2], POLICY)
    assert all(m.source != 9 for m in plan.moves)
    assert [(m.source, m.target) for m in plan.moves] == [(1, 2)]


def test_no_live_brokers_no_plan() -> None:
    assert plan_moves({("t", 0): 1}, {}, [], POLICY).moves == []
