"""nmt-bench: the Pareto frontier, the grid config, records, the report, and a tiny model
benchmarked end to end (PyTorch and CTranslate2, each cell in its own process)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmt import machine
from nmt.bench.cell import select_lines, spread
from nmt.bench.grid import MIN_REPEATS, expand_cells, load_bench_config
from nmt.bench.pareto import pareto_front
from nmt.bench.records import append_record, latest, measured, read_records
from nmt.bench.report import write_report
from nmt.bench.runner import bench
from nmt.checkpoint import find_checkpoint, load_checkpoint
from nmt.config import ConfigError
from nmt.training.run import train

from .conftest import TOY_PAIRS
from .test_train import toy_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- Pareto frontier --------------------------------------------------------------------


def dominated(p, points, maximize) -> bool:
    """Straight from the definition: some point is as good on both and better on one."""

    def as_good(a, b, up):
        return a >= b if up else a <= b

    return any(
        as_good(q[0], p[0], maximize[0]) and as_good(q[1], p[1], maximize[1]) and q != p
        for q in points
    )


def definition_front(points, maximize=(True, True)) -> list[int]:
    return [
        i
        for i, p in enumerate(points)
        if not any(map(math.isnan, p)) and not dominated(p, points, maximize)
    ]


@pytest.mark.parametrize(
    "points, maximize, front",
    [
        ([], (True, True), []),
        ([(1.0, 1.0)], (True, True), [0]),
        # (words/s, BLEU): a staircase and two dominated points
        ([(100, 30), (200, 28), (300, 25), (150, 27), (50, 29)], (True, True), [0, 1, 2]),
        # identical points are both on the frontier; a tie on one axis is decided by the other
        ([(5, 5), (5, 5), (5, 4), (4, 5)], (True, True), [0, 1]),
        ([(2, 3), (2, 5), (1, 5)], (True, True), [1]),
        # (memory MB, BLEU): less memory is better
        ([(100, 30), (200, 35), (150, 29), (300, 34), (90, 20)], (False, True), [0, 1, 4]),
        ([(1, 1), (float("nan"), 9), (0, 0)], (True, True), [0]),
        ([(1, 1), (2, float("-inf")), (0, 0)], (True, True), [0, 1]),
    ],
)
def test_pareto_front_hand_made(points, maximize, front):
    assert pareto_front(points, maximize) == front
    assert definition_front(points, maximize) == front


# Small integers make ties on one or both coordinates frequent; floats cover the rest.
COORD = st.one_of(
    st.integers(-3, 3).map(float), st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
)
POINTS = st.lists(st.tuples(COORD, COORD), max_size=40)
DIRECTIONS = st.tuples(st.booleans(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(POINTS, DIRECTIONS)
def test_pareto_front_equals_the_definition(points, maximize):
    front = pareto_front(points, maximize)
    assert front == definition_front(points, maximize)
    if points:  # a finite non-empty set always has a non-dominated point
        assert front
    for i in set(range(len(points))) - set(front):  # each point off it is beaten by one on it
        assert dominated(points[i], [points[j] for j in front], maximize)


@settings(max_examples=100, deadline=None)
@given(POINTS, DIRECTIONS, st.randoms(use_true_random=False))
def test_pareto_front_ignores_order(points, maximize, rng):
    order = list(range(len(points)))
    rng.shuffle(order)
    shuffled = [points[i] for i in order]
    assert sorted(order[i] for i in pareto_front(shuffled, maximize)) == pareto_front(
        points, maximize
    )


# --- grid config ------------------------------------------------------------------------


@pytest.fixture
def fake_models(tmp_path) -> dict[str, Path]:
    """Files the backends recognise, without weights: enough to expand a grid."""
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"x" * 10)
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    for name in ("model.bin", "nmt_export.json", "spm.model"):
        (ct2 / name).write_bytes(b"y" * 5)
    foreign = tmp_path / "foreign"  # a CTranslate2 folder nmt did not export
    foreign.mkdir()
    for name in ("model.bin", "config.json", "source.spm"):
        (foreign / name).write_bytes(b"z" * 3)
    src, ref = tmp_path / "test.en", tmp_path / "test.de"
    src.write_text("".join(f"{s}\n" for s, _ in TOY_PAIRS))
    ref.write_text("".join(f"{t}\n" for _, t in TOY_PAIRS))
    return {"pt": pt, "ct2": ct2, "foreign": foreign, "src": src, "ref": ref}


def write_grid(path: Path, models: list[dict], src: Path, ref: Path, **extra) -> Path:
    config = {
        "name": "toy",
        "models": models,
        "test_sets": [{"name": "toy", "src": str(src), "ref": str(ref)}],
        **extra,
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def test_grid_expands_axes_and_device_defaults(tmp_path, fake_models):
    models = [
        {"name": "pt", "path": str(fake_models["pt"])},
        {"name": "ct2", "path": str(fake_models["ct2"]), "compute_types": ["int8", "float16"]},
    ]
    grid = {"beam_sizes": [1, 4], "batch_sizes": 32, "threads": [1, 2]}
    path = write_grid(
        tmp_path / "g.yaml", models, fake_models["src"], fake_models["ref"], grid=grid
    )
    config = load_bench_config(path)
    cpu = expand_cells(config)
    # float16 is not a CTranslate2 CPU type: pt float32 + ct2 int8, x 2 beams x 2 threads
    assert [(c.model, c.compute_type) for c in cpu[::4]] == [("pt", "float32"), ("ct2", "int8")]
    assert len(cpu) == 8 and len({c.cell_id for c in cpu}) == 8
    assert {c.use_vmap for c in cpu if c.backend == "ctranslate2"} == {False}
    assert {c.use_vmap for c in cpu if c.backend == "pytorch"} == {None}
    assert cpu[0].model_bytes == 10 and cpu[-1].model_bytes == 15
    cuda = expand_cells(config, device="cuda")
    assert sorted({(c.model, c.compute_type) for c in cuda}) == [
        ("ct2", "float16"),
        ("ct2", "int8"),
        ("pt", "float16"),
    ]
    # the same grid gives the same cells; another protocol gives other measurements
    assert [c.spec_hash for c in expand_cells(config)] == [c.spec_hash for c in cpu]
    again = load_bench_config(path, ["repeats=5"])
    assert not {c.spec_hash for c in expand_cells(again)} & {c.spec_hash for c in cpu}
    assert [c.cell_id for c in expand_cells(again)] == [c.cell_id for c in cpu]


def test_grid_entry_threads_and_parallel_translators(tmp_path, fake_models):
    x2 = {"name": "x2", "path": str(fake_models["ct2"]), "compute_types": ["int8"]}
    models = [
        {"name": "pt", "path": str(fake_models["pt"])},
        {**x2, "translators": 2, "threads": [1]},
    ]
    grid = {"beam_sizes": [4], "threads": [1, 2]}
    path = write_grid(
        tmp_path / "g.yaml", models, fake_models["src"], fake_models["ref"], grid=grid
    )
    cells = expand_cells(load_bench_config(path))
    assert [(c.model, c.threads, c.translators) for c in cells] == [
        ("pt", 1, 1),
        ("pt", 2, 1),
        ("x2", 1, 2),
    ]
    assert cells[-1].cell_id.endswith("t1x2 beam4 bs32")
    # an engine switch per model: its own measurement; no switch: the hash of before the key
    models[1]["environment"] = {"CT2_USE_MKL": 1}
    path = write_grid(path, models, fake_models["src"], fake_models["ref"], grid=grid)
    switched = expand_cells(load_bench_config(path))
    assert switched[-1].environment == {"CT2_USE_MKL": "1"} and switched[0].environment == {}
    assert switched[-1].spec_hash != cells[-1].spec_hash
    assert switched[0].spec_hash == cells[0].spec_hash
    # a cell of before the environment and ensemble keys: the same hash
    later = ("environment", "ensemble", "tokenizer", "source_prefix", "source_suffix")
    old = {k: v for k, v in cells[0].to_dict().items() if k not in (*later, "target_prefix")}
    assert (
        cells[0].spec_hash
        == hashlib.sha256(json.dumps(old, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    )


@pytest.mark.parametrize(
    "change, key",
    [
        ({"bogus": 1}, "bogus: unknown key"),
        ({"repeats": 1}, f"repeats: must be >= {MIN_REPEATS}"),
        ({"grid": {"beam_sizes": [0]}}, "grid.beam_sizes: values must be >= 1"),
        ({"grid": {"threads": ["two"]}}, "grid.threads[0]: expected int"),
        ({"grid": {"devices": ["tpu"]}}, "grid.devices: must be cpu or cuda"),
        ({"grid": {"batch_sizes": [8, 8]}}, "grid.batch_sizes: lists a value twice"),
        ({"models": [{"name": "a"}]}, "models[0].path: missing (required)"),
        ({"models": [{"name": "a", "path": "x"}] * 2}, "models[1].name: 'a' is used twice"),
        ({"test_sets": [{"name": "t", "src": "a"}]}, "test_sets[0].ref: src needs ref"),
        ({"test_sets": [{"name": "t", "dataset": "nope", "split": "x"}]}, "test_sets[0].dataset"),
        ({"models": [{"name": "a", "path": "x", "environment": ["A=1"]}]}, "expected a mapping"),
        (
            {"models": [{"name": "a", "path": "x", "environment": {"1A": "x"}}]},
            "models[0].environment: not a variable name: '1A'",
        ),
        (
            {"models": [{"name": "a", "path": "x", "environment": {"A": [1]}}]},
            "models[0].environment.A: expected str",
        ),
    ],
)
def test_grid_errors_name_the_key(tmp_path, fake_models, change, key):
    config = {
        "models": [{"name": "m", "path": "x"}],
        "test_sets": [{"name": "t", "src": "a", "ref": "b"}],
        **change,
    }
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError) as e:
        load_bench_config(path)
    assert key in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "model, key",
    [
        ({"path": "missing"}, "models[0].path: missing does not exist"),
        ({"path": "ct2", "compute_types": ["int9"]}, "models[0].compute_types[0]: unknown"),
        ({"path": "pt", "use_vmap": [True]}, "models[0].use_vmap: applies to CTranslate2"),
        ({"path": "ct2", "use_vmap": [True]}, "models[0].use_vmap: .* has no vmap.txt"),
        ({"path": "pt", "backend": "nope"}, "models[0].backend: unknown backend 'nope'"),
        ({"path": "pt", "translators": 2}, "models[0].translators: applies to CTranslate2"),
        ({"path": "ct2", "translators": 0}, "models[0].translators: must be >= 1"),
        ({"path": "ct2", "threads": [0]}, "models[0].threads: values must be >= 1"),
        ({"path": "ct2", "ensemble": ["pt"]}, "models[0].ensemble: ensembles are PyTorch"),
        ({"path": "pt", "ensemble": ["missing"]}, "models[0].ensemble[0]: missing does not"),
        ({"path": "foreign", "tokenizer": ["nope.spm"]}, "models[0].tokenizer[0]: nope.spm does"),
        ({"path": "foreign", "tokenizer": ["a", "b", "c"]}, "models[0].tokenizer: one joint"),
        ({"path": "pt", "target_prefix": "de"}, "models[0].target_prefix: applies to foreign"),
        ({"path": "ct2", "source_suffix": ""}, "models[0].source_suffix: applies to foreign"),
    ],
)
def test_grid_model_errors_name_the_key(tmp_path, fake_models, model, key):
    model = {"name": "m", **model}
    if model["path"] in fake_models:
        model["path"] = str(fake_models[model["path"]])
    path = write_grid(tmp_path / "g.yaml", [model], fake_models["src"], fake_models["ref"])
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        expand_cells(load_bench_config(path))


BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "name",
    sorted(
        str(p.relative_to(BENCHMARKS))
        for p in [*BENCHMARKS.glob("*.yaml"), *BENCHMARKS.glob("experiments/*.yaml")]
    ),
)
def test_example_grids_load(name):
    config = load_bench_config(BENCHMARKS / name)
    assert config.repeats >= MIN_REPEATS and config.models and config.test_sets


# --- measurement helpers, records -------------------------------------------------------


def test_select_lines_and_spread():
    src = ["a b c", "a", "a b c d", "a b"]
    ref = ["1", "2", "3", "4"]
    assert select_lines(src, ref, 2, 0) == (["a b c", "a b c d", "a b"], ["1", "3", "4"])
    assert select_lines(src, ref, 3, 1) == (["a b c"], ["1"])
    with pytest.raises(ValueError, match="5 or more source words"):
        select_lines(src, ref, 5, 0)
    s = spread([90.0, 100.0, 110.0])
    assert (s["median"], s["min"], s["max"], s["spread"]) == (100.0, 90.0, 110.0, 0.2)


def test_cpu_pinning_and_steal_helpers(monkeypatch):
    assert machine._cpu_list("0-2,5") == {0, 1, 2, 5} and machine._cpu_list("3") == {3}
    assert machine.steal_percent((10, 1000), (15, 1100)) == 5.0
    assert machine.steal_percent((10, 1000), (10, 1000)) is None  # no time passed
    assert machine.steal_percent(None, (1, 2)) is None
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(machine.os, "sched_setaffinity", lambda pid, cpus: None, raising=False)
    assert machine.cpus_to_pin(1) == [3] and machine.cpus_to_pin(2) == [2, 3]
    assert machine.cpus_to_pin(4) is None  # needs them all: nothing to leave free
    monkeypatch.undo()
    jiffies = machine.cpu_jiffies()
    if jiffies is not None:  # Linux
        steal, total = jiffies
        assert 0 <= steal <= total and machine.thread_cpus()


def test_records_append_read_latest(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, {"cell_id": "a", "spec_hash": "1", "status": "ok", "v": 1})
    append_record(path, {"cell_id": "b", "spec_hash": "2", "status": "failed"})
    with open(path, "a") as f:
        f.write('{"cell_id": "c", "spec_')  # a torn write
    append_record(path, {"cell_id": "a", "spec_hash": "1", "status": "ok", "v": 2})
    records = read_records(path)
    assert [r["cell_id"] for r in records] == ["a", "b"]  # the torn line ate the next one
    append_record(path, {"cell_id": "a", "spec_hash": "3", "status": "ok", "v": 3})
    records = read_records(path)
    assert latest(records)["a"]["v"] == 3
    assert list(latest(records)) == ["a", "b"]
    assert measured(records) == {"1", "3"}


# --- report from hand-made records ------------------------------------------------------


def fake_record(model, bleu, wps, rss, device="cpu", backend="ctranslate2", **cell) -> dict:
    cell = {
        "model": model,
        "path": f"/models/{model}",
        "backend": backend,
        "compute_type": "int8",
        "use_vmap": False,
        "device": device,
        "threads": 1,
        "beam_size": 4,
        "batch_size": 32,
        "test_set": "toy",
        "src": "test.en",
        "ref": "test.de",
        "min_words": 0,
        "max_lines": 0,
        "decoding": {"length_penalty": 1.0},
        "repeats": 3,
        "warmup_batches": 2,
        "latency_sentences": 10,
        **cell,
    }
    cell_id = f"toy {device} {model} t{cell['threads']} beam{cell['beam_size']}"
    runs = [wps * 0.98, wps, wps * 1.02]
    return {
        "cell_id": cell_id,
        "spec_hash": cell_id,
        "status": "ok",
        "cell": cell,
        "quality": {
            "bleu": bleu,
            "chrf": bleu + 20,
            "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
            "chrf_signature": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0",
        },
        "throughput": {
            "sentences": 8,
            "words_per_s": {**spread(runs)},
            "target_tokens_per_s": spread([1.5 * w for w in runs]),
        },
        "latency_ms": {"sentences": 10, "p50": 5.0, "p90": 7.0, "p99": 9.0},
        "memory": {"peak_rss_mb": rss, "rss_after_imports_mb": 200.0},
        "model": {"size_mb": 40.0, "load_s": 0.5, "compute_type": "int8_float32"},
        "hardware": {"cpu": "Test CPU", "cpus": 2, "cpus_usable": 2, "cpu_features": ["avx2"]},
        "versions": {"nmt": "0.1.0"},
        "environment": {"OMP_NUM_THREADS": "1"},
        "load_average": [0.5, 0.7],
    }


def table_rows(report: str) -> dict[str, str]:
    """Rows of the report's cell tables (numbered), by model name."""
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    return {row.split(" | ")[2]: row for row in rows if row[2:].split(" ")[0].isdigit()}


