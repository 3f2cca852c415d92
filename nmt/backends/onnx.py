"""Translate with an ONNX Runtime export (see `nmt.export.onnx`), with the PyTorch backend's API.

`OnnxTranslator.translate` takes the same arguments as `TorchTranslator.translate` and
decodes with the same search, `nmt.search`: `OnnxModel` gives the export's two graphs the
decoding interface of `nmt.model.Transformer` (`config`, `init_state`, `decode_step`), its
log-probabilities reaching the search as tensors over ONNX Runtime's own arrays (no copy).
So a float32 export gives PyTorch's tokens by construction: source pieces plus EOS, decoding
from BOS, PAD and BOS never generated, EOS masked for the first `min_len` steps, at most
`max_len_a * source_length + max_len_b` tokens, over-long inputs truncated to
`max_positions - 2` pieces, beam search under CTranslate2's rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from nmt.backends.base import SearchTranslator
from nmt.decoding import cap_threads, fits_in_memory, is_out_of_memory, out_of_memory
from nmt.export.folder import (
    DECODER_FILE,
    ENCODER_FILE,
    EXPORT_INFO,
    TOKENIZER_FILE,
    ExportError,
    kv_names,
    read_onnx_info,
)
from nmt.export.folder import is_onnx_export as is_onnx_export  # the recogniser, engine-free
from nmt.tokenizer import Tokenizer
from nmt.vocab import PAD

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass(frozen=True)
class _Shape:
    max_positions: int  # all `nmt.search` asks of a model's config


class OnnxState:
    """What incremental decoding carries between steps, as ONNX Runtime's arrays (N rows)."""

    def __init__(self, memory: list[np.ndarray], src_mask: np.ndarray, past: list[np.ndarray]):
        self.memory = memory  # cross-attention K/V per layer, (N, H, S, Dh)
        self.src_mask = src_mask  # (N, S) bool
        self.past = past  # self-attention K/V per layer, (N, H, step, Dh)
        self.step = 0

    def select(self, index: torch.Tensor) -> None:
        """Keep (and reorder) batch rows `index`: for beam search and finished sentences."""
        rows = index.cpu().numpy()
        self.memory = [a[rows] for a in self.memory]
        self.src_mask = self.src_mask[rows]
        self.past = [a[rows] for a in self.past]


class OnnxModel:
    """The export's encoder and decoder-step graphs behind `Transformer`'s decoding
    interface, for `nmt.search`."""

    def __init__(self, encoder, decoder, config: dict):
        self.encoder, self.decoder = encoder, decoder
        self.config = _Shape(int(config["max_positions"]))
        layers, heads = int(config["dec_layers"]), int(config["heads"])
        self._memory_names = kv_names("memory", layers)
        self._past_names = kv_names("past", layers)
        self._empty_past = (heads, 0, int(config["d_model"]) // heads)

    def init_state(self, src: torch.Tensor) -> OnnxState:
        src = src.cpu().numpy()
        memory = self.encoder.run(self._memory_names, {"src": src.astype(np.int64)})
        past = np.zeros((len(src), *self._empty_past), dtype=np.float32)
        return OnnxState(memory, src != PAD, [past] * len(self._past_names))

    def decode_step(self, tokens: torch.Tensor, state: OnnxState) -> torch.Tensor:
        """Log-probabilities (N, V) of the next token after `tokens` (N,), updating `state`."""
        feeds = {
            "tokens": tokens.cpu().numpy().astype(np.int64, copy=False),
            "step": np.array(state.step, dtype=np.int64),
            "src_mask": state.src_mask,
            **dict(zip(self._memory_names, state.memory, strict=True)),
            **dict(zip(self._past_names, state.past, strict=True)),
        }
        log_probs, *state.past = self.decoder.run(None, feeds)
        state.step += 1
        return torch.from_numpy(log_probs)


class OnnxTranslator(SearchTranslator):
    """Translate with an ONNX export through ONNX Runtime (CPU, or CUDA where installed)."""

    backend = "onnx"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0):
        threads = cap_threads(threads, "threads")
        self.path = Path(path)
        self.source = str(self.path)
        self.info = read_onnx_info(self.path)
        spm_path = self.path / TOKENIZER_FILE
        self.tokenizer = Tokenizer(spm_path.read_bytes(), str(spm_path))
        if self.tokenizer.sha256() != self.info["tokenizer"]["sha256"]:
            raise ExportError(f"{spm_path}: does not match the sha256 in {EXPORT_INFO}")
        if device not in PROVIDERS or PROVIDERS[device] not in ort.get_available_providers():
            raise ValueError(
                f"device {device!r} is not available to ONNX Runtime here "
                f"(providers: {', '.join(ort.get_available_providers())})"
            )
        if not fits_in_memory(self.path):
            raise ExportError(out_of_memory(self.path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default

        def session(name: str) -> ort.InferenceSession:
            try:
                return ort.InferenceSession(
                    str(self.path / name), options, providers=[PROVIDERS[device]]
                )
            except Exception as e:  # ONNX Runtime's errors derive from Exception only
                if is_out_of_memory(e):
                    raise ExportError(out_of_memory(self.path)) from None
                raise

        self.model = OnnxModel(
            session(ENCODER_FILE), session(DECODER_FILE), self.info["model_config"]
        )
        self.device, self.threads = device, threads
        self.max_positions = self.model.config.max_positions
        self.max_input = self.max_positions - 1  # source tokens, EOS included


def load_onnx(
    path: str | Path, device: str = "cpu", threads: int = 0, **_: object
) -> OnnxTranslator:
    """Loader for `nmt.translate.BACKENDS`."""
    return OnnxTranslator(path, device=device, threads=threads)
