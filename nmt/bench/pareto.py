"""Pareto frontier of two objectives: the settings no other setting beats on both.

A point dominates another when it is at least as good on both objectives and strictly
better on one. The frontier is every point that nothing dominates; two identical points
are both on it (neither is strictly better). Points with a NaN coordinate are never on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def dominates(a: tuple[float, float], b: tuple[float, float], maximize=(True, True)) -> bool:
    """True when `a` is at least as good as `b` on both objectives and better on one."""
    sa = tuple(v if up else -v for v, up in zip(a, maximize, strict=True))
    sb = tuple(v if up else -v for v, up in zip(b, maximize, strict=True))
    return sa[0] >= sb[0] and sa[1] >= sb[1] and sa != sb


def pareto_front(
    points: Sequence[tuple[float, float]], maximize: tuple[bool, bool] = (True, True)
) -> list[int]:
    """Indices of the non-dominated points, in ascending order of their index.

    `maximize` says per coordinate whether larger is better, e.g. (False, True) for
    (memory, BLEU). A sweep from the best first coordinate down: a point is on the
    frontier when it has the best second coordinate among the points with its first
    coordinate, and beats the second coordinate of every point with a better first.
    """
    signs = [1.0 if up else -1.0 for up in maximize]
    valid = [
        (signs[0] * x, signs[1] * y, i)
        for i, (x, y) in enumerate(points)
        if not (math.isnan(x) or math.isnan(y))
    ]
    valid.sort(key=lambda p: (-p[0], -p[1]))
    front: list[int] = []
    best_y: float | None = None  # best second coordinate among strictly better first ones
    k = 0
    while k < len(valid):
        x = valid[k][0]
        group = []
        while k < len(valid) and valid[k][0] == x:
            group.append(valid[k])
            k += 1
        top = group[0][1]  # sorted: the group's best second coordinate comes first
        if best_y is None or top > best_y:
            front += [i for _, y, i in group if y == top]
            best_y = top
    return sorted(front)
