"""The probes of the second trust round (issue 32), mixed into `hostile_inputs.Probes`:
outputs landing on inputs or on a user's files, links followed out of a folder, data not
verified when read, non-finite settings, memory amplification, and errors that do not name
their file. Each probe records what happened to the files around it by their sha256."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def sha256s(*paths: Path) -> dict[str, str]:
    """The sha256 of every file under `paths` (files or folders), links not followed."""
    out = {}
    for path in paths:
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            if p.is_file() and not p.is_symlink():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def kept(before: dict[str, str], after: dict[str, str], what: str) -> str:
    changed = [k for k in before if after.get(k) != before[k]]
    if not changed:
        return f"{what}: every sha256 unchanged"
    return f"**{what}: {len(changed)} of {len(before)} files changed or deleted**"


class OutputProbes:
    """Mixed into `Probes` (which provides `work`, `run_dir`, `corpus`, `text`, `nmt`,
    `train_args`, `outcome`)."""

    def outputs_on_inputs(self) -> list:
        w, results = self.work, []
        # 1. a user's folder that looks like a distillation
        user = w / "u"
        (user / "shards" / "keep").mkdir(parents=True)
        (user / "stats.json").write_text('{"acc": 0.9}\n')
        (user / "shards" / "keep" / "a.txt").write_text("mine\n")
        before = sha256s(user)
        args = ["distill", "-t", str(w / "ct2"), "--data", str(self.corpus), "-o", str(user)]
        done = self.nmt(*args, "--beam", "1")
        effect = kept(before, sha256s(user), "user's folder")
        results.append(self.outcome("10. distill -o a folder with stats.json", args, done, effect))
        # 2. nmt-translate -o inside the model
        self.nmt("export", str(self.run_dir), "-o", str(w / "weights"), "--format", "safetensors")
        for original, inside in (
            (w / "ct2", "model.bin"),
            (self.run_dir, "last.pt"),
            (w / "weights", "model.safetensors"),
        ):
            model = w / "victims" / original.name  # a copy: the old code destroys it
            shutil.copytree(original, model)
            before = sha256s(model)
            args = ["translate", "-m", str(model), "-i", str(self.text), "-o", str(model / inside)]
            done = self.nmt(*args)
            effect = kept(before, sha256s(model), "model")
            results.append(self.outcome(f"11. translate -o MODEL/{inside}", args, done, effect))
        # 3. nmt-vmap --force over its own inputs
        for k, victim in enumerate(("train.en", "last.pt")):  # fresh copies for each
            src, run = w / "victims" / f"{k}.train.en", w / "victims" / f"vmap-run-{k}"
            shutil.copyfile(self.corpus / "train.en", src)
            shutil.copytree(self.run_dir, run)
            target = src if victim == "train.en" else run / "last.pt"
            before = sha256s(target)
            args = ["vmap", "--model", str(run), "--src", str(src)]
            args += ["--tgt", str(self.corpus / "train.de"), "-o", str(target), "--force"]
            done = self.nmt(*args)
            effect = kept(before, sha256s(target), target.name)
            results.append(self.outcome(f"12. vmap --force -o {target.name}", args, done, effect))
        return results

    def links_out_of_folders(self) -> list:
        """A run folder unpacked from someone else's archive: `.lock`, `train.log` or the
        marker a link to a file of the user's; then `nmt-train --resume` in it."""
        results = []
        victim = self.work / "victim.txt"
        for name in (".lock", "train.log", ".nmt-output.json"):
            run = self.work / f"linked-run{name}"
            shutil.copytree(self.run_dir, run, symlinks=True)
            if (run / name).exists() or (run / name).is_symlink():
                (run / name).unlink()
            victim.write_text("precious\n")
            (run / name).symlink_to(victim)
            before = sha256s(victim)
            args = ["train", *self.train_args(run, 50), "--resume"]
            done = self.nmt(*args)
            effect = kept(before, sha256s(victim), "the link's target")
            shown = ["train", "--set ... --resume", f"({name} a link to a user's file)"]
            results.append(self.outcome(f"13. {name} is a symlink", shown, done, effect))
        return results

    def non_finite_training(self) -> list:
        """Settings that trained a NaN model. NaN, infinite or out-of-range floats are
        refused before a run folder exists; a finite lr so large that the loss overflows
        stops the run in one line, and no checkpoint of the run (last.pt, best.pt,
        averaged.pt, checkpoints/step_N.pt) holds a NaN."""
        cases = [
            "train.lr=.inf",
            "train.lr=.nan",
            "train.lr=nan",  # a string to YAML
            "train.lr=1e999",  # a float overflow to Python
            "train.weight_decay=.nan",
            "train.weight_decay=-0.1",
            "model.layer_norm_eps=.nan",
            "model.layer_norm_eps=0",
            "model.layer_norm_eps=-1",
            "train.adam_eps=0",
            "train.beta2=1",
            "train.clip_norm=.inf",
            "train.lr=1e30",  # valid: the loss overflows after the first update
        ]
        results = []
        for i, setting in enumerate(cases):
            run = self.work / f"nonfinite-{i}"
            extra = ["train.warmup_steps=0", "train.valid_every=10", "train.average_last=2"]
            done = self.nmt("train", *self.train_args(run, 30, *extra, setting))
            shown = ["train", "--set", setting]
            results.append(self.outcome(f"14. {setting}", shown, done, _checkpoints(run)))
        return results

    def tampered_shard(self) -> list:
        """A prepared corpus whose shard was edited after nmt-prepare: a token id changed
        (the manifest's sha256 left alone), then one past the vocabulary with the manifest's
        sha256 edited to match; nmt-train on it, then nmt-prepare over it."""
        folder, config = self.work / "prepared", self.work / "prepare.yaml"
        config.write_text(
            f"output_dir: {folder}\ntokenizer:\n  model: {self.run_dir / 'spm.model'}\n"
            "prepare:\n  shard_lines: 16\n  max_tokens: 40\n  mixing: concat\n  dedup: false\n"
            f"  corpora:\n    - {{name: toy, path: {self.corpus / 'train'}}}\n"
        )
        self.nmt("prepare", "--config", str(config), check=True)
        shard = sorted((folder / "shards").glob("*.shard"))[1]
        made, manifest = shard.read_bytes(), (folder / "manifest.json").read_text()
        results = []
        for case, value, reseal in (
            ("token id edited", 5, False),
            ("id 1000 >= vocab 60", 1000, True),
        ):
            set_target_token(shard, value)
            if reseal:  # the manifest made to agree: only a bounds check can tell
                digest = hashlib.sha256(shard.read_bytes()).hexdigest()
                (folder / "manifest.json").write_text(
                    manifest.replace(hashlib.sha256(made).hexdigest(), digest)
                )
            run = self.work / f"tampered-run-{value}"
            args = ["train", *self.train_args(run, 30, f"data.prepared={folder}")]
            done = self.nmt(*args)
            effect = "**trained on it**" if (run / "last.pt").exists() else "not trained"
            shown = ["train", f"--set data.prepared=prepared ({shard.name}: {case})"]
            results.append(self.outcome(f"15. tampered shard: {case}", shown, done, effect))
            args = ["prepare", "--config", str(config)]
            done = self.nmt(*args)
            effect = "shard re-made" if shard.read_bytes() == made else "**edited shard kept**"
            results.append(self.outcome(f"15. tampered shard: {case}", args, done, effect))
            shard.write_bytes(made)
            (folder / "manifest.json").write_text(manifest)
        return results

    def memory_bounds(self) -> list:
        """Small inputs that demanded a large memory: a zip-bomb .pt (one record inflating
        to 4 GiB), a weights file whose metadata asks for 10**8 positions (under `ulimit -v
        2097152`, as the table alone would take 12 GiB), one 17.8 MB input line. Each
        command's own peak RSS comes from wait4."""
        w = self.work
        bomb = w / "bomb.pt"
        self.python(BOMB, str(self.run_dir / "last.pt"), str(bomb))
        weights = w / "huge-positions"
        args = ["export", str(self.run_dir), "-o", str(weights), "--format", "safetensors"]
        self.nmt(*args, check=True)
        self.python(HUGE_POSITIONS, str(weights / "model.safetensors"))
        long_line = w / "long-line.txt"
        long_line.write_text("a dog runs\n" + "a dog runs " * 1_620_000 + "\na cat sleeps\n")
        cases = [
            (
                f"zip-bomb .pt ({bomb.stat().st_size / 1e6:.1f} MB, 4 GiB inflated)",
                ["translate", "-m", str(bomb), "-i", str(self.text)],
                None,
            ),
            (
                "weights, max_positions 10**8 (ulimit -v 2 GiB)",
                ["translate", "-m", str(weights), "-i", str(self.text)],
                2 << 30,
            ),
            (
                f"a {long_line.stat().st_size / 1e6:.1f} MB input line",
                ["translate", "-m", str(self.run_dir), "-i", str(long_line)],
                None,
            ),
        ]
        results = []
        for name, args, limit in cases:
            done, effect = self.measured(args, limit)
            results.append(self.outcome(f"16. {name}", args, done, effect))
        return results

    def malformed_model_files(self) -> list:
        """Model files another program wrote or a hand edited: each should end in one line
        naming the file (and key), never in a traceback or a silent garbage translation.
        And an export on a full disk (RLIMIT_FSIZE, SIGXFSZ ignored: EFBIG as ENOSPC)
        should name its path."""
        w, results = self.work, []
        weights = w / "malformed-weights"
        args = ["export", str(self.run_dir), "-o", str(weights), "--format", "safetensors"]
        self.nmt(*args, check=True)
        stored = (weights / "model.safetensors").read_bytes()
        size = int.from_bytes(stored[:8], "little")
        header = json.loads(stored[8 : 8 + size])
        config = json.loads(header["__metadata__"]["model_config"])

        def safetensors(metadata: dict | None = None, relabel: bool = False) -> Callable:
            """Rewrite the weights' JSON header (a metadata value None deletes the key;
            `relabel`: embed.weight becomes the integers of its size, I16 for F16 bytes);
            the tensor bytes stay as they are."""

            def edit(folder: Path) -> None:
                changed = json.loads(json.dumps(header))
                for key, value in (metadata or {}).items():
                    changed["__metadata__"].pop(key)
                    if value is not None:
                        changed["__metadata__"][key] = value
                if relabel:
                    dtype = changed["embed.weight"]["dtype"]
                    changed["embed.weight"]["dtype"] = {"F32": "I32"}.get(dtype, "I16")
                raw = json.dumps(changed).encode()
                raw += b" " * (-len(raw) % 8)
                data = len(raw).to_bytes(8, "little") + raw + stored[8 + size :]
                (folder / "model.safetensors").write_bytes(data)

            return edit

        def rewrite(name: str, change: str | Callable[[dict], dict]) -> Callable:
            def edit(folder: Path) -> None:
                path = folder / name
                new = (
                    change
                    if isinstance(change, str)
                    else json.dumps(change(json.loads(path.read_text())))
                )
                path.write_text(new)

            return edit

        no_tokenizer = rewrite(
            "nmt_export.json", lambda i: {k: v for k, v in i.items() if k != "tokenizer"}
        )
        no_heads = rewrite(
            "nmt_export.json", lambda i: {**i, "model_config": {**i["model_config"], "heads": 0}}
        )
        huge = safetensors({"model_config": json.dumps({**config, "d_model": 10**9})})
        missing = safetensors({"tied": '[["output.weight", "nope"]]'})
        eos = rewrite("config.json", lambda c: {**c, "eos_token": "<zzz>"})
        cases = [
            ("weights: tied names a missing tensor", weights, missing),
            ("weights: no tokenizer_sha256", weights, safetensors({"tokenizer_sha256": None})),
            ("weights: model_config not JSON", weights, safetensors({"model_config": "{bad"})),
            ("weights: d_model 10**9", weights, huge),
            ("weights: embed.weight relabelled integers", weights, safetensors(relabel=True)),
            ("ct2: junk spm.model", w / "ct2", rewrite("spm.model", "junk" * 10)),
            ("ct2: nmt_export.json a list", w / "ct2", rewrite("nmt_export.json", "[1, 2]")),
            ("ct2: nmt_export.json without tokenizer", w / "ct2", no_tokenizer),
            ("ct2: config.json eos_token unknown", w / "ct2", eos),
            ("ct2: empty vocabulary", w / "ct2", rewrite("shared_vocabulary.json", "[]")),
            ("onnx: nmt_export.json heads 0", w / "onnx", no_heads),
        ]
        for k, (name, model, edit) in enumerate(cases):
            copy = w / f"malformed-{k}"
            shutil.copytree(model, copy)
            edit(copy)
            args = ["translate", "-m", str(copy), "-i", str(self.text)]
            done = self.nmt(*args)
            out = done.stdout.splitlines() if done.returncode == 0 else []
            blank = sum(not line.strip() for line in out)
            effect = f"**translated: {len(out)} lines, {blank} blank**" if out else "refused"
            results.append(self.outcome(f"17. {name}", args, done, effect))

        teacher, distilled = str(w / "ct2"), w / "malformed-distill"
        args = ["distill", "--teacher", teacher, "--data", str(self.corpus), "-o", str(distilled)]
        self.nmt(*args, "--beam", "1", check=True)
        (distilled / "raw.json").write_text('{"tool": "another program"}\n')
        done = self.nmt(*args, "--beam", "1")
        effect = "refused" if done.returncode else "distilled"
        results.append(self.outcome("17. distill: a foreign raw.json", args, done, effect))

        def full_disk() -> None:
            os.umask(0o022)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal kills it
            resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

        for fmt in ("ct2", "onnx", "safetensors"):
            out_dir = w / f"full-disk-{fmt}"
            args = ["export", str(self.run_dir), "-o", str(out_dir), "--format", fmt]
            done = self.nmt(*args, preexec_fn=full_disk)
            effect = "**published**" if out_dir.exists() else "nothing published"
            results.append(self.outcome(f"17. export {fmt} on a full disk", args, done, effect))
        return results

    def measured(self, args: list[str], limit: int | None = None):
        """Run `python -m nmt ARGS` (under RLIMIT_AS `limit`): its result, and its time and
        own peak RSS (wait4)."""

        def start() -> None:
            os.umask(0o022)
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        with tempfile.TemporaryFile("w+") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "nmt", *args],
                env=self.env,
                cwd=self.work,
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=start,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
            code = os.waitstatus_to_exitcode(status)
            err.seek(0)
            done = subprocess.CompletedProcess(proc.args, code, "", err.read())
        return done, f"{seconds:.1f} s, peak RSS {usage.ru_maxrss / 1024:,.0f} MB"


