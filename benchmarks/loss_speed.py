#!/usr/bin/env python
"""Float32 training speed of the label-smoothed loss: the composed formula autograd
differentiated before (`composed_loss`) against `nmt.training.loss` (issue 35).

Two cases, each an interleaved A/B in one process (rounds alternate which loss goes first,
so drift in the machine's load hits both alike):

- `loss`: forward + backward of the loss alone on random float32 logits (--tokens x --vocab,
  by default 3,300 x 8,000, a tenth of the targets PAD);
- `update`: one training update of the `small` model (models/multi30k-small.yaml's model
  section, float32, dropout on): forward, loss, backward, gradient clipping, AdamW, on a
  random batch of about --tokens target tokens.

Each round times --steps repetitions of each loss and keeps their median; the report gives
the rounds' medians, their median per loss and the ratio old / new (> 1: the new loss is
faster), with the CPU, its instruction sets and the thread count. Run on idle cores::

    python benchmarks/loss_speed.py --out benchmarks/results/loss_speed.json
    python benchmarks/loss_speed.py --smoke        # seconds: checks that the script runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nmt import machine  # noqa: E402
from nmt.config import ModelConfig, load_run_config  # noqa: E402
from nmt.model import Transformer  # noqa: E402
from nmt.training.loss import composed_loss, label_smoothed_loss  # noqa: E402
from nmt.training.optim import make_optimizer  # noqa: E402
from nmt.vocab import PAD  # noqa: E402

CONFIG = Path(__file__).resolve().parent.parent / "models" / "multi30k-small.yaml"
SMOOTHING = 0.1


LOSSES = {"old": composed_loss, "new": label_smoothed_loss}
Run = Callable[[Callable], None]  # one timed repetition with the given loss


def loss_case(tokens: int, vocab: int) -> tuple[Run, dict]:
    """Forward + backward of the loss alone on (tokens, vocab) float32 logits."""
    logits = torch.randn(tokens, vocab, requires_grad=True)
    target = torch.randint(PAD + 1, vocab, (tokens,))
    target[::10] = PAD

    def run(loss_fn: Callable) -> None:
        logits.grad = None
        loss_fn(logits, target, SMOOTHING)[0].backward()

    return run, {"logits": [tokens, vocab], "dtype": "float32"}


def update_case(tokens: int, smoke: bool, path: Path = CONFIG) -> tuple[Run, dict]:
    """One float32 update of the model of run config `path` (default: the small model) on a
    random batch of ~`tokens` target tokens."""
    config = load_run_config(path)
    model_config = config.model
    if smoke:
        model_config = ModelConfig(
            vocab_size=500, d_model=32, heads=2, ffn=64, enc_layers=1, dec_layers=1
        )
    torch.manual_seed(0)
    model = Transformer(model_config).train()
    optimizer = make_optimizer(model, config.train)
    length = 26  # about the mean target length of a Multi30k batch
    rows = max(1, tokens // length)
    src = torch.randint(PAD + 1, model_config.vocab_size, (rows, length))
    tgt = torch.randint(PAD + 1, model_config.vocab_size, (rows, length + 1))
    tgt[rows // 2 :, -length // 4 :] = PAD  # half the rows shorter
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def run(loss_fn: Callable) -> None:
        loss, _, ntok = loss_fn(model(src, tgt_in), tgt_out, SMOOTHING)
        (loss / ntok.clamp(min=1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    shape = {"target_tokens": int((tgt_out != PAD).sum()), "rows": rows, "length": length}
    return run, {"model": vars(model_config), "batch": shape, "dtype": "float32"}


def ab(run: Run, rounds: int, steps: int) -> dict:
    """Interleaved A/B: per round, the median seconds of `steps` repetitions of each loss."""
    for loss_fn in LOSSES.values():  # warm-up: allocator, thread pool, first-call costs
        run(loss_fn)
    per_round = []
    for r in range(rounds):
        order = list(LOSSES) if r % 2 == 0 else list(reversed(LOSSES))
        medians = {}
        for name in order:
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                run(LOSSES[name])
                times.append(time.perf_counter() - start)
            medians[name] = statistics.median(times)
        per_round.append(medians)
    old = statistics.median(m["old"] for m in per_round)
    new = statistics.median(m["new"] for m in per_round)
    return {"rounds": per_round, "old_s": old, "new_s": new, "old_over_new": old / new}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--tokens", type=int, default=3300, help="target tokens (logits rows)")
    p.add_argument("--vocab", type=int, default=8000, help="vocabulary of the loss-only case")
    p.add_argument("--rounds", type=int, default=6, help="A/B rounds")
    p.add_argument("--steps", type=int, default=5, help="repetitions of each loss per round")
    p.add_argument("--cases", default="loss,update", help="comma-separated: loss, update")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one round: checks it runs")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--config", type=Path, default=CONFIG, help="run config of the update's model")
    args = p.parse_args(argv)
    if args.smoke:
        args.tokens, args.vocab, args.rounds, args.steps = 64, 500, 2, 1
    torch.set_num_threads(args.threads)
    hw = machine.hardware("cpu")
    result = {
        "cpu": machine.describe_cpu(hw),
        "hardware": hw,
        "threads": args.threads,
        "torch": torch.__version__,
        "smoothing": SMOOTHING,
        "smoke": args.smoke,
        "cases": {},
    }
    print(f"{result['cpu']}, {args.threads} threads, torch {torch.__version__}")
    cases = {
        "loss": lambda: loss_case(args.tokens, args.vocab),
        "update": lambda: update_case(args.tokens, args.smoke, args.config),
    }
    for name in args.cases.split(","):
        run, setup = cases[name]()
        timing = ab(run, args.rounds, args.steps)
        result["cases"][name] = {**setup, **timing}
        print(
            f"{name}: old {timing['old_s'] * 1e3:.1f} ms, new {timing['new_s'] * 1e3:.1f} ms, "
            f"old/new {timing['old_over_new']:.3f} (median of {args.rounds} rounds x "
            f"{args.steps} steps)"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
