"""Copy a finished pipeline's evidence (no weights) to a folder meant for git.

    python benchmarks/publish_pipeline.py runs/pipelines/multi30k-3h \
        benchmarks/results/multi30k-3h --config pipelines/multi30k-3h.yaml

Writes, under the destination: `pipeline.yaml` (the pipeline file as run) and
`pipeline.json` (as resolved); `stages/` (each stage's result); `zoo/` (the model table,
test translations, run configs); `bench/` (grid, one JSON line per cell, report, plots);
`distilled/` (statistics and provenance of the distilled corpus, not the corpus); and for
each run `runs/NAME/` (config, summary, training log). Checkpoints, exports and corpora stay
behind: the pipeline reproduces them.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

RUN_FILES = ("config.yaml", "summary.json", "log.jsonl")
BENCH_SUFFIXES = (".md", ".jsonl", ".png", ".yaml")
DISTILLED_FILES = ("stats.json", "provenance.json", "raw.json")


def publish(root: Path, dest: Path, config: Path | None) -> list[Path]:
    """Copy the evidence of the pipeline under `root` to `dest`; returns the files written."""
    if not (root / "pipeline.json").is_file():
        raise SystemExit(f"{root}: not a pipeline root (no pipeline.json)")
    if not (root / "zoo" / "zoo.json").is_file():
        raise SystemExit(f"{root}: the zoo stage has not run (no zoo/zoo.json)")
    pairs: list[tuple[Path, Path]] = [(root / "pipeline.json", dest / "pipeline.json")]
    if config is not None:
        pairs.append((config, dest / "pipeline.yaml"))
    pairs += [(f, dest / "stages" / f.name) for f in sorted((root / "stages").glob("*.json"))]
    pairs += [
        (f, dest / "zoo" / f.relative_to(root / "zoo"))
        for f in sorted((root / "zoo").rglob("*"))
        if f.is_file()
    ]
    bench = root / "bench"
    pairs += [
        (f, dest / "bench" / f.name)
        for f in sorted(bench.glob("*"))
        if f.is_file() and f.suffix in BENCH_SUFFIXES
    ]
    pairs += [
        (root / "distilled" / name, dest / "distilled" / name)
        for name in DISTILLED_FILES
        if (root / "distilled" / name).is_file()
    ]
    for run in sorted(p.parent for p in root.glob("*/summary.json")):
        pairs += [(run / f, dest / "runs" / run.name / f) for f in RUN_FILES if (run / f).is_file()]
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return [dst for _, dst in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the pipeline's root folder")
    parser.add_argument("dest", type=Path, help="where to copy the evidence")
    parser.add_argument("--config", type=Path, help="the pipeline YAML, copied as pipeline.yaml")
    args = parser.parse_args()
    written = publish(args.root, args.dest, args.config)
    size = sum(p.stat().st_size for p in written)
    print(f"{len(written)} files, {size / 2**20:.1f} MB -> {args.dest}")


if __name__ == "__main__":
    main()
