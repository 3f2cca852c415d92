"""Frontier plots: BLEU against speed or memory, the Pareto frontier drawn as a line.

Every point carries its table number; the frontier's points are listed beside the plot
with their settings, best BLEU first, so the answer (which settings to use) is readable
from the picture alone. Colours are backends; bars span the slowest to the fastest repeat.
Drawn with matplotlib's object API on the Agg canvas: no global backend is switched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    number: int  # the row number in the report's table
    label: str  # settings, listed beside the plot for frontier points
    group: str  # colour (the backend)
    detail: str = ""  # e.g. "36.20 BLEU, 3,400 words/s", after the label
    x_low: float | None = None  # error bar (e.g. slowest and fastest repeat)
    x_high: float | None = None


def frontier_plot(
    path: str | Path,
    points: list[Point],
    frontier: list[int],
    x_label: str,
    y_label: str,
    title: str,
    x_larger_is_better: bool,
    footer: str = "",
) -> Path:
    """Scatter `points` numbered as in the table, join the `frontier` (indices into
    points) with a line, list the frontier's settings beside the plot (best `y` first),
    and write a PNG to `path`."""
    fig = Figure(figsize=(13, 6.5), dpi=110)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=(2.6, 1))
    ax, side = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    groups = list(dict.fromkeys(p.group for p in points))
    colour = {g: COLOURS[i % len(COLOURS)] for i, g in enumerate(groups)}
    on_front = set(frontier)

    for g in groups:
        members = [p for p in points if p.group == g]
        ax.scatter(
            [p.x for p in members],
            [p.y for p in members],
            s=36,
            color=colour[g],
            alpha=0.75,
            label=g,
            zorder=3,
        )
        for p in members:
            if p.x_low is not None and p.x_high is not None:
                ax.plot([p.x_low, p.x_high], [p.y, p.y], color=colour[g], lw=1, alpha=0.5)
    front = sorted((points[i] for i in frontier), key=lambda p: p.x)
    if front:
        ax.plot(
            [p.x for p in front],
            [p.y for p in front],
            color="black",
            lw=1.8,
            marker="o",
            markersize=10,
            markerfacecolor="none",
            label="Pareto frontier",
            zorder=4,
        )
    for i, p in enumerate(points):
        ax.annotate(
            str(p.number),
            (p.x, p.y),
            xytext=(5, 4),
            textcoords="offset points",
            fontsize=8 if i in on_front else 7,
            fontweight="bold" if i in on_front else "normal",
            color="black" if i in on_front else "#777777",
            zorder=5,
        )
    xs = [p.x for p in points if p.x > 0]
    if xs and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left" if x_larger_is_better else "lower right", fontsize=8)

    side.axis("off")
    listing = ["Pareto frontier, best first:", ""]
    for p in sorted(front, key=lambda p: -p.y):
        listing += [f"#{p.number} {p.label}", f"    {p.detail}" if p.detail else ""]
    side.text(0, 1, "\n".join(listing), va="top", ha="left", fontsize=8, family="monospace")
    if footer:
        fig.text(0.01, 0.01, footer, fontsize=7, color="#555555", va="bottom")
    fig.tight_layout(rect=(0, 0.04 if footer else 0, 1, 1))
    path = Path(path)
    fig.savefig(path)
    return path
