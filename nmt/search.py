"""Batched greedy and beam search over a `Transformer`'s incremental decoder.

Both return, for each source row, the generated token ids without BOS or EOS (`nbest_search`:
the `n` best hypotheses with their scores): at most
`max_len_a * source_length + max_len_b` tokens (source length counting EOS; at most
`model.max_positions - 1`). EOS is masked for the first `min_len` steps (CTranslate2's
`min_decoding_length` convention, default 1); PAD and BOS are never generated. Both follow
CTranslate2's decoding rules, so that an export gives the same tokens as PyTorch. The
options are `nmt.decoding.Decoding`'s (its batch size and its cap on repeated characters,
a cleanup of the output text, are the caller's business).

The guards against loops follow CTranslate2's logits processors (decoding_utils.cc), applied
to each row's own generated tokens before PAD, BOS and EOS are masked and before the
softmax: `repetition_penalty` p divides the positive logits of the tokens generated so far
by p and multiplies their negative ones by p; `no_repeat_ngram_size` n bans every token that
would complete an n-gram already generated. The penalty needs the raw logits, which only a
`Transformer` gives: for a model that gives log-probabilities alone (an ensemble's log mean
probability, an ONNX Runtime decoder graph) it scales those instead, so their outputs with a
penalty are not a CTranslate2 export's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.decoding import Decoding, check_nbest
from nmt.model import Transformer
from nmt.vocab import BOS, EOS, PAD

GREEDY = Decoding(beam_size=1)


def _length_limits(model: Transformer, src: Tensor, opts: Decoding) -> Tensor:
    src_len = (src != PAD).sum(1).float()
    limits = (opts.max_len_a * src_len + opts.max_len_b).long()
    return limits.clamp(min=1, max=model.config.max_positions - 1)


def _next_scores(model: Transformer, tokens: Tensor, state, opts: Decoding) -> Tensor:
    """The next-token scores (N, V) the search starts from: the model's log-probabilities,
    or with a repetition penalty its raw logits (which CTranslate2 penalises), where the
    model has them (a `Transformer`; see the module's docstring)."""
    if opts.repetition_penalty == 1.0 or not isinstance(model, Transformer):
        return model.decode_step(tokens, state)
    return model.decode_logits(tokens, state)


def _guard(scores: Tensor, history: Tensor, opts: Decoding) -> Tensor:
    """The repetition penalty and the n-gram ban on `scores` (N, V), given each row's
    generated tokens `history` (N, T); in place."""
    T = history.size(1)
    if T == 0:
        return scores
    if opts.repetition_penalty != 1.0:  # once per distinct token, however often it came
        seen = scores.gather(1, history)
        p = torch.tensor(opts.repetition_penalty, dtype=scores.dtype, device=scores.device)
        scores.scatter_(1, history, torch.where(seen < 0, seen * p, seen / p))
    n = opts.no_repeat_ngram_size
    if 0 < n <= T:
        grams = history.unfold(1, n, 1)  # (N, T - n + 1, n): every n-gram so far
        # An n-gram whose first n - 1 tokens are the last n - 1 generated bans its last.
        match = (grams[:, :, :-1] == history[:, None, T - n + 1 :]).all(-1)
        rows, at = match.nonzero(as_tuple=True)
        scores[rows, grams[rows, at, -1]] = float("-inf")
    return scores


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
    history = torch.empty((B, 0), dtype=torch.long, device=src.device)  # of the live rows
    outputs: list[list[int]] = [[] for _ in range(B)]
    for step in range(int(limits.max()) + 1):
        logits = _guard(_next_scores(model, tokens, state, opts), history, opts)
        logp = _constrain(logits, step, limits[alive], opts.min_len)
        tokens = logp.argmax(-1)
        history = torch.cat([history, tokens[:, None]], dim=1)
        finished = tokens == EOS
        for row, tok in zip(alive.tolist(), tokens.tolist(), strict=True):
            if tok != EOS:
                outputs[row].append(tok)
        if finished.any():
            keep = (~finished).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            alive, tokens, history = alive[keep.cpu()], tokens[keep], history[keep]
            state.select(keep)
    return outputs


Hypothesis = tuple[float, list[int]]  # (score / length ** length_penalty, token ids)


@torch.inference_mode()
def beam_search(model: Transformer, src: Tensor, opts: Decoding) -> list[list[int]]:
    """The best hypothesis of `finished_hypotheses` for each source row (beam size 1:
    `greedy_search`, the same tokens faster)."""
    if opts.beam_size == 1:
        return greedy_search(model, src, opts)
    return [max(hyps, key=lambda h: h[0])[1] for hyps in finished_hypotheses(model, src, opts)]


def nbest_search(model: Transformer, src: Tensor, opts: Decoding, n: int) -> list[list[Hypothesis]]:
    """The `n` best hypotheses of each source row, best first, as (score, token ids): the
    finished hypotheses of the beam search (CTranslate2's `num_hypotheses`), so `n` is at
    most `opts.beam_size`; with beam size 1 the greedy output, scored as a beam of one
    would score it."""
    check_nbest(n, opts)
    hyps = finished_hypotheses(model, src, opts)
    return [sorted(h, key=lambda h: -h[0])[:n] for h in hyps]


@torch.inference_mode()
def finished_hypotheses(model: Transformer, src: Tensor, opts: Decoding) -> list[list[Hypothesis]]:
    """Beam search under CTranslate2's rules (decoding.cc, `BeamSearch::search`), so that an
    export decodes exactly like the PyTorch model:

    - The guards against loops apply, then PAD, BOS and (before `min_len`) EOS are removed,
      before the softmax (renormalised).
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
        logits = _guard(_next_scores(model, tokens, state, opts), history, opts)
        logp = _mask(logits, step, opts.min_len).log_softmax(-1)
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

    return finished


def search(model: Transformer, src: Tensor, opts: Decoding) -> list[list[int]]:
    return greedy_search(model, src, opts) if opts.beam_size == 1 else beam_search(model, src, opts)
