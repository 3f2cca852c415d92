"""A rule-based sentence splitter in MiniSBD's model format, for Argos Translate packages.

Argos Translate 1.11 splits text into sentences before translating. Its default splitter,
MiniSBD, loads the first `*.onnx` file of the package's `minisbd/` folder if there is one,
and otherwise downloads a trained model from GitHub at first use (argostranslate/sbd.py,
`MiniSBDSentencizer.__init__`; minisbd/models.py, `get_model_file`). Those trained models
are not on any package registry, so an nmt package ships this one: an ONNX graph with no
learnt weights, computed from the characters alone, that MiniSBD runs like its own.

MiniSBD's model contract (minisbd/modules/inference.py, data.py): inputs `units` (int64
[B, T], character ids from the vocabulary in the model's metadata, `<PAD>` = 0 after the
text) and `features` (float32 [B, T, F], here F = 1: `space_before`, 1 for a whitespace
character); output [B, T, 5] scores, argmax per character: 0 inside a token, 1 end of a
token, 2 end of a token and of a sentence (3 and 4: multi-word tokens, never produced).
MiniSBD itself ends the last sentence at the end of the text.

The rules: a token ends before whitespace; a sentence ends after a token that ends with
`.`, `!`, `?` or `…` (or one of them followed by a closing quote or bracket), unless the next
token starts with a lower-case letter ("e.g. the", "approx. five"). Not handled: an
abbreviation followed by a capital ("Mr. Smith" is split after "Mr."), and scripts that end
sentences without a following space (Chinese, Japanese). A trained MiniSBD model handles
both; bundle one with `sbd_model` where it is at hand.
"""

from __future__ import annotations

import json
from pathlib import Path

LOWER = (
    "abcdefghijklmnopqrstuvwxyzàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿßœšžłńśźżąęćőű"
    "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώаеёжзийклмнопрстуфхцчшщъыьэюябвгд"
)
TERMINALS = ".!?…"
CLOSERS = "\"'”’»)]"
PAD, UNK = "<PAD>", "<UNK>"
OPSET = 13
VERSION = 1  # of the rules; recorded in the model's metadata

# The scores each class gets where it applies: class 0 always scores 0.5, so a token end
# (1.0) beats it and a sentence end (2.0) beats both.
_INSIDE, _TOKEN_END, _SENTENCE_END, _NEVER = 0.5, 1.0, 2.0, -1.0


def vocabulary() -> list[str]:
    """The characters the rules look at, after MiniSBD's `<PAD>` (0) and `<UNK>` (1);
    every other character reads as `<UNK>`."""
    return [PAD, UNK, *TERMINALS, *CLOSERS, *LOWER]


