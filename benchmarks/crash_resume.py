"""Kill `nmt train`, `nmt export` and `nmt distill` with SIGKILL; check that no work is lost.

Training: a tiny run (toy corpus, dropout on, checkpoints every few steps, one thread) is
run once uninterrupted, then in trials that SIGKILL it and continue with `--resume` until it
ends. Random trials kill at random moments (seeded); targeted trials stop the child inside
a chosen atomic write (temporary file half written, complete but not yet renamed, renamed
but its folder not yet fsynced) and kill it there. After every kill each checkpoint on disk
must load (CRC, format, weight shapes) and the resume must start from the `last.pt` found
there; at the end every checkpoint (last, best, averaged, step_N) must hold bitwise the same
weights as the uninterrupted run's, and `log.jsonl` the same losses.

Export: `nmt export` is killed at random moments and inside its staging and publishing
steps; the output folder must then be absent or a complete export that loads and holds the
reference's bytes, and a rerun (which puts back an export a killed `--force` moved aside
and clears the work folders of killed exports) must complete it without leftovers.

Distillation: `nmt distill` (a CTranslate2 teacher, two worker processes, chunks of 100
lines) is killed at random moments and inside its chunk and output writes; every chunk on
disk must be valid, no worker may outlive the kill, and a rerun must end with byte for
byte the output of an uninterrupted run.

The hooks that stop a child at a chosen point live in this script (`child` mode patches
the process it runs in), not in the library. Linux only: they read /proc/self/fd. Another
long-running command (`nmt distill`) is checked by one more `run_*_trials` function over
the same `launch`, `install_pause` and `verify_checkpoints` helpers.

    python benchmarks/crash_resume.py   # train 3 random + 6 targeted, export 2 + 3, distill 3 + 3
    python benchmarks/crash_resume.py --random-trials 10 --steps 400 --seed 1

Writes benchmarks/results/crash_resume.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()

PAIRS = [
    ("a dog runs", "ein hund rennt"),
    ("a cat sleeps", "eine katze schläft"),
    ("two men play", "zwei männer spielen"),
    ("a woman reads a book", "eine frau liest ein buch"),
    ("the child laughs", "das kind lacht"),
    ("a man rides a bike", "ein mann fährt ein fahrrad"),
    ("people walk in the street", "leute gehen auf der straße"),
    ("a girl sings", "ein mädchen singt"),
]

# (phase, file name prefix, occurrence): where a targeted trial stops the child.
TARGETED_TRAIN = [
    ("before-rename", "last.pt", 3),  # temporary file complete, not yet renamed
    ("half-written", "step_", 4),  # killed while writing a step checkpoint
    ("after-rename", "last.pt", 5),  # renamed, folder not yet fsynced
    ("before-rename", "best.pt", 2),
    ("half-written", "averaged.pt", 1),  # inside the end-of-run averaging
    ("after-rename", "step_", 2),  # between step_N.pt and last.pt
]
TARGETED_EXPORT = [
    ("export-half-model", "", 1),  # model.bin half written in the staging folder
    ("export-before-publish", "", 1),  # staging complete, not yet renamed into place
    ("export-between-renames", "", 1),  # --force: old folder moved aside, new not yet in
]
TARGETED_DISTILL = [
    ("half-written", "00000", 3),  # a chunk half written
    ("after-rename", "00001", 2),  # chunk 12 in place, folder not yet fsynced
    ("before-rename", "train.", 1),  # the filtered output complete, not yet renamed
]
DISTILL_LINES, DISTILL_CHUNK = 2000, 100
WORKER_GRACE_S = 60  # a worker still importing or translating a chunk exits after that


# ---- the child side: run an nmt command, stopping at a chosen point for the parent ----


def install_pause(phase: str, name: str, nth: int, signal_file: Path) -> None:
    """Make this process stop (sleep, for the parent to kill) at `phase` of the `nth`
    matching write. Patches are process-local and touch no library file."""
    from nmt.outputs import Output

    seen = 0

    def due() -> bool:
        nonlocal seen
        seen += 1
        return seen == nth

    def pause() -> None:
        signal_file.write_text(f"{phase} {name} {nth}\n")
        time.sleep(3600)

    if phase in ("half-written", "before-rename"):
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            target = Path(os.readlink(f"/proc/self/fd/{fd}")).name
            if target.startswith(f".{name}") and target.endswith(".tmp") and due():
                if phase == "half-written":
                    os.ftruncate(fd, os.fstat(fd).st_size // 2)
                pause()
            real_fsync(fd)

        os.fsync = fsync
    elif phase == "after-rename":
        real_replace = os.replace

        def replace(src, dst) -> None:
            real_replace(src, dst)
            if Path(dst).name.startswith(name) and due():
                pause()

        os.replace = replace
    elif phase == "export-half-model":
        from ctranslate2.specs import TransformerSpec

        real_save = TransformerSpec.save

        def save(self, output_dir: str) -> None:
            real_save(self, output_dir)
            model = Path(output_dir) / "model.bin"
            with open(model, "r+b") as f:
                f.truncate(model.stat().st_size // 2)
            pause()

        TransformerSpec.save = save
    elif phase == "export-before-publish":
        real_publish = Output._publish_folder

        def publish(*args) -> None:
            pause()
            real_publish(*args)

        Output._publish_folder = publish
    elif phase == "export-between-renames":
        real_rename = Path.rename

        def rename(self: Path, target):
            if self.name == "out":  # the staging folder: the old export is aside now
                pause()
            return real_rename(self, target)

        Path.rename = rename
    else:
        raise SystemExit(f"unknown phase {phase!r}")


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="crash_resume.py child")
    p.add_argument("--pause", nargs=3, metavar=("PHASE", "NAME", "N"))
    p.add_argument("--signal-file", type=Path)
    p.add_argument("command")
    p.add_argument("args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.pause:
        phase, name, nth = args.pause
        install_pause(phase, name, int(nth), args.signal_file)
    from nmt.cli import COMMANDS

    return COMMANDS[args.command](args.args)


# ---- the parent side -----------------------------------------------------------------


@dataclass
class Attempt:
    """One process: how it ended and what was on disk afterwards."""

    command: str
    killed: bool
    seconds: float
    kill_point: str = ""
    returncode: int | None = None
    resumed_from: int | None = None  # step the process said it resumed from
    last_step_on_disk: int | None = None  # step of last.pt after it ended
    temporaries_left: int = 0
    checkpoints_verified: int = 0
    output_state: str = ""  # export: absent / complete


@dataclass
class Trial:
    kind: str
    attempts: list[Attempt] = field(default_factory=list)
    ok: bool = False
    checks: dict = field(default_factory=dict)


def write_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, reps in (("train", 8), ("val", 1)):
        (folder / f"{split}.en").write_text("".join(f"{s}\n" for s, _ in PAIRS) * reps)
        (folder / f"{split}.de").write_text("".join(f"{t}\n" for _, t in PAIRS) * reps)
    return folder


def train_args(run_dir: Path, data_dir: Path, steps: int) -> list[str]:
    sets = [
        f"run_dir={run_dir}",
        f"data.data_dir={data_dir}",
        "data.valid=val",
        "tokenizer.vocab_size=60",
        "tokenizer.byte_fallback=false",
        "model.d_model=32",
        "model.heads=4",
        "model.ffn=64",
        "model.enc_layers=1",
        "model.dec_layers=1",
        "model.dropout=0.1",  # dropout on: the RNG state must survive the restart too
        "model.max_positions=64",
        "train.precision=fp32",
        "train.threads=1",
        "train.batch_tokens=64",
        "train.lr=0.003",
        "train.warmup_steps=20",
        "train.log_every=1",  # every step logged: the losses are compared step by step
        f"train.valid_every={max(steps // 4, 1)}",
        f"train.save_every={max(steps // 40, 1)}",
        "train.keep_last=3",
        "train.average_last=3",
        f"train.max_steps={steps}",
    ]
    return [arg for s in sets for arg in ("--set", s)]


def python_m_nmt(command: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "nmt", command, *args]


def paused_child(command: str, args: list[str], pause: tuple, signal_file: Path) -> list[str]:
    phase, name, nth = pause
    return [
        sys.executable,
        str(SCRIPT),
        "child",
        "--pause",
        phase,
        name,
        str(nth),
        "--signal-file",
        str(signal_file),
        command,
        *args,
    ]


def launch(
    argv: list[str],
    log_path: Path,
    kill_after: float | None = None,
    signal_file: Path | None = None,
    timeout: float = 600,
) -> tuple[bool, int | None, float, str]:
    """Run `argv`; SIGKILL it after `kill_after` seconds or once `signal_file` appears.
    Returns (killed, returncode, seconds, this process's stderr)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    with open(log_path, "a") as log, tempfile.TemporaryFile() as err:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=err)
        killed = False
        while proc.poll() is None:
            elapsed = time.perf_counter() - start
            if elapsed > timeout:
                proc.kill()
                raise RuntimeError(f"{argv[:5]}: still running after {timeout} s")
            if (signal_file is not None and signal_file.exists()) or (
                kill_after is not None and elapsed >= kill_after
            ):
                os.kill(proc.pid, signal.SIGKILL)  # our pid also after the TCMalloc re-exec
                killed = True
                break
            time.sleep(0.005)
        proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        log.write(stderr + f"[{'killed' if killed else f'exit {proc.returncode}'}]\n")
    if signal_file is not None:
        signal_file.unlink(missing_ok=True)
    return killed, (None if killed else proc.returncode), time.perf_counter() - start, stderr


def verify_checkpoints(run_dir: Path) -> tuple[int, int | None, int]:
    """Load every checkpoint in a run folder (raises on a corrupt one); returns how many,
    the step of last.pt (None if absent) and the temporary files lying around."""
    from nmt.checkpoint import load_checkpoint

    paths = [*run_dir.glob("*.pt"), *run_dir.glob("checkpoints/*.pt")]
    last = None
    for path in paths:
        state = load_checkpoint(path)
        if path.name == "last.pt":
            last = int(state["step"])
    temporaries = len([*run_dir.glob(".*.tmp"), *run_dir.glob("checkpoints/.*.tmp")])
    return len(paths), last, temporaries


def resumed_step(stderr: str) -> int | None:
    match = re.search(r"resumed from \S+ at step (\d+)", stderr)
    return int(match.group(1)) if match else None


def compare_runs(reference: Path, run_dir: Path) -> dict:
    """Bitwise comparison of every checkpoint's weights (and last.pt's optimizer) and of the
    logged losses."""
    import torch

    from nmt.checkpoint import load_checkpoint

    def tensors(obj, prefix=""):
        if isinstance(obj, torch.Tensor):
            yield prefix, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from tensors(v, f"{prefix}.{k}")
        elif isinstance(obj, list | tuple):
            for i, v in enumerate(obj):
                yield from tensors(v, f"{prefix}.{i}")

    names = sorted(str(p.relative_to(reference)) for p in reference.rglob("*.pt"))
    found = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*.pt"))
    differing = []
    for name in names:
        if name not in found:
            differing.append(f"{name} (missing)")
            continue
        a, b = load_checkpoint(reference / name), load_checkpoint(run_dir / name)
        parts = ["model", "optimizer"] if name == "last.pt" else ["model"]
        for part in parts:
            ta, tb = dict(tensors(a[part])), dict(tensors(b[part]))
            if ta.keys() != tb.keys() or not all(torch.equal(ta[k], tb[k]) for k in ta):
                differing.append(f"{name}:{part}")

    def losses(path: Path) -> list:
        keys = ("type", "step", "loss", "valid_loss", "valid_bleu")
        return [
            tuple(r.get(k) for k in keys) for r in map(json.loads, path.read_text().splitlines())
        ]

    same_log = losses(reference / "log.jsonl") == losses(run_dir / "log.jsonl")
    steps = json.loads((run_dir / "summary.json").read_text())["steps"]
    return {
        "checkpoints_compared": len(names),
        "same_checkpoint_set": names == found,
        "differing": differing,
        "same_logged_losses": same_log,
        "final_step": steps,
    }


def run_train_trials(
    root: Path, steps: int, kinds: list, seed: int
) -> tuple[Path, float, list[Trial]]:
    """The reference run, then one trial per entry of `kinds`: ("random", kills) or
    ("targeted", (phase, name, nth))."""
    data = write_corpus(root / "toy")
    reference = root / "reference"
    _, rc, ref_seconds, err = launch(
        python_m_nmt("train", train_args(reference, data, steps)), root / "reference.log"
    )
    if rc != 0:
        raise RuntimeError(f"reference run failed ({rc}):\n{err[-2000:]}")
    rng = random.Random(seed)
    trials = []
    for index, (kind, detail) in enumerate(kinds):
        run_dir = root / f"trial{index}"
        log = root / f"trial{index}.log"
        trial = Trial(kind=f"{kind} {detail}")
        args = train_args(run_dir, data, steps)
        kills = detail if kind == "random" else 1
        while True:  # kill until `kills` kills landed, then resume to the end
            resume = bool(trial.attempts)
            argv_args = args + (["--resume"] if resume else [])
            must_kill = sum(a.killed for a in trial.attempts) < kills
            if must_kill and kind == "targeted":
                signal_file = root / f"trial{index}.paused"
                argv = paused_child("train", argv_args, detail, signal_file)
                killed, rc, secs, err = launch(argv, log, signal_file=signal_file)
                point = "{} {} #{}".format(*detail)
            elif must_kill:
                after = rng.uniform(0.2, 0.9) * ref_seconds
                killed, rc, secs, err = launch(
                    python_m_nmt("train", argv_args), log, kill_after=after
                )
                point = f"random, {after:.2f} s after start"
            else:
                killed, rc, secs, err = launch(python_m_nmt("train", argv_args), log)
                point = ""
            count, last, temporaries = verify_checkpoints(run_dir)
            trial.attempts.append(
                Attempt(
                    command="train" + (" --resume" if resume else ""),
                    killed=killed,
                    seconds=round(secs, 2),
                    kill_point=point if killed else "",
                    returncode=rc,
                    resumed_from=resumed_step(err) if resume else None,
                    last_step_on_disk=last,
                    temporaries_left=temporaries,
                    checkpoints_verified=count,
                )
            )
            if not killed:
                if rc != 0:
                    raise RuntimeError(f"trial {index}: train failed ({rc}):\n{err[-2000:]}")
                break
        # Each resume starts where the previous process left last.pt (None: no last.pt, a
        # fresh start); a resume killed before it got that far says nothing.
        continued = all(
            b.resumed_from == a.last_step_on_disk
            for a, b in zip(trial.attempts, trial.attempts[1:], strict=False)
            if not (b.killed and b.resumed_from is None)
        )
        trial.checks = {
            "killed": sum(a.killed for a in trial.attempts),
            "resumed_from_last_checkpoint": continued,
            **compare_runs(reference, run_dir),
        }
        trial.checks["no_temporaries_at_end"] = trial.attempts[-1].temporaries_left == 0
        trial.ok = (
            trial.checks["killed"] > 0
            and continued
            and not trial.checks["differing"]
            and trial.checks["same_checkpoint_set"]
            and trial.checks["same_logged_losses"]
            and trial.checks["final_step"] == steps
            and trial.checks["no_temporaries_at_end"]
        )
        trials.append(trial)
    return reference, ref_seconds, trials


def export_state(out: Path, reference_export: Path) -> str:
    """'absent', or 'complete' when the folder loads, translates and holds the reference's
    model bytes; anything else raises."""
    from nmt.backends.ct2 import CT2Translator

    if not out.exists():
        return "absent"
    translator = CT2Translator(out, threads=1)
    sources = [s for s, _ in PAIRS]
    reference = CT2Translator(reference_export, threads=1)
    assert translator.translate(sources, beam_size=1) == reference.translate(sources, beam_size=1)
    for name in ("model.bin", "spm.model", "shared_vocabulary.json", "config.json"):
        if (out / name).read_bytes() != (reference_export / name).read_bytes():
            raise AssertionError(f"{out / name} differs from the reference export")
    return "complete"


def run_export_trials(root: Path, run_dir: Path, kinds: list, seed: int) -> list[Trial]:
    """One trial per entry of `kinds`: ("random", None) or ("targeted", (phase, "", 1))."""
    reference = root / "export-reference"
    shutil.rmtree(reference, ignore_errors=True)  # an earlier call's
    killed, rc, ref_seconds, err = launch(
        python_m_nmt("export", [str(run_dir), "-o", str(reference)]), root / "export.log"
    )
    if rc != 0:
        raise RuntimeError(f"reference export failed ({rc}):\n{err[-2000:]}")
    rng = random.Random(seed)
    trials = []
    for index, (kind, detail) in enumerate(kinds):
        out = root / f"export{index}"
        log = root / f"export{index}.log"
        shutil.rmtree(out, ignore_errors=True)  # an earlier call's
        trial = Trial(kind=f"{kind} {detail}" if detail else kind)
        force = kind == "targeted" and detail[0] == "export-between-renames"
        if force:  # replacing an existing export: start from a complete one
            shutil.copytree(reference, out)
        args = [str(run_dir), "-o", str(out), *(["--force"] if force else [])]
        if kind == "targeted":
            signal_file = root / f"export{index}.paused"
            argv = paused_child("export", args, detail, signal_file)
            killed, rc, secs, err = launch(argv, log, signal_file=signal_file)
            point = f"{detail[0]} #{detail[2]}"
        else:
            after = rng.uniform(0.2, 1.0) * ref_seconds
            killed, rc, secs, err = launch(python_m_nmt("export", args), log, kill_after=after)
            point = f"random, {after:.2f} s after start"
        state = export_state(out, reference)
        trial.attempts.append(
            Attempt(
                "export", killed, round(secs, 2), point if killed else "", rc, output_state=state
            )
        )
        rerun = [str(run_dir), "-o", str(out), "--force"]
        killed2, rc2, secs2, err2 = launch(python_m_nmt("export", rerun), log)
        final = export_state(out, reference)
        trial.attempts.append(
            Attempt("export (rerun)", False, round(secs2, 2), "", rc2, output_state=final)
        )
        leftovers = sorted(p.name for p in root.glob(f".export{index}.*.tmp"))
        trial.checks = {"after_kill": state, "after_rerun": final, "temporary_folders": leftovers}
        trial.ok = (
            state in ("absent", "complete") and rc2 == 0 and final == "complete" and not leftovers
        )
        trials.append(trial)
    return trials


def spawned_workers() -> int:
    """Processes started by multiprocessing's spawn (distillation workers) still alive."""
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"multiprocessing.spawn" in cmdline.read_bytes():
                count += 1
        except OSError:
            pass
    return count


def distill_output(out: Path) -> dict[str, bytes]:
    """The files a finished distillation must reproduce byte for byte."""
    names = ["raw.de", "train.en", "train.de", "val.en", "val.de"]
    return {name: (out / name).read_bytes() for name in names if (out / name).is_file()}


def distill_state(out: Path) -> str:
    """'absent', 'chunks N' (every chunk on disk valid JSON), 'translated' or 'finished';
    raises on a corrupt chunk."""
    if (out / "stats.json").is_file() and (out / "train.de").is_file():
        return "finished"
    if (out / "raw.json").is_file():
        return "translated, not yet filtered"
    parts = sorted((out / "parts").glob("[0-9]*.json")) if (out / "parts").is_dir() else []
    for part in parts:
        json.loads(part.read_text(encoding="utf-8"))  # a torn chunk raises
    return f"chunks {len(parts)}" if out.exists() else "absent"


def run_distill_trials(
    root: Path, teacher: Path, kinds: list, seed: int
) -> tuple[float, list[Trial]]:
    """The uninterrupted run's seconds, then one trial per entry of `kinds`: ("random",
    None) or ("targeted", (phase, name, n))."""
    data = root / "distill-data"
    data.mkdir(exist_ok=True)
    reps = DISTILL_LINES // len(PAIRS)
    for split, n in (("train", reps), ("val", 1), ("test_2016_flickr", 1)):
        (data / f"{split}.en").write_text("".join(f"{s}\n" for s, _ in PAIRS) * n)
        (data / f"{split}.de").write_text("".join(f"{t}\n" for _, t in PAIRS) * n)

    def args(out: Path) -> list[str]:
        return [
            *("--teacher", str(teacher), "--data", str(data), "-o", str(out)),
            *("--workers", "2", "--threads", "1", "--beam", "2"),
            *("--set", f"chunk_lines={DISTILL_CHUNK}", "--batch-tokens", "64"),
        ]

    reference = root / "distill-reference"
    _, rc, ref_seconds, err = launch(python_m_nmt("distill", args(reference)), root / "d.log")
    if rc != 0:
        raise RuntimeError(f"reference distillation failed ({rc}):\n{err[-2000:]}")
    expected = distill_output(reference)
    rng = random.Random(seed)
    trials = []
    for index, (kind, detail) in enumerate(kinds):
        out = root / f"distill{index}"
        log = root / f"distill{index}.log"
        shutil.rmtree(out, ignore_errors=True)  # an earlier call's
        trial = Trial(kind=f"{kind} {detail}" if detail else kind)
        if kind == "targeted":
            signal_file = root / f"distill{index}.paused"
            argv = paused_child("distill", args(out), detail, signal_file)
            killed, rc, secs, err = launch(argv, log, signal_file=signal_file)
            point = "{} {} #{}".format(*detail)
        else:
            after = rng.uniform(0.3, 0.95) * ref_seconds
            killed, rc, secs, err = launch(python_m_nmt("distill", args(out)), log, after)
            point = f"random, {after:.2f} s after start"
        waited = time.perf_counter()  # workers exit once they notice their parent is gone
        while spawned_workers() and time.perf_counter() - waited < WORKER_GRACE_S:
            time.sleep(0.2)
        orphans = spawned_workers()
        worker_exit_s = round(time.perf_counter() - waited, 1)
        state = distill_state(out)
        trial.attempts.append(
            Attempt(
                "distill", killed, round(secs, 2), point if killed else "", rc, output_state=state
            )
        )
        killed2, rc2, secs2, err2 = launch(python_m_nmt("distill", args(out)), log)
        resumed = re.search(r"resuming: (\d+) of (\d+) chunks", err2)
        final = distill_state(out)
        trial.attempts.append(
            Attempt("distill (rerun)", False, round(secs2, 2), "", rc2, output_state=final)
        )
        leftovers = sorted(p.name for p in out.rglob(".*.tmp"))
        same = distill_output(out) == expected
        trial.checks = {
            "after_kill": state,
            "orphan_workers": orphans,
            "workers_gone_after_s": worker_exit_s,
            "chunks_resumed": resumed.group(1) if resumed else "0",
            "after_rerun": final,
            "same_output": same,
            "temporary_files": leftovers,
        }
        trial.ok = rc2 == 0 and final == "finished" and same and not leftovers and not orphans
        trials.append(trial)
    return ref_seconds, trials


def machine() -> dict:
    import torch

    import nmt

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "nmt": nmt.__version__,
    }


