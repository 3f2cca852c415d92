"""Where a pipeline's outputs live: every path under its root, named in one place.

    ROOT/TEACHER/                        the teacher's run folder (a foreign teacher's record)
    ROOT/STUDENT/, ROOT/FINETUNED/       one run folder per student and fine-tuning stage
                                         (ROOT/NAME.launch.yaml, .log: one run in N processes)
    ROOT/distilled/                      the distilled dataset folder (stats.json in it)
    ROOT/exports/TEACHER-distill-Q/      the teacher's export that distils
    ROOT/exports/NAME-Q/                 each model's export; NAME.vmap.txt its vocabulary map
    ROOT/exports/NAME-Q2/, NAME-onnx-Q2/ a student's extra exports (export.student_extras)
    ROOT/bench/                          grid.yaml, results.jsonl, report.md
    ROOT/zoo/                            zoo.md, zoo.json, translations/, configs/
    ROOT/stages/STAGE.json               a stage's completion marker
    ROOT/pipeline.json                   the resolved pipeline config
    RELEASE.dir                          the released student (outside the root)

The stages, the runner and the estimate ask a `Layout` (`PipelineConfig.layout`) rather
than joining paths themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The folders under the root that are not run folders: no model may take their names.
FOLDERS = ("distilled", "exports", "bench", "stages", "zoo")


@dataclass(frozen=True)
class Layout:
    """The paths of one pipeline: its root, the teacher's name, the weight type of the
    exports (`export.quantization`) and of the teacher's export that distils
    (`teacher_export`), and the release folder ("": none)."""

    root: Path
    teacher_name: str
    quantization: str
    teacher_export: str = ""
    release_dir: str = ""

    # --- run folders ---

    def run(self, name: str) -> Path:
        """The run folder of the teacher, a student or a fine-tuning stage."""
        return self.root / name

    @property
    def teacher(self) -> Path:
        return self.run(self.teacher_name)

    @property
    def teacher_tokenizer(self) -> Path:
        """The teacher's SentencePiece model, which students share (`share_tokenizer`)."""
        return self.teacher / "spm.model"

    # --- distillation ---

    @property
    def distilled(self) -> Path:
        return self.root / "distilled"

    @property
    def distill_stats(self) -> Path:
        return self.distilled / "stats.json"

    @property
    def distill_export(self) -> Path:
        """The teacher exported (`teacher_export`) for distillation to translate with."""
        return self.exports / f"{self.teacher_name}-distill-{self.teacher_export}"

    # --- exports ---

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def export(self, name: str) -> Path:
        """Model `name`'s export (`quantization`); its folder name is its benchmark name."""
        return self.exports / f"{name}-{self.quantization}"

    def extra_export(self, name: str, fmt: str, quantization: str) -> Path:
        """A student's extra export: NAME-Q (CTranslate2) or NAME-FORMAT-Q."""
        kind = quantization if fmt == "ct2" else f"{fmt}-{quantization}"
        return self.exports / f"{name}-{kind}"

    def vmap(self, name: str) -> Path:
        """The vocabulary map built from model `name`'s training data."""
        return self.exports / f"{name}.vmap.txt"

    # --- benchmark, zoo, release ---

    @property
    def bench(self) -> Path:
        return self.root / "bench"

    @property
    def bench_grid(self) -> Path:
        """The benchmark grid as run, the record a rerun with `nmt-bench --config` takes."""
        return self.bench / "grid.yaml"

    @property
    def bench_results(self) -> Path:
        return self.bench / "results.jsonl"

    @property
    def zoo(self) -> Path:
        return self.root / "zoo"

    @property
    def zoo_table(self) -> Path:
        return self.zoo / "zoo.md"

    @property
    def zoo_json(self) -> Path:
        return self.zoo / "zoo.json"

    @property
    def release(self) -> Path | None:
        return Path(self.release_dir) if self.release_dir else None

    # --- bookkeeping ---

    @property
    def stages(self) -> Path:
        return self.root / "stages"

    def marker(self, stage: str) -> Path:
        """The completion marker of `stage`: its settings and its result."""
        return self.stages / f"{stage}.json"

    @property
    def record(self) -> Path:
        """The resolved pipeline config, written at every run."""
        return self.root / "pipeline.json"
