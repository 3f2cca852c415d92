"""The student-shape Pareto of issue 36, from what scripts/student_shapes.sh trained, exported
and benchmarked: the zoo of the four-member teacher and its students (`nmt.zoo.write_zoo`:
whole test_2016_flickr translated greedy and beam 4 by each export, one thread, scored, with
the speeds of the one nmt-bench run), then the Pareto frontier of (target tokens/s, BLEU) over
every model and beam, drawn and tabled with each student's shape and starting point.

    python benchmarks/students.py [--data-dir ../shared/data]    # writes RESULTS/zoo/, pareto.*
    python benchmarks/students.py --from-zoo                     # redraws pareto.* only
    python benchmarks/students.py --release NAME NOTES.md        # then: release student NAME

The release candidate is the student of best greedy BLEU among those at >= 8x the teacher's
target tokens/s (the teacher as it translates: PyTorch float32, beam 4).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nmt.bench.pareto import pareto_front
from nmt.bench.plot import Point, frontier_plot
from nmt.data.datasets import get_file
from nmt.fileio import atomic_write_text
from nmt.zoo import ZooModel, write_release, write_zoo

RESULTS = Path("benchmarks/results/students")
RUNS, EXPORTS = Path("runs/students"), Path("runs/exports/students")
MEMBERS = Path("models/multi30k-tiny")
RELEASE = Path("models/release/multi30k-en-de-student")
TEACHER = "teacher-four"
STUDENTS = ("4-4-d128", "4-2-d128", "4-1-d128", "2-1-d128", "6-1-d256", "6-2-d192")
MIN_SPEEDUP = 8.0  # the release candidate's greedy target tokens/s over the teacher's


def models() -> list[ZooModel]:
    members = [MEMBERS / m for m in ("s1", "s2", "s3", "s1-dropout0.2")]
    teacher = ZooModel(
        TEACHER, Path("benchmarks/results/multi30k-tiny/s1"), members[0], "original", TEACHER,
        TEACHER, ensemble=tuple(members[1:]),
    )  # fmt: skip
    return [teacher] + [
        ZooModel(name, RUNS / name, EXPORTS / name, "distilled", name) for name in STUDENTS
    ]


def starts_from(name: str) -> str:
    """The student's initial weights: its parent and the layers taken, or "scratch"."""
    import yaml

    train = yaml.safe_load((RESULTS / "zoo" / "configs" / f"{name}.yaml").read_text())["train"]
    if not train.get("init_from"):
        return "scratch"
    picked = [
        f"{stack} {list(layers)}"
        for stack, layers in (("enc", train.get("init_encoder_layers")),
                              ("dec", train.get("init_decoder_layers")))
        if layers
    ]  # fmt: skip
    return Path(train["init_from"]).name + (f" ({', '.join(picked)})" if picked else "")


def speed(row: dict, beam: int) -> float | None:
    s = row[f"beam{beam}"]["speed"]
    return s["tgt_tokens_per_s"] if s else None


