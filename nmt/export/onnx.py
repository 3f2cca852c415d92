"""Export a checkpoint to two ONNX graphs that ONNX Runtime runs like PyTorch's decoder.

The folder holds:

- `encoder.onnx`: `src` (B, S) int64 source ids (each row ends with EOS, right-padded with
  PAD) -> `memory_k_{i}`, `memory_v_{i}` (B, H, S, Dh) float32: the cross-attention keys
  and values of every decoder layer i, computed once per source.
- `decoder.onnx`: one incremental decoding step. Inputs `tokens` (B,) int64, `step` ()
  int64 (the position of `tokens`), `src_mask` (B, S) bool (True at real source tokens),
  `memory_k_{i}`/`memory_v_{i}` from the encoder, `past_k_{i}`/`past_v_{i}` (B, H, P, Dh)
  self-attention cache (P = step; empty at step 0). Outputs `log_probs` (B, V) float32, as
  `Transformer.decode_step` returns them, and `present_k_{i}`/`present_v_{i}`
  (B, H, P + 1, Dh), the cache for the next step.
- `spm.model` (the checkpoint's SentencePiece model) and `nmt_export.json` (provenance).

Batch, source length and cache length are dynamic axes. `int8` applies ONNX Runtime's
dynamic quantization (int8 weights, activations quantized on the fly) to both graphs.
The folder is written into a temporary sibling folder and renamed into place, so an
interrupted export never leaves a folder that loads. `nmt.backends.onnx` drives the
search from numpy.

Exporter: TorchScript-based `torch.onnx.export(..., dynamo=False)`. Both exporters give
graphs that match PyTorch here, but the dynamo exporter (torch's default) needs the extra
`onnxscript` package and took ~5 s per graph even for a toy model against ~0.2 s, which
would make the parity tests slow. torch deprecates the TorchScript exporter; its warning
is silenced here, and so is the tracer's about the model's `max_positions` check (the
backend never exceeds it).
"""

from __future__ import annotations

import logging
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt import __version__
from nmt.checkpoint import model_from_checkpoint
from nmt.export.folder import (
    DECODER_FILE,
    ENCODER_FILE,
    EXPORT_INFO,
    ONNX_FORMAT,
    TOKENIZER_FILE,
    ExportError,
    kv_names,
    read_onnx_info,
    source_model,
    tokenizer_info,
)
from nmt.export.folder import write_json as _write_json
from nmt.fileio import file_sha256
from nmt.model import Transformer
from nmt.outputs import claim
from nmt.tokenizer import Tokenizer
from nmt.vocab import BOS, EOS, PAD, UNK

log = logging.getLogger(__name__)

FORMAT, FORMAT_VERSION = ONNX_FORMAT
QUANTIZATIONS = ("float32", "int8")
OPSET = 17  # the first with LayerNormalization
EXPORTER = "torch.onnx.export (TorchScript, dynamo=False)"


def encoder_io(layers: int) -> tuple[list[str], list[str]]:
    return ["src"], kv_names("memory", layers)


def decoder_io(layers: int) -> tuple[list[str], list[str]]:
    inputs = ["tokens", "step", "src_mask", *kv_names("memory", layers), *kv_names("past", layers)]
    return inputs, ["log_probs", *kv_names("present", layers)]


class EncoderGraph(nn.Module):
    """`Transformer.encode` followed by every decoder layer's cross-attention K/V."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor) -> tuple[Tensor, ...]:
        memory, _ = self.model.encode(src)
        return tuple(t for kv in self.model.memory_kv(memory) for t in kv)  # (B, H, S, Dh) each


class DecoderStepGraph(nn.Module):
    """`Transformer.decode_step` with its `DecoderState` as explicit tensors.

    The embedding is written out (as `Transformer._embed` computes it, dropout aside) because
    the tracer would freeze `_embed`'s Python slice at the example's position.
    """

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, step: Tensor, src_mask: Tensor, *kv: Tensor):
        m, L = self.model, len(self.model.decoder)
        memory, past = kv[: 2 * L], kv[2 * L :]
        x = m.tgt_embed(tokens[:, None]) * m.embed_scale + m.positions[step]  # (B, 1, d)
        mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        present = []
        for i, layer in enumerate(m.decoder):
            cache = {"k": past[2 * i], "v": past[2 * i + 1]}  # the layer appends this step
            x = layer(x, (memory[2 * i], memory[2 * i + 1]), mask, cache)
            present += [cache["k"], cache["v"]]
        if m.dec_norm is not None:
            x = m.dec_norm(x)
        return (F.log_softmax(m.output(x[:, -1]).float(), dim=-1), *present)


def export_onnx(
    state_or_checkpoint: dict[str, Any] | str | Path,
    out_dir: str | Path,
    quantization: str = "float32",
    checkpoint_path: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Export a checkpoint (a path, or the state `load_checkpoint` returns) to an ONNX folder.

    `quantization` is float32 or int8. An existing `out_dir` is an error unless `force` and
    it is an earlier export (see `nmt.outputs`), in which case it is replaced only
    once the new export is complete. `checkpoint_path`
    (default: the path given) is recorded as provenance.
    """
    state, checkpoint_path, tokenizer = source_model(state_or_checkpoint, checkpoint_path)
    out_dir = Path(out_dir)
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"unknown ONNX quantization {quantization!r} (known: {', '.join(QUANTIZATIONS)})"
        )
    output = claim(out_dir, "nmt-export", inputs=(checkpoint_path,), force=force)
    model = model_from_checkpoint(state)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ExportError(
            f"tokenizer has {tokenizer.vocab_size} pieces but model.vocab_size is "
            f"{model.config.vocab_size}"
        )

    # A write that fails (a full disk) names the export: torch.onnx.export and `write_bytes`
    # raise OSErrors that name no file.
    with output.staging() as staging:
        staging.mkdir()
        graphs = staging.parent / "float32" if quantization == "int8" else staging
        graphs.mkdir(exist_ok=True)
        export_graphs(model, graphs)
        if quantization == "int8":
            for name in (ENCODER_FILE, DECODER_FILE):
                quantize_dynamic(graphs / name, staging / name)
        (staging / TOKENIZER_FILE).write_bytes(tokenizer.model_proto)
        info = export_info(state, model, tokenizer, quantization, checkpoint_path, staging)
        _write_json(staging / EXPORT_INFO, info)
    log.info("exported ONNX %s model -> %s", quantization, out_dir)
    return out_dir


