"""The benchmark report, built from results.jsonl alone: report.md and PNG plots.

Cells are grouped by test set and device (speed and memory are only comparable on one
machine and one workload). Per group: the Pareto frontier of BLEU against words/s and of
BLEU against memory (peak resident memory on CPU, GPU memory on CUDA), a plot of each,
and a table of every cell with its frontier memberships marked. Around them: the answer
in a few lines, the hardware, versions and thread settings, the sacrebleu signatures,
the spread of the repeats, failed cells and, given an older results file, what got faster
or slower.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nmt.bench.pareto import pareto_front
from nmt.bench.plot import Point, frontier_plot
from nmt.bench.records import latest, read_records
from nmt.fileio import atomic_write_text
from nmt.machine import describe_cpu
from nmt.outputs import ensure_folder

log = logging.getLogger(__name__)

MAX_SPREAD = 0.10  # the largest spread of words/s across repeats we call reproducible


# --- what a record says, under readable names ------------------------------------------


def words_per_s(r: dict[str, Any]) -> float:
    return r["throughput"]["words_per_s"]["median"]


def memory_mb(r: dict[str, Any]) -> float:
    """GPU memory on CUDA (nvidia-smi's figure when it has one), else peak resident memory."""
    m = r["memory"]
    if r["cell"]["device"] == "cuda":
        return m.get("gpu_process_mb") or m.get("gpu_used_mb") or 0.0
    return m["peak_rss_mb"]


def label(r: dict[str, Any]) -> str:
    c = r["cell"]
    vmap = " vmap" if c["use_vmap"] else ""
    return (
        f"{c['model']} {compute(r)}{vmap} beam{c['beam_size']} bs{c['batch_size']} "
        f"t{thread_layout(c)}"
    )


def thread_layout(cell: dict[str, Any]) -> str:
    """`threads`, or `threads x translators` for parallel CTranslate2 translators."""
    translators = cell.get("translators", 1)
    return f"{cell['threads']}x{translators}" if translators > 1 else str(cell["threads"])


def compute(r: dict[str, Any]) -> str:
    """The requested compute type, and what ran where the engine fell back to another."""
    asked, ran = r["cell"]["compute_type"], r.get("model", {}).get("compute_type", "")
    if asked == "export":
        return f"export:{ran}" if ran and ran != "export" else "export"
    same = not ran or ran in (asked, f"{asked}_float32")  # CTranslate2 calls int8 int8_float32
    return asked if same else f"{asked}->{ran}"


# --- the report -------------------------------------------------------------------------


def write_report(
    results: str | Path,
    output_dir: str | Path,
    title: str = "benchmark",
    compare: str | Path | None = None,
) -> Path:
    """Write report.md and the plots for the records in `results`; return the report path."""
    results, out = Path(results), Path(output_dir)
    ensure_folder(out)
    current = list(latest(read_records(results)).values())
    ok = [r for r in current if r["status"] == "ok"]
    failed = [r for r in current if r["status"] != "ok"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in ok:
        groups.setdefault((r["cell"]["test_set"], r["cell"]["device"]), []).append(r)

    parts = [
        f"# Benchmark: {title}",
        "",
        f"Built from `{results.name}` ({len(ok)} cells measured, {len(failed)} failed) on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Speed is words of the "
        "hypotheses per second over the whole test set (batched), the median of the "
        "repeats; memory is peak resident memory on CPU and GPU memory on CUDA.",
        "",
    ]
    if not ok:
        parts += ["No cell has been measured yet.", ""]
    sections = [
        _group_section(out, test_set, device, rs) for (test_set, device), rs in groups.items()
    ]
    if sections:
        parts += ["## Answer", "", *(answer for answer, _ in sections)]
    parts += _machine_section(ok)
    parts += _spread_section(ok)
    for _, body in sections:
        parts += body
    if compare:
        parts += compare_section(read_records(compare), current, Path(compare).name)
    if failed:
        parts += ["## Failed cells (measured again by the next run)", ""]
        parts += [
            f"- `{r['cell_id']}`: {r.get('error')}: {_last_line(r.get('stderr_tail', ''))}"
            for r in failed
        ]
        parts.append("")
    parts += _settings_section(ok)
    report = out / "report.md"
    atomic_write_text(report, "\n".join(parts).rstrip() + "\n")
    return report


def _group_section(
    out: Path, test_set: str, device: str, records: list[dict[str, Any]]
) -> tuple[str, list[str]]:
    """(the group's answer paragraph, its section: plots and table)."""
    speed_front = pareto_front([(words_per_s(r), r["quality"]["bleu"]) for r in records])
    memory_front = pareto_front(
        [(memory_mb(r), r["quality"]["bleu"]) for r in records], maximize=(False, True)
    )
    memory_name = "GPU memory" if device == "cuda" else "peak RSS"
    footer = _footer(records)
    plots = []
    for kind, front, x_of, x_label, larger in (
        ("speed", speed_front, words_per_s, "words/s (median of repeats; bar: min-max)", True),
        ("memory", memory_front, memory_mb, f"{memory_name} (MB)", False),
    ):
        points = [
            Point(
                x=x_of(r),
                y=r["quality"]["bleu"],
                number=n,
                label=label(r),
                group=r["cell"]["backend"],
                detail=f"{r['quality']['bleu']:.2f} BLEU, {words_per_s(r):,.0f} words/s, "
                f"{memory_mb(r):,.0f} MB",
                x_low=r["throughput"]["words_per_s"]["min"] if kind == "speed" else None,
                x_high=r["throughput"]["words_per_s"]["max"] if kind == "speed" else None,
            )
            for n, r in enumerate(records, start=1)
        ]
        name = f"{test_set}-{device}-{kind}.png"
        better = "up and right" if larger else "up and left"
        frontier_plot(
            out / name,
            points,
            front,
            x_label=x_label,
            y_label="BLEU",
            title=f"{test_set} on {device}: BLEU vs {x_label.split(' (')[0]} ({better} is better)",
            x_larger_is_better=larger,
            footer=footer,
        )
        plots.append((name, kind))

    def cite(i: int) -> str:
        r = records[i]
        return (
            f"#{i + 1} {label(r)} ({r['quality']['bleu']:.2f} BLEU, "
            f"{words_per_s(r):,.0f} words/s, {memory_mb(r):,.0f} MB)"
        )

    fastest = max(range(len(records)), key=lambda i: words_per_s(records[i]))
    best = max(range(len(records)), key=lambda i: records[i]["quality"]["bleu"])
    smallest = min(range(len(records)), key=lambda i: memory_mb(records[i]))
    answer = [
        f"**{test_set} on {device}** ({records[0]['throughput']['sentences']} sentences)",
        f"- best BLEU: {cite(best)}",
        f"- fastest: {cite(fastest)}",
        f"- least {memory_name}: {cite(smallest)}",
    ]
    for name, front in (("speed", speed_front), (memory_name, memory_front)):
        answer.append(f"- BLEU/{name} frontier, best BLEU first:")
        answer += [
            f"  - {cite(i)}" for i in sorted(front, key=lambda i: -records[i]["quality"]["bleu"])
        ]
    body = [f"## {test_set} on {device}", ""]
    body += [f"![BLEU vs {kind}]({name})" for name, kind in plots] + [""]
    body += [
        "Frontier: **S** on the BLEU/words-per-second frontier, **M** on the "
        f"BLEU/{memory_name} frontier. Spread: (max - min) / median of words/s over the "
        "repeats. Latency: one sentence at a time.",
        "",
    ]
    body += _table(records, set(speed_front), set(memory_front), device)
    return "\n".join([*answer, ""]), body


def _table(records, speed_front: set[int], memory_front: set[int], device: str) -> list[str]:
    head = (
        "| # | frontier | model | backend | compute | threads | beam | batch | BLEU | chrF2 "
        "| words/s | spread | target tok/s | p50 ms | p90 ms | p99 ms | peak RSS MB "
        + ("| GPU MB " if device == "cuda" else "")
        + "| size MB | load s |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, r in enumerate(records):
        c, q, tp, lat = r["cell"], r["quality"], r["throughput"], r["latency_ms"]
        wps = tp["words_per_s"]
        marks = " ".join(m for m, f in (("**S**", speed_front), ("**M**", memory_front)) if i in f)
        spread = f"{wps['spread']:.1%}" + (" (!)" if wps["spread"] > MAX_SPREAD else "")
        vmap = " +vmap" if c["use_vmap"] else ""
        cells = [
            str(i + 1),
            marks,
            c["model"],
            c["backend"],
            compute(r) + vmap,
            thread_layout(c),
            str(c["beam_size"]),
            str(c["batch_size"]),
            f"{q['bleu']:.2f}",
            f"{q['chrf']:.2f}",
            f"{wps['median']:,.0f}",
            spread,
            f"{tp['target_tokens_per_s']['median']:,.0f}",
            *(_ms(lat, p) for p in ("p50", "p90", "p99")),
            f"{r['memory']['peak_rss_mb']:,.0f}",
            *([f"{memory_mb(r):,.0f}"] if device == "cuda" else []),
            f"{r['model']['size_mb']:,.1f}",
            f"{r['model']['load_s']:.2f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return [*rows, ""]


def _ms(latency: dict[str, Any], key: str) -> str:
    return f"{latency[key]:.1f}" if key in latency else "-"


def _plain(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _footer(records: list[dict[str, Any]]) -> str:
    hw = records[0]["hardware"]
    where = describe_cpu(hw) + (f", {hw['gpu']}" if hw.get("gpu") else "")
    threads = sorted({r["cell"]["threads"] for r in records})
    signature = records[0]["quality"]["bleu_signature"]
    return f"{where}; threads {threads}; nmt {records[0]['versions'].get('nmt')}; BLEU {signature}"


def _distinct(values: Iterable[Any]) -> list[Any]:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _machine_section(ok: list[dict[str, Any]]) -> list[str]:
    if not ok:
        return []
    lines = ["## Hardware, versions, signatures", ""]
    for hw in _distinct(r["hardware"] for r in ok):
        lines.append("- hardware: " + ", ".join(f"{k} {_plain(v)}" for k, v in hw.items()))
    for v in _distinct(r["versions"] for r in ok):
        lines.append("- versions: " + ", ".join(f"{k} {x}" for k, x in v.items() if x))
    for env in _distinct(r["environment"] for r in ok):
        shown = ", ".join(f"{k}={v}" for k, v in env.items()) or "none set"
        lines.append(f"- environment of the cells: {shown}")
    lines.append(
        "- threads: each cell's `threads` sets OMP/MKL/OpenBLAS threads, PyTorch's "
        "`set_num_threads` and CTranslate2's `intra_threads`; `1x2`: two CTranslate2 "
        "translators (`inter_threads`) of one thread each, each translate() call split "
        "between them"
    )
    loads = [x for r in ok for x in r["load_average"] if x is not None]
    if loads:
        lines.append(
            f"- 1-minute load average at cell start/end: {_span(loads, '', '.2f')} "
            "(includes the cell itself; other work on the machine slows cells down)"
        )
    base = [
        r["memory"]["rss_after_imports_mb"] for r in ok if r["memory"].get("rss_after_imports_mb")
    ]
    if base:
        lines.append(
            "- peak RSS includes the Python runtime and imports (torch, ctranslate2, "
            f"sacrebleu): {_span(base, ' MB')} resident before the model loads"
        )
    for s in _distinct(r["quality"]["bleu_signature"] for r in ok):
        lines.append(f"- BLEU signature: `{s}`")
    for s in _distinct(r["quality"]["chrf_signature"] for r in ok):
        lines.append(f"- chrF signature: `{s}`")
    return [*lines, ""]


def _spread_section(ok: list[dict[str, Any]]) -> list[str]:
    if not ok:
        return []
    spreads = sorted(r["throughput"]["words_per_s"]["spread"] for r in ok)
    repeats = sorted({r["cell"]["repeats"] for r in ok})
    wide = [r for r in ok if r["throughput"]["words_per_s"]["spread"] > MAX_SPREAD]
    lines = [
        "## Reproducibility",
        "",
        f"Words/s across {'/'.join(map(str, repeats))} repeats of each cell: relative spread "
        f"(max - min) / median is {spreads[len(spreads) // 2]:.1%} at the median cell and "
        f"{spreads[-1]:.1%} at most.",
    ]
    if wide:
        lines.append(f"{len(wide)} cells spread more than {MAX_SPREAD:.0%}:")
        lines += [
            f"- `{r['cell_id']}`: {r['throughput']['words_per_s']['runs']} words/s"
            + _steal_note(r["throughput"].get("steal_percent"))
            for r in wide
        ]
    else:
        lines.append(f"Every cell is within {MAX_SPREAD:.0%}.")
    steal = [x for r in ok for x in r["throughput"].get("steal_percent") or [] if x is not None]
    if steal:
        lines.append(
            f"CPU time stolen by the hypervisor during the timed passes: {max(steal):.1f}% "
            "at most (a virtual machine's neighbours slow it down by that share)."
        )
    changed = [r["cell_id"] for r in ok if not r["quality"].get("same_output_every_repeat", True)]
    if changed:
        lines.append("Output differed between repeats in: " + ", ".join(changed))
    return [*lines, ""]


def _steal_note(steal: list[float | None] | None) -> str:
    if not steal or all(x is None for x in steal):
        return ""
    shares = ("?" if x is None else f"{x:.1f}%" for x in steal)  # None: not measurable here
    return " (stolen CPU time per pass: " + ", ".join(shares) + ")"


def _settings_section(ok: list[dict[str, Any]]) -> list[str]:
    if not ok:
        return []
    lines = ["## Settings", ""]
    for d in _distinct(r["cell"]["decoding"] for r in ok):
        lines.append("- decoding: " + ", ".join(f"{k} {v}" for k, v in d.items()))
    protocols = _distinct(
        (
            r["cell"]["repeats"],
            r["cell"]["warmup_batches"],
            r["cell"]["latency_sentences"],
            r["cell"].get("min_pass_seconds", 0.0),
        )
        for r in ok
    )
    for repeats, warmup, latency, min_pass in protocols:
        passes = f"{repeats} timed passes over the test set"
        if min_pass:
            passes = (
                f"untimed passes over the test set, then {repeats} timed passes of about "
                f"{min_pass:g} s each (the test set translated as many times as that takes)"
            )
        lines.append(
            f"- protocol: {warmup} warm-up batches, {passes}, latency over {latency} "
            "sentences one at a time; each cell in a fresh process"
        )
    pinned = sorted({tuple(r["cpus"]) for r in ok if r["cell"].get("pin_cpus") and r.get("cpus")})
    if pinned:
        lines.append(
            "- CPU pinning: a cell that needs fewer CPUs than the machine has runs on the "
            "last ones; the CPUs the cells' threads could run on: "
            + "; ".join(",".join(map(str, c)) for c in pinned)
        )
    for test in _distinct(
        (
            r["cell"]["test_set"],
            r["cell"]["src"],
            r["cell"]["ref"],
            r["cell"]["min_words"],
            r["cell"]["max_lines"],
            r["throughput"]["sentences"],
        )
        for r in ok
    ):
        name, src, ref, min_words, max_lines, n = test
        chosen = (f"lines of >= {min_words} source words, " if min_words else "") + (
            f"the first {max_lines}" if max_lines else "all"
        )
        lines.append(f"- test set {name}: `{src}` / `{ref}`; {chosen}: {n} sentences")
    for model in _distinct(
        (r["cell"]["model"], r["cell"]["path"], *r["cell"].get("ensemble", ())) for r in ok
    ):
        members = " + ".join(f"`{p}`" for p in model[1:])
        lines.append(f"- model {model[0]}: {members}" + (" (ensemble)" if len(model) > 2 else ""))
    return [*lines, ""]


def compare_section(
    old_records: list[dict[str, Any]], current: list[dict[str, Any]], old_name: str
) -> list[str]:
    """What got faster or slower than in `old_records`, cell by cell (matched by cell_id).
    A change counts when it is larger than 5% and than either run's repeat spread."""
    old = {k: r for k, r in latest(old_records).items() if r["status"] == "ok"}
    new = {r["cell_id"]: r for r in current if r["status"] == "ok"}
    both = [k for k in new if k in old]
    lines = [f"## Compared with {old_name}", ""]
    if not both:
        return [*lines, "No cell of this run was measured in the old results.", ""]
    if _distinct(old[k]["hardware"] for k in both) != _distinct(new[k]["hardware"] for k in both):
        lines += ["Note: the hardware differs between the two runs.", ""]
    rows = []
    for k in both:
        o, n = old[k], new[k]
        change = words_per_s(n) / words_per_s(o) - 1 if words_per_s(o) else 0.0
        noise = max(
            0.05,
            o["throughput"]["words_per_s"]["spread"],
            n["throughput"]["words_per_s"]["spread"],
        )
        verdict = "faster" if change > noise else "slower" if change < -noise else "same"
        rows.append((change, k, o, n, verdict))
    rows.sort(key=lambda row: row[0], reverse=True)
    counts = {v: sum(row[4] == v for row in rows) for v in ("faster", "slower", "same")}
    lines += [
        f"{counts['faster']} cells faster, {counts['slower']} slower, {counts['same']} within "
        "noise (5% or the repeats' spread, whichever is larger).",
        "",
        "| cell | words/s old | words/s new | change | verdict | BLEU old -> new "
        "| memory MB old -> new |",
        "|---|---|---|---|---|---|---|",
    ]
    for change, k, o, n, verdict in rows:
        lines.append(
            f"| `{k}` | {words_per_s(o):,.0f} | {words_per_s(n):,.0f} | {change:+.1%} | "
            f"{'**' + verdict + '**' if verdict != 'same' else verdict} | "
            f"{o['quality']['bleu']:.2f} -> {n['quality']['bleu']:.2f} | "
            f"{memory_mb(o):,.0f} -> {memory_mb(n):,.0f} |"
        )
    gone = [k for k in old if k not in new]
    if gone:
        lines += ["", "Only in the old results: " + ", ".join(f"`{k}`" for k in gone)]
    return [*lines, ""]


def _span(values: list[float], unit: str, fmt: str = ",.0f") -> str:
    low, high = format(min(values), fmt), format(max(values), fmt)
    return f"{low}{unit}" if low == high else f"{low} to {high}{unit}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no error output)"
