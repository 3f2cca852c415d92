"""Turn a finished training run into committed evidence under benchmarks/results/NAME/.

Picks the model to report by dev BLEU (averaged or best checkpoint; never by test score),
translates the test set with beam 4 and greedy, and writes: the run config, the training
summary, the log, a dev curve table, the test translations and the scores with their
sacrebleu signatures and the hardware. Weights are not copied.

    python benchmarks/report_run.py runs/multi30k-small --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import torch

from nmt.config import load_run_config
from nmt.data.datasets import split_paths
from nmt.decoding import Decoding
from nmt.evaluate import evaluate
from nmt.machine import describe_cpu, hardware


def pick_model(run_dir: Path, summary: dict) -> tuple[Path, float]:
    best = summary["best_valid_bleu"]
    averaged = summary.get("averaged", {}).get("valid_bleu", -1.0)
    if (run_dir / "averaged.pt").exists() and averaged >= best:
        return run_dir / "averaged.pt", averaged
    return run_dir / "best.pt", best


def dev_curve(summary: dict) -> str:
    rows = [
        "| step | dev loss | dev ppl | dev BLEU (greedy) | dev chrF2 |",
        "|---|---|---|---|---|",
    ]
    for v in summary["validations"]:
        rows.append(
            f"| {v['step']} | {v['valid_loss']:.3f} | {v['valid_ppl']:.2f} | "
            f"{v.get('valid_bleu', '-')} | {v.get('valid_chrf', '-')} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data-dir", default="")
    p.add_argument("--name", help="results folder name (default: the run folder's name)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_dir: Path = args.run_dir
    out = Path(__file__).parent / "results" / (args.name or run_dir.name)
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"data.data_dir={args.data_dir}"] if args.data_dir else []
    config = load_run_config(run_dir / "config.yaml", overrides)
    summary = json.loads((run_dir / "summary.json").read_text())
    model, dev_bleu = pick_model(run_dir, summary)
    src, ref = split_paths(config.data, config.data.test)

    results = {}
    for beam in (4, 1):
        results[f"beam{beam}"] = evaluate(
            model,
            src,
            ref,
            out / f"test_beam{beam}",
            Decoding(beam_size=beam),
            threads=args.threads,
        )
        (out / f"test_beam{beam}" / "hyp.txt").rename(
            out / f"test.beam{beam}.{config.data.tgt_lang}"
        )
        shutil.move(out / f"test_beam{beam}" / "scores.json", out / f"scores.beam{beam}.json")
        (out / f"test_beam{beam}").rmdir()
    for name in ("config.yaml", "summary.json", "log.jsonl"):
        shutil.copyfile(run_dir / name, out / name)

    cpu = describe_cpu(hardware("cpu"))
    machine = f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    b4, b1 = results["beam4"], results["beam1"]
    lines = [
        f"# {out.name}: training run and test scores",
        "",
        f"Model reported: `{model.name}` (chosen by dev BLEU {dev_bleu}; averaged vs best).",
        f"Training: {summary['steps']} steps, {summary['wall_time_s'] / 60:.1f} min wall clock "
        f"(validation included), {summary['epochs']} epochs, "
        f"{summary['mean_tgt_tokens_per_s']:.0f} target tokens/s on average, "
        f"precision {summary['precision']}, {summary['threads']} threads, stop: "
        f"{summary['stop_reason']}; {summary['parameters']:,} parameters.",
        "",
        f"## Test ({Path(src).name} -> {Path(ref).name}, {b4['sentences']} sentences)",
        "",
        "| decoding | BLEU | chrF2 | seconds |",
        "|---|---|---|---|",
        f"| beam 4 | {b4['bleu']:.2f} | {b4['chrf']:.2f} | {b4['seconds']} |",
        f"| greedy | {b1['bleu']:.2f} | {b1['chrf']:.2f} | {b1['seconds']} |",
        "",
        f"BLEU signature: `{b4['bleu_signature']}`  ",
        f"chrF signature: `{b4['chrf_signature']}`  ",
        f"Hardware: {machine}; batch {b4['max_batch_tokens']} source tokens, PyTorch backend.",
        "",
        "## Dev curve (validation during training)",
        "",
        dev_curve(summary),
        "",
    ]
    if "averaged" in summary:
        a = summary["averaged"]
        lines += [
            f"Averaged checkpoints ({', '.join(a['averaged_from'])}): dev BLEU "
            f"{a.get('valid_bleu')} / chrF2 {a.get('valid_chrf')}, dev loss "
            f"{a['valid_loss']:.3f}.",
            "",
        ]
    (out / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
