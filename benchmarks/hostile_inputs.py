"""Probe the toolkit as a hostile or careless user would, before and after a change.

Each probe runs one command line (`python -m nmt ...`) against fresh toy files and records
its exit code, the first line and line count of its stderr, and what it did to the files
around it (a payload's marker, a user's files, the input). With `--before DIR` every probe
runs twice: once with the package of DIR (a checkout of the old code, e.g. `git worktree
add /tmp/before HEAD~1`) first on PYTHONPATH, once with this checkout's (or `--after`'s).

    python benchmarks/hostile_inputs.py --before /tmp/before \\
        -o benchmarks/results/hostile_inputs.md

Linux only (RLIMIT_AS for the memory probes, /proc for the lock). About 5 minutes on 2 CPUs
a version (the old one's zip-bomb probe alone takes ~50 s and 4.3 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_outputs import OutputProbes  # noqa: E402

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

TOY_RUN = [
    "data.valid=val",
    "tokenizer.vocab_size=60",
    "tokenizer.byte_fallback=false",
    "model.d_model=32",
    "model.heads=4",
    "model.ffn=64",
    "model.enc_layers=1",
    "model.dec_layers=1",
    "model.max_positions=64",
    "train.precision=fp32",
    "train.threads=1",
    "train.batch_tokens=64",
    "train.lr=0.003",
    "train.warmup_steps=10",
    "train.log_every=5",
    "train.valid_every=1000",
    "train.valid_bleu=false",
    "train.save_every=10",
]


@dataclass
class Outcome:
    probe: str
    command: str
    exit: str
    stderr: str
    effect: str


class Probes(OutputProbes):
    """The probes, run with one version of the package (`pythonpath` first on the path);
    those of the second round (issue 32) are `OutputProbes`'."""

    def __init__(self, pythonpath: Path, work: Path):
        self.env = {**os.environ, "PYTHONPATH": str(pythonpath), "CT2_USE_MKL": "1"}
        self.work = work
        self.corpus = work / "toy"
        self.corpus.mkdir(parents=True)
        for split, reps in (("train", 8), ("val", 1)):
            (self.corpus / f"{split}.en").write_text("".join(f"{s}\n" for s, _ in PAIRS) * reps)
            (self.corpus / f"{split}.de").write_text("".join(f"{t}\n" for _, t in PAIRS) * reps)
        self.text = self.corpus / "val.en"
        self.run_dir = work / "project" / "run"
        self.nmt("train", *self.train_args(self.run_dir, 40), check=True)
        self.nmt("export", str(self.run_dir), "-o", str(work / "ct2"), check=True)
        self.nmt("export", str(self.run_dir), "-o", str(work / "onnx"), "--format", "onnx")
        self.hostile = work / "hostile.pt"
        self.marker = work / "PAYLOAD_RAN"
        self.python(HOSTILE, str(self.run_dir / "last.pt"), str(self.hostile), str(self.marker))

    # --- running commands ----------------------------------------------------------------
    def train_args(self, run_dir: Path, steps: int, *extra: str) -> list[str]:
        sets = [f"run_dir={run_dir}", f"data.data_dir={self.corpus}", *TOY_RUN]
        sets += [f"train.max_steps={steps}", *extra]
        return [a for kv in sets for a in ("--set", kv)]

    def nmt(self, *args: str, check: bool = False, timeout: float = 300, **kw):
        """`python -m nmt ARGS` in the work folder (`-m` puts the current folder first on
        sys.path: run from the repository, it would import this checkout's package)."""
        command = [sys.executable, "-m", "nmt", *args]
        kw.setdefault("cwd", self.work)
        kw.setdefault("preexec_fn", lambda: os.umask(0o022))
        try:
            done = subprocess.run(
                command, env=self.env, capture_output=True, text=True, timeout=timeout, **kw
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(command, "hung", "", f"killed after {timeout} s")
        if check and done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
        return done

    def python(self, code: str, *args: str) -> None:
        subprocess.run([sys.executable, "-c", code, *args], env=self.env, check=True, cwd=self.work)

    def race(self, args: list[str], n: int) -> subprocess.CompletedProcess:
        """`n` copies of `python -m nmt ARGS` started together; their exit codes joined by
        commas, the first failure's stderr."""
        command = [sys.executable, "-m", "nmt", *args]
        procs = [
            subprocess.Popen(
                command,
                env=self.env,
                cwd=self.work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        codes = [p.wait(timeout=300) for p in procs]
        errors = [p.stderr.read() for p in procs]
        failed = [e for c, e in zip(codes, errors, strict=True) if c != 0]
        return subprocess.CompletedProcess(
            command, ",".join(map(str, codes)), "", failed[0] if failed else ""
        )

    def outcome(self, probe: str, args: list[str], done, effect: str) -> Outcome:
        lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
        lines = [line for line in lines if " INFO " not in line]
        first = lines[-1] if lines else ""
        if len(lines) > 1:
            first = f"{first[:110]} ({len(lines)} lines)"
        shown = " ".join(a.replace(str(self.work) + "/", "") for a in args)
        return Outcome(probe, f"nmt-{shown}", str(done.returncode), first[:160], effect)

    def payload(self) -> str:
        ran = self.marker.exists()
        self.marker.unlink(missing_ok=True)
        return "**payload ran**" if ran else "payload did not run"

    # --- the probes ----------------------------------------------------------------------
    def all(self) -> list[Outcome]:
        probes: list[Callable[[], list[Outcome]]] = [
            self.hostile_checkpoint,
            self.summary_escape,
            self.force,
            self.concurrent_exports,
            self.average_and_evaluate_outputs,
            self.two_trainers,
            self.translate_in_place,
            self.decoding_options,
            self.out_of_memory,
            self.average_mixed_tokenizers,
            self.degenerate_teacher,
            self.smaller,
            self.outputs_on_inputs,
            self.links_out_of_folders,
            self.non_finite_training,
            self.tampered_shard,
            self.memory_bounds,
            self.malformed_model_files,
        ]
        results = []
        for probe in probes:
            started = time.perf_counter()
            results += probe()
            print(f"{probe.__name__}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return results

    def hostile_checkpoint(self) -> list[Outcome]:
        w, h = self.work, str(self.hostile)
        run = w / "hostile-run"
        shutil.copytree(self.run_dir, run)
        shutil.copyfile(self.hostile, run / "last.pt")
        commands = {
            "translate": ["translate", "-m", h, "-i", str(self.text)],
            "export": ["export", h, "-o", str(w / "h-exp")],
            "average": ["average", h, h, "-o", str(w / "h-avg.pt")],
            "train --resume": ["train", *self.train_args(run, 50), "--resume"],
            "evaluate": ["evaluate", "-m", h, "--src", str(self.text), "--ref", str(self.text)]
            + ["-o", str(w / "h-eval")],
            "vmap": ["vmap", "--model", h, "--src", str(self.text), "--tgt", str(self.text)]
            + ["-o", str(w / "h.vmap")],
            "distill": ["distill", "--teacher", h, "--data", str(self.corpus), "-o", str(w / "hd")],
        }
        results = []
        for name, args in commands.items():
            done = self.nmt(*args)
            shown = args if name != "train --resume" else ["train", "--set ... --resume"]
            results.append(self.outcome(f"1. hostile .pt: {name}", shown, done, self.payload()))
        return results

    def summary_escape(self) -> list[Outcome]:
        run = self.work / "escape-run"
        shutil.copytree(self.run_dir, run)
        (run / "summary.json").write_text(json.dumps({"checkpoint": "../hostile.pt"}))
        args = ["translate", "-m", str(run), "-i", str(self.text)]
        effect = f"summary.json names ../hostile.pt: {self.payload_after(args)}"
        return [self.outcome("1. summary.json escapes the run", args, self.last, effect)]

    def payload_after(self, args: list[str]) -> str:
        self.last = self.nmt(*args)
        return self.payload()

    def force(self) -> list[Outcome]:
        project = self.run_dir.parent
        (project / "thesis").mkdir(exist_ok=True)
        (project / "thesis" / "chapter1.tex").write_text("mine\n")
        results = []
        for name, target in (
            ("the run itself", self.run_dir),
            ("the run's parent", project),
            ("the input .pt", self.run_dir / "last.pt"),
            ("a user's folder", project / "thesis"),
        ):
            before = files(project)
            args = ["export", str(self.run_dir), "-o", str(target), "--force"]
            done = self.nmt(*args)
            after = files(project)
            lost = len(set(before) - set(after))
            effect = f"{len(before) - lost} of {len(before)} files survive" + (
                "" if not lost else " **(user files deleted)**"
            )
            results.append(self.outcome(f"2. export --force onto {name}", args, done, effect))
            restore(project, before)
        user = self.work / "user-distill"
        (user / "parts").mkdir(parents=True)
        (user / "parts" / "notes.txt").write_text("mine\n")
        args = ["distill", "--teacher", str(self.work / "ct2"), "--data", str(self.corpus)]
        args += ["-o", str(user), "--force", "--beam", "1"]
        done = self.nmt(*args)
        survived = (user / "parts" / "notes.txt").exists()
        effect = "user's parts/notes.txt " + ("survives" if survived else "**deleted**")
        results.append(self.outcome("2. distill --force, user's parts/", args, done, effect))
        return results

    def concurrent_exports(self) -> list[Outcome]:
        out = self.work / "race"
        args = ["export", str(self.run_dir), "-o", str(out)]
        done = self.race(args, 4)  # four, so that some of them overlap
        codes = [int(c) for c in done.returncode.split(",")]
        winners = codes.count(0)
        effect = f"{winners} of 4 succeed" + (
            "" if winners == 1 else " **(the others' exports silently replaced)**"
        )
        return [self.outcome("2. four exports to one -o at once", args + ["(x4)"], done, effect)]

    def average_and_evaluate_outputs(self) -> list[Outcome]:
        results = []
        mine = self.work / "mine.pt"
        mine.write_text("my notes\n")
        ckpt = str(self.run_dir / "last.pt")
        args = ["average", ckpt, ckpt, "-o", str(mine)]
        done = self.nmt(*args)
        kept = mine.read_text(errors="replace") == "my notes\n"
        effect = "user's file " + ("kept" if kept else "**overwritten**")
        results.append(self.outcome("2. average -o an existing file", args, done, effect))
        folder = self.work / "eval-mine"
        folder.mkdir()
        (folder / "hyp.txt").write_text("my hypotheses\n")
        args = ["evaluate", "-m", str(self.run_dir), "--src", str(self.text), "--ref"]
        args += [str(self.text), "-o", str(folder), "--beam", "1"]
        done = self.nmt(*args)
        kept = (folder / "hyp.txt").read_text() == "my hypotheses\n"
        effect = "user's hyp.txt " + ("kept" if kept else "**overwritten**")
        results.append(self.outcome("2. evaluate -o a folder with hyp.txt", args, done, effect))
        return results

    def two_trainers(self) -> list[Outcome]:
        run = self.work / "shared-run"
        args = ["train", *self.train_args(run, 60)]
        done = self.race(args, 2)
        failed = done.stderr
        effect = "one trains, the other stops at once" if failed else "**both trained**"
        results = [
            self.outcome("3. two nmt-train on one run_dir", ["train --set ... (x2)"], done, effect)
        ]
        # SIGKILL the holder, then --resume with no cleanup
        run = self.work / "killed-run"
        first = subprocess.Popen(
            [sys.executable, "-m", "nmt", "train", *self.train_args(run, 100000)],
            env=self.env,
            cwd=self.work,
            stderr=subprocess.DEVNULL,
        )
        while not (run / "last.pt").exists():
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        done = self.nmt("train", *self.train_args(run, 30), "--resume")
        effect = "resumes" if done.returncode == 0 else "**resume fails**"
        shown = ["train --set ... --resume (after kill -9)"]
        results.append(self.outcome("3. resume after kill -9", shown, done, effect))
        return results

    def translate_in_place(self) -> list[Outcome]:
        results = []
        for name, link in (("same file", False), ("via a symlink", True)):
            text = self.work / f"in-place-{link}.txt"
            text.write_text("a dog runs\na cat sleeps\n")
            size = text.stat().st_size
            output = text
            if link:
                output = self.work / "link.txt"
                output.symlink_to(text)
            args = ["translate", "-m", str(self.run_dir), "-i", str(text), "-o", str(output)]
            done = self.nmt(*args)
            effect = f"input now {text.stat().st_size} bytes (was {size})"
            results.append(self.outcome(f"4. translate -i f -o f ({name})", args, done, effect))
        return results

    def decoding_options(self) -> list[Outcome]:
        models = {"pytorch": self.run_dir, "ct2": self.work / "ct2", "onnx": self.work / "onnx"}
        cases = [(b, ["--beam", "0"]) for b in models]
        cases += [(b, ["--beam", "-1"]) for b in models]
        cases += [(b, ["--batch-tokens", "-5"]) for b in models]
        cases += [("ct2", ["--threads", "-1"]), ("ct2", ["--inter-threads", "0"])]
        cases += [("onnx", ["--threads", "1000"])]
        results = []
        for backend, options in cases:
            args = ["translate", "-m", str(models[backend]), "-i", str(self.text), *options]
            started = time.perf_counter()
            done = self.nmt(*args, timeout=30)
            seconds = time.perf_counter() - started
            lines = len(done.stdout.splitlines()) if done.stdout else 0
            effect = f"{lines} lines out, {seconds:.1f} s"
            results.append(self.outcome(f"5. {backend} {' '.join(options)}", args, done, effect))
        args = ["train", *self.train_args(self.work / "threads-run", 5, "train.threads=1000")]
        done = self.nmt(*args)
        effect = "trained" if done.returncode == 0 else "not trained"
        results.append(
            self.outcome("5. train.threads: 1000", ["train --set train.threads=1000"], done, effect)
        )
        return results

    def out_of_memory(self) -> list[Outcome]:
        big = self.work / "big.pt"
        self.python(BIG, str(self.run_dir / "last.pt"), str(big))
        args = ["translate", "-m", str(big), "-i", str(self.text)]
        limit = 1 << 30

        def cap() -> None:
            os.umask(0o022)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        done = self.nmt(*args, preexec_fn=cap)
        effect = f"{big.stat().st_size / 1e6:.0f} MB checkpoint under `ulimit -v 1048576`"
        return [self.outcome("6. out of memory", args, done, effect)]

    def average_mixed_tokenizers(self) -> list[Outcome]:
        other = self.work / "other-run"
        corpus = self.work / "other-toy"
        corpus.mkdir()
        for split in ("train", "val"):
            for lang, side in (("en", 1), ("de", 0)):  # the languages swapped: other pieces
                text = "".join(f"{p[side]}\n" for p in PAIRS) * 8
                (corpus / f"{split}.{lang}").write_text(text)
        args = self.train_args(other, 10)
        args[args.index(f"data.data_dir={self.corpus}")] = f"data.data_dir={corpus}"
        self.nmt("train", *args, check=True)
        out = self.work / "mixed.pt"
        args = ["average", str(self.run_dir / "last.pt"), str(other / "last.pt"), "-o", str(out)]
        done = self.nmt(*args)
        effect = "averaged model written" if out.exists() else "nothing written"
        return [self.outcome("7. average two tokenizers", args, done, effect)]

    def degenerate_teacher(self) -> list[Outcome]:
        """A teacher that says one sentence for everything (as the quickstart's did after
        too few updates on a slow CPU): learnt from a corpus whose targets are all it."""
        corpus = self.work / "many"  # 400 varied sources, as a real corpus would be
        corpus.mkdir()
        words = sorted({w for s, _ in PAIRS for w in s.split()})
        lines = [
            " ".join(words[(i * 7 + k) % len(words)] for k in range(3 + i % 5)) for i in range(400)
        ]
        for split in ("train", "val", "test_2016_flickr"):
            (corpus / f"{split}.en").write_text("".join(f"{s}\n" for s in lines))
            (corpus / f"{split}.de").write_text("ein mann in einem .\n" * len(lines))
        weak = self.work / "weak-run"
        args = self.train_args(weak, 60)
        args[args.index(f"data.data_dir={self.corpus}")] = f"data.data_dir={corpus}"
        self.nmt("train", *args, check=True)
        out = self.work / "weak-distilled"
        args = ["distill", "--teacher", str(weak), "--data", str(corpus), "-o", str(out)]
        args += ["--beam", "1"]
        done = self.nmt(*args)
        if (out / "train.de").is_file():
            kept = (out / "train.de").read_text().splitlines()
            top = max(set(kept), key=kept.count) if kept else ""
            share = kept.count(top) / max(len(kept), 1)
            effect = f"{len(kept)} lines kept, {share:.0%} of them {top[:30]!r}"
        else:
            effect = "no distilled corpus written"
        return [self.outcome("8. degenerate teacher -> distill", args, done, effect)]

    def smaller(self) -> list[Outcome]:
        results = []
        empty = self.work / "cwd"
        empty.mkdir()
        done = self.nmt("train", cwd=empty)
        left = sorted(str(p.relative_to(empty)) for p in empty.rglob("*"))
        effect = f"left behind: {', '.join(left) or 'nothing'}"
        results.append(self.outcome("9. nmt-train, no arguments", ["train"], done, effect))
        args = ["train", *self.train_args("", 5)]
        done = self.nmt(*args, cwd=empty)
        left = sorted(p.name for p in empty.iterdir())
        effect = f"current folder now holds {len(left)} entries"
        results.append(self.outcome('9. run_dir: ""', ['train --set run_dir=""'], done, effect))
        shutil.rmtree(empty)
        results.append(self.resume_counts())
        fresh = self.work / "count-full"  # trained under umask 022 (see `nmt`)
        modes = {oct(p.stat().st_mode & 0o777) for p in fresh.glob("*") if p.is_file()}
        effect = f"modes of the run's files: {', '.join(sorted(modes))}"
        results.append(Outcome("9. umask 022", "(the files of a new run)", "", "", effect))
        long_out = self.work / ("m" * 250)
        args = ["export", str(self.run_dir), "-o", str(long_out)]
        done = self.nmt(*args)
        effect = "exported" if long_out.is_dir() else "not exported"
        shown = ["export", "run", "-o", "m" * 12 + "...(250 chars)"]
        results.append(self.outcome("9. a 250-character -o name", shown, done, effect))
        return results

    def resume_counts(self) -> Outcome:
        full, part = self.work / "count-full", self.work / "count-part"
        self.nmt("train", *self.train_args(full, 30), check=True)
        self.nmt("train", *self.train_args(part, 13), check=True)
        (part / "summary.json").unlink()
        self.nmt("train", *self.train_args(part, 30), "--resume", check=True)
        a, b = (json.loads((r / "summary.json").read_text()) for r in (full, part))

        def losses(run: Path) -> list[float]:
            records = map(json.loads, (run / "log.jsonl").read_text().splitlines())
            return [r["loss"] for r in records if r["type"] == "train"]

        same = losses(full) == losses(part)
        effect = (
            f"target tokens {b['target_tokens']} resumed vs {a['target_tokens']} uninterrupted;"
            f" logged losses {'identical' if same else '**differ**'}"
        )
        return Outcome("9. resume counters", "train 13 steps, --resume to 30", "", "", effect)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def restore(folder: Path, content: dict[str, bytes]) -> None:
    """Put `folder` back as it was (`files` of it), so that the next probe starts from the
    same files: what a probe added goes, what it deleted or changed comes back."""
    for path in sorted(folder.rglob("*"), reverse=True):
        name = str(path.relative_to(folder))
        if path.is_file() and name not in content:
            path.unlink()
        elif path.is_dir() and not any(k.startswith(f"{name}/") for k in content):
            shutil.rmtree(path)
    for name, data in content.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)


HOSTILE = """
import os, sys, torch
class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {sys.argv[3]}",))
with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):  # our own run
    state = torch.load(sys.argv[1], weights_only=True)
state["note"] = Payload()
torch.save(state, sys.argv[2])
"""

BIG = """
import sys, dataclasses, torch
from nmt.config import ModelConfig
from nmt.model import Transformer
with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):  # our own run
    state = torch.load(sys.argv[1], weights_only=True)
vocab = state["model_config"]["vocab_size"]
config = ModelConfig(vocab_size=vocab, d_model=768, heads=8, ffn=3072, enc_layers=6,
                     dec_layers=6, max_positions=64)
state["model_config"] = dataclasses.asdict(config)
state["model"] = Transformer(config).state_dict()
state["run_config"]["model"] = state["model_config"]
for key in ("optimizer", "scheduler", "scaler", "rng", "data", "train_state"):
    state.pop(key, None)
torch.save(state, sys.argv[2])
"""


def table(before: list[Outcome] | None, after: list[Outcome]) -> str:
    rows = []
    if before is None:
        rows.append("| probe | command | exit | stderr | effect |")
        rows.append("|---|---|---|---|---|")
        for a in after:
            rows.append(
                f"| {a.probe} | `{a.command}` | {a.exit} | {_cell(a.stderr)} | {a.effect} |"
            )
        return "\n".join(rows)
    rows.append("| probe | command | before: exit, stderr, effect | after: exit, stderr, effect |")
    rows.append("|---|---|---|---|")
    for b, a in zip(before, after, strict=True):
        rows.append(
            f"| {a.probe} | `{a.command}` | {b.exit} · {_cell(b.stderr)} · {b.effect} "
            f"| {a.exit} · {_cell(a.stderr)} · {a.effect} |"
        )
    return "\n".join(rows)


def _cell(text: str) -> str:
    return f"`{text.replace('|', '/').replace('`', '')}`" if text else "(none)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, help="a checkout of the old code to compare with")
    p.add_argument(
        "--after", type=Path, default=REPO, help="the code to probe (default: this checkout)"
    )
    p.add_argument("-o", "--output", type=Path, help="markdown file (default: stdout)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostile."))
    try:
        before = None
        if args.before:
            before = Probes(args.before.resolve(), work / "before").all()
        after = Probes(args.after.resolve(), work / "after").all()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    text = f"{table(before, after)}\n\nMachine: {machine}; {when}.\n"
    if args.output:
        args.output.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
