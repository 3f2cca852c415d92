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
