"""What a server serves and how: `Settings` (batching and limits, `nmt-serve`'s defaults)
and the models, each loaded with `nmt.translate.load` and given its language pair and its
`Batcher`.

A model serves one language pair, read from its export's provenance (`src_lang`/`tgt_lang`
in nmt_export.json or config.json, where recorded), else from its name: `en-de=MODEL`, or
a folder named like `multi30k-en-de-student`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nmt.config import ConfigError
from nmt.decoding import Decoding, check_threads, usable_cpus
from nmt.serve.batcher import Batcher
from nmt.serve.metrics import Metrics
from nmt.translate import Translator, load

log = logging.getLogger(__name__)

_PAIR = re.compile(r"(?<![a-z])([a-z]{2,3})-([a-z]{2,3})(?![a-z])")


@dataclass(frozen=True)
class Settings:
    """How the server batches and what it accepts; `nmt-serve`'s defaults are these."""

    max_batch_tokens: int = 1024  # source tokens per batch (flushed when reached)
    max_wait_ms: float = 5.0  # the longest a sentence waits for others to join its batch
    workers: int = 1  # translator calls at once (threads)
    threads: int = 0  # CPU threads per translator call (0: the usable CPUs / workers)
    max_chars: int = 5000  # characters a request may hold (413 beyond)
    queue: int = 256  # requests in progress at once (503 beyond)
    timeout_s: float = 60.0  # a request not answered by then gets 504
    batching: bool = True  # False: a batch holds one request's sentences only
    decoding: Decoding = field(default_factory=Decoding)  # a request's default decoding
    use_vmap: bool | None = None  # CTranslate2's vocabulary map (None: where the export has one)

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "workers", "max_chars", "queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")
        check_threads(self.threads, "threads")
        for name in ("max_wait_ms", "timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{name}: must be a number >= 0, got {value!r}")

    @property
    def max_body(self) -> int:
        """Bytes a request body may hold: `max_chars` characters at their longest in JSON
        (a \\uXXXX escape pair for one character), plus room for the other fields."""
        return 12 * self.max_chars + 65536

    @property
    def translator_threads(self) -> int:
        return self.threads or max(1, usable_cpus() // self.workers)


@dataclass
class ServedModel:
    """A loaded model, its language pair and its batcher."""

    name: str
    source: str
    target: str
    translator: Translator
    batcher: Batcher


def pair_of(name: str, path: Path | None) -> tuple[str, str]:
    """The (source, target) languages of a model: its export's record, else its name."""
    if path is not None and path.is_dir():
        for file in ("nmt_export.json", "config.json"):
            with contextlib.suppress(OSError, ValueError):
                info = json.loads((path / file).read_text(encoding="utf-8"))
                if isinstance(info, dict) and info.get("src_lang") and info.get("tgt_lang"):
                    return str(info["src_lang"]), str(info["tgt_lang"])
    for text in (name, path.name if path is not None else ""):
        if match := _PAIR.search(text.lower()):
            return match.group(1), match.group(2)
    raise ConfigError(
        f"{name}: its languages are not recorded; name it by its pair: -m en-de={path or name}"
    )


def parse_spec(spec: str) -> tuple[str, str]:
    """`NAME=MODEL` or `MODEL` -> (name, model path)."""
    name, sep, path = spec.partition("=")
    if not sep:
        return Path(spec).name or spec, spec
    if not name or not path:
        raise ConfigError(f"{spec}: expected NAME=MODEL or MODEL")
    return name, path


def _translate(
    translator: Translator, use_vmap: bool | None, lines: list[str], decoding: Decoding, n_best: int
) -> list:
    """A batch's translations: texts, or with `n_best` > 1 each line's hypotheses."""
    vmap = (
        {"use_vmap": use_vmap} if use_vmap is not None and hasattr(translator, "has_vmap") else {}
    )
    if n_best == 1:
        return translator.translate(lines, decoding, **vmap)
    return translator.translate_nbest(lines, n_best, decoding, **vmap)


def load_models(
    models: Sequence[str] | Mapping[str, str | Path | Translator],
    settings: Settings,
    device: str = "cpu",
    compute_type: str = "default",
    metrics: Metrics | None = None,
    exact_length_limits: bool = False,
    load_options: Mapping[str, object] | None = None,
) -> dict[str, ServedModel]:
    """Load each model (a `NAME=MODEL` spec, or name -> path or loaded translator); one
    given by path with `load_options` too (`nmt.translate.load`'s, e.g. a foreign model's
    `target_prefix`)."""
    items = (
        list(models.items())
        if isinstance(models, Mapping)
        else [parse_spec(str(spec)) for spec in models]
    )
    if not items:
        raise ConfigError("no model to serve")
    served: dict[str, ServedModel] = {}
    for name, model in items:
        if name in served:
            raise ConfigError(f"{name}: two models of that name (name them: -m NAME=MODEL)")
        if isinstance(model, str | Path):
            path = Path(model)
            translator = load(
                path,
                device=device,
                threads=settings.translator_threads,
                inter_threads=settings.workers,
                compute_type=compute_type,
                exact_length_limits=exact_length_limits,
                **(load_options or {}),
            )
        else:
            path, translator = None, model
        source, target = pair_of(name, path)
        batcher = Batcher(
            functools.partial(_translate, translator, settings.use_vmap),
            lambda text, t=translator: len(t.tokenizer.encode(text)),
            max_batch_tokens=settings.max_batch_tokens,
            max_wait_ms=settings.max_wait_ms,
            workers=settings.workers,
            queue=settings.queue,
            across_requests=settings.batching,
            observe=metrics.observe_batch if metrics else None,
        )
        served[name] = ServedModel(name, source, target, translator, batcher)
        log.info("serving %s (%s -> %s, %s)", name, source, target, translator.backend)
    return served
