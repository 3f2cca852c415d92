"""What every command shares: logging, the one-line error, and one definition of each option
that several commands take, so that an option means the same wherever it appears.

Defaults come from the library (`nmt.decoding.Decoding`, `nmt.config.DataConfig`), so the
commands and the API cannot drift; a command may word an option's help for itself.
"""

from __future__ import annotations

import argparse
import logging
import sys

from nmt.config import DataConfig
from nmt.decoding import Decoding

# One meaning for every command's --data-dir: the data root, as ../shared/data is.
DATA_DIR_HELP = (
    "data root: a registered dataset's files are found in DIR/NAME/ (or DIR/), other "
    "relative corpus paths under DIR (default $NMT_DATA_DIR, else the download cache)"
)
THREADS_HELP = "CPU threads per translator (CTranslate2 intra_threads; 0: library default)"
DEVICES = ("cpu", "cuda")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def fail(error: Exception) -> int:
    """User errors (bad config, corpus, checkpoint) end in one line, not a traceback."""
    print(f"error: {error}", file=sys.stderr)
    return 2


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a command reports with `fail`: the user's to fix, not the toolkit's."""
    from nmt.checkpoint import CheckpointError
    from nmt.config import ConfigError
    from nmt.data.corpus import CorpusError
    from nmt.data.datasets import DatasetError
    from nmt.export.folder import ExportError
    from nmt.outputs import FolderBusyError
    from nmt.prepare.folder import PrepareError
    from nmt.weights import WeightsError

    # OSError: a missing or unreadable file, a full disk (the message names the file).
    return (
        ConfigError,
        FolderBusyError,
        CorpusError,
        DatasetError,
        CheckpointError,
        ExportError,
        PrepareError,
        WeightsError,
        OSError,
        ValueError,
    )


# --- options ------------------------------------------------------------------------------


def add_force(parser: argparse.ArgumentParser, what: str) -> None:
    """--force; `what` says what it replaces for this command (never what another made)."""
    parser.add_argument("--force", action="store_true", help=what)


def add_data_dir(parser: argparse.ArgumentParser, help: str = DATA_DIR_HELP) -> None:
    parser.add_argument("--data-dir", help=help)


def add_overrides(parser: argparse.ArgumentParser, help: str, metavar: str = "KEY=VALUE") -> None:
    """--set KEY=VALUE (repeatable): a config value, type-checked by the config's loader."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar=metavar, help=help
    )


def overrides_with_data_dir(args: argparse.Namespace, key: str) -> list[str]:
    """The --set overrides, with --data-dir as the override of config key `key`."""
    return args.overrides + ([f"{key}={args.data_dir}"] if args.data_dir else [])


