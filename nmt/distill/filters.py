"""Which teacher outputs are kept: the pair filters (`FILTERS`, in the order they judge a
pair), `filter_pairs`, and the judgement of the kept corpus as a whole: `top_output`, the
output given for the most different sources, and `degenerate_corpus`, the error of a
teacher that gives one output for everything."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from nmt.distill.config import FilterConfig

EXAMPLES_PER_FILTER = 5
TOP_LINE_CHARS = 60  # the most frequent output as stats.json and errors quote it


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def is_empty(src: str, hyp: str, c: FilterConfig) -> bool:
    return not hyp.strip() or not src.strip()


def is_degenerate(src: str, hyp: str, c: FilterConfig) -> bool:
    """A unit of characters repeated `max_repeats` times in a row (the loops of a decoder:
    "phonphonphonphon", "ein Hund ein Hund ein Hund ein Hund"), or too few distinct tokens."""
    tokens = hyp.split()
    if len(tokens) >= c.unique_min_tokens and len(set(tokens)) / len(tokens) < c.min_unique_ratio:
        return True
    # A space after the last token, so that a repeated phrase's last copy is whole too.
    text = " ".join(tokens) + " "
    return _repeat_pattern(c.max_repeats, c.repeat_unit_chars).search(text) is not None


@functools.lru_cache(maxsize=8)
def _repeat_pattern(repeats: int, unit_chars: int) -> re.Pattern[str]:
    return re.compile(rf"(.{{2,{unit_chars}}}?)\1{{{repeats - 1}}}")


def is_copied(src: str, hyp: str, c: FilterConfig) -> bool:
    """The source itself, or mostly its words (a copy rather than a translation)."""
    if hyp.strip() == src.strip():
        return True
    s, h = _words(src), _words(hyp)
    longer = max(len(s), len(h))
    if longer < c.copy_min_tokens:
        return False
    common = sum((Counter(s) & Counter(h)).values())
    return common / longer >= c.max_overlap


def is_bad_ratio(src: str, hyp: str, c: FilterConfig) -> bool:
    ls, lh = len(src.split()), len(hyp.split())
    longer, shorter = max(ls, lh), max(min(ls, lh), 1)
    return longer >= c.ratio_min_tokens and longer / shorter > c.max_ratio


# name -> test; a pair is rejected by the first that says True.
FILTERS: dict[str, Callable[[str, str, FilterConfig], bool]] = {
    "empty": is_empty,
    "degenerate": is_degenerate,
    "copied": is_copied,
    "bad_ratio": is_bad_ratio,
}


def filter_pairs(
    sources: list[str], hyps: list[str], config: FilterConfig
) -> tuple[list[int], dict[str, int], dict[str, list[dict[str, Any]]]]:
    """Indices of the pairs kept; rejected counts per filter; a few examples of each."""
    kept: list[int] = []
    counts = dict.fromkeys(FILTERS, 0)
    examples: dict[str, list[dict[str, Any]]] = {name: [] for name in FILTERS}
    for i, (src, hyp) in enumerate(zip(sources, hyps, strict=True)):
        reason = next((name for name, test in FILTERS.items() if test(src, hyp, config)), None)
        if reason is None:
            kept.append(i)
            continue
        counts[reason] += 1
        if len(examples[reason]) < EXAMPLES_PER_FILTER:
            examples[reason].append({"line": i + 1, "src": src, "hyp": hyp})
    return kept, counts, examples


def top_output(sources: list[str], hyps: list[str], kept: list[int]) -> dict[str, Any]:
    """The kept output given for the most different sources: the line (cut to
    `TOP_LINE_CHARS`), its kept lines and their share of the kept pairs, its different
    sources and their share of the kept pairs' different sources. Different sources,
    because a corpus that repeats a pair repeats its translation too; a collapsed teacher
    gives one output for thousands of different sentences."""
    lines = Counter(hyps[i] for i in kept)
    sources_per_line = Counter(hyp for hyp, _ in {(hyps[i], sources[i]) for i in kept})
    kept_sources = len({sources[i] for i in kept})
    # the first in corpus order among equals: a Counter keeps insertion order
    top = max(lines, key=lambda h: (sources_per_line[h], lines[h]), default="")
    cut = top if len(top) <= TOP_LINE_CHARS else top[: TOP_LINE_CHARS - 3] + "..."
    return {
        "line": cut,
        "lines": lines[top],
        "share": round(lines[top] / max(len(kept), 1), 6),
        "sources": sources_per_line[top],
        "source_share": round(sources_per_line[top] / max(kept_sources, 1), 6),
        "kept_sources": kept_sources,
    }


def degenerate_corpus(
    top: dict[str, Any], kept: int, c: FilterConfig, dev_bleu: float | None
) -> str:
    """Why the kept corpus is one output given for everything (see `top_output`), or ""."""
    if top["kept_sources"] < c.top_share_min_sources or top["source_share"] <= c.max_top_share:
        return ""
    bleu = "unknown" if dev_bleu is None else f"{dev_bleu:.2f}"
    return (
        f"the teacher's translations are degenerate: {top['lines']:,} of {kept:,} kept "
        f"lines ({top['share']:.1%}) are "
        f"{top['line']!r}, the output for {top['sources']:,} of {top['kept_sources']:,} "
        f"different sentences ({top['source_share']:.1%}, above filters.max_top_share "
        f"{c.max_top_share:g}); the teacher is probably undertrained (dev BLEU {bleu}): train "
        "it longer (more updates), or raise filters.max_top_share if this corpus is like that"
    )


def select_hypotheses(
    kept: list[int], hyps: list[str], references: list[str], n: int, how: str
) -> list[int]:
    """Which kept pairs of an n-best corpus (`hyps`: `n` hypotheses per source line, best
    first; `references`: one per source line) become training pairs, in corpus order:
    "all": every different hypothesis of a line; "closest": each line's hypothesis with the
    highest sentence chrF against its reference, the better-ranked among equals (Kim & Rush
    2016's seq-inter, with chrF in place of sentence BLEU: it has no zero counts to smooth)."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    lines: dict[int, list[int]] = {}
    for i in kept:
        lines.setdefault(i // n, []).append(i)
    chosen: list[int] = []
    for line, group in lines.items():
        if how == "closest":
            ref = [references[line]]
            chosen.append(max(group, key=lambda i: (chrf.sentence_score(hyps[i], ref).score, -i)))
        else:
            texts = {hyps[i]: i for i in reversed(group)}  # the best-ranked of equal texts
            chosen.extend(sorted(texts.values()))
    return chosen
