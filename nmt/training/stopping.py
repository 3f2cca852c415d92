"""Stopping a run on purpose: SIGTERM or Ctrl-C ends the current step, writes `last.pt` and
raises `TrainingStopped`; a second signal stops at once."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """A signal stopped the run at a step boundary, after writing `last.pt`."""

    def __init__(self, signum: int, step: int, run_dir: Path):
        self.exit_code = 128 + signum
        super().__init__(
            f"{run_dir}: stopped by {signal.Signals(signum).name} at step {step}, "
            "checkpoint last.pt written; continue with --resume"
        )


@contextlib.contextmanager
def stop_requests():
    """Record SIGTERM/SIGINT in the yielded list instead of dying mid-step; a second signal
    raises KeyboardInterrupt at once. Only the main thread can install handlers: elsewhere
    the list stays empty and signals keep their default behaviour."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        log.warning("%s: finishing this step and saving", signal.Signals(signum).name)
        received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