def add_models(parser: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    """--model/-m, repeatable (several: an ensemble)."""
    parser.add_argument("--model", "-m", required=required, action="append", help=help)


def add_languages(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src-lang", default=DataConfig.src_lang)
    parser.add_argument("--tgt-lang", default=DataConfig.tgt_lang)


def add_beam(
    parser: argparse.ArgumentParser,
    default: int = Decoding.beam_size,
    help: str = "beam size (1 = greedy)",
) -> None:
    parser.add_argument("--beam", type=int, default=default, help=help)


def add_batch_tokens(
    parser: argparse.ArgumentParser,
    default: int = Decoding.max_batch_tokens,
    help: str = "max source tokens a batch",
) -> None:
    parser.add_argument("--batch-tokens", type=int, default=default, help=help)


def add_decoding_args(parser: argparse.ArgumentParser, lengths: bool = True) -> None:
    """--beam and --batch-tokens, with `lengths` --length-penalty, --max-len-a and
    --max-len-b, and the guards against loops (`add_guard_args`): `Decoding`'s options, with
    its defaults (`decoding_from` reads them)."""
    add_beam(parser)
    add_batch_tokens(parser)
    if lengths:
        parser.add_argument("--length-penalty", type=float, default=Decoding.length_penalty)
        parser.add_argument("--max-len-a", type=float, default=Decoding.max_len_a)
        parser.add_argument("--max-len-b", type=int, default=Decoding.max_len_b)
    add_guard_args(parser)


def add_guard_args(parser: argparse.ArgumentParser) -> None:
    """--no-repeat-ngram-size, --repetition-penalty and --max-char-repeat: `Decoding`'s
    guards against loops, with its defaults."""
    parser.add_argument(
        "--no-repeat-ngram-size",
        type=int,
        default=Decoding.no_repeat_ngram_size,
        metavar="N",
        help="never generate an N-gram of tokens twice (0: off)",
    )
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        default=Decoding.repetition_penalty,
        metavar="P",
        help="divide the positive logits of tokens already generated by P, multiply their "
        "negative ones by P (1: off)",
    )
    parser.add_argument(
        "--max-char-repeat",
        type=int,
        default=Decoding.max_char_repeat,
        metavar="N",
        help="cut every run of one character (not a digit) in the output to N (0: off)",
    )


def guards_from(args: argparse.Namespace) -> dict[str, object]:
    """The `Decoding` fields of `add_guard_args`' options."""
    return {
        "no_repeat_ngram_size": args.no_repeat_ngram_size,
        "repetition_penalty": args.repetition_penalty,
        "max_char_repeat": args.max_char_repeat,
    }


def decoding_from(args: argparse.Namespace) -> Decoding:
    """The `Decoding` of `add_decoding_args`' options (without `lengths`, the length options
    keep `Decoding`'s defaults); impossible values raise ConfigError."""
    lengths = {
        name: getattr(args, name)
        for name in ("length_penalty", "max_len_a", "max_len_b")
        if hasattr(args, name)
    }
    return Decoding(
        beam_size=args.beam, max_batch_tokens=args.batch_tokens, **lengths, **guards_from(args)
    )


def add_threads(
    parser: argparse.ArgumentParser, default: int = 0, help: str = THREADS_HELP
) -> None:
    parser.add_argument("--threads", type=int, default=default, help=help)


def add_device(
    parser: argparse.ArgumentParser, default: str | None = "cpu", help: str | None = None
) -> None:
    parser.add_argument("--device", default=default, choices=DEVICES, help=help)


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """How a translator runs: --threads, --device and --no-vmap."""
    add_threads(parser)
    add_device(parser)
    parser.add_argument(
        "--no-vmap", action="store_true", help="CTranslate2: ignore the export's vocabulary map"
    )


def add_foreign_args(parser: argparse.ArgumentParser) -> None:
    """--tokenizer, --source-prefix, --source-suffix and --target-prefix: what a model nmt
    did not make may need (`nmt.backends.foreign`: recognised from its folder where it can
    be; a value given wins)."""
    parser.add_argument(
        "--tokenizer",
        dest="tokenizer_files",
        action="append",
        default=[],
        metavar="FILE",
        help="foreign model: its tokenizer (SentencePiece model or tokenizer.json); twice: "
        "the source's then the target's (default: found in the model's folder)",
    )
    parser.add_argument(
        "--source-prefix",
        metavar="TOKENS",
        help="foreign model: tokens before each source sentence (NLLB: eng_Latn, "
        "M2M-100: __en__, multilingual OPUS-MT: >>deu<<)",
    )
    parser.add_argument(
        "--source-suffix",
        metavar="TOKENS",
        help="foreign model: tokens after each source sentence (default: </s> where the "
        "model's decoder starts from it; '' for none)",
    )
    parser.add_argument(
        "--target-prefix",
        metavar="TOKENS",
        help="foreign model: the target language token a multilingual model starts from "
        "(NLLB: deu_Latn, M2M-100: __de__ or de); removed from the output",
    )


def foreign_options(args: argparse.Namespace) -> dict[str, object]:
    """The `nmt.translate.load` options of `add_foreign_args`' flags that were given."""
    names = ("tokenizer_files", "source_prefix", "source_suffix", "target_prefix")
    given = {name: getattr(args, name, None) for name in names}
    return {name: value for name, value in given.items() if value not in (None, [])}