def quantize_dynamic(model_input: Path, model_output: Path) -> None:
    """ONNX Runtime's dynamic quantization of one graph to int8 weights. Imported here, when
    an int8 export needs it: it imports `onnx`, which translating with an export does not."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as quantize

    quantize(model_input, model_output, weight_type=QuantType.QInt8)


@torch.no_grad()
def export_graphs(model: Transformer, out_dir: Path) -> None:
    """Write `encoder.onnx` and `decoder.onnx` (float32) for `model` into `out_dir`."""
    c = model.config
    model.eval()
    L, H, Dh = c.dec_layers, c.heads, c.d_model // c.heads
    B, S, P = 2, 5, 3  # example sizes; every one is a dynamic axis
    src = torch.tensor([[UNK, UNK, UNK, UNK, EOS], [UNK, UNK, EOS, PAD, PAD]])
    # Distinct example tensors for all K/V inputs, so no exporter can merge them.
    g = torch.Generator().manual_seed(0)
    memory = [torch.randn(B, H, S, Dh, generator=g) for _ in range(2 * L)]
    past = [torch.randn(B, H, P, Dh, generator=g) for _ in range(2 * L)]
    dec_inputs = (torch.tensor([BOS, UNK]), torch.tensor(P), src != PAD, *memory, *past)

    batch, src_len = {0: "batch"}, {0: "batch", 2: "src_len"}
    enc_axes = {"src": {0: "batch", 1: "src_len"}, **dict.fromkeys(kv_names("memory", L), src_len)}
    dec_axes = {
        "tokens": batch,
        "src_mask": {0: "batch", 1: "src_len"},
        **dict.fromkeys(kv_names("memory", L), src_len),
        **dict.fromkeys(kv_names("past", L), {0: "batch", 2: "past_len"}),
        "log_probs": batch,
        **dict.fromkeys(kv_names("present", L), {0: "batch", 2: "present_len"}),
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the exporter's own
        _trace(EncoderGraph(model), (src,), out_dir / ENCODER_FILE, encoder_io(L), enc_axes)
        _trace(DecoderStepGraph(model), dec_inputs, out_dir / DECODER_FILE, decoder_io(L), dec_axes)


def _trace(
    graph: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    names: tuple[list[str], list[str]],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    torch.onnx.export(
        graph.eval(),
        args,
        str(path),
        input_names=names[0],
        output_names=names[1],
        dynamic_axes=dynamic_axes,
        opset_version=OPSET,
        dynamo=False,
    )


def export_info(
    state: dict[str, Any],
    model: Transformer,
    tokenizer: Tokenizer,
    quantization: str,
    checkpoint_path: str | Path | None,
    folder: Path,
) -> dict[str, Any]:
    """The provenance written to `nmt_export.json`; `folder` holds the finished graphs."""
    import onnx  # the exporter's versions; neither is needed to read an export
    import onnxruntime

    ckpt = None if checkpoint_path is None else Path(checkpoint_path)
    L = model.config.dec_layers
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nmt_version": __version__,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "exporter": EXPORTER,
        "opset": OPSET,
        "source_checkpoint": None if ckpt is None else str(ckpt),
        "source_checkpoint_sha256": file_sha256(ckpt) if ckpt and ckpt.is_file() else None,
        "checkpoint_nmt_version": state.get("nmt_version"),
        "averaged_from": state.get("averaged_from"),
        "parent": state.get("parent"),  # the model it was fine-tuned from (nmt.training.finetune)
        "quantization": quantization,
        "model_config": dict(state["model_config"]),
        "num_parameters": model.num_parameters(),
        "tokenizer": tokenizer_info(tokenizer),
        "graphs": {
            name: {
                "file": file,
                "sha256": file_sha256(folder / file),
                "inputs": inputs,
                "outputs": outputs,
            }
            for name, file, (inputs, outputs) in (
                ("encoder", ENCODER_FILE, encoder_io(L)),
                ("decoder", DECODER_FILE, decoder_io(L)),
            )
        },
        "source_eos": "appended by the caller (nmt.backends.onnx), as for PyTorch",
    }


read_export_info = read_onnx_info  # the exporter's name for it
