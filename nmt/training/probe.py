"""How long one optimizer update of a run takes on this machine: the pipeline's speed
estimate times the trainer's own update (`nmt.training.step.Step`) on random token ids."""

from __future__ import annotations

import time

import torch

from nmt.config import RunConfig, replace
from nmt.decoding import cap_threads
from nmt.model import Transformer
from nmt.training.optim import pick_device, pick_precision
from nmt.training.step import Step, optimization

PROBE_UPDATES = 3  # timed, after one warm-up update
PROBE_LENGTH = 24  # tokens a side in the probe's batches: a Multi30k caption is ~16-24 pieces


def probe_updates(run: RunConfig) -> float:
    """Seconds per optimizer update of one batch (the median of `PROBE_UPDATES`, after a
    warm-up one) for the run's model, batch of `train.batch_tokens` padded tokens, threads,
    device and precision, on random ids of `PROBE_LENGTH` tokens a side. The update is the
    trainer's, with the run's label smoothing, clipping and freezing; the model is not
    compiled (`train.compile`: the warm-up would not cover it). Restores the caller's
    thread count."""
    threads = torch.get_num_threads()
    try:
        if run.train.threads > 0:
            torch.set_num_threads(cap_threads(run.train.threads, "train.threads"))
        torch.manual_seed(0)
        step = _probe_step(run)
        vocab = step.model.config.vocab_size
        rows = max(1, run.train.batch_tokens // PROBE_LENGTH)
        src = torch.randint(4, vocab, (rows, PROBE_LENGTH), device=step.device)
        tgt = torch.randint(4, vocab, (rows, PROBE_LENGTH + 1), device=step.device)
        batch = (src, tgt[:, :-1], tgt[:, 1:])
        timings = []
        for done in range(PROBE_UPDATES + 1):
            start = time.perf_counter()
            step(lambda: batch, done)
            if step.device.type == "cuda":
                torch.cuda.synchronize()
            timings.append(time.perf_counter() - start)
        return sorted(timings[1:])[len(timings[1:]) // 2]  # the median after the warm-up
    finally:
        torch.set_num_threads(threads)


def _probe_step(run: RunConfig) -> Step:
    """A fresh model of the run's shape and its update, one batch an update (the estimate
    multiplies by `train.accum_steps`)."""
    c = replace(run.train, accum_steps=1)
    device = pick_device(c.device)
    amp_dtype = pick_precision(c.precision, device)
    model = Transformer(replace(run.model, vocab_size=run.tokenizer.vocab_size)).to(device)
    model.train()
    parts = optimization(model, c, amp_dtype)
    return Step(model, model, *parts, c, device, amp_dtype, run_dir=run.run_dir)
