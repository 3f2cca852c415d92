import pytest

from nmt.config import ConfigError, RunConfig, TokenizerConfig, load_run_config


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_example_configs_load():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].glob("models/*.yaml")):
        assert isinstance(load_run_config(path), RunConfig)


def test_unknown_key_is_an_error_naming_it(tmp_path):
    path = write(tmp_path, "train:\n  lrate: 0.1\n")
    with pytest.raises(ConfigError, match=r"train\.lrate: unknown key"):
        load_run_config(path)


def test_unknown_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="optim: unknown key"):
        load_run_config(write(tmp_path, "optim: {}\n"))


def test_wrong_type_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.d_model: expected int"):
        load_run_config(write(tmp_path, "model:\n  d_model: big\n"))
    with pytest.raises(ConfigError, match=r"model\.pre_norm: expected bool"):
        load_run_config(write(tmp_path, "model:\n  pre_norm: 1\n"))


def test_impossible_values_are_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.heads"):
        load_run_config(write(tmp_path, "model:\n  d_model: 256\n  heads: 3\n"))
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_run_config(None, ["train.lr=-0.1"])
    with pytest.raises(ConfigError, match=r"tokenizer\.vocab_size"):
        TokenizerConfig(vocab_size=100, byte_fallback=True)


def test_overrides_are_type_checked():
    config = load_run_config(None, ["train.lr=7e-4", "model.enc_layers=6", "run_dir=x"])
    assert config.train.lr == 7e-4 and config.model.enc_layers == 6 and config.run_dir == "x"
    with pytest.raises(ConfigError, match=r"train\.max_steps: expected int"):
        load_run_config(None, ["train.max_steps=lots"])
    with pytest.raises(ConfigError, match=r"train\.nope: unknown key"):
        load_run_config(None, ["train.nope=1"])


def test_int_is_accepted_for_float():
    assert load_run_config(None, ["train.lr=1"]).train.lr == 1.0


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_run_config(tmp_path / "nope.yaml")


def test_one_loader_for_every_config():
    """Run, distillation, pipeline and benchmark configs load through `config.from_dict`:
    required keys, lists of sections, and a class's own checks named from the top."""
    from pathlib import Path

    from nmt.bench.grid import BenchConfig
    from nmt.config import from_dict
    from nmt.pipeline import PipelineConfig

    with pytest.raises(ConfigError, match=r"^root: missing \(required\)$"):
        from_dict(PipelineConfig, {"teacher": {"name": "t", "config": "t.yaml"}})
    teacher = {"name": "t", "config": "t.yaml"}
    with pytest.raises(ConfigError, match=r"^students\[1\]\.name: must match"):
        from_dict(
            PipelineConfig,
            {
                "root": "r",
                "teacher": teacher,
                "students": [teacher | {"name": "s"}, teacher | {"name": "-"}],
            },
        )
    with pytest.raises(ConfigError, match=r"^model\.heads: must divide"):  # named from the top
        from_dict(RunConfig, {"model": {"heads": 3}})
    with pytest.raises(ConfigError, match=r"^models\[0\]\.threads\[1\]: expected int"):
        from_dict(
            BenchConfig,
            {
                "name": "b",
                "models": [{"name": "m", "path": Path("x").as_posix(), "threads": [1, "two"]}],
                "test_sets": [],
            },
        )


def test_set_addresses_list_items():
    from nmt.config import apply_overrides

    raw = {"students": [{"name": "a", "set": []}], "grid": {"beam_sizes": [1]}}
    apply_overrides(
        raw,
        [
            "students[0].set=[train.max_steps=3]",
            "students[1]={name: b, config: b.yaml}",  # the list's length: appended
            "grid.beam_sizes[0]=4",
        ],
    )
    assert raw["students"] == [
        {"name": "a", "set": ["train.max_steps=3"]},
        {"name": "b", "config": "b.yaml"},
    ]
    assert raw["grid"]["beam_sizes"] == [4]
    for bad, message in (
        ("students[5].name=x", "students has 2 items"),
        ("grid[0]=1", "grid is not a list"),
        ("students[0].name.first=x", "students.0.name is not a section"),
        ("a..b=1", "'' is not a key or key\\[N\\]"),
    ):
        with pytest.raises(ConfigError, match=message):
            apply_overrides(raw, [bad])


def test_pipeline_and_grid_take_list_overrides(monkeypatch):
    from pathlib import Path

    from nmt.bench.grid import load_bench_config
    from nmt.pipeline import load_pipeline_config

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    pipeline = load_pipeline_config(
        repo / "pipelines" / "quickstart.yaml", ["students[0].set=[train.max_steps=3]"]
    )
    assert pipeline.students[0].set == ("train.max_steps=3",)
    grid = load_bench_config(
        repo / "benchmarks" / "experiments" / "export-multi30k.yaml",
        ["models[1].path=exports/other-ct2"],
    )
    assert grid.models[1].path == "exports/other-ct2" and grid.models[0].path != grid.models[1].path