def test_report_marks_frontiers_and_compares(tmp_path):
    records = [
        fake_record("big", bleu=36.0, wps=1000, rss=800),  # best BLEU
        fake_record("mid", bleu=35.0, wps=3000, rss=400),  # on both frontiers
        fake_record("fast", bleu=33.0, wps=9000, rss=500),  # fastest
        fake_record("bad", bleu=32.0, wps=2000, rss=900),  # dominated everywhere
        fake_record("tiny", bleu=30.0, wps=2500, rss=100),  # least memory
    ]
    results = tmp_path / "results.jsonl"
    for r in records:
        append_record(results, r)
    append_record(
        results,
        {
            "cell_id": "broken",
            "spec_hash": "x",
            "status": "failed",
            "error": "exit status 1",
            "stderr_tail": "Traceback...\nValueError: boom\n",
        },
    )
    old = tmp_path / "old.jsonl"
    append_record(old, fake_record("big", bleu=36.0, wps=500, rss=800))  # now 2x faster
    append_record(old, fake_record("fast", bleu=33.0, wps=12000, rss=500))  # now slower
    append_record(old, fake_record("mid", bleu=35.0, wps=3050, rss=400))  # same
    report = write_report(results, tmp_path / "out", title="toy", compare=old).read_text()

    rows = table_rows(report)
    marks = {name: row.split(" | ")[1].strip() for name, row in rows.items()}
    assert marks == {
        "big": "**S** **M**",
        "mid": "**S** **M**",
        "fast": "**S**",
        "bad": "",
        "tiny": "**M**",
    }
    for kind in ("speed", "memory"):
        png = tmp_path / "out" / f"toy-cpu-{kind}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert f"]({png.name})" in report
    assert "nrefs:1|case:mixed|eff:no|tok:13a" in report
    assert "- hardware: cpu Test CPU, cpus 2, cpus_usable 2, cpu_features avx2" in report
    assert "`broken`: exit status 1: ValueError: boom" in report
    compare = report[report.index("## Compared with old.jsonl") :]
    assert "1 cells faster, 1 slower, 1 within noise" in compare
    assert "+100.0% | **faster**" in compare and "-25.0% | **slower**" in compare
    assert "Every cell is within 10%" in report


