"""The export issue's four targets, read from a results.jsonl of the export grid.

    python benchmarks/experiments/export_targets.py \
        benchmarks/results/export-multi30k-avx2/results.jsonl

The grid is `benchmarks/experiments/export-multi30k.yaml` (or the copy `scripts/export_multi30k.sh`
writes for another run): models named pytorch, ct2, ct2-int8, ct2-int8-x2, onnx, onnx-int8.
Prints markdown tables: CTranslate2 int8 against PyTorch float32 words/s (target >= 4x),
int8 BLEU against float32 (within 0.3), int8 model files against float32 (<= 30%), int8 +
vmap against int8 (faster at BLEU within 0.3). Sizes are read from the export folders named
in the records, when they are still on disk.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nmt.bench.records import read_records

RATIO_TARGET, BLEU_TOLERANCE, SIZE_TARGET = 4.0, 0.3, 0.30
BEAMS = (1, 4)


def index(records: list[dict]) -> dict[tuple, dict]:
    """Successful cells by (model name, layout, vmap, beam); layout t1, t2 or t1x2."""
    cells = {}
    for r in records:
        if r.get("status") != "ok":
            continue
        c = r["cell"]
        layout = f"t{c['threads']}" + ("x2" if c.get("translators", 1) == 2 else "")
        cells[c["model"], layout, bool(c["use_vmap"]), c["beam_size"]] = r
    return cells


def wps(r: dict) -> float:
    return r["throughput"]["words_per_s"]["median"]


def ratio_table(cells: dict) -> list[str]:
    lines = [
        "| cores | beam | PyTorch fp32 words/s | CT2 int8 (layout) | ratio | int8 + vmap | ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for cores, torch_layout, ct2_layouts in ((1, "t1", ("t1",)), (2, "t2", ("t1x2", "t2"))):
        for layout in ct2_layouts:
            model = "ct2-int8-x2" if layout == "t1x2" else "ct2-int8"
            for beam in BEAMS:
                base = cells.get(("pytorch", torch_layout, False, beam))
                int8 = cells.get((model, layout, False, beam))
                vmap = cells.get((model, layout, True, beam))
                if not (base and int8 and vmap):
                    continue
                r1, r2 = wps(int8) / wps(base), wps(vmap) / wps(base)
                lines.append(
                    f"| {cores} | {beam} | {wps(base):,.0f} | {wps(int8):,.0f} ({layout}) | "
                    f"{_mark(r1, r1 >= RATIO_TARGET)} | {wps(vmap):,.0f} | "
                    f"{_mark(r2, r2 >= RATIO_TARGET)} |"
                )
    return lines


def bleu_table(cells: dict) -> list[str]:
    lines = [
        "| beam | CT2 float32 | CT2 int8 | int8 + vmap | int8 t1x2 | ONNX float32 | ONNX int8 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for beam in BEAMS:
        ct2 = cells.get(("ct2", "t1", False, beam))
        onnx = cells.get(("onnx", "t1", False, beam))
        row = [str(beam), _bleu(ct2)]
        for key in (
            ("ct2-int8", "t1", False),
            ("ct2-int8", "t1", True),
            ("ct2-int8-x2", "t1x2", False),
        ):
            row.append(_bleu(cells.get((*key, beam)), ct2))
        row += [_bleu(onnx), _bleu(cells.get(("onnx-int8", "t1", False, beam)), onnx)]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def size_table(cells: dict) -> list[str]:
    lines = ["| engine | float32 | int8 | ratio |", "|---|---:|---:|---:|"]
    for engine, fp32, int8, names in (
        ("CTranslate2 `model.bin`", "ct2", "ct2-int8", ("model.bin",)),
        ("ONNX encoder + decoder", "onnx", "onnx-int8", ("encoder.onnx", "decoder.onnx")),
    ):
        sizes = [_model_bytes(cells, model, names) for model in (fp32, int8)]
        if None in sizes:
            lines.append(f"| {engine} | ? | ? | export folders not on disk |")
            continue
        share = sizes[1] / sizes[0]
        mark = _mark(share, share <= SIZE_TARGET, ".1%")
        lines.append(f"| {engine} | {sizes[0]:,} B | {sizes[1]:,} B | {mark} |")
    return lines


def vmap_table(cells: dict) -> list[str]:
    lines = [
        "| layout | beam | int8 words/s | + vmap | speed | BLEU change |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model, layout in (("ct2-int8", "t1"), ("ct2-int8-x2", "t1x2"), ("ct2-int8", "t2")):
        for beam in BEAMS:
            off, on = (
                cells.get((model, layout, False, beam)),
                cells.get((model, layout, True, beam)),
            )
            if not (off and on):
                continue
            speed = wps(on) / wps(off)
            change = on["quality"]["bleu"] - off["quality"]["bleu"]
            met = speed > 1.0 and abs(change) <= BLEU_TOLERANCE
            lines.append(
                f"| {layout} | {beam} | {wps(off):,.0f} | {wps(on):,.0f} | "
                f"{_mark(speed, met)} | {change:+.2f} |"
            )
    return lines


def _mark(value: float, met: bool, spec: str = ".2f") -> str:
    text = f"{value:{spec}}" + ("" if spec.endswith("%") else "x")
    return f"**{text}**" if met else f"{text} (missed)"


def _bleu(r: dict | None, reference: dict | None = None) -> str:
    if r is None:
        return "-"
    bleu = r["quality"]["bleu"]
    if reference is None:
        return f"{bleu:.2f}"
    change = bleu - reference["quality"]["bleu"]
    text = f"{bleu:.2f} ({change:+.2f})"
    return text if abs(change) <= BLEU_TOLERANCE else text + " (missed)"


def _model_bytes(cells: dict, model: str, names: tuple[str, ...]) -> int | None:
    r = next((r for (m, *_), r in cells.items() if m == model), None)
    if r is None:
        return None
    folder = Path(r["cell"]["model_files"][0]).parent
    files = [folder / name for name in names]
    return sum(f.stat().st_size for f in files) if all(f.is_file() for f in files) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.jsonl of the export grid")
    args = parser.parse_args()
    cells = index(read_records(args.results))
    sections = (
        (f"CTranslate2 int8 >= {RATIO_TARGET:g}x PyTorch float32 words/s", ratio_table),
        (f"int8 BLEU within {BLEU_TOLERANCE} of float32", bleu_table),
        (f"int8 model <= {SIZE_TARGET:.0%} of the float32 size", size_table),
        (f"int8 + vmap faster than int8, BLEU within {BLEU_TOLERANCE}", vmap_table),
    )
    for title, table in sections:
        print(f"## {title}\n")
        print("\n".join(table(cells)) + "\n")


if __name__ == "__main__":
    main()
