"""What a distillation folder holds (see `nmt.distill`): the names of the files a run
writes and reads, the shard folders of `--shard K/N`, and the error a run raises when the
folder is in the way or the teacher cannot distil the corpus."""

from __future__ import annotations

from pathlib import Path

DISTILL = "nmt-distill"  # the kind of output a distillation folder is (nmt.outputs)
RAW_INFO = "raw.json"
STATS = "stats.json"
PROVENANCE = "provenance.json"
PARTS = "parts"
JOB = "job.json"
SHARDS = "shards"  # OUT/shards/K-of-N/parts: the chunks of one shard (--shard K/N)


class DistillError(RuntimeError):
    """The output folder is in the way, or the teacher cannot distil this corpus."""


def shard_folder(out: Path, k: int, n: int) -> Path:
    """`out/shards/K-of-N`: the folder of shard K of N."""
    return out / SHARDS / f"{k}-of-{n}"
