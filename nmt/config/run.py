"""The run config of `nmt-train`: one frozen dataclass per section (`model`, `tokenizer`,
`data`, `train`), validated on construction. A YAML file maps onto `RunConfig`; unknown keys
and values of the wrong type are errors that name the key (``train.lr``), so a typo never
silently falls back to a default. ``--set section.key=value`` overrides go through the
same checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.config.loading import (
    ConfigError,
    apply_overrides,
    check,
    check_number,
    from_dict,
    load_yaml,
)


@dataclass(frozen=True)
class ModelConfig:
    """Transformer encoder-decoder shape. `vocab_size` is filled from the tokenizer."""

    vocab_size: int = 8000
    d_model: int = 256
    heads: int = 4
    ffn: int = 1024
    enc_layers: int = 3
    dec_layers: int = 3
    dropout: float = 0.1
    attn_dropout: float = 0.0
    activation: str = "relu"
    pre_norm: bool = True
    layer_norm_eps: float = 1e-6
    max_positions: int = 1024
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "heads", "ffn", "max_positions"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(
            self.enc_layers >= 1 and self.dec_layers >= 1,
            "model.enc_layers",
            "encoder and decoder need at least one layer each",
        )
        # Bounds at or past the largest dense Transformers trained (d_model 16,384, ffn
        # 73,728, 128 heads, 126 layers, 256k pieces): beyond them a slip (d_model 1e9 in a
        # model_config) is likelier than intent, and building the model would exhaust
        # memory instead of failing in one line. (max_positions: nmt.model.MAX_POSITIONS.)
        for name, most in (
            ("vocab_size", 1 << 20),
            ("d_model", 16_384),
            ("heads", 256),
            ("ffn", 131_072),
            ("enc_layers", 256),
            ("dec_layers", 256),
        ):
            value = getattr(self, name)
            check(value <= most, f"model.{name}", f"must be at most {most:,}, got {value:,}")
        check(
            self.d_model % self.heads == 0,
            "model.heads",
            f"must divide model.d_model ({self.d_model}), got {self.heads}",
        )
        check(self.d_model % 2 == 0, "model.d_model", f"must be even, got {self.d_model}")
        check_number(self.dropout, "model.dropout", "[0, 1)")
        check_number(self.attn_dropout, "model.attn_dropout", "[0, 1)")
        check_number(self.layer_norm_eps, "model.layer_norm_eps", "> 0")
        check(
            self.activation in ("relu", "gelu"),
            "model.activation",
            f"must be 'relu' or 'gelu', got {self.activation!r}",
        )


@dataclass(frozen=True)
class TokenizerConfig:
    """Joint SentencePiece model; trained on the training data when `model` is empty."""

    model: str = ""
    type: str = "unigram"
    vocab_size: int = 8000
    character_coverage: float = 1.0
    byte_fallback: bool = True
    input_sentence_size: int = 2_000_000
    seed_sentencepiece_size: int = 1_000_000

    def __post_init__(self) -> None:
        check(
            self.type in ("unigram", "bpe"),
            "tokenizer.type",
            f"must be 'unigram' or 'bpe', got {self.type!r}",
        )
        # 4 special pieces, plus 256 byte pieces with byte fallback.
        minimum = 4 + (256 if self.byte_fallback else 0) + 1
        check(
            self.vocab_size >= minimum,
            "tokenizer.vocab_size",
            f"must be at least {minimum} (special pieces"
            f"{' and 256 byte-fallback pieces' if self.byte_fallback else ''}),"
            f" got {self.vocab_size}",
        )
        check_number(self.character_coverage, "tokenizer.character_coverage", "[0.9, 1]")


@dataclass(frozen=True)
class DataConfig:
    """Where the parallel text comes from and how it is filtered.

    Either name a registered `dataset` (files looked up in `data_dir`, `$NMT_DATA_DIR` or
    the download cache) or give explicit file prefixes: `train: path/train` reads
    `path/train.{src_lang}` and `path/train.{tgt_lang}`.
    """

    dataset: str = ""
    data_dir: str = ""
    src_lang: str = "en"
    tgt_lang: str = "de"
    train: str = "train"
    valid: str = "val"
    test: str = "test_2016_flickr"
    max_tokens: int = 256
    min_tokens: int = 1
    max_ratio: float = 3.0
    # A folder written by nmt-prepare: the training pairs, read from its memory-mapped
    # shards (as prepared and filtered there) instead of `train`; dev and test as above.
    # Or an nmt-prepare config (.yaml/.yml): its output folder, prepared first when it is
    # missing, incomplete or stale.
    prepared: str = ""

    def __post_init__(self) -> None:
        check(
            self.max_tokens >= self.min_tokens >= 0,
            "data.max_tokens",
            "must be >= data.min_tokens >= 0",
        )
        check_number(self.max_ratio, "data.max_ratio", ">= 1")


SCHEDULES = ("constant", "linear", "exponential", "inverse_sigmoid")


@dataclass(frozen=True)
class ScheduledSamplingConfig:
    """Scheduled sampling (Bengio et al. 2015) with a two-pass decoder (Mihaylova & Martins
    2019): a first pass without gradients predicts every target position; each gold decoder
    input is then replaced by the model's own prediction with the mixing probability of the
    step (see nmt/training/sampling.py). Off by default (`max_prob` 0)."""

    schedule: str = "linear"  # constant, linear, exponential or inverse_sigmoid
    k: float = 1000.0  # linear: updates to reach max_prob; exponential: decay per update
    # (< 1); inverse_sigmoid: its constant (>= 1)
    start_step: int = 0  # teacher forcing only before this update
    max_prob: float = 0.0  # the largest mixing probability (0: off)
    predictions: str = "argmax"  # the first pass's tokens: argmax or sample

    def __post_init__(self) -> None:
        key = "train.scheduled_sampling"
        check(
            self.schedule in SCHEDULES,
            f"{key}.schedule",
            f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
        )
        check_number(self.max_prob, f"{key}.max_prob", "[0, 1]")
        check(self.start_step >= 0, f"{key}.start_step", "must be >= 0")
        check(
            self.predictions in ("argmax", "sample"),
            f"{key}.predictions",
            f"must be argmax or sample, got {self.predictions!r}",
        )
        k_range = {  # k's range and meaning by schedule; constant ignores it
            "linear": ("> 0", " (linear: updates to reach max_prob)"),
            "exponential": ("(0, 1)", " (exponential: decay per update)"),
            "inverse_sigmoid": (">= 1", " (inverse_sigmoid: its constant)"),
        }
        check_number(self.k, f"{key}.k", *k_range.get(self.schedule, ("", "")))

    @property
    def enabled(self) -> bool:
        return self.max_prob > 0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, precision, validation and checkpointing; fine-tuning (`init_from`,
    `freeze_*`) and scheduled sampling."""

    seed: int = 1234
    max_steps: int = 100_000
    max_minutes: float = 0.0
    batch_tokens: int = 4096
    accum_steps: int = 1
    lr: float = 1e-3
    warmup_steps: int = 4000
    lr_schedule: str = "inverse_sqrt"  # after warmup: inverse_sqrt, linear (to 0) or constant
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-9
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    precision: str = "auto"
    threads: int = 0
    compile: bool = False
    log_every: int = 50
    valid_every: int = 500
    valid_bleu: bool = True
    valid_batch_tokens: int = 4096
    patience: int = 0
    save_every: int = 500
    keep_last: int = 5
    average_last: int = 0
    device: str = "auto"
    # Fine-tuning: start from these weights (a run folder, .pt checkpoint, weights folder or
    # model.safetensors) with a fresh optimizer and schedule; the tokenizer is the parent's.
    init_from: str = ""
    # Shrink and fine-tune: which of the parent's layers the child's start from, in order
    # (a child with fewer layers than its parent); empty: all of them, the same depth.
    init_encoder_layers: tuple[int, ...] = ()
    init_decoder_layers: tuple[int, ...] = ()
    freeze_embeddings: bool = False  # no updates to the (tied) embeddings and output layer
    freeze_encoder: bool = False  # no updates to the encoder layers
    freeze_steps: int = 0  # frozen for the first N updates only (0: throughout)
    scheduled_sampling: ScheduledSamplingConfig = field(default_factory=ScheduledSamplingConfig)
    # Word-level distillation (nmt.training.word_kd): teachers of the student's tokenizer
    # (run folders, checkpoints or weights folders; several: probabilities averaged) whose
    # next-token distributions the student also learns, with this share of the loss.
    kd_teachers: tuple[str, ...] = ()
    kd_weight: float = 0.5

    def __post_init__(self) -> None:
        check_number(self.lr, "train.lr", "> 0")
        check_number(self.beta1, "train.beta1", "[0, 1)")
        check_number(self.beta2, "train.beta2", "[0, 1)")
        check_number(self.adam_eps, "train.adam_eps", "> 0")
        for name in (
            "max_steps",
            "batch_tokens",
            "accum_steps",
            "log_every",
            "valid_every",
            "save_every",
            "valid_batch_tokens",
        ):
            check(getattr(self, name) > 0, f"train.{name}", "must be positive")
        for name in (
            "warmup_steps",
            "threads",
            "patience",
            "keep_last",
            "average_last",
            "freeze_steps",
        ):
            check(getattr(self, name) >= 0, f"train.{name}", "must be >= 0")
        check(
            self.average_last <= max(self.keep_last, 1),
            "train.average_last",
            f"cannot exceed train.keep_last ({self.keep_last}), the step checkpoints kept",
        )
        check_number(self.max_minutes, "train.max_minutes", ">= 0", " (0: no time limit)")
        check_number(self.label_smoothing, "train.label_smoothing", "[0, 1)")
        check_number(self.weight_decay, "train.weight_decay", ">= 0")
        check_number(self.clip_norm, "train.clip_norm", ">= 0", " (0 disables clipping)")
        check(
            self.precision in ("auto", "fp32", "bf16", "fp16"),
            "train.precision",
            f"must be auto, fp32, bf16 or fp16, got {self.precision!r}",
        )
        check(
            self.device in ("auto", "cpu", "cuda"),
            "train.device",
            f"must be auto, cpu or cuda, got {self.device!r}",
        )
        check(
            self.lr_schedule in ("inverse_sqrt", "linear", "constant"),
            "train.lr_schedule",
            f"must be inverse_sqrt, linear or constant, got {self.lr_schedule!r}",
        )
        for name in ("init_encoder_layers", "init_decoder_layers"):
            layers = getattr(self, name)
            check(not layers or bool(self.init_from), f"train.{name}", "needs train.init_from")
            check(all(i >= 0 for i in layers), f"train.{name}", f"must be >= 0, got {layers}")
        check(
            0 < self.kd_weight <= 1, "train.kd_weight", f"must be in (0, 1], got {self.kd_weight}"
        )
        check(
            not self.freeze_steps or self.freeze_embeddings or self.freeze_encoder,
            "train.freeze_steps",
            "needs train.freeze_embeddings or train.freeze_encoder",
        )


@dataclass(frozen=True)
class RunConfig:
    """Everything `nmt-train` needs. `run_dir` receives checkpoints, logs and the tokenizer."""

    run_dir: str = "runs/default"
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check(
            Path(self.run_dir.strip() or ".") != Path("."),
            "run_dir",
            f"must name a folder for the run, not the current folder (got {self.run_dir!r})",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_run_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Load a run config from YAML (or defaults when `path` is None) plus overrides."""
    raw = load_yaml(path) if path else {}
    raw = apply_overrides(raw, list(overrides))
    try:
        return from_dict(RunConfig, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
