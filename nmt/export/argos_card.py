"""The model card (README.md) of an Argos Translate package: what it translates, the model's
shape, its training data and that data's licence, the scores its source carries (with their
sacrebleu signatures), how Argos runs it, and where its provenance is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nmt.export.folder import EXPORT_INFO

# The terms of the registered corpora (nmt.data.datasets), for the model card.
DATA_LICENCES = {
    "multi30k": (
        "Multi30k",
        "Multi30k task 1 (Elliott et al. 2016), English-German captions of Flickr30k images",
        "research and non-commercial use only (the Flickr30k images' terms): do not use "
        "this model commercially",
    ),
    "tatoeba": (
        "Tatoeba",
        "Tatoeba sentence pairs (manythings.org/anki deu-eng export)",
        "CC BY 2.0: credit the Tatoeba contributors (tatoeba.org) when you share it",
    ),
}


def training_data(state: dict[str, Any] | None, card: str) -> dict[str, Any]:
    """What the model learnt from, with its licence: the checkpoint's run config names its
    dataset; an export's model card is searched for the registered corpora's names."""
    names: list[str] = []
    train = None
    if state is not None:
        data = (state.get("run_config") or {}).get("data") or {}
        if data.get("dataset"):
            names.append(str(data["dataset"]))
        train = data.get("train")
    else:
        for key, (title, _, _) in DATA_LICENCES.items():
            if re.search(rf"\b{re.escape(title)}\b", card, re.IGNORECASE):
                names.append(key)
    corpora = []
    for name in names:
        title, description, licence = DATA_LICENCES.get(
            name, (name, name, "unknown: check the corpus's terms before sharing this model")
        )
        corpora.append({"dataset": name, "description": description, "licence": licence})
    return {"corpora": corpora, "train_files": train}


def model_card(
    provenance: dict[str, Any], info: dict[str, Any], scores: str, provenance_file: str
) -> str:
    """README.md: what the package translates, the model's shape, its data and licence, the
    scores its source carries (with signatures), how Argos runs it, and its provenance."""
    meta = provenance["metadata"]
    c = info.get("model_config", {})
    shape = f"{c.get('enc_layers')}-{c.get('dec_layers')}"
    corpora = provenance["training_data"]["corpora"]
    splitter = provenance["sentence_splitter"]
    d, argos_version = provenance["argos_decoding"], provenance["argos_version"]
    vmap_note = (
        "; `model/vmap.txt` is its vocabulary map (Argos does not use it)."
        if provenance["vocabulary_map"]
        else "."
    )
    lines = [
        f"# {meta['from_name']} -> {meta['to_name']}: nmt Transformer {shape} "
        f"(Argos Translate package {meta['package_version']})",
        "",
        f"Translates {meta['from_name']} (`{meta['from_code']}`) into {meta['to_name']} "
        f"(`{meta['to_code']}`) in Argos Translate {argos_version} and LibreTranslate, with "
        "no network: the sentence splitter is inside the package. Made by nmt "
        f"{provenance['nmt_version']} on {provenance['created'][:10]} from "
        f"`{provenance['source']}`.",
        "",
        "## Model",
        "",
        f"- Transformer, {c.get('enc_layers')} encoder and {c.get('dec_layers')} decoder "
        f"layers, d_model {c.get('d_model')}, FFN {c.get('ffn')}, {c.get('heads')} heads, "
        f"{'pre' if c.get('pre_norm', True) else 'post'}-norm, {c.get('activation')}; "
        f"{info.get('num_parameters', 0):,} parameters.",
        f"- `model/`: CTranslate2 {info.get('ctranslate2_version')} export, weights "
        f"{info.get('quantization')}{vmap_note}",
        f"- `sentencepiece.model`: SentencePiece, {info.get('tokenizer', {}).get('vocab_size')} "
        f"pieces, sha256 `{provenance['tokenizer']['sha256']}`.",
        "",
        "## Training data and licence",
        "",
    ]
    if corpora:
        lines += [f"- {x['description']}: {x['licence']}." for x in corpora]
        lines.append(
            "- The model weights are derived from this data: share and use them under its terms."
        )
    else:
        lines.append(
            "- Not recorded in the source: check the training data's licence before sharing."
        )
    if provenance["training_data"].get("train_files"):
        lines.append(f"- Training files: `{provenance['training_data']['train_files']}`.")
    lines += ["", "## Scores", "", scores or "The source carries no test scores.", ""]
    lines += [
        "These were measured with nmt's own decoding of the source model. Argos decodes with "
        f"beam {d['beam_size']}, length penalty {d['length_penalty']}, at most "
        f"{d['max_decoding_length']} tokens, and splits each line into sentences first, so "
        "its output can differ slightly.",
        "",
        "## How Argos runs it",
        "",
        f"- Sentences: `{splitter['file']}`, {splitter['description']}",
        f"- Decoding (Argos {argos_version}, translate.py): beam {d['beam_size']}, length "
        f"penalty {d['length_penalty']}, unknown tokens replaced from the source, batches "
        f"of {d['max_batch_size']} tokens, compute type `{d['compute_type']}`; settings "
        "ARGOS_BEAM_SIZE, ARGOS_INTRA_THREADS, ARGOS_DEVICE_TYPE change them.",
        '- Install: `python -c "import argostranslate.package as p; '
        "p.install_from_path('PATH.argosmodel')\"` (`argospm install` takes index names "
        "only); nmt loads `model/` directly too (`nmt-translate -m .../model`).",
        "",
        "## Provenance",
        "",
        f"`{provenance_file}` (source, tokenizer sha256, nmt version, splitter) and "
        f"`model/{EXPORT_INFO}` (the CTranslate2 export's model config and source checkpoint).",
        "",
    ]
    return "\n".join(lines)


def source_card(export_dir: Path | None) -> str:
    card = None if export_dir is None else export_dir / "README.md"
    return card.read_text(encoding="utf-8") if card is not None and card.is_file() else ""


def source_scores(export_dir: Path | None, checkpoint_path: str | Path | None) -> str:
    """The scores the source carries: the `## Scores` section of an export's model card, or
    the nmt-evaluate results (`*/scores.json`) of the checkpoint's run folder."""
    if export_dir is not None:
        match = re.search(r"^## Scores\n(.*?)(?=^## |\Z)", source_card(export_dir), re.M | re.S)
        if not match:
            return ""
        return f"From the source export's model card (`{export_dir}/README.md`):\n\n" + (
            match.group(1).strip()
        )
    if checkpoint_path is None:
        return ""
    ckpt = Path(checkpoint_path).resolve()
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    rows = []
    for path in sorted(run_dir.glob("*/scores.json")):
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
            if Path(s["model"]).resolve() != ckpt:
                continue
            rows.append(
                f"| `{Path(s['src']).name}` | {s['beam_size']} | {s['bleu']} | {s['chrf']} | "
                f"`{s['bleu_signature']}` | `{s['chrf_signature']}` |"
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not rows:
        return ""
    return "\n".join(
        [
            f"nmt-evaluate results of this checkpoint (`{run_dir}/*/scores.json`), "
            f"{ckpt.name}, PyTorch:",
            "",
            "| test set | beam | BLEU | chrF2 | BLEU signature | chrF signature |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
