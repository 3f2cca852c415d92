"""The model zoo of a pipeline: every model's shape, size, scores and speed in one table.

`write_zoo` translates the whole test set with each model's export (greedy and beam 4,
one thread, no vocabulary map), scores it with sacrebleu, takes the speeds the benchmark
measured (`ROOT/bench/results.jsonl`) and writes

    ZOO/zoo.md, zoo.json            the table, with signatures, hardware and settings
    ZOO/translations/NAME.beamK.TGT the test-set translations, line-aligned with the source
    ZOO/configs/NAME.yaml           the run config each model was trained with

so that a reader can check every number without the weights. A model's "export" may also be
a PyTorch weights folder, and a row may be an ensemble of such folders (`ZooModel.ensemble`:
the teacher of issue 18). `write_release` copies one model's export into a release folder
with a model card (README.md) built from its zoo row; the card names the languages, the
dataset and its licence from the corpus zoo.json records (`corpus`: a run's data config).
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt import machine
from nmt.bench.records import latest, read_records
from nmt.config import DataConfig, from_dict
from nmt.data.corpus import read_parallel
from nmt.data.datasets import DATASETS
from nmt.export.argos import LANGUAGE_NAMES
from nmt.export.argos_card import DATA_LICENCES
from nmt.fileio import atomic_write_bytes, atomic_write_text
from nmt.outputs import claim, ensure_folder
from nmt.scoring import score
from nmt.translate import load

RELEASE = "nmt-release"  # the kind of output a release folder is (nmt.outputs)
BEAMS = (1, 4)
OWN_LICENCE = "see the data's own licence"  # the licence of data that is not registered
EXAMPLE = "A man rides a bike down the street."  # for a zoo.json without its test set's example


@dataclass(frozen=True)
class ZooModel:
    """A trained model of the pipeline: its run folder, its export and what it learnt from."""

    name: str
    run_dir: Path
    export_dir: Path
    data: str  # "original" (the teacher), "distilled", "mix"
    bench_name: str  # the export's model name in the benchmark records
    pytorch_bench_name: str = ""  # the run folder's, when the benchmark measured PyTorch
    ensemble: tuple[Path, ...] = ()  # further members decoding with export_dir (PyTorch)


def write_zoo(
    models: list[ZooModel],
    src: Path,
    ref: Path,
    out_dir: Path,
    bench_results: Path | None = None,
    data: DataConfig | None = None,
) -> dict[str, Any]:
    """Translate, score, tabulate; returns what zoo.json holds. `data` is the corpus the
    models learnt from (the teacher's), whose target language names the translation files
    and whose languages, dataset and licence the model cards give; default: the first
    model's run config's."""
    if data is None:
        data = run_data(models[0].run_dir)
    sources, references = read_parallel(src, ref)
    records = _bench_records(bench_results)
    rows = []
    for model in models:
        row = _describe(model)
        translator = load([model.export_dir, *model.ensemble], threads=1)
        options = {"use_vmap": False} if translator.backend == "ctranslate2" else {}
        for beam in BEAMS:
            hyps = translator.translate(sources, beam_size=beam, **options)
            path = out_dir / "translations" / f"{model.name}.beam{beam}.{data.tgt_lang}"
            ensure_folder(path.parent)
            atomic_write_text(path, "".join(h + "\n" for h in hyps))
            row[f"beam{beam}"] = {**score(hyps, references).as_dict(), "file": str(path)}
            row[f"beam{beam}"]["speed"] = _speed(records, model.bench_name, beam)
            if model.pytorch_bench_name:
                row[f"beam{beam}"]["pytorch_speed"] = _speed(
                    records, model.pytorch_bench_name, beam
                )
        config = out_dir / "configs" / f"{model.name}.yaml"
        ensure_folder(config.parent)
        atomic_write_bytes(config, (model.run_dir / "config.yaml").read_bytes())
        rows.append(row)
    zoo = {
        "test_set": {
            "src": str(src),
            "ref": str(ref),
            "sentences": len(sources),
            "example": sources[0] if sources else EXAMPLE,  # the model card's example
        },
        "corpus": corpus(data),
        "hardware": machine.hardware("cpu"),
        "versions": machine.versions(),
        "models": rows,
    }
    atomic_write_text(out_dir / "zoo.json", json.dumps(zoo, indent=2) + "\n")
    atomic_write_text(out_dir / "zoo.md", markdown(zoo))
    return zoo


def _describe(model: ZooModel) -> dict[str, Any]:
    config = json.loads(json.dumps(_yaml(model.run_dir / "config.yaml")))
    summary = json.loads((model.run_dir / "summary.json").read_text(encoding="utf-8"))
    m = config["model"]
    folders = [model.export_dir, *model.ensemble]
    size = sum(f.stat().st_size for d in folders for f in d.iterdir() if f.is_file())
    export_info = json.loads((model.export_dir / "nmt_export.json").read_text(encoding="utf-8"))
    layers = f"{m['enc_layers']}-{m['dec_layers']}"
    parameters = summary["parameters"]
    if model.ensemble:  # members of one shape (nmt.ensemble checks their vocabulary)
        layers = f"{len(folders)} x {layers}"
        parameters *= len(folders)
    return {
        "name": model.name,
        "data": model.data,
        "layers": layers,
        "d_model": m["d_model"],
        "ffn": m["ffn"],
        "heads": m["heads"],
        "parameters": parameters,
        "export": str(model.export_dir),
        "ensemble": [str(p) for p in model.ensemble],
        "quantization": export_info.get("quantization"),
        "export_mb": round(size / 1e6, 2),
        "training": {
            "steps": summary["steps"],
            "minutes": round(summary["wall_time_s"] / 60, 1),
            "tgt_tokens_per_s": summary["mean_tgt_tokens_per_s"],
            "stop_reason": summary["stop_reason"],
            "precision": summary["precision"],
            "threads": summary["threads"],
            "adopted": summary.get("adopted", {}).get(
                "source", ""
            ),  # nmt.training.adopt: not trained
        },
    }


def _training(t: dict[str, Any]) -> str:
    if t.get("adopted"):
        return f"adopted: {t['adopted']} ({t['steps']} steps)"
    return f"{t['steps']} steps, {t['minutes']} min, {t['precision']}"


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def run_data(run_dir: Path) -> DataConfig:
    """The data section of the run config in `run_dir` (its config.yaml)."""
    return from_dict(DataConfig, _yaml(run_dir / "config.yaml").get("data") or {}, "data.")


def corpus(data: DataConfig) -> dict[str, str]:
    """What a model card says of the data: both languages (by name, from the table of
    nmt.export.argos, else by code), the dataset and its licence: a registered dataset's
    (nmt.data.datasets, with the terms nmt.export.argos_card records for it), else the
    training files' prefix and "see the data's own licence"."""
    if data.dataset in DATASETS:
        note = DATASETS[data.dataset].note
        title, _, licence = DATA_LICENCES.get(data.dataset, (data.dataset, "", note))
    else:
        title, licence = data.prepared or str(Path(data.data_dir, data.train)), OWN_LICENCE
    return {
        "src_lang": data.src_lang,
        "tgt_lang": data.tgt_lang,
        "source": LANGUAGE_NAMES.get(data.src_lang, data.src_lang),
        "target": LANGUAGE_NAMES.get(data.tgt_lang, data.tgt_lang),
        "dataset": title,
        "licence": licence,
    }


def _test_set_corpus(test_set: dict[str, Any]) -> dict[str, str]:
    """The corpus of a zoo.json written before it recorded one: the test files' languages,
    and their dataset when they are a registered dataset's files (DIR/NAME/FILE)."""
    src, ref = Path(test_set["src"]), Path(test_set["ref"])
    registered = [
        key
        for key, dataset in DATASETS.items()
        if dataset.name == src.parent.name and src.name in {f.name for f in dataset.files}
    ]
    dataset = registered[0] if registered else ""
    langs = {"src_lang": src.suffix[1:], "tgt_lang": ref.suffix[1:]}
    return corpus(DataConfig(dataset=dataset, train=str(src.with_suffix("")), **langs))


def _bench_records(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.is_file():
        return []
    return [r for r in latest(read_records(path)).values() if r.get("status") == "ok"]


def _speed(records: list[dict[str, Any]], model: str, beam: int) -> dict[str, Any] | None:
    """Target tokens/s of the model's one-thread cell at this beam, without the vocabulary
    map when that was measured, else with it (None: not measured), with its settings."""
    cells = [
        r
        for r in records
        if r["cell"]["model"] == model
        and r["cell"]["beam_size"] == beam
        and r["cell"]["threads"] == 1
        and r["cell"].get("translators", 1) == 1
    ]
    if not cells:
        return None
    r = min(cells, key=lambda r: bool(r["cell"].get("use_vmap")))
    c = r["cell"]
    return {
        "tgt_tokens_per_s": r["throughput"]["target_tokens_per_s"]["median"],
        "words_per_s": r["throughput"]["words_per_s"]["median"],
        "spread": r["throughput"]["words_per_s"]["spread"],
        "batch_size": c["batch_size"],
        "threads": c["threads"],
        "use_vmap": bool(c.get("use_vmap")),
        "compute_type": r["model"]["compute_type"],
        "sentences": r["throughput"]["sentences"],
    }


def markdown(zoo: dict[str, Any]) -> str:
    rows = zoo["models"]
    teacher = rows[0]
    sig = rows[0]["beam1"]
    hw = zoo["hardware"]

    def tok_s(speed: dict[str, Any] | None) -> str:
        if not speed:
            return "-"
        return f"{speed['tgt_tokens_per_s']:,.0f}" + (" (vmap)" if speed["use_vmap"] else "")

    lines = [
        "# Model zoo",
        "",
        f"Test set: `{zoo['test_set']['src']}` ({zoo['test_set']['sentences']} sentences), "
        "whole set, translated by each model's export (CTranslate2 without its vocabulary map; "
        "PyTorch for a weights folder or an ensemble of them), one thread. "
        f"BLEU signature `{sig['bleu_signature']}`, chrF `{sig['chrf_signature']}`.",
        f"Speed: target tokens/s measured by nmt-bench (median of the repeats, 1 thread, "
        f"batch of 32 sentences, the int8 export without its vocabulary map unless marked) on "
        f"{machine.describe_cpu(hw)}; '-': not measured.",
        "",
        "| model | learnt from | layers | d_model | FFN | parameters | x teacher | export MB "
        "| greedy BLEU / chrF2 | beam 4 BLEU / chrF2 | tok/s greedy | tok/s beam 4 | training |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["training"]
        lines.append(
            f"| {r['name']} | {r['data']} | {r['layers']} | {r['d_model']} | {r['ffn']} | "
            f"{r['parameters'] / 1e6:.1f}M | {r['parameters'] / teacher['parameters']:.2f} | "
            f"{r['export_mb']:.1f} ({r['quantization']}) | "
            f"{r['beam1']['bleu']:.2f} / {r['beam1']['chrf']:.2f} | "
            f"{r['beam4']['bleu']:.2f} / {r['beam4']['chrf']:.2f} | "
            f"{tok_s(r['beam1']['speed'])} | {tok_s(r['beam4']['speed'])} | "
            f"{_training(t)} |"
        )
    pytorch = teacher["beam4"].get("pytorch_speed")
    if pytorch:
        lines += [
            "",
            f"The teacher in PyTorch float32, beam 4, 1 thread, batch 32: "
            f"{pytorch['tgt_tokens_per_s']:,.0f} target tokens/s. Each model's greedy int8 "
            "throughput against it:",
            "",
        ]
        for r in rows:
            speed = r["beam1"]["speed"]
            if speed:
                ratio = speed["tgt_tokens_per_s"] / pytorch["tgt_tokens_per_s"]
                lines.append(f"- {r['name']}: {ratio:.1f}x")
    lines += [
        "",
        "Translations: `translations/NAME.beam{1,4}.*`; run configs: `configs/NAME.yaml`.",
        "",
    ]
    return "\n".join(lines)


def write_release(zoo: dict[str, Any], name: str, out_dir: Path, notes: str = "") -> Path:
    """Copy model `name`'s export (CTranslate2 model, SentencePiece model, provenance) to
    `out_dir` and write its model card; returns the card's path. An earlier release at
    `out_dir` is replaced; any other folder there is refused (see `nmt.outputs`)."""
    rows = {r["name"]: r for r in zoo["models"]}
    if name not in rows:
        raise ValueError(f"release: no model {name!r} in the zoo (models: {', '.join(rows)})")
    row, teacher = rows[name], zoo["models"][0]
    export = Path(row["export"])
    # An earlier release is replaced; anything else at `out_dir` (a user's folder) is refused.
    output = claim(out_dir, RELEASE, inputs=(export,), force=True)
    with output.staging() as staging:
        shutil.copytree(export, staging)
        (staging / "README.md").write_text(model_card(zoo, row, teacher, out_dir, notes))
    return out_dir / "README.md"


def distillation_notes(stats: dict[str, Any], teacher: str, data: str) -> str:
    """The model card's distillation section, from nmt-distill's stats.json; `data` is what
    the student learnt from: "distilled" or "mix" (original + distilled pairs)."""
    s = stats["settings"]
    filtered = ", ".join(f"{n:,} {name}" for name, n in stats["filtered"].items() if n) or "none"
    return "\n".join(
        [
            "## Distillation",
            "",
            f"- Teacher `{teacher}` ({s['backend']} backend, compute type {s['compute_type']}, "
            f"beam {s['beam_size']}, length penalty {s['length_penalty']}, at most "
            f"{s['max_len_a']} x source length + {s['max_len_b']} tokens) translated the "
            f"{stats['lines']:,} training sentences in {stats['translate_seconds']:.0f} s "
            f"({s['workers']} workers of {s['threads']} thread).",
            f"- Kept {stats['kept']:,} pairs; dropped: {filtered} (filters: "
            + ", ".join(f"{k} {v}" for k, v in stats["filters"].items())
            + ").",
            "- The student learnt from the kept pairs alone (the teacher's translations as "
            "targets)."
            if data == "distilled"
            else "- The student learnt from the original pairs and the kept pairs together.",
        ]
    )


def model_card(
    zoo: dict[str, Any], row: dict[str, Any], teacher: dict[str, Any], out_dir: Path, notes: str
) -> str:
    """A release's README.md: what the model translates and learnt from (the zoo's corpus:
    languages, dataset, licence), its scores with their signatures, its speed, how to run
    it and how it was made; `notes` are appended."""
    info = json.loads((Path(row["export"]) / "nmt_export.json").read_text(encoding="utf-8"))
    lines = [
        *_card_summary(
            row, teacher, zoo.get("corpus") or _test_set_corpus(zoo["test_set"]), out_dir
        ),
        *_card_scores(zoo, row, teacher),
        *_card_speed(zoo, row, teacher),
        *_card_use(zoo, out_dir, int(info["position_table_rows"])),
        *_card_training(row, info),
    ]
    if notes:
        lines += ["", notes]
    lines.append("")
    return "\n".join(lines)


def _card_summary(
    row: dict[str, Any], teacher: dict[str, Any], data: dict[str, str], out_dir: Path
) -> list[str]:
    """The title, what the model is and what it learnt from, and that data's licence."""
    languages = f"{data['source']} -> {data['target']}"
    return [
        f"# {out_dir.name}: {languages}, {row['layers']} layers, d_model {row['d_model']}",
        "",
        f"A compact Transformer ({row['layers']} encoder-decoder layers, d_model {row['d_model']}, "
        f"FFN {row['ffn']}, {row['heads']} heads, {row['parameters']:,} parameters, "
        f"{row['parameters'] / teacher['parameters']:.2f}x the teacher's) exported to "
        f"CTranslate2 {row['quantization']} ({row['export_mb']:.1f} MB with its SentencePiece "
        f"model). Trained by nmt on {data['dataset']} ({languages}): "
        f"learnt from **{row['data']}** data"
        + (
            f" (the teacher `{teacher['name']}`'s beam-search translations of the training set)."
            if row["data"] != "original"
            else "."
        ),
        "",
        "## Data and licence",
        "",
        f"- {data['dataset']}: {data['licence']}.",
        "- The model weights are derived from this data: share and use them under its terms.",
        "",
    ]


def _card_scores(zoo: dict[str, Any], row: dict[str, Any], teacher: dict[str, Any]) -> list[str]:
    greedy, beam4 = row["beam1"], row["beam4"]
    return [
        "## Scores",
        "",
        f"Test set `{zoo['test_set']['src']}` ({zoo['test_set']['sentences']} sentences), "
        f"this {row['quantization']} export, one thread, no vocabulary map:",
        "",
        "| decoding | BLEU | chrF2 |",
        "|---|---|---|",
        f"| greedy | {greedy['bleu']:.2f} | {greedy['chrf']:.2f} |",
        f"| beam 4 | {beam4['bleu']:.2f} | {beam4['chrf']:.2f} |",
        f"| teacher `{teacher['name']}`, beam 4 | {teacher['beam4']['bleu']:.2f} | "
        f"{teacher['beam4']['chrf']:.2f} |",
        "",
        f"BLEU `{greedy['bleu_signature']}`; chrF `{greedy['chrf_signature']}`.",
        "",
    ]


def _card_speed(zoo: dict[str, Any], row: dict[str, Any], teacher: dict[str, Any]) -> list[str]:
    speed = row["beam1"].get("speed")
    teacher_pt = teacher["beam4"].get("pytorch_speed")
    lines = ["## Speed", ""]
    if not speed:
        return [*lines, "Not measured."]
    lines.append(
        f"Greedy over {speed['sentences']} test sentences in batches of "
        f"{speed['batch_size']}, {speed['threads']} thread, "
        f"compute type {speed['compute_type']}"
        f"{', vocabulary map on' if speed['use_vmap'] else ''}: "
        f"{speed['tgt_tokens_per_s']:,.0f} target "
        f"tokens/s ({speed['words_per_s']:,.0f} words/s; spread over the repeats "
        f"{speed['spread']:.0%}) on {machine.describe_cpu(zoo['hardware'])}, "
        f"CTranslate2 {zoo['versions'].get('ctranslate2')}."
    )
    if teacher_pt:
        ratio = speed["tgt_tokens_per_s"] / teacher_pt["tgt_tokens_per_s"]
        lines.append(
            f"The teacher in PyTorch float32 (beam 4, same batch and threads, same "
            f"benchmark run): {teacher_pt['tgt_tokens_per_s']:,.0f} target tokens/s, "
            f"so this model is **{ratio:.1f}x** faster."
        )
    return lines


def _card_use(zoo: dict[str, Any], out_dir: Path, rows: int) -> list[str]:
    """How to run the release, with plain CTranslate2 and with nmt, on a test-set line;
    `rows`: the export's position table."""
    example = zoo["test_set"].get("example") or EXAMPLE
    return [
        "",
        "## Use",
        "",
        "With plain CTranslate2 and SentencePiece (the model appends the end-of-sentence "
        f"token itself; outputs longer than {rows - 1} tokens would leave its position table):",
        "",
        "```python",
        "import ctranslate2",
        "import sentencepiece as spm",
        "",
        f'sp = spm.SentencePieceProcessor(model_file="{out_dir}/spm.model")',
        f'translator = ctranslate2.Translator("{out_dir}", device="cpu", intra_threads=1)',
        f"pieces = sp.encode([{json.dumps(example, ensure_ascii=False)}], out_type=str)",
        "results = translator.translate_batch(",
        f"    pieces, beam_size=1, max_decoding_length={min(rows - 1, 256)}",
        ")",
        "print(sp.decode(results[0].hypotheses[0]))",
        "```",
        "",
        "With nmt (same decoding rules as every nmt backend):",
        "",
        "```",
        f"echo {shlex.quote(example)} | nmt-translate -m {out_dir} --beam 1",
        "```",
        "",
    ]


def _card_training(row: dict[str, Any], info: dict[str, Any]) -> list[str]:
    t = row["training"]
    return [
        "## Training",
        "",
        f"- {t['steps']} steps, {t['minutes']} min wall clock, {t['precision']}, "
        f"{t['threads']} threads, {t['tgt_tokens_per_s']:,.0f} target tokens/s "
        f"(stopped: {t['stop_reason']}); model config and provenance: `nmt_export.json` "
        "beside this card.",
        f"- Export: nmt {info.get('nmt_version')}, CTranslate2 {info.get('ctranslate2_version')}, "
        f"{info.get('quantization')}, from `{info.get('source_checkpoint')}`.",
    ]