def pareto(zoo: dict) -> str:
    """Draw RESULTS/pareto.png, write RESULTS/pareto.md and return the release candidate."""
    rows = zoo["models"]
    teacher = rows[0]
    reference = teacher["beam4"]["pytorch_speed"]["tgt_tokens_per_s"]
    cells = [(r, beam) for r in rows for beam in (1, 4) if speed(r, beam)]
    points = [(speed(r, beam), r[f"beam{beam}"]["bleu"]) for r, beam in cells]
    front = pareto_front(points)
    on_front = {(cells[i][0]["name"], cells[i][1]) for i in front}
    number = {(r["name"], beam): n + 1 for n, (r, beam) in enumerate(cells)}  # the plot's
    hw = zoo["hardware"]
    cpu = f"{hw['cpu']}, {hw['cpus']} CPUs ({', '.join(hw['cpu_features'])})"
    frontier_plot(
        RESULTS / "pareto.png",
        [
            Point(
                x, y, n + 1, f"{r['name']} beam {beam}", r["data"], f"{y:.2f} BLEU, {x:,.0f} tok/s"
            )
            for n, ((x, y), (r, beam)) in enumerate(zip(points, cells, strict=True))
        ],
        front,
        "target tokens/s (nmt-bench: 1 thread, batch 32, 500 sentences)",
        "BLEU, whole test_2016_flickr (1,000 sentences)",
        "Students of the four-member teacher (int8) and the teacher (PyTorch float32)",
        x_larger_is_better=True,
        footer=cpu,
    )

    def cell(r: dict, beam: int) -> str:
        s = speed(r, beam)
        if not s:
            return "-"
        mark = " **F**" if (r["name"], beam) in on_front else ""
        return f"#{number[r['name'], beam]}: {s:,.0f} ({s / reference:.1f}x){mark}"

    students = sorted(rows[1:], key=lambda r: -r["beam1"]["bleu"])
    eligible = [r for r in students if (speed(r, 1) or 0) >= MIN_SPEEDUP * reference]
    candidate = eligible[0]["name"] if eligible else ""
    lines = [
        "| student | layers | d_model / FFN | starts from | parameters | int8 MB "
        "| training | BLEU greedy / beam 4 | chrF2 greedy / beam 4 "
        "| tok/s greedy (x teacher) | tok/s beam 4 (x teacher) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in [*students, teacher]:
        name = f"**{r['name']}**" if r["name"] == candidate else r["name"]
        origin = "-" if r is teacher else starts_from(r["name"])
        t = r["training"]
        training = (
            "-"
            if r is teacher
            else f"{t['steps']:,} updates, {t['minutes']:.0f} min, {t['precision']}"
        )
        lines.append(
            f"| {name} | {r['layers']} | {r['d_model']} / {r['ffn']} | {origin} "
            f"| {r['parameters']:,} | {r['export_mb']:.1f} | {training} "
            f"| {r['beam1']['bleu']:.2f} / {r['beam4']['bleu']:.2f} "
            f"| {r['beam1']['chrf']:.2f} / {r['beam4']['chrf']:.2f} | {cell(r, 1)} | {cell(r, 4)} |"
        )
    sig = teacher["beam1"]
    lines += [
        "",
        f"Speeds are target tokens/s of one nmt-bench run ({cpu}; students CTranslate2 int8 "
        "without vocabulary map, the teacher PyTorch float32, 1 thread, batch 32); 'x teacher' is "
        f"against the teacher's beam 4 ({reference:,.0f} tok/s); #N: the point in pareto.png. "
        "**F**: on the Pareto frontier of (tok/s, BLEU) over every model and beam. "
        f"Release candidate (best greedy BLEU at >= {MIN_SPEEDUP:.0f}x): "
        f"**{candidate or 'none'}**.",
        f"BLEU `{sig['bleu_signature']}`; chrF `{sig['chrf_signature']}`.",
    ]
    atomic_write_text(RESULTS / "pareto.md", "\n".join(lines) + "\n")
    return candidate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--release", nargs=2, metavar=("NAME", "NOTES.md"))
    p.add_argument("--from-zoo", action="store_true", help="redraw from zoo.json: no translating")
    args = p.parse_args()
    if args.release:
        zoo = json.loads((RESULTS / "zoo" / "zoo.json").read_text(encoding="utf-8"))
        name, notes = args.release
        print(write_release(zoo, name, RELEASE, Path(notes).read_text(encoding="utf-8")))
        return
    src = get_file("multi30k", "test_2016_flickr.en", args.data_dir)
    ref = get_file("multi30k", "test_2016_flickr.de", args.data_dir)
    if args.from_zoo:
        zoo = json.loads((RESULTS / "zoo" / "zoo.json").read_text(encoding="utf-8"))
    else:
        zoo = write_zoo(models(), src, ref, RESULTS / "zoo", RESULTS / "bench" / "results.jsonl")
    candidate = pareto(zoo)
    print((RESULTS / "pareto.md").read_text())
    print(f"release candidate: {candidate or 'none'}")


if __name__ == "__main__":
    main()
