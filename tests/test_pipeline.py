"""The presets load; a tiny pipeline runs end to end, skips what is done and resumes."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nmt.bench.grid import expand_cells, load_bench_config
from nmt.checkpoint import load_checkpoint
from nmt.cli import pipeline_main
from nmt.config import ConfigError, load_run_config
from nmt.fileio import file_sha256
from nmt.pipeline import (
    PipelineError,
    load_pipeline_config,
    run_pipeline,
    stage_status,
    train_stage,
)
from nmt.training.run import train
from nmt.translate import load

from .conftest import TOY_PAIRS
from .test_train import toy_config

REPO = Path(__file__).resolve().parents[1]


# --- presets -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((REPO / "models").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_presets_load(path):
    config = load_run_config(path)
    assert config.model.d_model % config.model.heads == 0


def test_distillation_presets_have_their_shapes():
    shapes = {  # name: (d_model, heads, ffn, encoder layers, decoder layers)
        "teacher": (512, 8, 2048, 6, 6),
        "student-6-3": (256, 4, 1024, 6, 3),
        "student-4-3": (256, 4, 1024, 4, 3),
        "student-6-2": (256, 8, 1536, 6, 2),
        "student-6-1": (256, 4, 1024, 6, 1),
        "tiny": (128, 4, 256, 4, 4),  # the committed teacher members
        "student-tiny": (128, 4, 256, 4, 1),  # the quick start's student
    }
    for name, shape in shapes.items():
        m = load_run_config(REPO / "models" / f"multi30k-{name}.yaml").model
        assert (m.d_model, m.heads, m.ffn, m.enc_layers, m.dec_layers) == shape, name
    teacher = load_run_config(REPO / "models" / "multi30k-teacher.yaml")
    assert teacher.model.dropout == 0.3 and teacher.train.label_smoothing == 0.1
    assert teacher.train.average_last > 1


@pytest.mark.parametrize("path", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.stem)
def test_pipelines_load(path, monkeypatch):
    monkeypatch.chdir(REPO)  # their run configs are relative to the repository
    config = load_pipeline_config(path)
    assert [name for name, done in stage_status(config)][:2] == ["teacher", "distill"]


def test_pipeline_errors_name_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    path = REPO / "pipelines" / "quickstart.yaml"
    with pytest.raises(ConfigError, match=r"distill\.decoding\.beam_size"):
        load_pipeline_config(path, ["distill.decoding.beam_size=0"])
    (tmp_path / "mix.yaml").write_text(
        path.read_text().replace("data: distilled ", "data: mix ")  # without distill.mix
    )
    with pytest.raises(ConfigError, match=r"students\[0\]\.data: mix needs distill\.mix"):
        load_pipeline_config(tmp_path / "mix.yaml")
    with pytest.raises(ConfigError, match=r"train\.max_minute: unknown key"):
        load_pipeline_config(path, ["students[0].set=[train.max_minute=7]"])
    with pytest.raises(ConfigError, match="--until: unknown stage 'teachers'"):
        run_pipeline(load_pipeline_config(path, [f"root={tmp_path}/out"]), until="teachers")
    for name in ("export", "exports"):  # a stage's or a folder's name
        with pytest.raises(ConfigError, match=r"students\[0\]\.name"):
            load_pipeline_config(path, [f"students=[{{name: {name}, config: x.yaml}}]"])


# --- a tiny pipeline -----------------------------------------------------------------------

TINY_RUN = {
    "tokenizer": {"vocab_size": 60, "byte_fallback": False},
    "model": {
        "d_model": 64,
        "heads": 4,
        "ffn": 128,
        "enc_layers": 2,
        "dec_layers": 2,
        "dropout": 0.0,
        "attn_dropout": 0.0,
        "max_positions": 64,
    },
    "train": {
        "precision": "fp32",
        "threads": 1,
        "batch_tokens": 64,
        "lr": 0.003,
        "warmup_steps": 20,
        "label_smoothing": 0.0,
        "log_every": 5,
        "valid_every": 1000,
        "valid_bleu": False,
        "save_every": 50,
        "max_steps": 150,
    },
}


def tiny_pipeline(root: Path, bench: bool) -> Path:
    """A toy corpus, tiny teacher and student configs and a pipeline over them."""
    corpus = root / "toy"
    corpus.mkdir(parents=True)
    for split, reps in (("train", 8), ("val", 1)):
        (corpus / f"{split}.en").write_text("".join(f"{s}\n" for s, _ in TOY_PAIRS) * reps)
        (corpus / f"{split}.de").write_text("".join(f"{t}\n" for _, t in TOY_PAIRS) * reps)
    data = {"dataset": "", "data_dir": str(corpus), "valid": "val", "test": "val"}
    teacher = {**TINY_RUN, "data": data}
    student = {
        **TINY_RUN,
        "data": data,
        "model": {**TINY_RUN["model"], "dec_layers": 1},
        "train": {**TINY_RUN["train"], "max_steps": 100},
    }
    (root / "teacher.yaml").write_text(json.dumps(teacher))  # JSON is YAML
    (root / "student.yaml").write_text(json.dumps(student))
    pipeline = {
        "name": "toy",
        "root": str(root / "out"),
        "teacher": {"name": "teacher", "config": str(root / "teacher.yaml")},
        "teacher_export": "float32",
        "distill": {"decoding": {"beam_size": 2, "max_batch_tokens": 64}, "chunk_lines": 20},
        "students": [{"name": "student", "config": str(root / "student.yaml")}],
        "export": {
            "quantization": "int8",
            "teacher": True,
            "student_extras": ["float32", "onnx:int8"],
        },
        "release": {"dir": str(root / "release" / "toy-student"), "max_mb": 5},
        "bench": {
            "enabled": bench,
            "beam_sizes": [1],
            "batch_sizes": [8],
            "threads": [1],
            "use_vmap": [True],  # one cell, with the vocabulary map when there is one
            "repeats": 3,
            "warmup_batches": 0,
            "latency_sentences": 0,
            "min_pass_seconds": 0.1,  # the toy's test set takes milliseconds
        },
    }
    (root / "pipeline.yaml").write_text(json.dumps(pipeline))
    return root / "pipeline.yaml"


def forbid(monkeypatch, *targets: str) -> None:
    """Make each `module.function` fail if called."""
    for target in targets:
        module, name = target.rsplit(".", 1)

        def fail(*args, _target=target, **kwargs):
            raise AssertionError(f"{_target} called")

        monkeypatch.setattr(f"{module}.{name}", fail)


def test_pipeline_end_to_end_then_skips_everything(tmp_path, monkeypatch):
    pytest.importorskip("ctranslate2")
    config = load_pipeline_config(tiny_pipeline(tmp_path, bench=True))
    out = Path(config.root)
    result = run_pipeline(config)
    stages = ["teacher", "distill", "student", "export", "bench", "zoo", "release"]
    assert result.ran == stages and not result.skipped and not result.incomplete
    assert sorted(p.stem for p in (out / "stages").glob("*.json")) == sorted(stages)

    distilled = (out / "distilled" / "train.de").read_text().splitlines()
    assert len(distilled) == result.results["distill"]["kept"] > 0
    assert (out / "student" / "spm.model").read_bytes() == (
        out / "teacher" / "spm.model"
    ).read_bytes()
    assert json.loads((out / "student" / "summary.json").read_text())["steps"] == 100
    info = json.loads((out / "exports" / "student-int8" / "nmt_export.json").read_text())
    assert info["quantization"] == "int8"
    assert (out / "exports" / "teacher-distill-float32" / "model.bin").is_file()
    records = [
        json.loads(line) for line in (out / "bench" / "results.jsonl").read_text().splitlines()
    ]
    measured = sorted(r["cell"]["model"] for r in records)
    assert measured == ["student-float32", "student-int8", "student-onnx-int8", "teacher-int8"]
    assert {r["status"] for r in records} == {"ok"}
    assert (out / "bench" / "report.md").is_file()
    rerun = expand_cells(load_bench_config(out / "bench" / "grid.yaml"))  # nmt-bench --config
    assert sorted(c.spec_hash for c in rerun) == sorted(r["spec_hash"] for r in records)
    layout = config.layout  # names every output
    for path in (
        layout.teacher_tokenizer,
        layout.distill_export / "model.bin",
        layout.distill_stats,
        layout.export("student") / "nmt_export.json",
        layout.extra_export("student", "onnx", "int8"),
        layout.bench_grid,
        layout.bench_results,
        layout.zoo_json,
        layout.zoo_table,
        layout.marker("student"),
        layout.record,
    ):
        assert path.exists() and path.is_relative_to(out), path

    zoo = json.loads((out / "zoo" / "zoo.json").read_text())
    assert [m["name"] for m in zoo["models"]] == ["teacher", "student"]
    student = zoo["models"][1]
    assert student["data"] == "distilled" and student["layers"] == "2-1"
    assert student["beam1"]["speed"]["tgt_tokens_per_s"] > 0  # from the benchmark
    assert student["beam4"]["speed"] is None  # not measured: the grid has beam 1 only
    greedy = (out / "zoo" / "translations" / "student.beam1.de").read_text().splitlines()
    assert len(greedy) == len(TOY_PAIRS)
    assert (out / "zoo" / "configs" / "teacher.yaml").is_file()
    assert "| student | distilled | 2-1 |" in (out / "zoo" / "zoo.md").read_text()

    release = tmp_path / "release" / "toy-student"
    card = (release / "README.md").read_text()
    assert f"{student['beam1']['bleu']:.2f}" in card and "nrefs:1" in card
    distilled = json.loads((out / "distilled" / "stats.json").read_text())
    assert "## Distillation" in card and f"Kept {distilled['kept']:,} pairs" in card
    import ctranslate2
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(release / "spm.model"))
    plain = ctranslate2.Translator(str(release), device="cpu", intra_threads=1)
    sources = [src for src, _ in TOY_PAIRS]
    pieces = sp.encode(sources, out_type=str)
    results = plain.translate_batch(pieces, beam_size=1, max_decoding_length=40)
    outputs = [sp.decode(r.hypotheses[0]) for r in results]
    ours = load(release).translate(
        sources, beam_size=1, max_len_a=0, max_len_b=40, max_char_repeat=0
    )
    assert outputs == ours  # plain CTranslate2 + SentencePiece = nmt-translate, same limits

    evidence = tmp_path / "evidence"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "publish_pipeline.py"
    subprocess.run([sys.executable, str(script), str(out), str(evidence)], check=True)
    published = {str(p.relative_to(evidence)) for p in evidence.rglob("*") if p.is_file()}
    assert {"zoo/zoo.md", "bench/results.jsonl", "distilled/stats.json"} <= published
    assert {"runs/teacher/summary.json", "runs/student/log.jsonl", "stages/zoo.json"} <= published
    assert not [p for p in published if p.endswith((".pt", ".bin", ".onnx", ".model"))]

    forbid(
        monkeypatch,
        "nmt.training.run.train",
        "nmt.distill.distill",
        "nmt.export.export",
        "nmt.bench.runner.bench",
        "nmt.zoo.write_zoo",
        "nmt.zoo.write_release",
    )
    again = run_pipeline(load_pipeline_config(tmp_path / "pipeline.yaml"))
    assert again.ran == [] and again.skipped == stages


def test_interrupted_pipeline_resumes_at_the_next_stage(tmp_path, monkeypatch):
    pytest.importorskip("ctranslate2")
    config = load_pipeline_config(tiny_pipeline(tmp_path, bench=False))
    out = Path(config.root)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("nmt.distill.distill", killed)
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(config)
    assert [p.stem for p in (out / "stages").glob("*.json")] == ["teacher"]

    trained = []
    real_train = train

    def spy(run, resume=False):
        trained.append(Path(run.run_dir).name)
        return real_train(run, resume=resume)

    monkeypatch.setattr("nmt.training.run.train", spy)
    result = run_pipeline(config)
    assert result.skipped == ["teacher"]
    assert result.ran == ["distill", "student", "export", "zoo", "release"]
    assert trained == ["student"]

    changed = load_pipeline_config(tmp_path / "pipeline.yaml", ["distill.decoding.beam_size=1"])
    with pytest.raises(PipelineError, match=r"distill\.json.*beam_size"):
        run_pipeline(changed)


def test_an_undertrained_teacher_stops_the_pipeline_before_distilling(
    tmp_path, monkeypatch, capsys
):
    """20 updates: the teacher's dev BLEU is far below the default floor; nmt-pipeline
    ends with one error line and exit 2, nothing exported or distilled. Floor 0: it goes on."""
    path = tiny_pipeline(tmp_path, bench=False)
    short = "teacher.set=[train.max_steps=20, train.valid_bleu=true]"
    with monkeypatch.context() as m:
        forbid(m, "nmt.distill.distill", "nmt.export.export")
        assert pipeline_main([str(path), "--set", short]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    match = re.search(r"dev BLEU ([\d.]+) .* below teacher_min_bleu 10", error)
    assert match and float(match.group(1)) < 10, error
    assert "more updates" in error and "teacher_min_bleu: 0" in error
    out = tmp_path / "out"
    assert [p.stem for p in (out / "stages").glob("*.json")] == ["teacher"]
    assert not (out / "exports").exists() and not (out / "distilled").exists()

    config = load_pipeline_config(path, [short, "teacher_min_bleu=0"])  # no floor
    result = run_pipeline(config, until="distill")
    assert result.skipped == ["teacher"] and result.ran == ["distill"]


def test_training_stage_resumes_a_killed_run(tmp_path, toy_corpus, caplog):
    train(toy_config(tmp_path / "run", toy_corpus, "train.max_steps=15"))
    (tmp_path / "run" / "summary.json").unlink()  # killed after its last checkpoint
    caplog.set_level(logging.INFO, logger="nmt")
    summary = train_stage(toy_config(tmp_path / "run", toy_corpus, "train.max_steps=30"))
    assert summary["steps"] == 30 and "resumed from" in caplog.text
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").open()]
    assert [r["step"] for r in records if r["type"] == "train"] == [5, 10, 15, 20, 25, 30]


def test_one_pipeline_at_a_time_per_root(tmp_path):
    from nmt.outputs import FolderBusyError, FolderLock

    config = load_pipeline_config(tiny_pipeline(tmp_path, bench=False))
    with FolderLock(config.root, "test"), pytest.raises(FolderBusyError, match="PID"):
        run_pipeline(config)
    assert not (Path(config.root) / "stages").exists()  # nothing ran


def test_a_setting_added_later_keeps_an_older_stage_done_while_at_its_default():
    from nmt.pipeline.runner import _changes

    defaults = {"beam_size": 4, "filters": {"max_ratio": 3.0, "max_top_share": 0.05}}
    old = {"beam_size": 4, "filters": {"max_ratio": 2.5}}  # written before max_top_share
    now = {"beam_size": 4, "filters": {"max_ratio": 2.5, "max_top_share": 0.05}}
    assert _changes(old, now, defaults) == []
    now["filters"]["max_top_share"] = 0.2  # set away from its default: the outputs differ
    assert _changes(old, now, defaults) == ["filters.max_top_share"]
    now["beam_size"] = 1
    assert _changes(old, now, defaults) == ["beam_size", "filters.max_top_share"]


def test_stage_specs_are_what_their_markers_read_back(monkeypatch):
    """`plain` gives a stage's spec as JSON reads it back from the marker, as the
    `json.loads(json.dumps(asdict(...)))` it replaced did."""
    import dataclasses

    from nmt.pipeline.config import plain
    from nmt.pipeline.runner import plan

    monkeypatch.chdir(REPO)
    config = load_pipeline_config(REPO / "pipelines" / "quickstart.yaml")
    assert plain(config) == json.loads(json.dumps(dataclasses.asdict(config)))
    for stage in plan(config):
        assert json.loads(json.dumps(stage.spec)) == stage.spec, stage.name
        assert json.loads(json.dumps(stage.defaults)) == stage.defaults, stage.name


def test_a_finetune_stage_starts_from_its_parent_and_joins_the_comparison(tmp_path):
    pytest.importorskip("ctranslate2")
    path = tiny_pipeline(tmp_path, bench=False)
    stage = f"finetune=[{{name: ft, config: {tmp_path / 'student.yaml'}, parent: student}}]"
    with pytest.raises(ConfigError, match=r"finetune\[0\]\.parent: 'nobody' is not"):
        load_pipeline_config(path, [stage.replace("parent: student", "parent: nobody")])
    with pytest.raises(ConfigError, match=r"finetune\[0\]\.name: 'student' names another"):
        load_pipeline_config(path, [stage.replace("name: ft", "name: student")])
    config = load_pipeline_config(path, [stage])
    result = run_pipeline(config)
    assert result.ran == ["teacher", "distill", "student", "ft", "export", "zoo", "release"]
    out = Path(config.root)
    student = json.loads((out / "student" / "summary.json").read_text())
    chosen = out / "student" / student.get("checkpoint", "best.pt")
    parent = load_checkpoint(out / "ft" / "last.pt")["parent"]
    assert parent["path"] == str(chosen) and parent["sha256"] == file_sha256(chosen)
    assert (out / "ft" / "spm.model").read_bytes() == (out / "teacher" / "spm.model").read_bytes()
    info = json.loads((out / "exports" / "ft-int8" / "nmt_export.json").read_text())
    assert info["parent"]["sha256"] == parent["sha256"]
    zoo = json.loads((out / "zoo" / "zoo.json").read_text())
    assert [(m["name"], m["data"]) for m in zoo["models"]][-1] == ("ft", "fine-tuned student")
    assert result.results["release"]["model"] == "student"  # only students are released


def test_training_stages_in_several_processes(tmp_path, capfd):
    """`nproc: 2`: the teacher trains under torchrun (DDP, gloo), its summary says so, the
    launch config beside the run folder repeats it by hand, and rank 0's progress (step of
    max, loss, tokens/s, ETA) reaches this console while it trains, not only the log."""
    config = load_pipeline_config(tiny_pipeline(tmp_path, bench=False), ["nproc=2"])
    result = run_pipeline(config, until="teacher")
    assert result.ran == ["teacher"]
    progress = [line for line in capfd.readouterr().err.splitlines() if "| ETA " in line]
    assert progress and all("/150 |" in line for line in progress), progress[:3]
    out = Path(config.root)
    summary = json.loads((out / "teacher" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 150
    launched = load_run_config(out / "teacher.launch.yaml")
    assert launched.run_dir == str(out / "teacher")
    with pytest.raises(ConfigError, match="nproc: must be >= 1"):
        load_pipeline_config(tmp_path / "pipeline.yaml", ["nproc=0"])


# --- an adopted teacher and the estimate ---------------------------------------------------


def trained_weights(root: Path, steps: int = 150) -> Path:
    """The toy teacher trained apart from any pipeline, kept as a weights folder."""
    from nmt.export import export

    overrides = [f"run_dir={root}/trained-{steps}", f"train.max_steps={steps}"]
    run = load_run_config(root / "teacher.yaml", overrides)
    train(run)
    out = root / f"weights-{steps}"
    return export(run.run_dir, out, format="safetensors", quantization="float32")


@pytest.fixture(scope="module")
def toy_teacher(tmp_path_factory) -> Path:
    """The toy pipeline's teacher, 150 updates, as a weights folder (shared by the tests)."""
    root = tmp_path_factory.mktemp("toy-teacher")
    tiny_pipeline(root, bench=False)
    return trained_weights(root)


