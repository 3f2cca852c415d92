"""Configuration: typed, validated frozen dataclasses loaded from YAML (`nmt.config.loading`),
and the run config of `nmt-train` (`nmt.config.run`). Every name is importable from
`nmt.config`, where the rest of the toolkit takes it."""

from nmt.config.loading import (
    NAME,
    ConfigError,
    apply_overrides,
    check,
    check_name,
    check_number,
    from_dict,
    load_yaml,
    parse_override,
    replace,
)
from nmt.config.run import (
    SCHEDULES,
    DataConfig,
    ModelConfig,
    RunConfig,
    ScheduledSamplingConfig,
    TokenizerConfig,
    TrainConfig,
    load_run_config,
)

__all__ = [
    "NAME",
    "SCHEDULES",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "ScheduledSamplingConfig",
    "TokenizerConfig",
    "TrainConfig",
    "apply_overrides",
    "check",
    "check_name",
    "check_number",
    "from_dict",
    "load_run_config",
    "load_yaml",
    "parse_override",
    "replace",
]
