"""Batched greedy and beam search over a `Transformer`'s incremental decoder.

Both return, for each source row, the generated token ids without BOS or EOS: at most
`max_len_a * source_length + max_len_b` tokens (source length counting EOS; at most
`model.max_positions - 1`). EOS is masked for the first `min_len` steps (CTranslate2's
`min_decoding_length` convention, default 1); PAD and BOS are never generated. Both follow
CTranslate2's decoding rules, so that an export gives the same tokens as PyTorch. The
options are `nmt.decoding.Decoding`'s (its batch size is the caller's business).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.decoding import Decoding
from nmt.model import Transformer
from nmt.vocab import BOS, EOS, PAD

GREEDY = Decoding(beam_size=1)


def _length_limits(model: Transformer, src: Tensor, opts: Decoding) -> Tensor:
    src_len = (src != PAD).sum(1).float()
    limits = (opts.max_len_a * src_len + opts.max_len_b).long()
    return limits.clamp(min=1, max=model.config.max_positions - 1)


def _mask(logp: Tensor, step: int, min_len: int) -> Tensor:
    """Never emit PAD or BOS; no EOS before `min_len`. (N, V), in place."""
    logp[:, PAD] = float("-inf")
    logp[:, BOS] = float("-inf")
    if step < min_len:
        logp[:, EOS] = float("-inf")
    return logp


def _constrain(logp: Tensor, step: int, limits: Tensor, min_len: int) -> Tensor:
    """`_mask`, and force EOS on rows that reached their length limit. (N, V)."""
    logp = _mask(logp, step, min_len)
    forced = step >= limits
    if forced.any():
        logp[forced] = float("-inf")
        logp[forced, EOS] = 0.0
    return logp


@torch.inference_mode()
def greedy_search(model: Transformer, src: Tensor, opts: Decoding = GREEDY) -> list[list[int]]:
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
def beam_search(model: Transformer, src: Tensor, opts: Decoding) -> list[list[int]]:
    """Beam search under CTranslate2's rules (decoding.cc, `BeamSearch::search`), so that an
    export decodes exactly like the PyTorch model:

    - PAD, BOS and (before `min_len`) EOS are removed before the softmax (renormalised).
    - Of the 2K best extensions, every EOS among the K best finishes a hypothesis and is
      replaced by the next non-EOS candidate of the other K; the continuing beams are the
      K best non-EOS extensions.
    - At a sentence's last step (`limit - 1`) each of the K best candidates finishes,
      EOS or not.
    - A sentence is done once it has K finished hypotheses (with `length_penalty == 0`:
      once the best candidate of some step was EOS), or at its last step.
    - The result is the finished hypothesis with the best `score / length **
      length_penalty`, its length counting EOS when it ended with one.
    """
    K = opts.beam_size
    if K == 1:
        return greedy_search(model, src, opts)
    B, device = src.size(0), src.device
    limits = _length_limits(model, src, opts).tolist()
    state = model.init_state(src)
    state.select(torch.arange(B, device=device).repeat_interleave(K))
    # Only beam 0 is live at the start, so the first extensions are distinct.
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    tokens = torch.full((B * K,), BOS, dtype=torch.long, device=device)
    history = torch.empty((B * K, 0), dtype=torch.long, device=device)
    alive = list(range(B))  # original sentence index of each live batch row
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    best_ended = [False] * B  # the best candidate of some step was EOS

    for step in range(max(limits)):
        n = len(alive)
        logp = _mask(model.decode_step(tokens, state), step, opts.min_len).log_softmax(-1)
        V = logp.size(-1)
        cand = (scores.unsqueeze(2) + logp.view(n, K, V)).view(n, K * V)
        top_scores, top_idx = cand.topk(2 * K, dim=1)  # (n, 2K), sorted
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
                    # Replace it by the next non-EOS candidate (always found unless `last`:
                    # at most one EOS per beam among the 2K).
                    j = next((j for j in range(spare, 2 * K) if not is_eos[i][j]), None)
                    if j is not None:
                        pick[k], spare = j, j + 1
            enough = best_ended[b] if opts.length_penalty == 0 else len(finished[b]) >= K
            done.append(last or enough)
            picks.append(pick)

        pick = torch.tensor(picks, device=device)  # (n, K) indices into the 2K candidates
        rows = (torch.arange(n, device=device)[:, None] * K + beam.gather(1, pick)).view(-1)
        tokens = tok.gather(1, pick).view(-1)
        scores = top_scores.gather(1, pick)
        history = torch.cat([history[rows], tokens[:, None]], dim=1)
        state.select(rows)

        if any(done):
            keep = [i for i, d in enumerate(done) if not d]
            if not keep:
                break
            keep_t = torch.tensor(keep, device=device)
            keep_rows = (keep_t[:, None] * K + torch.arange(K, device=device)).view(-1)
            alive = [alive[i] for i in keep]
            scores, tokens, history = scores[keep_t], tokens[keep_rows], history[keep_rows]
            state.select(keep_rows)

    return [max(hyps, key=lambda h: h[0])[1] for hyps in finished]


def search(model: Transformer, src: Tensor, opts: Decoding) -> list[list[int]]:
    return greedy_search(model, src, opts) if opts.beam_size == 1 else beam_search(model, src, opts)