def test_an_adopted_teacher_is_not_trained_and_is_judged_like_a_trained_one(
    tmp_path, monkeypatch, capsys, toy_teacher
):
    pytest.importorskip("ctranslate2")
    from nmt.scoring import score

    path = tiny_pipeline(tmp_path, bench=False)
    weights = toy_teacher
    nowhere = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=r"teacher\.model: .*nowhere: not a weights folder"):
        load_pipeline_config(path, [f"teacher.model={nowhere}"])
    with pytest.raises(ConfigError, match=r"students\[0\]\.model: only the teacher"):
        load_pipeline_config(path, [f"students[0].model={weights}"])

    # The dev BLEU is measured on adoption (the same as scored here); the floor applies.
    short = trained_weights(tmp_path, steps=30)
    sources, references = (
        (tmp_path / "toy" / f"val.{lang}").read_text().splitlines() for lang in ("en", "de")
    )
    dev_bleu = round(score(load(short).translate(sources, beam_size=1), references).bleu, 2)
    assert dev_bleu < 10
    assert pipeline_main([str(path), "--set", f"teacher.model={short}"]) == 2
    assert f"dev BLEU {dev_bleu:.2f}" in capsys.readouterr().err
    out = tmp_path / "out"
    summary = json.loads((out / "teacher" / "summary.json").read_text())
    assert summary["best_valid_bleu"] == dev_bleu and summary["checkpoint"] == "model.safetensors"
    assert summary["adopted"]["source"] == str(short)
    copied = (out / "teacher" / "model.safetensors").read_bytes()
    assert copied == (short / "model.safetensors").read_bytes()
    assert load_run_config(out / "teacher" / "config.yaml").model.enc_layers == 2
    assert not (out / "distilled").exists()
    with pytest.raises(PipelineError, match=r"teacher\.json.*adopted\.sha256"):
        run_pipeline(load_pipeline_config(path, [f"teacher.model={weights}"]))  # another model

    shutil.rmtree(out)
    trained = []
    monkeypatch.setattr(
        "nmt.training.run.train",
        lambda run, resume=False: trained.append(run) or train(run, resume),
    )
    result = run_pipeline(load_pipeline_config(path, [f"teacher.model={weights}"]))
    assert result.ran == ["teacher", "distill", "student", "export", "zoo", "release"]
    assert [Path(r.run_dir).name for r in trained] == ["student"]  # the teacher: never
    assert (out / "student" / "spm.model").read_bytes() == (weights / "spm.model").read_bytes()
    zoo = (out / "zoo" / "zoo.md").read_text()
    assert "| teacher | original | 2-2 |" in zoo and f"adopted: {weights} (150 steps)" in zoo


