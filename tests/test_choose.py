"""nmt-bench --choose and nmt-translate --profile: the criterion's grammar, the cell chosen
from hand-made records, the one-line errors, deploy.json round-tripping, and a profile run
on a toy CTranslate2 export (explicit flags overriding it, a warning on another CPU)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from nmt import machine
from nmt.bench.choose import (
    DEPLOY_FILE,
    ChoiceError,
    Constraint,
    Machine,
    check_machine,
    choose,
    load_profile,
    parse_criterion,
    profile_of,
    save_profile,
)
from nmt.bench.records import append_record
from nmt.cli import bench_main, translate_main
from nmt.config import ConfigError
from nmt.outputs import claim

from .test_bench import fake_record
from .toys import SOURCES, random_state

# --- the criterion ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, constraints, objective",
    [
        ("p90<=20ms", [("p90", "<=", 20.0)], "words/s"),
        ("P50 <= 7.5 ms", [("p50", "<=", 7.5)], "words/s"),
        ("max words/s at BLEU >= 35", [("bleu", ">=", 35.0)], "words/s"),
        (
            "max bleu, p99<50ms, memory<=400MB",
            [("p99", "<", 50.0), ("memory", "<=", 400.0)],
            "bleu",
        ),
        ("words/s>=1000, bleu > 30", [("words/s", ">=", 1000.0), ("bleu", ">", 30.0)], "words/s"),
        ("max bleu", [], "bleu"),
    ],
)
def test_criterion_grammar(text, constraints, objective):
    criterion = parse_criterion(text)
    assert criterion.constraints == tuple(Constraint(*c) for c in constraints)
    assert criterion.objective == objective and criterion.text == text


@pytest.mark.parametrize(
    "text, part",
    [
        ("p90<=20mb", '"p90<=20mb" is none'),  # the wrong unit
        ("bleu>=35ms", '"bleu>=35ms" is none'),
        ("p95<=20ms", '"p95<=20ms" is none'),  # no such percentile
        ("fast please", '"fast please" is none'),
        ("p90<=20ms,", '"an empty part" is none'),
        ("", '"an empty part" is none'),
        ("max bleu, max words/s", "one objective at most"),
    ],
)
def test_a_bad_criterion_is_one_line(text, part):
    with pytest.raises(ConfigError) as e:
        parse_criterion(text)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f'--choose "{text}"') and part in message


# --- choosing among hand-made records ----------------------------------------------------


def record(model, bleu, wps, rss, p90, **cell) -> dict:
    r = fake_record(model, bleu=bleu, wps=wps, rss=rss, **cell)
    r["latency_ms"] = {"sentences": 10, "p50": p90 / 2, "p90": p90, "p99": p90 * 1.5}
    return r


def grid_records() -> list[dict]:
    failed = {"cell_id": "toy cpu broken", "spec_hash": "x", "status": "failed", "error": "boom"}
    return [
        record("fast", bleu=33.0, wps=20000, rss=500, p90=8.0),  # superseded below
        record("big", bleu=36.0, wps=1000, rss=800, p90=40.0),  # best BLEU
        record("mid", bleu=35.0, wps=3000, rss=400, p90=15.0),
        record("fast", bleu=33.0, wps=9000, rss=500, p90=8.0),  # fastest
        record("tiny", bleu=30.0, wps=2500, rss=100, p90=12.0),  # least memory
        failed,
    ]


@pytest.mark.parametrize(
    "text, model",
    [
        ("p90<=20ms", "fast"),
        ("max words/s at bleu>=35", "mid"),
        ("max bleu", "big"),
        ("max bleu, p90<=20ms", "mid"),
        ("memory<=200MB", "tiny"),
        ("p90<20ms, bleu>=34, memory<=450MB", "mid"),
        ("words/s>=9000", "fast"),
        ("p90<=8", "fast"),  # the bound itself meets <=
    ],
)
def test_choose_picks_the_best_cell_meeting_every_constraint(text, model):
    chosen = choose(grid_records(), parse_criterion(text))
    assert chosen["cell"]["model"] == model
    assert chosen["throughput"]["words_per_s"]["median"] != 20000  # the latest record counts


def test_none_meeting_names_the_closest_cell_and_what_it_missed():
    with pytest.raises(ChoiceError) as e:
        choose(grid_records(), parse_criterion("p90<=5ms, bleu>=36"))
    message = str(e.value)
    assert "\n" not in message
    assert 'no cell of 4 meets "p90<=5ms, bleu>=36"' in message
    assert "the closest, toy cpu fast t1 beam4, has p90 8 ms, not p90 <= 5 ms; bleu 33" in message
    unmeasured = record("slow", bleu=30.0, wps=10, rss=100, p90=1.0)
    unmeasured["latency_ms"] = {"sentences": 0}
    with pytest.raises(ChoiceError, match="has p90 not measured, not p90 <= 20 ms"):
        choose([unmeasured], parse_criterion("p90<=20ms"))


def test_choose_compares_one_test_set_on_one_device():
    news = record("news", bleu=20.0, wps=100, rss=100, p90=1.0, test_set="news")
    news["cell_id"] = "news cpu news t1 beam4"
    gpu = record("gpu", bleu=20.0, wps=99999, rss=100, p90=1.0, device="cuda")
    records = [*grid_records(), news, gpu]
    with pytest.raises(ChoiceError, match=r"3 workloads \(toy on cpu, news on cpu, toy on cuda\)"):
        choose(records, parse_criterion("max bleu"))
    assert choose(records, parse_criterion("max bleu"), only="news")["cell"]["model"] == "news"
    assert choose(records, parse_criterion("max bleu"), "cuda")["cell"]["model"] == "gpu"
    criterion = parse_criterion("max bleu")
    with pytest.raises(ChoiceError, match="no successfully measured cell"):
        choose(records, criterion, only="absent")


# --- deploy.json -----------------------------------------------------------------------------


def test_deploy_json_round_trips(tmp_path):
    chosen = record("mid", bleu=35.0, wps=3000, rss=400, p90=15.0, translators=2, use_vmap=True)
    chosen["cell"]["decoding"] = {"length_penalty": 0.6, "max_batch_tokens": 1000000}
    profile = profile_of(chosen, parse_criterion("p90<=20ms"), tmp_path / "results.jsonl")
    assert profile.decoding.beam_size == 4 and profile.decoding.length_penalty == 0.6
    assert (profile.inter_threads, profile.use_vmap, profile.batch_size) == (2, True, 32)
    assert profile.measured.latency_ms.p90 == 15.0 and profile.measured.memory_mb == 400.0
    assert profile.machine.description == "Test CPU (2 CPUs; avx2)"
    path = save_profile(profile, tmp_path / DEPLOY_FILE)
    assert load_profile(path) == profile
    assert "tokenizer" not in json.loads(path.read_text())  # a foreign model's options only
    with pytest.raises(FileExistsError, match="use --force to replace it"):
        save_profile(profile, path)
    assert load_profile(save_profile(profile, path, force=True)) == profile


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda p: p.update(threads=-1), "deploy.json: threads: must be >= 0"),
        (lambda p: p.pop("batch_size"), "deploy.json: batch_size: missing (required)"),
        (lambda p: p.update(speed=1), "deploy.json: speed: unknown key"),
        (lambda p: p["measured"].update(bleu="x"), "deploy.json: measured.bleu: expected float"),
        (lambda p: p["decoding"].update(beam_size=0), "deploy.json: decoding.beam_size: must be"),
        (lambda p: p.update(backend="tf"), "deploy.json: backend: must be one of"),
        (lambda p: p.update(format=2), "deploy.json: format: must be 1"),
        (lambda p: p.update(backend="onnx"), "deploy.json: use_vmap: applies to CTranslate2"),
    ],
)
def test_a_bad_profile_is_one_line_naming_file_and_key(tmp_path, change, error):
    chosen = record("mid", bleu=35.0, wps=3000, rss=400, p90=15.0, use_vmap=False)
    raw = dataclasses.asdict(profile_of(chosen, parse_criterion("max bleu"), "results.jsonl"))
    raw = json.loads(json.dumps(raw))
    change(raw)
    path = tmp_path / DEPLOY_FILE
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as e:
        load_profile(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(path.parent)), str(e.value)
    assert error in str(e.value), str(e.value)


def test_a_missing_or_garbled_profile_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such profile"):
        load_profile(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not a JSON profile"):
        load_profile(tmp_path / "bad.json")


# --- nmt-bench --choose ------------------------------------------------------------------------


def write_results(folder: Path, records: list[dict]) -> Path:
    claim(folder, "nmt-bench", resumable=True).make()  # a folder nmt-bench made
    for r in records:
        append_record(folder / "results.jsonl", r)
    return folder / "results.jsonl"


def test_cli_chooses_from_a_results_file(tmp_path, capsys):
    results = write_results(tmp_path / "bench", grid_records())
    args = ["--results", str(results), "--choose", "p90<=20ms"]
    assert bench_main(args) == 0
    out = capsys.readouterr().out
    assert "chose toy cpu fast t1 beam4: BLEU 33.00 (nrefs:1|" in out
    assert "9,000 words/s" in out and "p50/p90/p99 4/8/12 ms" in out
    deploy = tmp_path / "bench" / DEPLOY_FILE
    assert load_profile(deploy).cell_id == "toy cpu fast t1 beam4"
    assert bench_main([*args[:3], "max bleu"]) == 2  # not replaced without --force
    assert "already exists (use --force" in capsys.readouterr().err
    assert bench_main([*args[:3], "max bleu", "--force"]) == 0
    assert load_profile(deploy).cell_id == "toy cpu big t1 beam4"
    assert bench_main([*args[:3], "p90<=1ms", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the closest, toy cpu fast" in err[0], err
    assert bench_main([*args[:3], "p90 under 20"]) == 2
    assert capsys.readouterr().err.startswith('error: --choose "p90 under 20": expected')
    with pytest.raises(SystemExit):
        bench_main(["--results", str(results)])  # nothing to do without --choose


def test_cli_chooses_after_a_grid_report(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: toy\nmodels: [{name: m, path: m}]\ntest_sets: [{name: toy, src: a, ref: b}]\n"
    )
    out = tmp_path / "bench"
    write_results(out, grid_records())
    argv = ["--config", str(grid), "-o", str(out), "--report-only", "--choose", "max bleu"]
    assert bench_main([*argv[:-2], "--choose", "max  bleu , p90 <= 9000 ms"]) == 0
    assert (out / "report.md").is_file()
    profile = load_profile(out / DEPLOY_FILE)
    assert profile.cell_id == "toy cpu big t1 beam4" and profile.grid == str(grid.resolve())
    assert profile.criterion == "max  bleu , p90 <= 9000 ms"
    capsys.readouterr()
    assert bench_main([*argv[:-1], "bleu>=40"]) == 2  # the choice fails, the report is there
    assert 'no cell of 4 meets "bleu>=40"' in capsys.readouterr().err


# --- nmt-translate --profile on a toy CTranslate2 export ---------------------------------------


@pytest.fixture(scope="module")
def export(toy_tokenizer, tmp_path_factory) -> Path:
    """A CTranslate2 export of a random toy model (as tests/toys.py `toy_exports` makes)."""
    pytest.importorskip("ctranslate2")
    from nmt.export.ct2 import export_ct2

    return export_ct2(random_state(toy_tokenizer), tmp_path_factory.mktemp("choose") / "ct2")


def toy_profile(export: Path, folder: Path, name: str = DEPLOY_FILE, **changes) -> Path:
    chosen = record(
        "toy",
        bleu=30.0,
        wps=1000,
        rss=100,
        p90=5.0,
        path=str(export),
        compute_type="int8",
        beam_size=2,
        batch_size=3,
        use_vmap=False,
    )
    chosen["cell"]["decoding"] = {"length_penalty": 0.8, "max_len_a": 1.2, "min_len": 2}
    chosen["hardware"] = machine.hardware("cpu")  # measured here
    profile = profile_of(chosen, parse_criterion("p90<=20ms"), "results.jsonl")
    return save_profile(dataclasses.replace(profile, **changes), folder / name)


@pytest.fixture
def calls(monkeypatch) -> dict:
    """What nmt-translate passes to `load` and `translate_file` (both still run)."""
    import nmt.translate

    seen: dict = {}
    load, translate_file = nmt.translate.load, nmt.translate.translate_file

    def spy_load(paths, **options):
        seen["load"] = (paths, options)
        return load(paths, **options)

    def spy_translate_file(translator, source, output, decoding, max_line_chars, **options):
        seen["translate_file"] = (decoding, options)
        return translate_file(translator, source, output, decoding, max_line_chars, **options)

    monkeypatch.setattr(nmt.translate, "load", spy_load)
    monkeypatch.setattr(nmt.translate, "translate_file", spy_translate_file)
    return seen


def test_translate_with_a_profile_runs_what_was_measured(export, tmp_path, calls, caplog):
    from nmt.translate import load, translate_stream

    deploy = toy_profile(export, tmp_path)
    profile = load_profile(deploy)
    source = tmp_path / "in.en"
    source.write_text("".join(f"{s}\n" for s in SOURCES))
    out = tmp_path / "out.de"
    with caplog.at_level(logging.WARNING):
        assert translate_main(["--profile", str(deploy), "-i", str(source), "-o", str(out)]) == 0
    assert not [r for r in caplog.records if "measured on" in r.getMessage()]  # this CPU
    paths, options = calls["load"]
    assert paths == [str(export)] and options["backend"] == "ctranslate2"
    assert (options["compute_type"], options["threads"], options["inter_threads"]) == ("int8", 1, 1)
    decoding, extra = calls["translate_file"]
    assert decoding == profile.decoding and decoding.min_len == 2  # an option with no flag too
    assert extra == {"use_vmap": False, "chunk_lines": 3}
    translator = load(export, compute_type="int8", threads=1)
    options = {**dataclasses.asdict(profile.decoding), "use_vmap": False}
    expected = list(translate_stream(translator, SOURCES, chunk_lines=3, **options))
    assert out.read_text().splitlines() == expected


def test_explicit_flags_override_the_profile(export, tmp_path, calls, caplog):
    elsewhere = Machine("Imaginary CPU 9000", ("avx2",), "Imaginary CPU 9000 (64 CPUs; avx2)", "")
    deploy = toy_profile(export, tmp_path, "other.json", model="/nowhere", machine=elsewhere)
    source = tmp_path / "in.en"
    source.write_text("a dog runs\n")
    flags = ["-m", str(export), "--beam", "1", "--threads", "2", "--compute-type", "float32"]
    flags += ["--batch-tokens", "64", "--max-len-b", "3"]
    with caplog.at_level(logging.WARNING):
        assert translate_main(["--profile", str(deploy), *flags, "-i", str(source)]) == 0
    paths, options = calls["load"]
    assert paths == [str(export)]  # -m replaces the profile's model (not an ensemble with it)
    assert (options["compute_type"], options["threads"]) == ("float32", 2)
    decoding, _ = calls["translate_file"]
    assert (decoding.beam_size, decoding.max_batch_tokens, decoding.max_len_b) == (1, 64, 3)
    assert (decoding.length_penalty, decoding.max_len_a, decoding.min_len) == (0.8, 1.2, 2)
    warnings = [r.getMessage() for r in caplog.records if "measured on" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "Imaginary CPU 9000" in warnings[0] and str(deploy) in warnings[0]
    assert "nmt-bench --config GRID.yaml --choose 'p90<=20ms'" in warnings[0]


def test_check_machine_compares_model_name_and_instruction_sets(tmp_path, caplog):
    chosen = record("mid", bleu=35.0, wps=3000, rss=400, p90=15.0)
    chosen["hardware"] = machine.hardware("cpu")
    here = profile_of(chosen, parse_criterion("max bleu"), "results.jsonl")
    assert check_machine(here, "deploy.json")
    fewer = dataclasses.replace(here.machine, cpu_features=("sse2",))
    with caplog.at_level(logging.WARNING):
        assert not check_machine(dataclasses.replace(here, machine=fewer), "deploy.json")
    assert len(caplog.records) == 1 and "sse2" in caplog.records[0].getMessage()


def test_translate_needs_a_model_or_a_profile(tmp_path, capsys):
    with pytest.raises(SystemExit):
        translate_main(["-i", "x"])
    assert "--model/-m (or --profile)" in capsys.readouterr().err
    assert translate_main(["--profile", str(tmp_path / "absent.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent.json: no such profile" in err[0]


def test_serve_with_a_profile_serves_what_was_measured(export, tmp_path, monkeypatch):
    """nmt-serve --profile: the profile's model, compute type, threads, translators,
    vocabulary map and decoding; explicit flags still win."""
    from nmt.cli import serve as serve_cli

    deploy = toy_profile(export, tmp_path)
    profile = load_profile(deploy)
    args, decoding, use_vmap, _ = serve_cli._parse(["--profile", str(deploy)])
    assert args.model == [str(export)] and (args.compute_type, args.threads) == ("int8", 1)
    assert args.workers == profile.inter_threads and use_vmap is False
    assert decoding == profile.decoding and decoding.min_len == 2
    args, decoding, _, _ = serve_cli._parse(
        ["--profile", str(deploy), "--beam", "1", "--workers", "2"]
    )
    assert decoding.beam_size == 1 and decoding.length_penalty == 0.8 and args.workers == 2

    served = {}

    def run(server, host, port, log_level):  # what uvicorn would serve
        served.update(server.state.models, settings=server.state.settings)

    monkeypatch.setattr("uvicorn.run", run)
    assert serve_cli.serve_main(["--profile", str(deploy), "-m", f"en-de={export}"]) == 0
    settings = served.pop("settings")
    assert settings.decoding == profile.decoding and settings.use_vmap is False
    (model,) = served.values()
    assert model.translator.compute_type == "int8" and model.translator.threads == 1
    with pytest.raises(SystemExit):  # neither -m nor --profile
        serve_cli._parse(["--port", "1"])


# --- a foreign model's load options through deploy.json ---------------------------------------


def foreign_profile(folder: Path) -> Path:
    """deploy.json of a multilingual foreign model (which loads only with its target_prefix)."""
    chosen = record(
        "nllb-en-de",
        bleu=30.0,
        wps=1000,
        rss=100,
        p90=5.0,
        backend="foreign",
        use_vmap=None,
        tokenizer=["/models/nllb/sentencepiece.bpe.model"],
        source_prefix="eng_Latn",
        source_suffix=None,  # unset: as the model's folder says
        target_prefix="deu_Latn",
    )
    chosen["hardware"] = machine.hardware("cpu")
    profile = profile_of(chosen, parse_criterion("p90<=20ms"), "results.jsonl")
    return save_profile(profile, folder / DEPLOY_FILE)


def test_a_foreign_models_load_options_go_with_its_profile(tmp_path, monkeypatch):
    """deploy.json holds the options that were set, and nmt-translate and nmt-serve load the
    profile's model with them (a flag given wins; -m's model gets none of them)."""
    import nmt.translate
    from nmt.cli import serve as serve_cli

    deploy = foreign_profile(tmp_path)
    raw = json.loads(deploy.read_text())
    assert raw["tokenizer"] == ["/models/nllb/sentencepiece.bpe.model"]
    assert (raw["source_prefix"], raw["target_prefix"]) == ("eng_Latn", "deu_Latn")
    assert "source_suffix" not in raw
    profile = load_profile(deploy)
    expected = {
        "tokenizer_files": ["/models/nllb/sentencepiece.bpe.model"],
        "source_prefix": "eng_Latn",
        "target_prefix": "deu_Latn",
    }
    assert profile.load_options() == expected

    loads = []

    def spy_load(paths, **options):  # the model need not exist: nothing is translated
        loads.append((paths, options))
        return SimpleNamespace(backend="foreign", tokenizer=SimpleNamespace(encode=str.split))

    monkeypatch.setattr(nmt.translate, "load", spy_load)
    monkeypatch.setattr(nmt.translate, "translate_file", lambda *args, **kwargs: None)
    source = tmp_path / "in.en"
    source.write_text("a dog runs\n")
    for flags, options in [
        ([], expected),
        (["--target-prefix", "fra_Latn"], {**expected, "target_prefix": "fra_Latn"}),
        (["-m", "/models/other"], {}),
    ]:
        assert translate_main(["--profile", str(deploy), "-i", str(source), *flags]) == 0
        _, given = loads.pop()
        assert {k: given[k] for k in given if k in expected} == options, flags

    assert serve_cli._parse(["--profile", str(deploy)])[3] == expected
    assert serve_cli._parse(["--profile", str(deploy), "-m", "en-de=/models/other"])[3] == {}
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    monkeypatch.setattr("nmt.serve.models.load", spy_load)
    monkeypatch.setattr("uvicorn.run", lambda server, **kwargs: None)
    assert serve_cli.serve_main(["--profile", str(deploy)]) == 0
    ((paths, given),) = loads
    assert paths == Path(profile.model) and expected.items() <= given.items()
