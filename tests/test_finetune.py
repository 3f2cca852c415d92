"""Fine-tuning (`train.init_from`): the parent's weights and tokenizer, checked architecture,
freezing, and the parent recorded in every checkpoint, summary and export."""

import json

import pytest
import torch

from nmt.backends.pytorch import TorchTranslator
from nmt.checkpoint import find_checkpoint, load_checkpoint
from nmt.cli import train_main
from nmt.config import ConfigError, TokenizerConfig, TrainConfig
from nmt.export import export
from nmt.fileio import file_sha256
from nmt.tokenizer import train_tokenizer
from nmt.training.finetune import apply_freezing, frozen_parameters
from nmt.training.run import train
from nmt.training.trainer import Trainer
from nmt.translate import load

from .conftest import TOY_PAIRS
from .test_train import toy_config

SOURCES = [s for s, _ in TOY_PAIRS]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A toy run trained for 60 updates: a corpus folder and its run folder."""
    from .toys import write_toy_corpus

    root = tmp_path_factory.mktemp("parent")
    corpus = write_toy_corpus(root / "toy")
    train(toy_config(root / "run", corpus, "train.max_steps=60"))
    return root / "run", corpus


def child_config(tmp_path, parent, *extra):
    run, corpus = parent
    return toy_config(tmp_path / "child", corpus, f"train.init_from={run}", *extra)


def test_zero_updates_translate_as_the_parent_token_for_token(tmp_path, parent):
    trainer = Trainer(child_config(tmp_path, parent, "train.max_steps=5"))
    child = TorchTranslator(trainer.model.eval(), trainer.tokenizer)
    ours, theirs = load(parent[0]), child
    for beam in (1, 4):
        assert theirs.translate(SOURCES, beam_size=beam) == ours.translate(SOURCES, beam_size=beam)
    assert (tmp_path / "child" / "spm.model").read_bytes() == (parent[0] / "spm.model").read_bytes()


def test_fresh_optimizer_schedule_and_step(tmp_path, parent):
    summary = train(child_config(tmp_path, parent, "train.max_steps=4", "train.log_every=1"))
    assert summary["steps"] == 4
    records = [json.loads(x) for x in (tmp_path / "child" / "log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if r["type"] == "train"]
    # warmup 20 from step 0 again: the parent's 60 updates left no trace in the schedule
    assert lrs == pytest.approx([0.003 * (s + 1) / 20 for s in range(4)])


def test_a_weights_folder_is_a_parent(tmp_path, parent):
    weights = export(parent[0], tmp_path / "weights", format="safetensors", quantization="float32")
    trainer = Trainer(child_config(tmp_path, (weights, parent[1]), "train.max_steps=5"))
    reference = load_checkpoint(find_checkpoint(parent[0]))["model"]
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    assert trainer.parent.path == weights / "model.safetensors"
    assert trainer.parent.provenance()["step"] == 60  # the step the weights file records


def test_another_tokenizer_is_an_error_naming_the_key(tmp_path, parent):
    texts = [t for pair in TOY_PAIRS for t in pair] * 4
    other = tmp_path / "other.model"
    train_tokenizer(texts, TokenizerConfig(vocab_size=50, byte_fallback=False), other)
    config = child_config(tmp_path, parent, f"tokenizer.model={other}")
    with pytest.raises(ConfigError, match=r"^tokenizer.model: .* is not the tokenizer of") as e:
        Trainer(config)
    assert "\n" not in str(e.value)
    # The parent's own tokenizer file is accepted.
    Trainer(child_config(tmp_path, parent, f"tokenizer.model={parent[0] / 'spm.model'}"))


def test_another_architecture_is_an_error_naming_the_key(tmp_path, parent):
    with pytest.raises(ConfigError, match=r"^model.ffn: 96 in the config, but .* has 128"):
        Trainer(child_config(tmp_path, parent, "model.ffn=96"))
    # Dropout is no architecture: a fine-tuning run may change it.
    Trainer(child_config(tmp_path, parent, "model.dropout=0.3"))


def test_a_missing_parent_is_a_one_line_error(tmp_path, parent, capsys):
    code = train_main(
        [
            "--set",
            f"run_dir={tmp_path / 'child'}",
            "--set",
            f"data.data_dir={parent[1]}",
            "--set",
            "data.valid=val",
            "--set",
            f"train.init_from={tmp_path / 'nowhere'}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.init_from" in err and "nowhere" in err
    assert not (tmp_path / "child").exists()


def test_frozen_parameters_do_not_change(tmp_path, parent):
    config = child_config(
        tmp_path,
        parent,
        "train.max_steps=6",
        "train.freeze_embeddings=true",
        "train.freeze_encoder=true",
    )
    train(config)
    before = load_checkpoint(find_checkpoint(parent[0]))["model"]
    after = load_checkpoint(tmp_path / "child" / "last.pt")["model"]
    frozen = [k for k in before if k.startswith(("encoder.", "enc_norm.", "embed.", "output."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trained = [k for k in before if k.startswith("decoder.")]
    assert any(not torch.equal(before[k], after[k]) for k in trained)
    summary = json.loads((tmp_path / "child" / "summary.json").read_text())
    assert summary["frozen_parameters"] > 0


def test_freezing_for_the_first_updates_only(tmp_path, parent):
    c = TrainConfig(freeze_encoder=True, freeze_steps=3)
    trainer = Trainer(child_config(tmp_path, parent, "train.max_steps=5"))
    encoder = list(trainer.model.encoder.parameters())
    apply_freezing(trainer.model, c, 2)
    assert not any(p.requires_grad for p in encoder)
    assert all(p.requires_grad for p in trainer.model.decoder.parameters())
    apply_freezing(trainer.model, c, 3)
    assert all(p.requires_grad for p in encoder)
    # Tied embeddings: one matrix, frozen once.
    ids = {id(p) for p in frozen_parameters(trainer.model, TrainConfig(freeze_embeddings=True))}
    assert ids == {id(trainer.model.embed.weight)}


def test_freeze_steps_alone_is_a_config_error():
    with pytest.raises(ConfigError, match="train.freeze_steps: needs"):
        TrainConfig(freeze_steps=10)


def test_the_parent_is_recorded_in_checkpoints_summary_and_exports(tmp_path, parent):
    train(child_config(tmp_path, parent, "train.max_steps=10", "train.average_last=2"))
    child = tmp_path / "child"
    chosen = find_checkpoint(parent[0])  # the run's best.pt (validated at its end)
    expected = {"path": str(chosen), "sha256": file_sha256(chosen), "step": 60}
    for name in ("last.pt", "best.pt", "averaged.pt", "checkpoints/step_10.pt"):
        recorded = load_checkpoint(child / name)["parent"]
        assert {k: recorded[k] for k in expected} == expected, name
    summary = json.loads((child / "summary.json").read_text())
    assert summary["parent"]["sha256"] == expected["sha256"]
    for fmt, info in (("ct2", "nmt_export.json"), ("safetensors", "nmt_export.json")):
        out = export(child, tmp_path / fmt, format=fmt)
        assert json.loads((out / info).read_text())["parent"]["sha256"] == expected["sha256"]


def test_a_shallower_child_starts_from_the_parent_layers_it_names(tmp_path, parent):
    """Shrink and fine-tune: a 2+1 child of the 2+2 parent takes the parent's decoder layer 1
    as its only one, and everything else as it is."""
    trainer = Trainer(
        child_config(tmp_path, parent, "model.dec_layers=1", "train.init_decoder_layers=[1]")
    )
    before = load_checkpoint(find_checkpoint(parent[0]))["model"]
    state = trainer.model.state_dict()
    kept = {k for k in before if not k.startswith("decoder.0.")}
    assert set(state) == {k.replace("decoder.1.", "decoder.0.") for k in kept}
    for name, tensor in state.items():
        source = name.replace("decoder.0.", "decoder.1.")
        assert torch.equal(tensor, before[source]), name
    # The same child from decoder layer 0 differs in that layer only.
    other = Trainer(
        child_config(tmp_path / "b", parent, "model.dec_layers=1", "train.init_decoder_layers=[0]")
    ).model.state_dict()
    changed = {k for k in state if not torch.equal(state[k], other[k])}
    assert changed and all(k.startswith("decoder.0.") for k in changed)
    summary = train(
        child_config(
            tmp_path / "c",
            parent,
            "model.dec_layers=1",
            "train.init_decoder_layers=[1]",
            "train.max_steps=3",
        )
    )
    assert summary["steps"] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["model.dec_layers=1"], r"^model.dec_layers: 1 in the config, but .* has 2"),
        (
            ["model.dec_layers=1", "train.init_decoder_layers=[0,1]"],
            r"^train.init_decoder_layers: names 2 layers, but model.dec_layers is 1$",
        ),
        (
            ["model.enc_layers=1", "train.init_encoder_layers=[2]"],
            r"^train.init_encoder_layers: layer 2 is out of range: .* has 2 encoder layers",
        ),
    ],
)
def test_a_child_of_another_depth_names_the_layers_it_keeps(tmp_path, parent, extra, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(child_config(tmp_path, parent, *extra))


def test_picking_layers_needs_a_parent():
    with pytest.raises(ConfigError, match="^train.init_decoder_layers: needs train.init_from$"):
        TrainConfig(init_decoder_layers=(0,))
