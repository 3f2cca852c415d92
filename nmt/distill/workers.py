"""Who translates: the teacher loaded in this process, or `workers` translator processes of
`threads` threads each, each translating whole chunks (CTranslate2's advice for throughput
on many cores: several one-thread replicas rather than one translator with many threads)."""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Iterator
from typing import Any

from nmt.distill.config import DistillConfig


def _translate_chunk(translator, lines: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """Translate one chunk; its hypotheses (one line each; with an `nbest` option, that many
    per source line, best first, "" where the beam gave fewer), seconds and target pieces."""
    options = dict(options)
    n = options.pop("nbest", 1)
    start = time.perf_counter()
    if n > 1:
        nbest = translator.translate_nbest(lines, n, **options)
        hyps = [text for best in nbest for text in _padded([h.text for h in best], n)]
    else:
        hyps = translator.translate(lines, **options)
    seconds = time.perf_counter() - start
    hyps = [" ".join(h.split()) for h in hyps]  # no newline or tab can break the alignment
    tokenizer = getattr(translator, "tokenizer", None)
    pieces = sum(map(len, tokenizer.encode(hyps))) if tokenizer else 0
    return {"hypotheses": hyps, "seconds": round(seconds, 3), "target_pieces": pieces}


def _padded(texts: list[str], n: int) -> list[str]:
    """`texts` made `n` long with blank hypotheses, which the filters drop as empty."""
    return texts[:n] + [""] * (n - len(texts))


def _load_teacher(teacher: str | list[str], config: DistillConfig):
    """The teacher as `config` says (`nmt.translate.load`), one translation at a time."""
    from nmt.translate import load

    return load(
        teacher,
        backend=config.backend,
        device=config.device,
        threads=config.threads,
        compute_type=config.compute_type,
        inter_threads=1,
        **config.teacher_options(),
    )


_worker_translator = None  # one teacher per worker process


def _worker_init(teacher: str | list[str], config: DistillConfig) -> None:
    global _worker_translator
    logging.basicConfig(level=logging.WARNING)
    _worker_translator = _load_teacher(teacher, config)


def _worker_translate(task: tuple[int, list[str], dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    index, lines, options = task
    return index, _translate_chunk(_worker_translator, lines, options)


def run_tasks(teacher: str | list[str], config: DistillConfig, tasks) -> Iterator[tuple[int, dict]]:
    """Translate tasks in order: in this process, or in `workers` spawned processes."""
    if config.workers == 1:
        translator = _load_teacher(teacher, config)
        for index, lines, options in tasks:
            yield index, _translate_chunk(translator, lines, options)
        return
    context = multiprocessing.get_context("spawn")  # no forked copies of threaded runtimes
    with context.Pool(config.workers, _worker_init, (teacher, config)) as pool:
        yield from pool.imap(_worker_translate, tasks)
