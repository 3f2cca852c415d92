"""Sequence-level knowledge distillation (Kim & Rush 2016): a teacher translates the source
side of a training corpus, and students learn from its translations.

`distill(teacher, data, output_dir, config)` writes a dataset folder that trains as is
(`nmt-train --set data.dataset= --set data.data_dir=DIR`, or `--data-dir DIR` for a
registered dataset, whose files are found as `DIR/FILE`):

    train.SRC / train.TGT    the distilled pairs: sources and the teacher's translations,
                             line-aligned, the pairs a filter rejects dropped from both sides
    mix.SRC / mix.TGT        with `mix`: the original pairs, then the distilled ones
                             (`--set data.train=mix`)
    VALID.* / TEST.*         copies of the original validation and test files
    raw.TGT                  every teacher output, line-aligned with the source corpus
                             (with `nbest` N: N lines per source line, best first)
    raw.json                 the translation job and its totals (time, tokens)
    stats.json               lines, tokens, time, tokens/s, counts and examples per filter,
                             the most frequent output and its share (`top_output`)
    provenance.json          teacher (path, fingerprint, export or checkpoint info), backend,
                             decoding settings, versions, source files with sha256, date

Resumable: the source is cut into fixed chunks of `chunk_lines` lines; each translated
chunk is written atomically as `parts/NNNNNN.json`, and a restarted run translates only
the chunks still missing, so every line is translated once and the output keeps the
corpus order. `parts/job.json` records what is being translated (teacher fingerprint,
source checksum, decoding settings); parts of another job are never mixed in (`force`
starts over, and only in a folder nmt-distill made: its `.nmt-output.json` marker, see
`nmt.outputs`). Once every chunk is there, `raw.TGT` and `raw.json` are written atomically
and the parts removed. Filtering is cheap and runs on every call, so changing a filter
threshold re-filters without translating again.

N-best: with `nbest` N the teacher gives its N best translations of each line (one beam
search), and `select` says which of those the filters keep become pairs: "all" (every
different one: N targets per source) or "closest" (the one nearest the reference by
sentence chrF, Kim & Rush's seq-inter distillation). The selection is made when filtering:
one translation serves both.

A teacher that gives one output for a large share of different sentences (an undertrained
model's "Ein Mann in einem." for everything) is an error (`DistillError`, after writing
stats.json), not a corpus: see `FilterConfig.max_top_share`.

Workers: `workers` translator processes of `threads` threads each, each translating whole
chunks (CTranslate2's advice for throughput on many cores: several one-thread replicas
rather than one translator with many threads).

The package, in the order a run reads it:

    config.py       DistillConfig, FilterConfig (validated on construction), source_data
    run.py          distill: claim and lock the folder, then translate -> filter -> write
    chunks.py       the resumable chunk store (Parts), shards and their merge, raw.TGT
    workers.py      the teacher in this process or in worker processes
    filters.py      the pair filters, top_output, the degenerate-corpus check
    provenance.py   teacher_info (fingerprint), provenance.json, hardware, split copies
    folder.py       the names of a distillation folder's files; DistillError

What the rest of the toolkit uses is importable from `nmt.distill` itself.
"""

from nmt.distill.chunks import Parts, translate_corpus
from nmt.distill.config import DistillConfig, FilterConfig, load_distill_config, source_data
from nmt.distill.filters import (
    FILTERS,
    filter_pairs,
    is_bad_ratio,
    is_copied,
    is_degenerate,
    is_empty,
    select_hypotheses,
    top_output,
)
from nmt.distill.folder import DistillError, shard_folder
from nmt.distill.provenance import checkpoint_dev_bleu, teacher_info
from nmt.distill.run import DistillResult, distill

__all__ = [
    "FILTERS",
    "DistillConfig",
    "DistillError",
    "DistillResult",
    "FilterConfig",
    "Parts",
    "checkpoint_dev_bleu",
    "distill",
    "filter_pairs",
    "is_bad_ratio",
    "is_copied",
    "is_degenerate",
    "is_empty",
    "load_distill_config",
    "select_hypotheses",
    "shard_folder",
    "source_data",
    "teacher_info",
    "top_output",
    "translate_corpus",
]
