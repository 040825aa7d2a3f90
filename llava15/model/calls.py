"""Rows of different lengths cut into decoder calls, where padding costs more than a call.

One call pads every row to its longest; another call costs a fixed amount of work. Both the
prefix-sharing prefill (`llava15.infer.prefix`) and the shared-prefix training pass
(`llava15.train.shared_prefix`) cut their rows with `cut_by_length`.
"""

from __future__ import annotations

from collections.abc import Sequence

# What one forward call costs beyond its positions, in positions: measured on the demo model
# (2-layer, 128-wide) on 2 CPU cores, a call's fixed cost is ~1.3 ms and a position ~20 us. It
# only decides how rows are cut into calls; any value gives the same results.
CALL_COST = 64


def cut_by_length(lengths: Sequence[int], call_cost: int = CALL_COST) -> list[list[int]]:
    """Indices into `lengths`, longest first, cut into calls that minimise the computed
    positions (rows x the call's longest) plus `call_cost` a call. Exact minimum over such cuts
    (O(n^2)); ties keep the earliest cut. Equal lengths keep their index order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    best = [(0, 0)] * (len(order) + 1)  # best[i]: (cost, start of the last call) of order[:i]
    for i in range(1, len(order) + 1):
        best[i] = min((best[j][0] + call_cost + (i - j) * lengths[order[j]], j) for j in range(i))
    calls, i = [], len(order)
    while i:
        calls.append(order[best[i][1]:i])
        i = best[i][1]
    return calls[::-1]
