"""A pipeline whose teacher is a model nmt did not make (`teacher.model` an Argos package,
made here by nmt-export --format argos from a random toy model): the teacher stage records
and scores it without copying it, teacher_min_bleu judges that score, it distils as it is,
the students train their own tokenizer, and the zoo scores it below its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ctranslate2")

from nmt.config import ConfigError  # noqa: E402
from nmt.fileio import file_sha256  # noqa: E402
from nmt.pipeline import PipelineError, load_pipeline_config, run_pipeline  # noqa: E402
from nmt.scoring import score  # noqa: E402
from nmt.translate import load  # noqa: E402

from .test_pipeline import tiny_pipeline  # noqa: E402
from .toys import toy_argos_package  # noqa: E402

# The toy pipeline, reshaped for a foreign teacher: no release (its model card compares
# with the teacher's zoo row), no extra exports, a few student updates, one distillation
# chunk (translated in one call, as the test translates it), and filters that keep what a
# random model says: the test is about where the translations come from, not their worth.
FOREIGN = [
    "release.dir=''",
    "export.student_extras=[]",
    "students[0].set=[train.max_steps=20]",
    "distill.chunk_lines=1000",
    "distill.filters={max_repeats: 1000, min_unique_ratio: 0.0, max_overlap: 1.0, "
    "max_ratio: 1000.0}",
]


@pytest.fixture(scope="module")
def package(tmp_path_factory, toy_tokenizer) -> Path:
    """An Argos package of a random toy nmt model, made by nmt-export --format argos."""
    return toy_argos_package(tmp_path_factory.mktemp("argos"), toy_tokenizer)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """The package is unpacked into a temporary cache, never ~/.cache."""
    monkeypatch.setenv("NMT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_a_foreign_teacher_is_scored_and_distils_as_it_is(tmp_path, package):
    path = tiny_pipeline(tmp_path, bench=True)
    overrides = [f"teacher.model={package}", *FOREIGN]
    config = load_pipeline_config(path, overrides)
    assert config.foreign_teacher and not config.shares_tokenizer  # unset: false here
    out, toy = Path(config.root), tmp_path / "toy"
    teacher = load(package, threads=1)

    # Recorded and scored on the dev split through the package; a random model is far
    # below the default floor, so distillation does not start.
    with pytest.raises(PipelineError, match=r"dev BLEU [\d.]+ .* below teacher_min_bleu 10"):
        run_pipeline(config, estimate=False)  # the estimate: its own test
    summary = json.loads((out / "teacher" / "summary.json").read_text())
    foreign = summary["adopted"]["foreign"]
    assert foreign["kind"] == "argos" and foreign["archive"]["sha256"] == file_sha256(package)
    assert summary["adopted"]["source"] == str(package)
    dev = score(teacher.translate(lines(toy / "val.en"), beam_size=1), lines(toy / "val.de"))
    assert summary["best_valid_bleu"] == round(dev.bleu, 2) < 10
    assert summary["validations"][0]["bleu_signature"] == dev.bleu_signature
    made = [p.name for p in (out / "teacher").iterdir() if not p.name.startswith(".")]
    assert made == ["summary.json"]  # nothing of the model copied
    assert not (out / "distilled").exists()

    no_floor = load_pipeline_config(path, [*overrides, "teacher_min_bleu=0"])
    result = run_pipeline(no_floor, estimate=False)
    assert result.skipped == ["teacher"]
    assert result.ran == ["distill", "student", "export", "bench", "zoo"]
    expected = teacher.translate(lines(toy / "train.en"), **config.distill.decoding_options())
    assert lines(out / "distilled" / "raw.de") == [" ".join(h.split()) for h in expected]
    kept = lines(out / "distilled" / "train.de")
    assert 0 < len(kept) == result.results["distill"]["kept"] and set(kept) <= set(expected)
    provenance = json.loads((out / "distilled" / "provenance.json").read_text())
    assert provenance["teacher"]["foreign"]["kind"] == "argos"

    # The student trained its own tokenizer on the distilled data; only it is exported.
    teacher_spm = (teacher.path.parent / "sentencepiece.model").read_bytes()
    assert (out / "student" / "spm.model").read_bytes() != teacher_spm
    exports = [p.name for p in (out / "exports").iterdir()]
    assert "student-int8" in exports and not [e for e in exports if e.startswith("teacher")]

    # The benchmark measured the package as it is, beside the student's export.
    records = [json.loads(r) for r in lines(out / "bench" / "results.jsonl")]
    measured = {(r["cell"]["model"], r["cell"]["backend"], r["status"]) for r in records}
    assert measured == {("teacher-foreign", "foreign", "ok"), ("student-int8", "ctranslate2", "ok")}

    zoo = json.loads((out / "zoo" / "zoo.json").read_text())
    assert [m["name"] for m in zoo["models"]] == ["student"]
    greedy = teacher.translate(lines(toy / "val.en"), beam_size=1)  # the test split is val
    assert lines(out / "zoo" / "translations" / "teacher.beam1.de") == greedy
    assert zoo["foreign_teacher"]["beam1"]["bleu"] == round(dev.bleu, 2)
    assert "The teacher `teacher` is not in the table" in (out / "zoo" / "zoo.md").read_text()


def test_what_a_foreign_teacher_cannot_do_is_one_line_naming_the_key(tmp_path, package):
    path = tiny_pipeline(tmp_path, bench=False)
    foreign = [f"teacher.model={package}", *FOREIGN]
    parent = f"finetune=[{{name: ft, config: {tmp_path / 'student.yaml'}, parent: teacher}}]"
    for override, key in (
        ("share_tokenizer=true", r"share_tokenizer: a foreign teacher's tokenizer"),
        (f"release.dir={tmp_path / 'release'}", r"release\.dir: its model card"),
        (parent, r"finetune\[0\]\.parent: nmt fine-tunes only its own"),
        ("bench.pytorch=[teacher]", r"bench\.pytorch: 'teacher' is a foreign model"),
    ):
        with pytest.raises(ConfigError, match=key) as error:
            load_pipeline_config(path, [*foreign, override])
        assert "\n" not in str(error.value)
    config = load_pipeline_config(path, [*foreign, "share_tokenizer=false"])
    assert not config.shares_tokenizer


def test_the_estimate_probes_a_foreign_teacher_as_it_distils(tmp_path, package):
    from nmt.bench.cell import measure
    from nmt.bench.grid import expand_cells
    from nmt.pipeline.config import student_run_config, teacher_run_config
    from nmt.pipeline.estimate import estimate_pipeline
    from nmt.pipeline.stages import bench_grid

    path = tiny_pipeline(tmp_path, bench=True)
    config = load_pipeline_config(path, [f"teacher.model={package}", *FOREIGN])
    estimates = estimate_pipeline(config)
    assert [e.stage for e in estimates] == ["distill", "student", "bench"]
    assert estimates[0].seconds > 0 and "64 lines x" in estimates[0].how
    assert estimates[2].how.startswith("2 cells")  # the student's export and the teacher

    # The benchmark measures the package as it is, unless it needs options a cell lacks.
    data = teacher_run_config(config).data
    students = {"student": student_run_config(config, config.students[0])}
    grid = bench_grid(config, data, students)
    assert [(m.name, m.path) for m in grid.models][0] == ("teacher-foreign", str(package))
    cells = expand_cells(bench_grid(config, data, {}))  # the teacher alone, measured here
    assert [(c.model, c.backend, c.compute_type) for c in cells] == [
        ("teacher-foreign", "foreign", "export")
    ]
    assert measure(cells[0])["throughput"]["target_tokens_per_s"]["median"] > 0
    prefixed = load_pipeline_config(
        path, [f"teacher.model={package}", *FOREIGN, "distill.target_prefix=x"]
    )
    grid = bench_grid(prefixed, teacher_run_config(prefixed).data, students)
    assert [m.name for m in grid.models] == ["student-int8"]