def test_the_estimate_probes_the_stages_left(tmp_path, capsys, toy_teacher):
    pytest.importorskip("ctranslate2")
    from nmt.pipeline.estimate import estimate_pipeline, report

    path = tiny_pipeline(tmp_path, bench=True)
    fresh = estimate_pipeline(load_pipeline_config(path))
    assert [e.stage for e in fresh] == ["teacher", "distill", "student", "bench"]
    assert fresh[1].seconds is None  # its teacher is not trained yet
    assert fresh[0].seconds > 0 and "150 updates x" in fresh[0].how
    assert "100 updates x" in fresh[2].how
    assert fresh[3].how.startswith("4 cells")  # student, its 2 extras, the teacher
    assert "+ the stages not known yet" in report(fresh)
    assert "nothing left" in report([])

    assert pipeline_main([str(path), "--set", f"teacher.model={toy_teacher}", "--estimate"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("estimated duration: ~") and "not known" not in printed
    assert re.search(r"distill: ~\d+ s \(64 lines x [\d.]+ ms probed / 1 workers\)", printed)
    assert not (tmp_path / "out").exists()  # an estimate writes nothing


def test_the_training_probe_runs_as_the_run_trains(tmp_path, monkeypatch):
    """The probe times updates under the run's autocast precision (bf16 here), not float32."""
    import torch

    from nmt.training.probe import probe_updates

    tiny_pipeline(tmp_path, bench=False)
    entered = []
    real = torch.autocast

    def spy(device_type, dtype=None, **kwargs):
        entered.append((device_type, dtype))
        return real(device_type, dtype=dtype, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    fp32 = load_run_config(tmp_path / "teacher.yaml")
    assert probe_updates(fp32) > 0 and entered == []
    bf16 = load_run_config(tmp_path / "teacher.yaml", ["train.precision=bf16"])
    assert probe_updates(bf16) > 0 and set(entered) == {("cpu", torch.bfloat16)}
