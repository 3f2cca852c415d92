"""Batched greedy and beam search over a `Transformer`'s incremental decoder.

Both return, for each source row, the generated token ids without BOS or EOS. Decoding
stops at EOS or at the length limit `max_len_a * source_length + max_len_b` (at most
`model.max_positions - 1` tokens), where EOS is forced. EOS is masked for the first
`min_len` steps (CTranslate2's `min_decoding_length` convention, default 1). PAD and BOS
are never generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.model import BOS, EOS, PAD, Transformer


@dataclass(frozen=True)
class SearchOptions:
    beam_size: int = 1
    length_penalty: float = 1.0
    max_len_a: float = 1.5
    max_len_b: int = 10
    min_len: int = 1


def _length_limits(model: Transformer, src: Tensor, opts: SearchOptions) -> Tensor:
    src_len = (src != PAD).sum(1).float()
    limits = (opts.max_len_a * src_len + opts.max_len_b).long()
    return limits.clamp(min=1, max=model.config.max_positions - 1)


def _constrain(logp: Tensor, step: int, limits: Tensor, min_len: int) -> Tensor:
    """Never emit PAD or BOS; mask EOS before `min_len`; force EOS on rows that reached
    their length limit. (N, V)."""
    logp[:, PAD] = float("-inf")
    logp[:, BOS] = float("-inf")
    if step < min_len:
        logp[:, EOS] = float("-inf")
    forced = step >= limits
    if forced.any():
        logp[forced] = float("-inf")
        logp[forced, EOS] = 0.0
    return logp


@torch.inference_mode()
def greedy_search(
    model: Transformer, src: Tensor, opts: SearchOptions = SearchOptions()
) -> list[list[int]]:
    """Pick the most likely token at every step; finished rows leave the batch."""
    B = src.size(0)
    limits = _length_limits(model, src, opts)
    state = model.init_state(src)
    alive = torch.arange(B)
    tokens = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    outputs: list[list[int]] = [[] for _ in range(B)]
    for step in range(int(limits.max()) + 1):
        logp = _constrain(model.decode_step(tokens, state), step, limits[alive], opts.min_len)
        tokens = logp.argmax(-1)
        finished = tokens == EOS
        for row, tok in zip(alive.tolist(), tokens.tolist(), strict=True):
            if tok != EOS:
                outputs[row].append(tok)
        if finished.any():
            keep = (~finished).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            alive, tokens = alive[keep.cpu()], tokens[keep]
            state.select(keep)
    return outputs


@torch.inference_mode()
def beam_search(model: Transformer, src: Tensor, opts: SearchOptions) -> list[list[int]]:
    """Beam search, fairseq style: of the 2K best extensions, EOS ones among the top K are
    finished hypotheses, the K best others continue. A sentence is done once it has K
    finished hypotheses; the best by `score / length ** length_penalty` is returned
    (length counts EOS)."""
    K = opts.beam_size
    if K == 1:
        return greedy_search(model, src, opts)
    B, device = src.size(0), src.device
    limits = _length_limits(model, src, opts)
    state = model.init_state(src)
    state.select(torch.arange(B, device=device).repeat_interleave(K))
    # Only beam 0 is live at the start, so the K first extensions are distinct.
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    tokens = torch.full((B * K,), BOS, dtype=torch.long, device=device)
    history = torch.empty((B * K, 0), dtype=torch.long, device=device)
    alive = torch.arange(B)  # original sentence index of each live batch row
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]

    for step in range(int(limits.max()) + 1):
        n = alive.numel()
        row_limits = limits[alive].repeat_interleave(K)
        logp = _constrain(model.decode_step(tokens, state), step, row_limits, opts.min_len)
        V = logp.size(-1)
        cand = (scores.unsqueeze(2) + logp.view(n, K, V)).view(n, K * V)
        top_scores, top_idx = cand.topk(2 * K, dim=1)  # (n, 2K), sorted
        beam, tok = top_idx // V, top_idx % V
        is_eos = (tok == EOS) & torch.isfinite(top_scores)

        done = torch.zeros(n, dtype=torch.bool)
        eos_rows = is_eos[:, :K].any(1).nonzero().squeeze(1).tolist()
        for i in eos_rows:
            b = int(alive[i])
            for j in range(K):
                if is_eos[i, j] and len(finished[b]) < K:
                    hyp = history[i * K + int(beam[i, j])].tolist()
                    norm = float(top_scores[i, j]) / (len(hyp) + 1) ** opts.length_penalty
                    finished[b].append((norm, hyp))
            done[i] = len(finished[b]) >= K

        # Continue with the K best non-EOS extensions (there are always at least K).
        cont_scores = top_scores.masked_fill(tok == EOS, float("-inf"))
        cont_scores, pick = cont_scores.topk(K, dim=1)  # (n, K)
        rows = (torch.arange(n, device=device)[:, None] * K + beam.gather(1, pick)).view(-1)
        tokens = tok.gather(1, pick).view(-1)
        history = torch.cat([history[rows], tokens[:, None]], dim=1)
        scores = cont_scores
        state.select(rows)

        if done.any():
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            keep_rows = (keep[:, None] * K + torch.arange(K)).view(-1).to(device)
            alive, scores = alive[keep], scores[keep.to(device)]
            tokens, history = tokens[keep_rows], history[keep_rows]
            state.select(keep_rows)

    return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in finished]


def search(model: Transformer, src: Tensor, opts: SearchOptions) -> list[list[int]]:
    return greedy_search(model, src, opts) if opts.beam_size == 1 else beam_search(model, src, opts)