def build_model(lang: str = "xx") -> bytes:
    """The splitter as serialized ONNX, with the metadata MiniSBD reads (`lang_code`,
    `config`, `vocab`, `lexicon`). The same bytes on every call."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    units = vocabulary()
    table = {name: np.zeros(len(units), dtype=np.float32) for name in ("term", "close", "low")}
    for i, unit in enumerate(units):
        table["term"][i] = unit in TERMINALS
        table["close"][i] = unit in CLOSERS
        table["low"][i] = unit in LOWER

    def const(name: str, value) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value), name)

    big = np.iinfo(np.int64).max
    initializers = [
        const("term_table", table["term"]),
        const("close_table", table["close"]),
        const("low_table", table["low"]),
        const("zero", np.array([0], dtype=np.int64)),
        const("one", np.array([1], dtype=np.int64)),
        const("two", np.array([2], dtype=np.int64)),
        const("minus_one", np.array([-1], dtype=np.int64)),
        const("end", np.array([big], dtype=np.int64)),
        const("axis1", np.array([1], dtype=np.int64)),
        const("axis2", np.array([2], dtype=np.int64)),
        const("pad_id", np.array(0, dtype=np.int64)),
        const("f_one", np.array(1.0, dtype=np.float32)),
        const("f_zero", np.array(0.0, dtype=np.float32)),
        const("shift_left_1", np.array([0, 0, 0, 1], dtype=np.int64)),  # [B, T]: 1 after
        const("shift_left_2", np.array([0, 0, 0, 2], dtype=np.int64)),
        const("shift_right_1", np.array([0, 1, 0, 0], dtype=np.int64)),
        const("inside", np.array(_INSIDE, dtype=np.float32)),
        const("sentence_end", np.array(_SENTENCE_END, dtype=np.float32)),
        const("never", np.array(_NEVER, dtype=np.float32)),
    ]
    n = helper.make_node
    nodes = [
        # per character, [B, T]
        n("Slice", ["features", "zero", "one", "axis2"], ["space3"]),
        n("Squeeze", ["space3", "axis2"], ["space"]),
        n("Equal", ["units", "pad_id"], ["pad_bool"]),
        n("Cast", ["pad_bool"], ["pad"], to=TensorProto.FLOAT),
        n("Gather", ["term_table", "units"], ["term"]),
        n("Gather", ["close_table", "units"], ["close"]),
        n("Gather", ["low_table", "units"], ["low"]),
        # whitespace or the end of the text at t + 1 (the text is followed by <PAD>)
        n("Max", ["space", "pad"], ["gap"]),
        n("Slice", ["gap", "one", "end", "axis1"], ["gap_after"]),
        n("Pad", ["gap_after", "shift_left_1", "f_one"], ["next_gap"]),
        # a lower-case letter at t + 2: the first character of the next token
        n("Slice", ["low", "two", "end", "axis1"], ["low_after"]),
        n("Pad", ["low_after", "shift_left_2", "f_zero"], ["next_low"]),
        # a terminal at t - 1 (for a closing quote or bracket at t)
        n("Slice", ["term", "zero", "minus_one", "axis1"], ["term_before"]),
        n("Pad", ["term_before", "shift_right_1", "f_zero"], ["prev_term"]),
        # token end: not whitespace, not <PAD>, whitespace or the end next
        n("Sub", ["f_one", "space"], ["not_space"]),
        n("Sub", ["f_one", "pad"], ["not_pad"]),
        n("Mul", ["next_gap", "not_space"], ["tok_a"]),
        n("Mul", ["tok_a", "not_pad"], ["token_end"]),
        # sentence end: a token end on a terminal (or a closer after one), no lower case next
        n("Mul", ["close", "prev_term"], ["closed_term"]),
        n("Max", ["term", "closed_term"], ["final"]),
        n("Sub", ["f_one", "next_low"], ["not_next_low"]),
        n("Mul", ["token_end", "final"], ["sent_a"]),
        n("Mul", ["sent_a", "not_next_low"], ["sent"]),
        # scores [B, T, 5]
        n("Mul", ["token_end", "f_zero"], ["zeros"]),
        n("Add", ["zeros", "inside"], ["score0"]),
        n("Mul", ["sent", "sentence_end"], ["score2"]),
        n("Add", ["zeros", "never"], ["score_never"]),
        *(
            n("Unsqueeze", [name, "axis2"], [f"{name}_3d"])
            for name in ("score0", "token_end", "score2", "score_never")
        ),
        n(
            "Concat",
            ["score0_3d", "token_end_3d", "score2_3d", "score_never_3d", "score_never_3d"],
            ["scores"],
            axis=2,
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "nmt_rule_sentence_splitter",
        [
            helper.make_tensor_value_info("units", TensorProto.INT64, ["batch", "chars"]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "chars", 1]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "chars", 5])],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="nmt",
        producer_version=str(VERSION),
    )
    model.ir_version = 8  # read by onnxruntime >= 1.10, MiniSBD's lower bound
    config = {
        "skip_newline": False,
        "max_seqlen": 1000,
        "no_ssplit": False,
        "batch_size": 32,
        "feat_funcs": ["space_before"],
        "use_dictionary": False,
        "num_dict_feat": 0,
    }
    vocab = {
        "lang": lang,
        "idx": 0,
        "cutoff": 0,
        "lower": False,
        "_unit2id": {u: i for i, u in enumerate(units)},
        "_id2unit": units,
    }
    metadata = {
        "lang_code": lang,
        "config": json.dumps(config, sort_keys=True),
        "vocab": json.dumps(vocab, ensure_ascii=False, sort_keys=True),
        "lexicon": "null",
        "nmt_rules_version": str(VERSION),
    }
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_model(path: str | Path, lang: str = "xx") -> Path:
    """Write `build_model(lang)` to `path`."""
    path = Path(path)
    path.write_bytes(build_model(lang))
    return path
