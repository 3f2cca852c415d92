"""Typed configs from YAML: every stage's config is a frozen dataclass built by `from_dict`,
which checks each key's type and names it in the error (``train.lr``); `--set key=value`
overrides (`apply_overrides`) go through the same checks; `check` and `check_number` are
the validations every dataclass's `__post_init__` calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import operator
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value is unknown, mistyped or impossible; the message names the key."""


def check(ok: bool, key: str, message: str) -> None:
    """Raise `ConfigError("key: message")` unless `ok`: every config class validates with it."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_BOUND = re.compile(r"^(>=|>|<=|<) (\S+)$")  # "> 0", ">= 1"
_INTERVAL = re.compile(r"^([\[(])(\S+), (\S+)([\])])$")  # "[0, 1)", "(0, 1]"


def check_number(value: Any, key: str, allowed: str = "", note: str = "") -> None:
    """Raise `ConfigError("key: must be ALLOWED, got VALUE")` unless `value` is a finite real
    number in `allowed`: an interval (``[0, 1)``), a bound (``> 0``, ``>= 1``) or empty (any
    finite number); `note` follows the range in the message (`` (0: no limit)``). Every
    float setting of every config class is checked with it: NaN fails every comparison
    and infinity passes ``lr > 0``, and either trains a NaN model."""
    bounds = _bounds(allowed)
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    finite = number and (isinstance(value, numbers.Integral) or math.isfinite(value))
    if finite and all(_COMPARE[op](value, bound) for op, bound in bounds):
        return
    wanted = f"in {allowed}" if allowed[:1] in "[(" else allowed
    if finite:
        wanted = "positive" if allowed == "> 0" else wanted
    else:
        wanted = f"a finite number {wanted}".rstrip()
    raise ConfigError(f"{key}: must be {wanted}{note}, got {value!r}")


def _bounds(allowed: str) -> list[tuple[str, float]]:
    """``"[0, 1)"`` -> ``[(">=", 0.0), ("<", 1.0)]``; ``"> 0"`` -> ``[(">", 0.0)]``."""
    if not allowed:
        return []
    if match := _BOUND.match(allowed):
        return [(match[1], float(match[2]))]
    if match := _INTERVAL.match(allowed):
        low = ">" if match[1] == "(" else ">="
        high = "<" if match[4] == ")" else "<="
        return [(low, float(match[2])), (high, float(match[3]))]
    raise ValueError(f"not a range: {allowed!r} (want e.g. '[0, 1)', '> 0' or '')")


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a model's, stage's or folder's name


def check_name(name: str, key: str) -> None:
    check(bool(NAME.match(name)), key, f"must match {NAME.pattern}")


def from_dict(cls: type, values: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, recursively; every key is checked: unknown keys,
    missing required ones (fields without a default) and values of the wrong type are
    errors naming the key from the top (``students[0].config``). Sections are dataclasses,
    lists are ``tuple[X, ...]`` (a scalar is a one-item list), ``dict[str, str]`` is a
    mapping. A class's own check may name its key from the top (``model.d_model``) or from
    itself (``name``, then prefixed here)."""
    where = prefix.rstrip(".") or "config"
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known keys of {where}: {known})")
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in values:
            raise ConfigError(f"{prefix}{name}: missing (required)")
    values = {name: _section_defaults(fields[name], value) for name, value in values.items()}
    kwargs = {
        name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError as e:
        message = str(e)
        raise ConfigError(message if message.startswith(prefix) else prefix + message) from None


def _section_defaults(f: dataclasses.Field, value: Any) -> Any:
    """A section given in part starts from the section's own default (the default factory's
    dataclass, e.g. the distillation's `Decoding` with 2,048-token batches), not from its
    class's defaults."""
    factory = f.default_factory
    if not isinstance(value, dict) or factory is dataclasses.MISSING:
        return value
    default = factory()
    if not dataclasses.is_dataclass(default):
        return value
    return {**dataclasses.asdict(default), **value}


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(items))
    if typing.get_origin(hint) is dict:  # dict[str, str]: environment variables
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(str, v, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key + ".")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # 1e400 written out in digits: no float holds it
            digits = len(str(abs(value)))
            raise ConfigError(f"{key}: must be a finite number, got {digits} digits") from None
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        if any(isinstance(value, a) for a in args if isinstance(a, type)):
            return value
    elif (
        isinstance(hint, type)
        and isinstance(value, hint)
        and not (hint is int and isinstance(value, bool))
    ):
        return value
    raise ConfigError(
        f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r} ({type(value).__name__})"
    )


_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Parse ``section.key=value`` into its path and value. A list item is addressed by its
    index: ``students[0].set=[...]``. The value is read as YAML (``1e-3``, ``true``,
    ``[1, 2]``, ``{name: x}``)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    path: list[str | int] = []
    for part in key.split("."):
        match = _STEP.match(part)
        if not match:
            raise ConfigError(f"--set {key}: {part!r} is not a key or key[N]")
        path.append(match.group(1))
        path += [int(i) for i in re.findall(r"\d+", match.group(2))]
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {e}") from None
    # YAML reads "1e-3" as a string; accept it as a float.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value) if any(c in value for c in ".eE") else value
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a raw config mapping (validation happens afterwards).
    A missing section is created; a list index must exist (or be the list's length, which
    appends)."""
    for text in overrides:
        path, value = parse_override(text)
        key = text.split("=", 1)[0].strip()
        node: Any = raw
        for i, step in enumerate(path):
            last = i == len(path) - 1
            if isinstance(step, int):
                if not isinstance(node, list):
                    raise ConfigError(f"--set {key}: {path[i - 1]} is not a list")
                if not 0 <= step <= len(node) or (step == len(node) and not last):
                    raise ConfigError(f"--set {key}: {path[i - 1]} has {len(node)} items")
                if step == len(node):
                    node.append(value)
                elif last:
                    node[step] = value
                else:
                    node = node[step]
            else:
                if not isinstance(node, dict):
                    where = ".".join(map(str, path[:i])) or "config"
                    raise ConfigError(f"--set {key}: {where} is not a section")
                if last:
                    node[step] = value
                else:
                    node = node.setdefault(step, [] if isinstance(path[i + 1], int) else {})
    return raw


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:  # its str spans several lines; keep the line and the problem
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def replace(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, **changes)
