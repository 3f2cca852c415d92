"""Training recipes measured over seeds: fine-tuning to a new domain, scheduled sampling.

    python benchmarks/experiments/recipes.py finetune --data-dir ../shared/data
    python benchmarks/experiments/recipes.py scheduled-sampling --data-dir ../shared/data

`finetune`: the committed Multi30k model models/multi30k-tiny/s1 fine-tuned on Tatoeba with
models/finetune-tatoeba.yaml, over seeds, with three recipes at one budget of updates:
`naive` (the parent preset's learning rate 0.002, no warmup), `stable` (the config as is:
lr 0.0005, warmup over 10% of the budget; Mosbach et al. 2021) and `scratch` (the same
model and tokenizer from random weights, lr 0.002, warmup 10%). Each run's last weights
are scored on the Tatoeba test set (the new domain) and on Multi30k test_2016_flickr (what
the model forgets); the parent is scored once as "before".

`scheduled-sampling`: models/multi30k-tiny.yaml with a shorter budget, without and with
scheduled sampling (train.scheduled_sampling), over seeds; last weights scored on
test_2016_flickr, greedy and beam 4.

Every run is an `nmt-train` process with one thread; `--jobs` of them run side by side (one
per core). Run folders go under `--work` (default runs/recipes/EXPERIMENT); a finished run
or evaluation is reused, an interrupted training resumes. Results go to
benchmarks/results/EXPERIMENT/: results.json (every run, the means and sample standard
deviations), README.md (the table, signatures, hardware), curves.png (dev BLEU and
training loss against updates, mean over seeds), configs/ (each recipe's resolved run
config) and the first seed's test translations (gzip).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from nmt.machine import describe_cpu, hardware  # noqa: E402

TINY = "models/multi30k-tiny.yaml"
FINETUNE = "models/finetune-tatoeba.yaml"
PARENT = "models/multi30k-tiny/s1"
TOKENIZER = "models/multi30k-tiny/spm.model"


@dataclass(frozen=True)
class Eval:
    name: str  # column name
    src: str  # relative to the data folder
    ref: str
    beam: int = 1


@dataclass(frozen=True)
class Recipe:
    name: str
    config: str
    overrides: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Experiment:
    name: str
    recipes: tuple[Recipe, ...]
    evals: tuple[Eval, ...]
    before: str = ""  # a model scored once as the starting point
    summary: str = ""
    extra: dict = field(default_factory=dict)


TATOEBA = Eval("tatoeba", "tatoeba/test.en", "tatoeba/test.de")
M30K = Eval("multi30k", "multi30k/test_2016_flickr.en", "multi30k/test_2016_flickr.de")
M30K_BEAM = Eval("multi30k-beam4", M30K.src, M30K.ref, beam=4)


def finetune(steps: int) -> Experiment:
    """`naive` for `steps` updates; `stable` and `scratch` for twice as many (Mosbach et
    al.: train longer)."""
    longer = 2 * steps
    return Experiment(
        "finetune",
        (
            Recipe(
                "naive",
                FINETUNE,
                (
                    "train.lr=0.002",
                    "train.warmup_steps=0",
                    "train.lr_schedule=constant",
                    f"train.max_steps={steps}",
                ),
                f"the parent preset's peak lr 0.002, constant, no warmup, {steps} updates",
            ),
            Recipe(
                "stable",
                FINETUNE,
                (f"train.max_steps={longer}", f"train.warmup_steps={longer // 10}"),
                "lr 0.001 (where the parent's training ended), linear warmup over 10% of the "
                f"updates, linear decay to 0, {longer} updates",
            ),
            Recipe(
                "scratch",
                FINETUNE,
                (
                    "train.init_from=",
                    f"tokenizer.model={TOKENIZER}",
                    "train.lr=0.002",
                    f"train.warmup_steps={longer // 10}",
                    "train.lr_schedule=inverse_sqrt",
                    f"train.max_steps={longer}",
                ),
                "random weights (same shape and tokenizer), the preset's lr 0.002 and "
                f"inverse-sqrt schedule, warmup 10%, {longer} updates",
            ),
        ),
        (TATOEBA, M30K),
        before=PARENT,
        summary=f"models/multi30k-tiny/s1 fine-tuned on Tatoeba ({steps} or {longer} updates)",
    )


def scheduled_sampling(steps: int) -> Experiment:
    base = (
        f"train.max_steps={steps}",
        f"train.warmup_steps={steps // 4}",
        "train.batch_tokens=2048",
        "train.save_every=100",
        "train.valid_every=100",
        "train.log_every=50",
        "train.average_last=0",
        f"tokenizer.model={TOKENIZER}",
    )
    start, ramp = steps // 3, steps // 3
    return Experiment(
        "scheduled-sampling",
        (
            Recipe("teacher-forcing", TINY, base, "teacher forcing throughout"),
            Recipe(
                "scheduled-sampling",
                TINY,
                (
                    *base,
                    "train.scheduled_sampling.schedule=linear",
                    f"train.scheduled_sampling.start_step={start}",
                    f"train.scheduled_sampling.k={ramp}",
                    "train.scheduled_sampling.max_prob=0.25",
                ),
                f"two-pass argmax, p linear 0 -> 0.25 over updates {start}-{start + ramp}, "
                "then 0.25",
            ),
        ),
        (M30K, M30K_BEAM),
        summary=f"models/multi30k-tiny.yaml for {steps} updates of 2,048 tokens "
        f"(warmup {steps // 4})",
    )


def nmt(*args: str) -> list[str]:
    return [sys.executable, "-m", "nmt", *args]


def run_one(recipe: Recipe, seed: int, exp: Experiment, args) -> dict:
    run_dir = args.work / f"{recipe.name}-s{seed}"
    if not (run_dir / "summary.json").is_file():
        command = nmt(
            "train",
            "--config",
            recipe.config,
            "--data-dir",
            str(args.data_dir),
            "--set",
            f"run_dir={run_dir}",
            "--set",
            f"train.seed={seed}",
            *(x for o in recipe.overrides for x in ("--set", o)),
        )
        if (run_dir / "last.pt").is_file():
            command.append("--resume")
        log = run_dir.parent / f"{run_dir.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            subprocess.run(command, cwd=REPO, stdout=out, stderr=out, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "recipe": recipe.name,
        "seed": seed,
        "run_dir": str(run_dir),
        "steps": summary["steps"],
        "wall_time_s": summary["wall_time_s"],
        "scores": {e.name: evaluate(run_dir / "last.pt", run_dir, e, args) for e in exp.evals},
        "curve": curve(run_dir / "log.jsonl"),
    }


def evaluate(model: Path, where: Path, e: Eval, args) -> dict:
    out = where / f"eval-{e.name}"
    if not (out / "scores.json").is_file():
        subprocess.run(
            nmt(
                "evaluate",
                "-m",
                str(model),
                "--src",
                str(args.data_dir / e.src),
                "--ref",
                str(args.data_dir / e.ref),
                "-o",
                str(out),
                "--beam",
                str(e.beam),
                "--threads",
                "1",
            ),
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    scores = json.loads((out / "scores.json").read_text())
    keep = ("bleu", "chrf", "bleu_signature", "chrf_signature", "beam_size", "sentences")
    return {k: scores[k] for k in keep} | {"hyp": str(out / "hyp.txt")}


def curve(log_path: Path) -> dict:
    steps, bleu, loss_steps, loss = [], [], [], []
    for line in log_path.read_text().splitlines():
        r = json.loads(line)
        if r["type"] == "valid" and "valid_bleu" in r:
            steps.append(r["step"])
            bleu.append(r["valid_bleu"])
        elif r["type"] == "train":
            loss_steps.append(r["step"])
            loss.append(r["loss"])
    return {"valid_steps": steps, "valid_bleu": bleu, "train_steps": loss_steps, "loss": loss}


def aggregate(runs: list[dict], exp: Experiment) -> dict:
    table = {}
    for recipe in exp.recipes:
        mine = [r for r in runs if r["recipe"] == recipe.name]
        table[recipe.name] = {}
        for e in exp.evals:
            for metric in ("bleu", "chrf"):
                values = [r["scores"][e.name][metric] for r in mine]
                table[recipe.name][f"{e.name}_{metric}"] = {
                    "mean": round(statistics.mean(values), 2),
                    "std": round(statistics.stdev(values), 2) if len(values) > 1 else None,
                    "values": values,
                }
    return table


def plot(runs: list[dict], exp: Experiment, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, recipe in enumerate(exp.recipes):
        mine = [r["curve"] for r in runs if r["recipe"] == recipe.name]
        colour = f"C{i}"
        for j, c in enumerate(mine):
            label = f"{recipe.name} ({len(mine)} seeds)" if j == 0 else None
            left.plot(c["valid_steps"], c["valid_bleu"], color=colour, alpha=0.6, label=label)
            right.plot(c["train_steps"], c["loss"], color=colour, alpha=0.6, label=label)
    left.set(xlabel="update", ylabel="dev BLEU (greedy)", title="dev BLEU, every seed")
    right.set(xlabel="update", ylabel="training loss (label-smoothed)", title="training loss")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(exp.summary)
    fig.tight_layout()
    fig.savefig(path)


def report(exp: Experiment, runs: list[dict], table: dict, before: dict, args) -> str:
    hw = hardware("cpu")
    lines = [
        f"# {exp.name}: {exp.summary}",
        "",
        f"Seeds {', '.join(map(str, args.seeds))}; mean +- sample standard deviation over "
        "seeds; each run's last weights; one thread per run, "
        f"{args.jobs} runs side by side; {describe_cpu(hw)}.",
        "",
        "| recipe | " + " | ".join(f"{e.name} BLEU | {e.name} chrF" for e in exp.evals) + " |",
        "|---|" + "---|---|" * len(exp.evals),
    ]
    if before:
        cells = [f"{before[e.name][m]:.2f}" for e in exp.evals for m in ("bleu", "chrf")]
        lines.append(f"| before ({exp.before}) | " + " | ".join(cells) + " |")
    for recipe in exp.recipes:
        row = table[recipe.name]
        cells = []
        for e in exp.evals:
            for m in ("bleu", "chrf"):
                v = row[f"{e.name}_{m}"]
                cells.append(f"{v['mean']:.2f} +- {v['std']:.2f}" if v["std"] else f"{v['mean']}")
        lines.append(f"| {recipe.name} | " + " | ".join(cells) + " |")
    lines += ["", "Recipes:", ""]
    lines += [
        f"- `{r.name}`: {r.note} (`{r.config}` + `{' '.join(r.overrides)}`)" for r in exp.recipes
    ]
    lines += [
        "",
        "Per run:",
        "",
        "| recipe | seed | " + " | ".join(e.name for e in exp.evals) + " | train s |",
    ]
    lines.append("|---|---|" + "---|" * len(exp.evals) + "---|")
    for r in runs:
        cells = [
            f"{r['scores'][e.name]['bleu']:.2f} / {r['scores'][e.name]['chrf']:.2f}"
            for e in exp.evals
        ]
        lines.append(
            f"| {r['recipe']} | {r['seed']} | " + " | ".join(cells) + f" | {r['wall_time_s']:.0f} |"
        )
    sig = runs[0]["scores"][exp.evals[0].name]
    lines += [
        "",
        f"Cells are BLEU / chrF2. Signatures: BLEU `{sig['bleu_signature']}`, "
        f"chrF2 `{sig['chrf_signature']}`. "
        + "; ".join(
            f"{e.name}: `{e.src}` ({sig_count(runs, e)} sentences), beam {e.beam}"
            for e in exp.evals
        )
        + ".",
        "",
        "![curves](curves.png)",
        "",
    ]
    return "\n".join(lines)


def sig_count(runs: list[dict], e: Eval) -> int:
    return runs[0]["scores"][e.name]["sentences"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", choices=("finetune", "scheduled-sampling"))
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--recipes", nargs="+", help="only these recipes (default: all)")
    p.add_argument(
        "--steps", type=int, help="updates per run (finetune 300, scheduled-sampling 600)"
    )
    p.add_argument("--scratch-seeds", type=int, default=3, help="finetune: seeds of scratch")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    p.add_argument("--work", type=Path, help="run folders (default runs/recipes/EXPERIMENT)")
    p.add_argument("--results", type=Path, help="default benchmarks/results/EXPERIMENT")
    args = p.parse_args(argv)
    args.data_dir = args.data_dir.resolve()
    if args.experiment == "finetune":
        exp = finetune(args.steps or 300)
    else:
        exp = scheduled_sampling(args.steps or 600)
    if args.recipes:
        exp = Experiment(
            exp.name,
            tuple(r for r in exp.recipes if r.name in args.recipes),
            exp.evals,
            exp.before,
            exp.summary,
        )
    args.work = (args.work or REPO / "runs" / "recipes" / exp.name).resolve()
    results = args.results or REPO / "benchmarks" / "results" / exp.name
    jobs = [
        (r, s)
        for s in args.seeds
        for r in exp.recipes
        if not (r.name == "scratch" and s not in args.seeds[: args.scratch_seeds])
    ]
    with ThreadPoolExecutor(args.jobs) as pool:
        before_job = (
            pool.submit(
                lambda: {
                    e.name: evaluate(REPO / exp.before, args.work / "before", e, args)
                    for e in exp.evals
                }
            )
            if exp.before
            else None
        )
        runs = list(pool.map(lambda job: run_one(job[0], job[1], exp, args), jobs))
        before = before_job.result() if before_job else {}
    table = aggregate(runs, exp)
    results.mkdir(parents=True, exist_ok=True)
    (results / "configs").mkdir(exist_ok=True)
    first = args.seeds[0]
    for recipe in exp.recipes:
        run_dir = args.work / f"{recipe.name}-s{first}"
        shutil.copyfile(run_dir / "config.yaml", results / "configs" / f"{recipe.name}.yaml")
        first_run = next(r for r in runs if r["recipe"] == recipe.name and r["seed"] == first)
        for e in exp.evals:
            hyp = Path(first_run["scores"][e.name]["hyp"]).read_bytes()
            gz = results / f"{recipe.name}-s{first}.{e.name}.hyp.txt.gz"
            gz.write_bytes(gzip.compress(hyp, mtime=0))
    record = {
        "experiment": exp.name,
        "summary": exp.summary,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "hardware": hardware("cpu"),
        "before": before,
        "recipes": {
            r.name: {"config": r.config, "overrides": list(r.overrides), "note": r.note}
            for r in exp.recipes
        },
        "table": table,
        "runs": runs,
    }
    (results / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(runs, exp, results / "curves.png")
    (results / "README.md").write_text(report(exp, runs, table, before, args))
    print(results / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