def markdown(result: dict) -> str:
    lines = [
        "# Crash and resume: SIGKILL during `nmt train` and `nmt export`",
        "",
        f"Generated by `python benchmarks/crash_resume.py {' '.join(result['argv'])}` "
        f"on {result['machine']['platform']} ({result['machine']['cpu_count']} CPUs), "
        f"torch {result['machine']['torch']}. Training: {result['steps']} steps of a "
        "1+1-layer d_model 32 model with dropout 0.1, a checkpoint every "
        f"{max(result['steps'] // 40, 1)} steps, 1 thread; the uninterrupted run took "
        f"{result['reference_seconds']:.1f} s.",
        "",
        "## Training",
        "",
        "| trial | kills: when or where -> last.pt step on disk, temporary files left | "
        "steps the resumes reported | checkpoints compared | bitwise equal | same losses | "
        "final step | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(result["train_trials"]):
        kills = "; ".join(
            f"{a['kill_point']} -> {a['last_step_on_disk']}, {a['temporaries_left']}"
            for a in t["attempts"]
            if a["killed"]
        )
        resumes = ", ".join(
            str(a["resumed_from"])
            if a["resumed_from"] is not None
            else ("killed before loading" if a["killed"] else "fresh start")
            for a in t["attempts"]
            if a["command"].endswith("--resume")
        )
        c = t["checks"]
        lines.append(
            f"| {i} | {kills} | {resumes} | {c['checkpoints_compared']} | "
            f"{'yes' if not c['differing'] else 'NO: ' + ', '.join(c['differing'])} | "
            f"{'yes' if c['same_logged_losses'] else 'NO'} | {c['final_step']} | "
            f"{'yes' if t['ok'] else 'NO'} |"
        )
    lines += [
        "",
        "After every kill every checkpoint on disk loaded (CRC-32 of each record, format "
        "version, weight names and shapes) and each `--resume` started from the step of the "
        "`last.pt` the kill left ('None': no checkpoint yet, a fresh start). 'bitwise equal': "
        "`torch.equal` on every tensor of every checkpoint (last.pt with its optimizer state, "
        "best.pt, averaged.pt, the kept step_N.pt) against the uninterrupted run; 'same "
        "losses': every logged training loss and validation result, step by step.",
        "",
        "## Export",
        "",
        "| trial | kill point | output after the kill | after a rerun | ok |",
        "|---|---|---|---|---|",
    ]
    for i, t in enumerate(result["export_trials"]):
        a = t["attempts"][0]
        lines.append(
            f"| {i} | {a['kill_point'] or 'finished before the kill'} | "
            f"{t['checks']['after_kill']} | {t['checks']['after_rerun']} | "
            f"{'yes' if t['ok'] else 'NO'} |"
        )
    lines += [
        "",
        "'complete' means the folder loads with CTranslate2, translates like the reference "
        "export and holds its exact `model.bin`. A kill between the two renames of a `--force` "
        "export leaves the folder absent, the previous export in the `.NAME.PID.*.tmp/previous` "
        "folder beside it; the next export to that folder puts it back and removes the work "
        "folders of killed exports (the rerun here left none).",
        "",
        "## Distillation",
        "",
        f"`nmt distill` of {DISTILL_LINES} lines (chunks of {DISTILL_CHUNK}) with the "
        "reference run's CTranslate2 export as teacher, 2 worker processes, beam 2; the "
        f"uninterrupted run took {result.get('distill_reference_seconds', 0):.1f} s.",
        "",
        "| trial | kill point | output after the kill | workers alive after "
        f"{WORKER_GRACE_S} s (all gone after) | chunks the rerun kept | after the rerun | "
        "output identical | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(result.get("distill_trials", [])):
        a, c = t["attempts"][0], t["checks"]
        lines.append(
            f"| {i} | {a['kill_point'] or 'finished before the kill'} | {c['after_kill']} | "
            f"{c['orphan_workers']} ({c['workers_gone_after_s']} s) | {c['chunks_resumed']} | "
            f"{c['after_rerun']} | "
            f"{'yes' if c['same_output'] else 'NO'} | {'yes' if t['ok'] else 'NO'} |"
        )
    lines += [
        "",
        "'output identical': raw.de (every teacher output, in order), the filtered train.en/"
        "train.de and the copied val files, byte for byte against the uninterrupted run.",
        "",
        f"All trials passed: {'yes' if result['all_ok'] else 'NO'}.",
        "",
    ]
    return "\n".join(lines)


def parse_kill(parser: argparse.ArgumentParser, spec: str) -> tuple[str, str, str, int]:
    """`STAGE:PHASE:NAME:NTH` (`--kill`) as a targeted trial's stage and kill point."""
    parts = spec.split(":")
    if len(parts) != 4 or parts[0] not in ("train", "export", "distill"):
        parser.error(f"--kill {spec!r}: expected STAGE:PHASE:NAME:NTH, STAGE train/export/distill")
    stage, phase, name, nth = parts
    if not nth.isdigit() or int(nth) < 1:
        parser.error(f"--kill {spec!r}: NTH must be a positive whole number")
    return stage, phase, name, int(nth)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--random-trials", type=int, default=3, help="training, 2 kills each")
    p.add_argument("--random-export-trials", type=int, default=2)
    p.add_argument("--random-distill-trials", type=int, default=3)
    p.add_argument("--targeted", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--kill",
        action="append",
        default=[],
        metavar="STAGE:PHASE:NAME:NTH",
        help="a targeted trial of your own (stage train, export or distill), e.g. "
        "train:half-written:last.pt:3; given once or more, these replace the built-in ones",
    )
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp folder)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    targeted = {"train": TARGETED_TRAIN, "export": TARGETED_EXPORT, "distill": TARGETED_DISTILL}
    if args.kill:
        targeted = {stage: [] for stage in targeted}
        for spec in args.kill:
            stage, phase, name, nth = parse_kill(p, spec)
            targeted[stage].append((phase, name, nth))
    elif not args.targeted:
        targeted = {stage: [] for stage in targeted}
    kinds = [("random", 2)] * args.random_trials
    kinds += [("targeted", t) for t in targeted["train"]]
    export_kinds = [("random", None)] * args.random_export_trials
    export_kinds += [("targeted", t) for t in targeted["export"]]
    distill_kinds = [("random", None)] * args.random_distill_trials
    distill_kinds += [("targeted", t) for t in targeted["distill"]]
    root = args.workdir or Path(tempfile.mkdtemp(prefix="crash_resume."))
    root.mkdir(parents=True, exist_ok=True)
    reference, ref_seconds, train_trials = run_train_trials(root, args.steps, kinds, args.seed)
    export_trials = run_export_trials(root, reference, export_kinds, args.seed)
    distill_seconds, distill_trials = run_distill_trials(
        root, root / "export-reference", distill_kinds, args.seed
    )
    result = {
        "argv": argv,
        "machine": machine(),
        "steps": args.steps,
        "seed": args.seed,
        "reference_seconds": round(ref_seconds, 2),
        "train_trials": [asdict(t) for t in train_trials],
        "export_trials": [asdict(t) for t in export_trials],
        "distill_reference_seconds": round(distill_seconds, 2),
        "distill_trials": [asdict(t) for t in distill_trials],
        "all_ok": all(t.ok for t in [*train_trials, *export_trials, *distill_trials]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "crash_resume.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "crash_resume.md").write_text(markdown(result))
    print(markdown(result))
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
