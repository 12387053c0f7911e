"""Server-side assignors for KIP-848 groups: ``uniform`` (balanced, sticky) and ``range``.

Input: member -> subscribed topics, topic -> partition count, and the current target (for
stickiness). Output: member -> {topic: set of partitions}. Pure functions.
"""

from __future__ import annotations

Assignment = dict[str, dict[str, set[int]]]


def range_assign(subscriptions: dict[str, set[str]], partitions: dict[str, int]) -> Assignment:
    out: Assignment = {m: {} for m in subscriptions}
    for topic in sorted(partitions):
        members = sorted(m for m, subs in subscriptions.items() if topic in subs)
        if not members:
            continue
        n = partitions[topic]
        per, extra = divmod(n, len(members))
        start = 0
        for i, m in enumerate(members):
            count = per + (1 if i < extra else 0)
            if count:
                out[m][topic] = set(range(start, start + count))
            start += count
    return out


def uniform_assign(
    subscriptions: dict[str, set[str]],
    partitions: dict[str, int],
    current: Assignment,
) -> Assignment:
    """Spread every subscribed partition evenly, keeping partitions where they already are."""
    out: Assignment = {m: {} for m in subscriptions}
    load = dict.fromkeys(subscriptions, 0)
    taken: set[tuple[str, int]] = set()
    all_parts = [
        (t, p)
        for t in sorted(partitions)
        for p in range(partitions[t])
        if any(t in s for s in subscriptions.values())
    ]
    eligible = {
        tp: [m for m in sorted(subscriptions) if tp[0] in subscriptions[m]] for tp in all_parts
    }
    quota = -(-len(all_parts) // max(len(subscriptions), 1))  # ceil: nobody holds more
    for m in sorted(subscriptions):  # stickiness: keep what each member had, up to quota
        for topic, parts in sorted(current.get(m, {}).items()):
            for p in sorted(parts):
                tp = (topic, p)
                if tp in eligible and m in eligible[tp] and tp not in taken and load[m] < quota:
                    out[m].setdefault(topic, set()).add(p)
                    load[m] += 1
                    taken.add(tp)
    for tp in all_parts:
        if tp in taken:
            continue
        m = min(eligible[tp], key=lambda x: (load[x], x))
        out[m].setdefault(tp[0], set()).add(tp[1])
        load[m] += 1
    _rebalance_surplus(out, load, eligible)
    return out


def _rebalance_surplus(
    out: Assignment, load: dict[str, int], eligible: dict[tuple[str, int], list[str]]
) -> None:
    """Move partitions from the most to the least loaded member until loads differ by <= 1."""
    while load:
        hi = max(load, key=lambda m: (load[m], m))
        lo = min(load, key=lambda m: (load[m], m))
        if load[hi] - load[lo] <= 1:
            return
        moved = False
        for topic, parts in sorted(out[hi].items()):
            for p in sorted(parts):
                if lo in eligible[(topic, p)]:
                    parts.discard(p)
                    out[lo].setdefault(topic, set()).add(p)
                    load[hi] -= 1
                    load[lo] += 1
                    moved = True
                    break
            if moved:
                break
        if not moved:
            return


ASSIGNORS = ("uniform", "range")