def set_target_token(shard: Path, value: int) -> None:
    """Set the last target token of a prepared shard to `value`, in place (the layout of
    nmt.prepare.shards' docstring: magic, header length, JSON header, then 8-byte-aligned
    arrays)."""
    data = bytearray(shard.read_bytes())
    length = int.from_bytes(data[8:16], "little")
    header = json.loads(data[16 : 16 + length])
    size = 2 if header["dtype"] == "uint16" else 4
    src = header["src_tokens"] * size
    at = 16 + length + 8 * (3 * header["pairs"] + 2) + src + -src % 8
    at += (header["tgt_tokens"] - 1) * size
    data[at : at + size] = value.to_bytes(size, "little")
    shard.write_bytes(bytes(data))


BOMB = """
import sys, zipfile
zeros = bytes(1 << 20)
with zipfile.ZipFile(sys.argv[1]) as a, zipfile.ZipFile(
    sys.argv[2], "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9
) as b:
    victim = next(n for n in a.namelist() if "/data/" in n)
    for name in a.namelist():
        if name != victim:
            b.writestr(a.getinfo(name), a.read(name))
            continue
        with b.open(name, "w", force_zip64=True) as record:
            for _ in range(4 * 1024):
                record.write(zeros)
"""

HUGE_POSITIONS = """
import json, sys
from safetensors import safe_open
from safetensors.torch import load_file, save_file
with safe_open(sys.argv[1], framework="pt") as f:
    metadata = f.metadata()
config = {**json.loads(metadata["model_config"]), "max_positions": 10**8}
metadata["model_config"] = json.dumps(config, sort_keys=True)
save_file(load_file(sys.argv[1]), sys.argv[1], metadata=metadata)
"""


def _checkpoints(run: Path) -> str:
    """Whether every checkpoint of `run` holds finite weights."""
    import torch

    if not run.exists():
        return "no run folder"
    bad, good = [], []
    for path in sorted(run.rglob("*.pt")):
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            weights = torch.load(path, weights_only=True, map_location="cpu")["model"]
        finite = all(bool(torch.isfinite(t).all()) for t in weights.values())
        (good if finite else bad).append(str(path.relative_to(run)))
    if bad:
        return f"**non-finite weights: {', '.join(bad)}**"
    return f"{len(good)} checkpoints, all finite" if good else "no checkpoint written"
