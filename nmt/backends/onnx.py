"""Translate with an ONNX Runtime export (see `nmt.export.onnx`), with the PyTorch backend's API.

`OnnxTranslator.translate` takes the same arguments as `TorchTranslator.translate`. The
search runs in numpy over the export's two graphs and follows `nmt.search` rule for rule,
so that a float32 export gives PyTorch's tokens: source pieces plus EOS, decoding from
BOS, PAD and BOS never generated, EOS masked for the first `min_len` steps, at most
`max_len_a * source_length + max_len_b` tokens (source length counting EOS, computed in
float32 and truncated, within [1, max_positions - 1]), over-long inputs truncated to
`max_positions - 2` pieces; beam search under CTranslate2's rules, as `beam_search`
documents them. Where beam candidates tie exactly, the lower index comes first
(`torch.topk` leaves ties unspecified: the one place where the two may part).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from nmt.batching import token_batches
from nmt.decoding import Decoding, cap_threads, fits_in_memory, is_out_of_memory, out_of_memory
from nmt.export.folder import (
    DECODER_FILE,
    ENCODER_FILE,
    EXPORT_INFO,
    TOKENIZER_FILE,
    ExportError,
)
from nmt.export.folder import is_onnx_export as is_onnx_export  # the recogniser, engine-free
from nmt.export.onnx import kv_names, read_export_info
from nmt.inputs import encode_nonblank
from nmt.model import BOS, EOS, PAD
from nmt.search import SearchOptions
from nmt.tokenizer import Tokenizer

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class DecoderState:
    """What incremental decoding carries between steps, as numpy arrays (N rows)."""

    def __init__(self, memory: list[np.ndarray], src_mask: np.ndarray, past: list[np.ndarray]):
        self.memory = memory  # cross-attention K/V per layer, (N, H, S, Dh)
        self.src_mask = src_mask  # (N, S) bool
        self.past = past  # self-attention K/V per layer, (N, H, step, Dh)
        self.step = 0

    def select(self, rows: np.ndarray, memory: bool = True) -> None:
        """Keep (and reorder) rows. `memory=False` leaves the source side alone: for
        reordering beams within their sentence, whose source rows are all the same."""
        if memory:
            self.memory = [a[rows] for a in self.memory]
            self.src_mask = self.src_mask[rows]
        self.past = [a[rows] for a in self.past]


class OnnxTranslator:
    """Translate with an ONNX export through ONNX Runtime (CPU, or CUDA where installed)."""

    backend = "onnx"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0):
        threads = cap_threads(threads, "threads")
        self.path = Path(path)
        self.source = str(self.path)
        self.info = read_export_info(self.path)
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

        self.encoder, self.decoder = session(ENCODER_FILE), session(DECODER_FILE)
        self.device, self.threads = device, threads
        config = self.info["model_config"]
        self.max_positions = int(config["max_positions"])
        self.max_input = self.max_positions - 1  # source tokens, EOS included
        layers = int(config["dec_layers"])
        self._memory_names = kv_names("memory", layers)
        self._past_names = kv_names("past", layers)
        heads = int(config["heads"])
        self._empty_past = (heads, 0, int(config["d_model"]) // heads)

    def translate(
        self,
        lines: list[str],
        beam_size: int = 4,
        max_batch_tokens: int = 4096,
        length_penalty: float = 1.0,
        max_len_a: float = 1.5,
        max_len_b: int = 10,
        min_len: int = 1,
    ) -> list[str]:
        """Translate `lines`; empty or whitespace-only lines give "" without reaching the
        model."""
        # A ConfigError naming the option for an impossible value, before any work.
        Decoding(beam_size, max_batch_tokens, length_penalty, max_len_a, max_len_b, min_len)
        opts = SearchOptions(beam_size, length_penalty, max_len_a, max_len_b, min_len)
        outputs = [""] * len(lines)
        todo, ids = encode_nonblank(lines, self.tokenizer.encode, self.max_input - 1)
        ids = [seq + [EOS] for seq in ids]
        for batch in token_batches([len(s) for s in ids], max_batch_tokens):
            hyps = self.search(pad_sources([ids[k] for k in batch]), opts)
            for k, text in zip(batch, self.tokenizer.decode(hyps), strict=True):
                outputs[todo[k]] = text
        return outputs

    def search(self, src: np.ndarray, opts: SearchOptions) -> list[list[int]]:
        """Token ids for padded sources (B, S) ending with EOS, like `nmt.search.search`."""
        return self.greedy_search(src, opts) if opts.beam_size == 1 else self.beam_search(src, opts)

    def length_limits(self, src: np.ndarray, opts: SearchOptions) -> np.ndarray:
        """`max_len_a * src_len + max_len_b` per row, as `nmt.search` computes it."""
        src_len = (src != PAD).sum(1).astype(np.float32)
        limits = (np.float32(opts.max_len_a) * src_len + np.float32(opts.max_len_b)).astype(
            np.int64
        )
        return np.clip(limits, 1, self.max_positions - 1)

    def init_state(self, src: np.ndarray) -> DecoderState:
        memory = self.encoder.run(self._memory_names, {"src": src.astype(np.int64)})
        past = np.zeros((len(src), *self._empty_past), dtype=np.float32)
        return DecoderState(memory, src != PAD, [past] * len(self._past_names))

    def decode_step(self, tokens: np.ndarray, state: DecoderState) -> np.ndarray:
        """Log-probabilities (N, V) of the next token after `tokens` (N,), updating `state`."""
        feeds = {
            "tokens": tokens.astype(np.int64, copy=False),
            "step": np.array(state.step, dtype=np.int64),
            "src_mask": state.src_mask,
            **dict(zip(self._memory_names, state.memory, strict=True)),
            **dict(zip(self._past_names, state.past, strict=True)),
        }
        log_probs, *state.past = self.decoder.run(None, feeds)
        state.step += 1
        return log_probs

    def greedy_search(self, src: np.ndarray, opts: SearchOptions) -> list[list[int]]:
        """`nmt.search.greedy_search`: the most likely token at every step; finished rows
        leave the batch."""
        B = len(src)
        limits = self.length_limits(src, opts)
        state = self.init_state(src)
        alive = np.arange(B)
        tokens = np.full(B, BOS, dtype=np.int64)
        outputs: list[list[int]] = [[] for _ in range(B)]
        for step in range(int(limits.max()) + 1):
            logp = _mask(self.decode_step(tokens, state), step, opts.min_len)
            tokens = np.where(step >= limits[alive], EOS, logp.argmax(-1))  # EOS at the limit
            finished = tokens == EOS
            for row, tok in zip(alive.tolist(), tokens.tolist(), strict=True):
                if tok != EOS:
                    outputs[row].append(tok)
            if finished.any():
                keep = np.flatnonzero(~finished)
                if keep.size == 0:
                    break
                alive, tokens = alive[keep], tokens[keep]
                state.select(keep)
        return outputs

    def beam_search(self, src: np.ndarray, opts: SearchOptions) -> list[list[int]]:
        """`nmt.search.beam_search` (CTranslate2's rules), step for step; see its docstring."""
        K = opts.beam_size
        B = len(src)
        limits = self.length_limits(src, opts).tolist()
        state = self.init_state(src)
        state.select(np.repeat(np.arange(B), K))
        # Only beam 0 is live at the start, so the first extensions are distinct.
        scores = np.full((B, K), -np.inf, dtype=np.float32)
        scores[:, 0] = 0.0
        tokens = np.full(B * K, BOS, dtype=np.int64)
        history = np.empty((B * K, 0), dtype=np.int64)
        alive = list(range(B))  # original sentence index of each live batch row
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
        best_ended = [False] * B  # the best candidate of some step was EOS

        for step in range(max(limits)):
            n = len(alive)
            logp = _log_softmax(_mask(self.decode_step(tokens, state), step, opts.min_len))
            V = logp.shape[-1]
            cand = (scores[:, :, None] + logp.reshape(n, K, V)).reshape(n, K * V)
            top_scores, top_idx = _topk(cand, 2 * K, V)  # (n, 2K), sorted
            beam, tok = top_idx // V, top_idx % V
            is_eos = (tok == EOS).tolist()
            picks, done = [], []
            for i, b in enumerate(alive):
                last = step == limits[b] - 1
                pick = list(range(K))
                if last or any(is_eos[i][:K]):
                    spare = K
                    for k in range(K):
                        if not (is_eos[i][k] or last):
                            continue
                        best_ended[b] |= k == 0
                        hyp = history[i * K + int(beam[i, k])].tolist()
                        if not is_eos[i][k]:
                            hyp.append(int(tok[i, k]))
                        norm = float(top_scores[i, k]) / (step + 1) ** opts.length_penalty
                        finished[b].append((norm, hyp))
                        # Replace it by the next non-EOS candidate (found unless `last`).
                        j = next((j for j in range(spare, 2 * K) if not is_eos[i][j]), None)
                        if j is not None:
                            pick[k], spare = j, j + 1
                enough = best_ended[b] if opts.length_penalty == 0 else len(finished[b]) >= K
                done.append(last or enough)
                picks.append(pick)

            pick = np.array(picks)  # (n, K) indices into the 2K candidates
            rows = (np.arange(n)[:, None] * K + np.take_along_axis(beam, pick, 1)).reshape(-1)
            tokens = np.take_along_axis(tok, pick, 1).reshape(-1)
            scores = np.take_along_axis(top_scores, pick, 1)
            history = np.concatenate([history[rows], tokens[:, None]], axis=1)
            state.select(rows, memory=False)  # beams move within their own sentence

            if any(done):
                keep = [i for i, d in enumerate(done) if not d]
                if not keep:
                    break
                keep_rows = (np.array(keep)[:, None] * K + np.arange(K)).reshape(-1)
                alive = [alive[i] for i in keep]
                scores, tokens, history = scores[keep], tokens[keep_rows], history[keep_rows]
                state.select(keep_rows)

        return [max(hyps, key=lambda h: h[0])[1] for hyps in finished]


def pad_sources(seqs: list[list[int]]) -> np.ndarray:
    """Source id lists (ending with EOS) -> (B, S) int64, right-padded with PAD."""
    out = np.full((len(seqs), max(1, max(map(len, seqs), default=1))), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def _mask(logp: np.ndarray, step: int, min_len: int) -> np.ndarray:
    """Never emit PAD or BOS; no EOS before `min_len`. (N, V), in place."""
    logp[:, [PAD, BOS]] = -np.inf
    if step < min_len:
        logp[:, EOS] = -np.inf
    return logp


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """float32 log-softmax over the last axis, computed as torch does: x - max - log(sum)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _topk(x: np.ndarray, k: int, segment: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest values of each row of x (n, m) and their indices, largest first, equal
    values in index order.

    Faster than partitioning whole rows: only the values at or above a lower bound on each
    row's k-th largest are sorted. The bound is the smallest of the maxima of k disjoint
    chunks of the row's first `segment` values (so k values at least reach it); give a
    segment without -inf (beam 0's candidates) or the bound is -inf, still exact but slow.
    """
    n, m = x.shape
    chunk = segment // k
    if chunk > 0:
        bound = x[:, : k * chunk].reshape(n, k, chunk).max(2).min(1, keepdims=True)
    else:
        bound = np.full((n, 1), -np.inf, dtype=x.dtype)
    flat = np.flatnonzero(x >= bound)
    rows, cols = np.divmod(flat, m)
    values = x.reshape(-1)[flat]
    order = np.lexsort((cols, -values, rows))  # by row, then value, then index
    rows, cols, values = rows[order], cols[order], values[order]
    take = np.searchsorted(rows, np.arange(n))[:, None] + np.arange(k)  # (n, k)
    return values[take], cols[take]


def load_onnx(
    path: str | Path, device: str = "cpu", threads: int = 0, **_: object
) -> OnnxTranslator:
    """Loader for `nmt.translate.BACKENDS`."""
    return OnnxTranslator(path, device=device, threads=threads)