def test_report_names_wide_cells_and_their_stolen_time(tmp_path):
    steady = fake_record("steady", bleu=35.0, wps=1000, rss=400)
    noisy = fake_record("noisy", bleu=35.0, wps=2000, rss=400)
    noisy["throughput"]["words_per_s"] = spread([1500.0, 2000.0, 2100.0])
    noisy["throughput"]["steal_percent"] = [None, 12.5, 0.04]  # None: not measurable
    results = tmp_path / "results.jsonl"
    for r in (steady, noisy):
        append_record(results, r)
    report = write_report(results, tmp_path / "out", title="toy").read_text()
    assert "1 cells spread more than 10%:" in report
    assert "- `toy cpu noisy t1 beam4`: [1500.0, 2000.0, 2100.0] words/s" in report
    assert "(stolen CPU time per pass: ?, 12.5%, 0.0%)" in report
    assert "`toy cpu steady" not in report.split("## Reproducibility")[1].split("##")[0]
    assert "stolen by the hypervisor during the timed passes: 12.5% at most" in report


def test_export_targets_marks_met_and_missed(tmp_path):
    """benchmarks/experiments/export_targets.py, run as users run it, on a results file."""
    import subprocess
    import sys

    script = (
        Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "export_targets.py"
    )

    def record(model, wps, bleu, beam, vmap=False, backend="ctranslate2"):
        r = fake_record(model, bleu=bleu, wps=wps, rss=100, backend=backend, beam_size=beam)
        r["cell"]["use_vmap"] = vmap
        r["cell"]["model_files"] = [str(tmp_path / model / "model.bin")]  # not on disk
        return r

    records = [
        record("pytorch", 1000, 37.0, 1, backend="pytorch"),
        record("pytorch", 500, 38.0, 4, backend="pytorch"),
        record("ct2", 2000, 37.0, 1),
        record("ct2-int8", 4500, 37.1, 1),  # 4.5x: met
        record("ct2-int8", 1900, 37.5, 4),  # 3.8x: missed; BLEU -0.5 against ct2: missed
        record("ct2", 1000, 38.0, 4),
        record("ct2-int8", 5000, 37.2, 1, vmap=True),
        record("ct2-int8", 1800, 37.6, 4, vmap=True),  # slower than without: missed
        {"status": "failed", "cell_id": "broken"},
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = subprocess.run(
        [sys.executable, str(script), str(results)], capture_output=True, text=True, check=True
    )
    out = done.stdout
    assert "| 1 | 1 | 1,000 | 4,500 (t1) | **4.50x** | 5,000 | **5.00x** |" in out
    assert "| 1 | 4 | 500 | 1,900 (t1) | 3.80x (missed) | 1,800 | 3.60x (missed) |" in out
    assert "| 1 | 37.00 | 37.10 (+0.10) | 37.20 (+0.20) | - | - | - |" in out
    assert "| 4 | 38.00 | 37.50 (-0.50) (missed) | 37.60 (-0.40) (missed) |" in out
    assert "| t1 | 1 | 4,500 | 5,000 | **1.11x** | +0.10 |" in out
    assert "| t1 | 4 | 1,900 | 1,800 | 0.95x (missed) | +0.10 |" in out
    assert "| CTranslate2 `model.bin` | ? | ? | export folders not on disk |" in out


# --- end to end: a tiny model, each cell in its own process --------------------------------


@pytest.fixture(scope="module")
def toy_models(tmp_path_factory) -> Path:
    """A toy model trained for a few seconds, and its CTranslate2 float32 export."""
    pytest.importorskip("ctranslate2")
    from nmt.export.ct2 import export_ct2

    root = tmp_path_factory.mktemp("bench")
    corpus = root / "toy"
    corpus.mkdir()
    for split, reps in (("train", 8), ("val", 1)):
        (corpus / f"{split}.en").write_text("".join(f"{s}\n" for s, _ in TOY_PAIRS) * reps)
        (corpus / f"{split}.de").write_text("".join(f"{t}\n" for _, t in TOY_PAIRS) * reps)
    train(toy_config(root / "run", corpus, "train.max_steps=150", "train.save_every=1000"))
    ckpt = find_checkpoint(root / "run")
    export_ct2(load_checkpoint(ckpt), root / "ct2", checkpoint_path=ckpt)
    return root


def toy_grid(root: Path, device: str = "cpu", **extra) -> Path:
    models = [
        {"name": "toy-pt", "path": str(root / "run")},
        {
            "name": "toy-ct2",
            "path": str(root / "ct2"),
            "compute_types": ["float32"],
            "environment": {"CT2_VERBOSE": 0},  # set in this model's cells only
        },
    ]
    grid = {"devices": [device], "beam_sizes": [1, 2], "batch_sizes": [4], "threads": [1]}
    options = {
        "repeats": 1,
        "warmup_batches": 1,
        "latency_sentences": 4,
        "min_pass_seconds": 0.2,  # milliseconds a round: several rounds per pass
        **extra,
    }
    return write_grid(
        root / f"grid-{device}.yaml",
        models,
        root / "toy" / "val.en",
        root / "toy" / "val.de",
        grid=grid,
        **options,
    )


def test_tiny_benchmark_end_to_end(toy_models, tmp_path):
    config = load_bench_config(toy_grid(toy_models), min_repeats=1)
    out = tmp_path / "report"
    first = bench(config, out)
    assert len(first.measured) == 4 and not first.failed and not first.skipped
    records = read_records(out / "results.jsonl")
    assert len(records) == 4 and {r["status"] for r in records} == {"ok"}
    pinnable = machine.cpus_to_pin(1)  # None on a 1-CPU machine
    for r in records:
        assert r["quality"]["bleu"] > 50  # the toy model learnt its pairs
        assert r["quality"]["bleu_signature"].startswith("nrefs:1|")
        assert r["throughput"]["sentences"] == len(TOY_PAIRS)
        assert r["throughput"]["words_per_s"]["median"] > 0
        assert (
            r["latency_ms"]["sentences"] == 4 and r["latency_ms"]["p99"] >= r["latency_ms"]["p50"]
        )
        # its own process: a few hundred MB of imports, not the parent's memory
        assert r["memory"]["peak_rss_mb"] >= r["memory"]["rss_after_load_mb"] > 0
        assert r["model"]["size_mb"] > 0 and r["model"]["load_s"] >= 0
        assert r["hardware"]["cpus"] >= 1 and r["versions"]["torch"] == torch.__version__
        assert set(r["hardware"]["cpu_features"]) <= set(machine.CPU_FEATURES)
        assert r["environment"]["OMP_NUM_THREADS"] == "1"
        switch = {"CT2_VERBOSE": "0"} if r["cell"]["model"] == "toy-ct2" else {}
        assert r["cell"]["environment"] == switch
        assert r["environment"].get("CT2_VERBOSE") == switch.get("CT2_VERBOSE")
        tp = r["throughput"]
        assert tp["rounds_per_pass"] >= 1 and len(tp["seconds"]) == 1  # one repeat
        assert len(tp["steal_percent"]) == len(tp["seconds"])
        assert r["hardware"]["cpus_usable"] == machine.USABLE_CPUS  # the machine, not the pin
        if pinnable:  # every thread of the cell on the last CPU
            assert r["cpus"] == pinnable and r["environment"]["NMT_BENCH_CPUS"] == str(pinnable[0])
    assert {r["model"]["compute_type"] for r in records} == {"float32"}

    report = (out / "report.md").read_text()
    assert len(table_rows(report)) == 2 and "**S**" in report  # rows by model name
    assert (out / "toy-cpu-speed.png").read_bytes()[:8] == PNG_MAGIC

    again = bench(config, out)  # a rerun measures nothing
    assert not again.measured and len(again.skipped) == 4
    assert len(read_records(out / "results.jsonl")) == 4

    forced = bench(config, out, force=True, only="toy-ct2")
    assert len(forced.measured) == 2
    records = read_records(out / "results.jsonl")
    assert len(records) == 6 and len(latest(records)) == 4


def test_an_ensemble_is_one_model_of_the_grid(toy_models, tmp_path):
    """An ensemble of a model with itself translates as the model does (the mean of two equal
    distributions), is measured as one cell and counts both members' files."""
    models = [
        {"name": "toy-pt", "path": str(toy_models / "run")},
        {"name": "toy-x2", "path": str(toy_models / "run"), "ensemble": [str(toy_models / "run")]},
    ]
    grid = {"devices": ["cpu"], "beam_sizes": [1], "batch_sizes": [4], "threads": [1]}
    path = write_grid(
        tmp_path / "g.yaml",
        models,
        toy_models / "toy" / "val.en",
        toy_models / "toy" / "val.de",
        grid=grid,
        repeats=1,
        warmup_batches=0,
        latency_sentences=0,
    )
    out = tmp_path / "report"
    result = bench(load_bench_config(path, min_repeats=1), out)
    assert len(result.measured) == 2 and not result.failed
    single, pair = sorted(read_records(out / "results.jsonl"), key=lambda r: r["cell"]["model"])
    assert pair["cell"]["ensemble"] == [str((toy_models / "run").resolve())]
    assert pair["quality"]["bleu"] == single["quality"]["bleu"] > 50
    assert pair["model"]["size_mb"] == pytest.approx(2 * single["model"]["size_mb"], rel=0.01)
    assert "model toy-x2: " in (out / "report.md").read_text()
    assert "(ensemble)" in (out / "report.md").read_text()


def test_cli_lists_and_reports(toy_models, tmp_path, capsys):
    cli = pytest.importorskip("nmt.cli")
    if not hasattr(cli, "bench_main"):
        pytest.skip("nmt.cli.bench_main is not there yet")
    grid = toy_grid(toy_models, repeats=MIN_REPEATS)
    assert cli.bench_main(["--config", str(grid), "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 4 and listed[0].startswith("toy cpu toy-pt pytorch float32")
    out = tmp_path / "report"
    assert cli.bench_main(["--config", str(grid), "-o", str(out), "--report-only"]) == 0
    assert "No cell has been measured yet" in (out / "report.md").read_text()
    bad = toy_grid(toy_models, repeats=1)
    assert cli.bench_main(["--config", str(bad), "--list"]) == 2
    assert "repeats: must be >= 3" in capsys.readouterr().err


@pytest.mark.gpu
def test_tiny_benchmark_on_cuda(toy_models, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ctranslate2 = pytest.importorskip("ctranslate2")
    if ctranslate2.get_cuda_device_count() == 0:
        pytest.skip("CTranslate2 sees no CUDA device")
    path = toy_grid(toy_models, device="cuda")
    text = path.read_text().replace('["float32"]', '["float16", "int8_float16"]')
    path.write_text(text)
    result = bench(load_bench_config(path, min_repeats=1), tmp_path / "gpu")
    assert len(result.measured) == 6 and not result.failed
    records = read_records(tmp_path / "gpu" / "results.jsonl")
    ran = {(r["cell"]["backend"], r["model"]["compute_type"]) for r in records}
    assert ran == {
        ("pytorch", "float16"),
        ("ctranslate2", "float16"),
        ("ctranslate2", "int8_float16"),
    }
    for r in records:
        assert r["hardware"]["gpu"] and r["memory"]["gpu_used_mb"] is not None
        assert r["quality"]["bleu"] > 50
    assert (tmp_path / "gpu" / "toy-cuda-speed.png").is_file()


def test_bench_exits_non_zero_when_a_cell_failed(toy_models, tmp_path, capsys):
    import shutil

    from nmt.cli import bench_main

    broken = tmp_path / "broken"
    shutil.copytree(toy_models / "ct2", broken)
    (broken / "model.bin").write_bytes(b"not a model")
    models = [{"name": "broken", "path": str(broken), "compute_types": ["float32"]}]
    grid = {"beam_sizes": [1], "batch_sizes": [4], "threads": [1]}
    options = {"repeats": 3, "warmup_batches": 0, "latency_sentences": 0, "min_pass_seconds": 0}
    src, ref = toy_models / "toy" / "val.en", toy_models / "toy" / "val.de"
    path = write_grid(tmp_path / "grid.yaml", models, src, ref, grid=grid, **options)
    assert bench_main(["--config", str(path), "-o", str(tmp_path / "out")]) == 1
    assert "1 failed" in capsys.readouterr().out
