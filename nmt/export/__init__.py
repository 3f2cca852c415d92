"""Exporters from checkpoints to inference engines, by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nmt.export.ct2 import export_ct2

EXPORTERS: dict[str, Callable[..., Path]] = {
    "ctranslate2": export_ct2,
}
