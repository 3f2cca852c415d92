"""What every translation backend does to its input lines before decoding."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def encode_nonblank(
    lines: Sequence[str], encode: Callable[[list[str]], list[list[T]]], max_tokens: int
) -> tuple[list[int], list[list[T]]]:
    """The indices of the lines holding text and their encodings (ids or pieces, by
    `encode`), each cut to `max_tokens` with a warning naming the line. Blank lines are
    left out: the backends answer them with an empty line without running the model."""
    todo = [i for i, line in enumerate(lines) if line.strip()]
    encoded = encode([lines[i].strip() for i in todo])
    for k, seq in enumerate(encoded):
        if len(seq) > max_tokens:
            log.warning(
                "input line %d has %d tokens; truncated to the model's maximum of %d",
                todo[k] + 1,
                len(seq),
                max_tokens,
            )
            encoded[k] = seq[:max_tokens]
    return todo, encoded
