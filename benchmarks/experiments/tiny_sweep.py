"""Side by side dev curves of committed training runs: the recipe sweep's table and plot.

    python benchmarks/experiments/tiny_sweep.py --out benchmarks/results/multi30k-tiny/sweep \\
        s1=benchmarks/results/multi30k-tiny/s1 \\
        dropout0.2=benchmarks/results/multi30k-tiny/s1-dropout0.2

Each LABEL=DIR is a run's evidence folder as report_run.py and the member scripts leave it:
DIR/log.jsonl (the dev validations, greedy) and DIR/summary.json, with the summaries of
earlier stops of a resumed run in DIR/step*/summary.json (their "averaged" records: the
average of the last checkpoints at that step). Writes OUT/README.md (one row per validation
step, one column per run; the averaged models last) and OUT/curves.png. Nothing is trained
or decoded: the figures are the ones the runs logged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nmt.fileio import atomic_write_text


def read_run(folder: Path) -> tuple[dict[int, float], dict[int, float], str]:
    """Dev BLEU by step, averaged-model dev BLEU by step, and the BLEU signature."""
    log = folder / "log.jsonl"
    if not log.is_file():
        raise SystemExit(f"{log}: no such file (expected a run's evidence folder)")
    curve, averaged, signature = {}, {}, ""
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise SystemExit(f"{log}:{number}: not JSON ({err.msg})") from None
        if record.get("valid_bleu") is None:
            continue
        signature = record.get("bleu_signature", signature)
        target = averaged if record["type"] == "valid_averaged" else curve
        target[record["step"]] = record["valid_bleu"]
    for summary in [folder / "summary.json", *sorted(folder.glob("step*/summary.json"))]:
        if summary.is_file():
            record = json.loads(summary.read_text()).get("averaged")
            if record and record.get("valid_bleu") is not None:
                averaged[record["step"]] = record["valid_bleu"]
    return curve, averaged, signature


def table(runs: dict[str, tuple[dict, dict, str]]) -> str:
    labels = list(runs)
    lines = [
        "| update | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    steps = sorted({s for curve, _, _ in runs.values() for s in curve})
    for step in steps:
        cells = [_cell(runs[label][0].get(step)) for label in labels]
        lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
    averaged_steps = sorted({s for _, averaged, _ in runs.values() for s in averaged})
    for step in averaged_steps:
        cells = [_cell(runs[label][1].get(step), bold=True) for label in labels]
        lines.append(f"| **{step:,} averaged** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | None, bold: bool = False) -> str:
    if value is None:
        return "-"
    return f"**{value:.2f}**" if bold else f"{value:.2f}"


def plot(runs: dict[str, tuple[dict, dict, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, (curve, averaged, _) in runs.items():
        steps = sorted(s for s in curve if s >= 1000)
        (line,) = ax.plot(steps, [curve[s] for s in steps], marker=".", label=label)
        for step, bleu in sorted(averaged.items()):
            ax.plot([step], [bleu], marker="*", markersize=11, color=line.get_color())
    ax.set_xlabel("updates")
    ax.set_ylabel("dev BLEU (greedy; stars: averaged last 10)")
    ax.set_title("Multi30k val, detokenized sacreBLEU 13a")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=DIR", help="a run's evidence folder")
    p.add_argument("--out", type=Path, required=True, help="folder for README.md and curves.png")
    args = p.parse_args()

    folders = {}
    for spec in args.runs:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            raise SystemExit(f"{spec!r}: expected LABEL=DIR")
        folders[label] = folder
    runs = {label: read_run(Path(folder)) for label, folder in folders.items()}
    signatures = {sig for _, _, sig in runs.values() if sig}

    args.out.mkdir(parents=True, exist_ok=True)
    plot(runs, args.out / "curves.png")
    text = (
        "# Recipe sweep: dev curves side by side\n\n"
        "Multi30k val (1,014 sentences), greedy, as each run logged it during training "
        "(`benchmarks/experiments/tiny_sweep.py`). Averaged: the average of the last 10 "
        "checkpoints (100 updates apart) at that update. BLEU "
        + ", ".join(f"`{s}`" for s in sorted(signatures))
        + ".\n\n"
        + table(runs)
        + "\n\nRuns: "
        + ", ".join(f"{label} = `{folder}`" for label, folder in folders.items())
        + ".\n\n![dev curves](curves.png)\n"
    )
    atomic_write_text(args.out / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
