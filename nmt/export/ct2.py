"""Export a checkpoint to a CTranslate2 model folder that translates exactly like PyTorch.

The folder holds CTranslate2's own files (`model.bin`, `config.json`,
`shared_vocabulary.json`, optionally `vmap.txt`) plus `spm.model` (the checkpoint's
SentencePiece model) and `nmt_export.json` (provenance). It is written into a temporary
sibling folder and renamed into place, so an interrupted export never leaves a folder
that loads.

What makes the exported model see exactly what `nmt.model.Transformer` sees:

- Source: SentencePiece ids followed by EOS. CTranslate2 adds nothing to the source
  unless the model's config says so (`add_source_bos`/`add_source_eos`, both false by
  default); the export sets `add_source_eos: true`, so callers (our backend, the
  `ct2-translator` CLI, anyone) pass the plain pieces.
- Target: decoding starts from `<s>` (`decoder_start_token`), as ours starts from BOS.
- Positions: CTranslate2's built-in sinusoidal table starts at position 1 with another
  timescale, so the export writes our own table (rows 0..max_positions-1) for encoder and
  decoder. CTranslate2 adds row `index + t` and refuses positions past the table, which
  matches PyTorch's `max_positions` limit.
- Embeddings are scaled by sqrt(d_model) before the positions are added (CTranslate2's
  `scale_embeddings`, on by default); tied weights are stored once (CTranslate2 aliases
  equal variables).
- LayerNorm epsilon is the checkpoint's `layer_norm_eps` (CTranslate2's converters
  hard-code 1e-6 or 1e-5).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from ctranslate2.converters import Converter
from ctranslate2.specs import TransformerSpec, common_spec
from ctranslate2.specs.model_spec import ACCEPTED_MODEL_TYPES
from torch import Tensor, nn

from nmt import __version__
from nmt.checkpoint import model_from_checkpoint
from nmt.export.folder import (
    CT2_FORMAT,
    EXPORT_INFO,
    TOKENIZER_FILE,
    ExportError,
    read_ct2_info,
    source_model,
    tokenizer_info,
)
from nmt.export.folder import write_json as _write_json
from nmt.fileio import file_sha256
from nmt.model import Transformer, sinusoidal_positions
from nmt.outputs import claim
from nmt.tokenizer import Tokenizer
from nmt.vocab import BOS, EOS, UNK

log = logging.getLogger(__name__)

FORMAT, FORMAT_VERSION = CT2_FORMAT
QUANTIZATIONS = ACCEPTED_MODEL_TYPES

ACTIVATIONS = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}


def export_ct2(
    checkpoint_state: dict[str, Any],
    out_dir: str | Path,
    quantization: str = "float32",
    vmap: str | Path | None = None,
    force: bool = False,
    checkpoint_path: str | Path | None = None,
) -> Path:
    """Export a checkpoint (as returned by `load_checkpoint`) to a CTranslate2 folder.

    `quantization` is any CTranslate2 weight type (int8, int8_float32, int16, float16,
    bfloat16, float32, ...); `vmap` a vocabulary mapping file copied in as `vmap.txt`
    (used when translating with `use_vmap`). An existing `out_dir` is an error unless
    `force` and it is an earlier export (see `nmt.outputs`), in which case it is
    replaced only once the new export is complete.
    `checkpoint_path` is recorded as provenance.
    """
    out_dir = Path(out_dir)
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"unknown quantization {quantization!r} (known: {', '.join(QUANTIZATIONS)})"
        )
    output = claim(out_dir, "nmt-export", inputs=(checkpoint_path, vmap), force=force)
    if vmap is not None and not Path(vmap).is_file():
        raise FileNotFoundError(f"{vmap}: vocabulary mapping file not found")

    _, _, tokenizer = source_model(checkpoint_state)
    model = model_from_checkpoint(checkpoint_state)
    spec = build_spec(model, tokenizer)

    # A write that fails (a full disk) names the export: CTranslate2's writer and `write_bytes`
    # raise OSErrors that name no file.
    with output.staging() as staging:
        _SpecConverter(spec).convert(
            str(staging),
            vmap=None if vmap is None else str(vmap),
            quantization=quantization,
        )
        (staging / TOKENIZER_FILE).write_bytes(tokenizer.model_proto)
        info = export_info(checkpoint_state, model, tokenizer, quantization, vmap, checkpoint_path)
        _write_json(staging / EXPORT_INFO, info)
    log.info("exported CTranslate2 %s model -> %s", quantization, out_dir)
    return out_dir


def build_spec(model: Transformer, tokenizer: Tokenizer) -> TransformerSpec:
    """A filled `TransformerSpec` for `model`; every array is a copy (quantization scales
    the spec's arrays in place, which must not reach the live model)."""
    c = model.config
    if tokenizer.vocab_size != c.vocab_size:
        raise ExportError(
            f"tokenizer has {tokenizer.vocab_size} pieces but model.vocab_size is {c.vocab_size}"
        )
    spec = TransformerSpec.from_config(
        (c.enc_layers, c.dec_layers),
        c.heads,
        pre_norm=c.pre_norm,
        activation=ACTIVATIONS[c.activation],
    )
    positions = _array(sinusoidal_positions(c.max_positions, c.d_model))

    enc = spec.encoder
    enc.embeddings[0].weight = _array(model.embed.weight)
    enc.scale_embeddings = True
    enc.position_encodings.encodings = positions
    for layer_spec, layer in zip(enc.layer, model.encoder, strict=True):
        _set_self_attention(layer_spec.self_attention, layer.self_attn, layer.sub_attn.norm)
        _set_ffn(layer_spec.ffn, layer.ffn, layer.sub_ffn.norm)
    if c.pre_norm:
        _set_norm(enc.layer_norm, model.enc_norm)

    dec = spec.decoder
    dec.embeddings.weight = _array(model.tgt_embed.weight)
    dec.scale_embeddings = True
    dec.position_encodings.encodings = positions.copy()
    dec.projection.weight = _array(model.output.weight)
    for layer_spec, layer in zip(dec.layer, model.decoder, strict=True):
        _set_self_attention(layer_spec.self_attention, layer.self_attn, layer.sub_self.norm)
        _set_cross_attention(layer_spec.attention, layer.cross_attn, layer.sub_cross.norm)
        _set_ffn(layer_spec.ffn, layer.ffn, layer.sub_ffn.norm)
    if c.pre_norm:
        _set_norm(dec.layer_norm, model.dec_norm)

    sp = tokenizer.sp
    spec.config.layer_norm_epsilon = c.layer_norm_eps
    spec.config.unk_token = sp.id_to_piece(UNK)
    spec.config.bos_token = sp.id_to_piece(BOS)
    spec.config.eos_token = sp.id_to_piece(EOS)
    spec.config.decoder_start_token = sp.id_to_piece(BOS)
    spec.config.add_source_bos = False
    spec.config.add_source_eos = True
    pieces = [sp.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    spec.register_source_vocabulary(pieces)
    spec.register_target_vocabulary(pieces)
    return spec


def export_info(
    state: dict[str, Any],
    model: Transformer,
    tokenizer: Tokenizer,
    quantization: str,
    vmap: str | Path | None,
    checkpoint_path: str | Path | None,
) -> dict[str, Any]:
    """The provenance written to `nmt_export.json`."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nmt_version": __version__,
        "ctranslate2_version": ctranslate2.__version__,
        "source_checkpoint": None if checkpoint_path is None else str(checkpoint_path),
        "checkpoint_nmt_version": state.get("nmt_version"),
        "averaged_from": state.get("averaged_from"),
        "parent": state.get("parent"),  # the model it was fine-tuned from (nmt.training.finetune)
        "quantization": quantization,
        "model_config": dict(state["model_config"]),
        "num_parameters": model.num_parameters(),
        "tokenizer": tokenizer_info(tokenizer),
        "vocabulary_map": None
        if vmap is None
        else {"file": "vmap.txt", "source": str(vmap), "sha256": file_sha256(vmap)},
        "source_eos": "appended by CTranslate2 (config add_source_eos)",
        "position_table_rows": model.config.max_positions,
    }


read_export_info = read_ct2_info  # the exporter's name for it


class _SpecConverter(Converter):
    """CTranslate2's fixed pipeline (validate -> optimize -> save) over a ready spec."""

    def __init__(self, spec: TransformerSpec):
        self._spec = spec

    def _load(self) -> TransformerSpec:
        return self._spec


def _array(t: Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


def _set_linear(spec: common_spec.LinearSpec, linear: nn.Linear) -> None:
    spec.weight = _array(linear.weight)  # PyTorch's [out, in] layout, as CTranslate2 wants
    if linear.bias is not None:
        spec.bias = _array(linear.bias)


def _set_norm(spec: common_spec.LayerNormSpec, norm: nn.LayerNorm) -> None:
    spec.gamma = _array(norm.weight)
    spec.beta = _array(norm.bias)


def _set_self_attention(spec, attn, norm: nn.LayerNorm) -> None:
    _set_linear(spec.linear[0], attn.in_proj)  # fused [Wq; Wk; Wv]
    _set_linear(spec.linear[1], attn.out_proj)
    _set_norm(spec.layer_norm, norm)


def _set_cross_attention(spec, attn, norm: nn.LayerNorm) -> None:
    _set_linear(spec.linear[0], attn.q_proj)
    _set_linear(spec.linear[1], attn.kv_proj)  # fused [Wk; Wv]
    _set_linear(spec.linear[2], attn.out_proj)
    _set_norm(spec.layer_norm, norm)


def _set_ffn(spec, ffn, norm: nn.LayerNorm) -> None:
    _set_linear(spec.linear_0, ffn.fc1)
    _set_linear(spec.linear_1, ffn.fc2)
    _set_norm(spec.layer_norm, norm)
