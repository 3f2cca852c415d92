#!/usr/bin/env python
"""Memory allocators side by side: glibc malloc, TCMalloc, mimalloc and jemalloc under nmt.

PyTorch on the CPU allocates and frees large tensors every step, so the allocator a process runs
under changes its speed and its memory. This harness runs the same short workloads under each
allocator, one fresh subprocess per run with the library in LD_PRELOAD (nothing preloaded for
glibc) and NMT_ALLOCATOR=system, so that nmt-train's own re-exec under TCMalloc
(nmt/allocator.py) does not override the choice. Workloads (see WORKLOADS):

- `tiny-fp32`, `tiny-bf16`: nmt-train on Multi30k, models/multi30k-tiny.yaml (4+4 layers,
  d_model 128, FFN 256), train.precision fp32 or bf16 autocast;
- `small-fp32`, `small-bf16`: the same with models/multi30k-small.yaml (3+3 layers, d_model 256,
  FFN 1024, the shape of train_speed_eole.py);
- `translate`: nmt-translate, PyTorch backend, beam 4, over the first 500 lines of
  test_2016_flickr.en with the committed models/multi30k-tiny/s1 (the distillation workload).

Training is budgeted in updates (`--steps`, logged every `--log-every`); its figure is the mean
target tokens/s of the logged intervals after the first (warm-up: start-up, data loading,
allocator growth). Translation reports lines/s end to end and without start-up (a one-line run
under the same allocator measures the start-up). Every run also gives its peak RSS (wait4 on the
child) and wall seconds. The allocators take turns on each workload, in an order rotated per
repeat, so drift in the machine's load hits all of them alike; each run records how many cores
other processes kept busy meanwhile.

An allocator whose library is missing is reported as not installed, with its install command.
Run from the repo root on otherwise idle cores (2 threads; the default run, 4 allocators x 5
workloads, takes about half an hour a repeat on 2 cores of an AVX-512 CPU; `--quick` only
checks that every cell runs)::

    python benchmarks/allocators.py
    python benchmarks/allocators.py --repeats 2 --allocators glibc,tcmalloc,mimalloc,jemalloc-tuned
    python benchmarks/allocators.py --quick --workloads tiny-fp32,translate --out /tmp/alloc

Writes `results.json` and `README.md` to `--out` (default benchmarks/results/allocators/).
"""

from __future__ import annotations

import argparse
import ctypes.util
import datetime as dt
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_speed_eole as speed  # noqa: E402  (machine-load probes shared with that harness)

from nmt import machine  # noqa: E402
from nmt.allocator import find_tcmalloc  # noqa: E402
from nmt.fileio import atomic_write_text  # noqa: E402

log = logging.getLogger("allocators")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = speed.DEFAULT_DATA_DIR
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "allocators"
SPM_MODEL = REPO_ROOT / "models" / "multi30k-tiny" / "spm.model"  # 8k joint, both shapes
TRANSLATE_MODEL = REPO_ROOT / "models" / "multi30k-tiny" / "s1"
TRANSLATE_BEAM = 4
BASELINE = "glibc"
QUICK = {"steps": 6, "log_every": 2, "batch_tokens": 1024, "lines": 20}  # --quick

# --------------------------------------------------------------------------------------------
# Allocators

_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")


def _system_lib(*names: str) -> list[str]:
    """Paths of a shared library under the usual system folders, then ld.so's own search."""
    found = [f"{d}/{n}" for n in names for d in _LIB_DIRS if Path(d, n).is_file()]
    for n in names:
        stem = n.removeprefix("lib").split(".so")[0]
        lib = ctypes.util.find_library(stem)
        if lib:
            found.append(lib)
    return found


def _mimalloc_wheel() -> list[str]:
    """libmimalloc from the `cmeel-mimalloc` wheel in this Python's site-packages."""
    lib = Path(sysconfig.get_paths()["platlib"]) / "cmeel.prefix" / "lib"
    return [str(p) for p in sorted(lib.glob("libmimalloc.so*"), key=lambda p: len(p.name))[:1]]


def _tcmalloc() -> list[str]:
    path = find_tcmalloc()
    return [path] if path else []


# mimalloc's documented settings for speed (docs: environment.html): commit the arenas it
# reserves at once (only the commit charge grows, not the RSS) and let them use 2 MiB pages.
MIMALLOC_TUNED = {"MIMALLOC_ARENA_EAGER_COMMIT": "1", "MIMALLOC_ALLOW_LARGE_OS_PAGES": "1"}
# The MALLOC_CONF that PyTorch's CPU performance guides (Intel's launcher) give for jemalloc:
# background purging, no decay of dirty pages, large objects in their own extents.
JEMALLOC_TUNED = {
    "MALLOC_CONF": "oversize_threshold:1,background_thread:true,metadata_thp:auto,"
    "dirty_decay_ms:9000000000,muzzy_decay_ms:9000000000"
}


@dataclass(frozen=True)
class Allocator:
    """One allocator setting: where its library may lie, the environment it runs with."""

    name: str
    find: Any = None  # () -> list of candidate library paths; None: glibc, nothing preloaded
    env: dict[str, str] = field(default_factory=dict)
    install: str = ""
    note: str = ""

    def library(self) -> str | None:
        return next(iter(self.find()), None) if self.find else None


ALLOCATORS = {
    a.name: a
    for a in (
        Allocator("glibc", note="the system malloc, nothing preloaded"),
        Allocator(
            "tcmalloc",
            _tcmalloc,
            install="apt-get install libtcmalloc-minimal4",
            note="what nmt-train preloads by default",
        ),
        Allocator(
            "mimalloc",
            lambda: _mimalloc_wheel() or _system_lib("libmimalloc.so.2"),
            MIMALLOC_TUNED,
            install="pip install cmeel-mimalloc (mimalloc 3), or apt-get install libmimalloc2.0",
            note="documented settings for speed",
        ),
        Allocator(
            "mimalloc-default",
            lambda: _mimalloc_wheel() or _system_lib("libmimalloc.so.2"),
            install="pip install cmeel-mimalloc",
            note="library defaults",
        ),
        Allocator(
            "mimalloc2",
            lambda: _system_lib("libmimalloc.so.2"),
            MIMALLOC_TUNED,
            install="apt-get install libmimalloc2.0",
            note="Debian's mimalloc 2, documented settings for speed",
        ),
        Allocator(
            "jemalloc",
            lambda: _system_lib("libjemalloc.so.2"),
            install="apt-get install libjemalloc2 (no maintained jemalloc wheel on PyPI)",
            note="library defaults",
        ),
        Allocator(
            "jemalloc-tuned",
            lambda: _system_lib("libjemalloc.so.2"),
            JEMALLOC_TUNED,
            install="apt-get install libjemalloc2",
            note="MALLOC_CONF of PyTorch's CPU performance guides",
        ),
    )
}
DEFAULT_ALLOCATORS = "glibc,tcmalloc,mimalloc,jemalloc"


def library_version(path: str) -> str:
    """Where a library came from and its version: the pip wheel or the Debian package."""
    if "cmeel.prefix" in path:
        try:
            return f"pip cmeel-mimalloc {metadata.version('cmeel-mimalloc')}"
        except metadata.PackageNotFoundError:
            pass
    for candidate in (path, os.path.realpath(path)):
        try:
            owner = subprocess.run(
                ["dpkg-query", "-S", candidate], capture_output=True, text=True, timeout=30
            )
            if owner.returncode != 0:
                continue
            package = owner.stdout.split(":", 1)[0].strip()
            version = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", package],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            return f"apt {package} {version}"
        except (OSError, subprocess.SubprocessError):
            break
    return f"unknown ({os.path.basename(os.path.realpath(path))})"


def preload_check(library: str, env: dict[str, str]) -> bool:
    """Whether a Python started with this environment really maps `library`."""
    code = "import sys; sys.stdout.write(open('/proc/self/maps').read())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    return os.path.realpath(library) in out


def allocator_env(alloc: Allocator, library: str | None, threads: int) -> dict[str, str]:
    """The child environment: threads pinned, nmt's own allocator switch off, `library` alone
    preloaded, and only this allocator's tuning variables set."""
    env = dict(os.environ)
    for name in ("LD_PRELOAD", "MALLOC_CONF", *MIMALLOC_TUNED):
        env.pop(name, None)
    env.update(machine.thread_environment(threads))
    env.update(CUDA_VISIBLE_DEVICES="", TOKENIZERS_PARALLELISM="false", NMT_ALLOCATOR="system")
    if library:
        env["LD_PRELOAD"] = library
    env.update(alloc.env)
    return env


def resolve_allocators(names: list[str], threads: int) -> dict[str, dict[str, Any]]:
    """Each allocator's library, version and environment, or why it cannot run."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        alloc = ALLOCATORS[name]
        library = alloc.library()
        info: dict[str, Any] = {"note": alloc.note, "env": alloc.env}
        if alloc.find and library is None:
            info.update(installed=False, install=alloc.install)
            log.warning("%s: not installed (%s)", name, alloc.install)
        else:
            env = allocator_env(alloc, library, threads)
            ok = library is None or preload_check(library, env)
            info.update(
                installed=ok,
                library=library,
                realpath=os.path.realpath(library) if library else None,
                version=library_version(library)
                if library
                else os.confstr("CS_GNU_LIBC_VERSION") or "glibc",
            )
            if not ok:
                info["install"] = f"{library} did not load under LD_PRELOAD; {alloc.install}"
                log.warning("%s: %s", name, info["install"])
            else:
                log.info("%s: %s (%s)", name, library or "no preload", info["version"])
        out[name] = info
    return out


# --------------------------------------------------------------------------------------------
# Workloads


@dataclass(frozen=True)
class Workload:
    name: str
    config: str = ""  # nmt-train run config; empty: the translation workload
    precision: str = ""


WORKLOADS = {
    w.name: w
    for w in (
        Workload("tiny-fp32", "models/multi30k-tiny.yaml", "fp32"),
        Workload("tiny-bf16", "models/multi30k-tiny.yaml", "bf16"),
        Workload("small-fp32", "models/multi30k-small.yaml", "fp32"),
        Workload("small-bf16", "models/multi30k-small.yaml", "bf16"),
        Workload("translate"),
    )
}


def run_child(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float) -> dict:
    """Run `cmd` with its output in `log_path`; its wall and CPU seconds, its peak RSS (wait4,
    so this child's alone) and the mean number of cores other processes kept busy meanwhile."""
    log.info("running: %s", shlex.join(cmd))
    busy0 = speed.machine_busy_s()
    t0 = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    busy1 = speed.machine_busy_s()
    cpu = usage.ru_utime + usage.ru_stime
    other = None if busy0 is None or busy1 is None else max(0.0, busy1 - busy0 - cpu) / wall
    result = {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "other_cores": None if other is None else round(other, 2),
        "log": str(log_path),
    }
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        raise RuntimeError(f"exit code {proc.returncode}: " + "\n".join(tail))
    return result


def run_train(w: Workload, env: dict[str, str], args: argparse.Namespace, work: Path) -> dict:
    run_dir = work / "run"
    sets = {
        "run_dir": run_dir,
        "tokenizer.model": SPM_MODEL,
        "train.max_steps": args.steps,
        "train.max_minutes": 0,
        "train.log_every": args.log_every,
        "train.threads": args.threads,
        "train.precision": w.precision,
        "train.valid_bleu": "false",
        "train.valid_every": 10**9,
        "train.save_every": 10**9,
        "train.average_last": 0,
    }
    if args.batch_tokens:
        sets["train.batch_tokens"] = args.batch_tokens
    cmd = [sys.executable, "-m", "nmt", "train", "--config", w.config]
    cmd += ["--data-dir", str(args.data_dir)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    stats = run_child(cmd, env, work / "stdout.log", args.timeout)
    records = speed.train_records(run_dir / "log.jsonl")
    if len(records) < 2:
        raise RuntimeError(f"{len(records)} logged intervals in {run_dir}; need at least 2")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    for checkpoint in run_dir.rglob("*.pt"):  # this run's own; ~100 MB each for small
        checkpoint.unlink()
    measured = records[1:]
    seconds = sum(r["tgt_tokens_per_update"] / r["tgt_tokens_per_s"] for r in measured)
    return {
        "value": statistics.fmean(r["tgt_tokens_per_s"] for r in measured),
        "unit": "tgt tok/s",
        "intervals_tok_s": [round(r["tgt_tokens_per_s"], 1) for r in records],
        "seconds_per_update": round(seconds / len(measured) / args.log_every, 3),
        "nmt_saw_allocator": summary.get("hardware", {}).get("allocator"),
        "loss_last": records[-1]["loss"],
        **stats,
    }


def run_translate(env: dict[str, str], args: argparse.Namespace, work: Path) -> dict:
    src = args.data_dir / "test_2016_flickr.en"
    lines = src.read_text(encoding="utf-8").splitlines()[: args.lines]
    one, full = work / "one.en", work / "input.en"
    one.write_text(lines[0] + "\n", encoding="utf-8")
    full.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def cmd(inp: Path, out: Path) -> list[str]:
        return [
            *(sys.executable, "-m", "nmt", "translate", "-m", str(TRANSLATE_MODEL)),
            *("--backend", "pytorch", "--beam", str(TRANSLATE_BEAM)),
            *("--threads", str(args.threads), "-i", str(inp), "-o", str(out), "--force"),
        ]

    start = run_child(cmd(one, work / "one.de"), env, work / "startup.log", args.timeout)
    stats = run_child(cmd(full, work / "output.de"), env, work / "stdout.log", args.timeout)
    steady_s = stats["wall_s"] - start["wall_s"]
    return {
        "value": len(lines) / stats["wall_s"],
        "unit": "lines/s",
        "lines": len(lines),
        "startup_s": start["wall_s"],
        "lines_per_s_without_startup": (len(lines) - 1) / steady_s if steady_s > 0 else None,
        **stats,
    }


# --------------------------------------------------------------------------------------------
# Report


def summarise(runs: list[dict[str, Any]], allocs: list[str], workloads: list[str]) -> dict:
    """Per (workload, allocator): mean figure over repeats, ratio to glibc, peak RSS, wall."""
    cells: dict[str, dict[str, Any]] = {}
    for w in workloads:
        cells[w] = {}
        for a in allocs:
            ok = [r for r in runs if r["workload"] == w and r["allocator"] == a and "value" in r]
            errors = [
                r["error"]
                for r in runs
                if r["workload"] == w and r["allocator"] == a and "error" in r
            ]
            if not ok:
                cells[w][a] = {"errors": errors} if errors else None
                continue
            cells[w][a] = {
                "value": round(statistics.fmean(r["value"] for r in ok), 2),
                "unit": ok[0]["unit"],
                "values": [round(r["value"], 2) for r in ok],
                "peak_rss_mib": max(r["peak_rss_mib"] for r in ok),
                "wall_s": round(statistics.fmean(r["wall_s"] for r in ok), 1),
                "other_cores_max": max((r["other_cores"] or 0.0) for r in ok),
                "errors": errors,
            }
        base = cells[w].get(BASELINE)
        for cell in cells[w].values():
            if cell and "value" in cell and base and "value" in base:
                cell["ratio_to_glibc"] = round(cell["value"] / base["value"], 3)
    return cells


def write_readme(result: dict[str, Any], path: Path) -> None:
    s, hw, cells = result["settings"], result["hardware"], result["cells"]
    workloads, allocs = s["workloads"], list(result["allocators"])
    header = "| allocator | " + " | ".join(workloads) + " |"
    lines = [
        "# Memory allocators under nmt",
        "",
        f"Run {result['timestamp']} by `benchmarks/allocators.py`"
        + (" with `--quick` (a smoke run: figures mean nothing)" if s["quick"] else "")
        + ".",
        "",
        "Each cell: mean figure (training: target tokens/s after the first logged interval;"
        " translate: lines/s end to end), its ratio to glibc, and the peak RSS of the process.",
        "",
        header,
        "|---|" + "---:|" * len(workloads),
    ]
    for a in allocs:
        info = result["allocators"][a]
        if not info["installed"]:
            lines.append(f"| {a} | " + " | ".join(["not installed"] * len(workloads)) + " |")
            continue
        row = []
        for w in workloads:
            cell = cells[w].get(a)
            if not cell or "value" not in cell:
                row.append("failed" if cell else "-")
                continue
            ratio = cell.get("ratio_to_glibc")
            digits = 1 if cell["unit"] == "lines/s" else 0
            row.append(
                f"{cell['value']:,.{digits}f}"
                + (f" ({ratio:.2f}x)" if ratio else "")
                + f", {cell['peak_rss_mib']:,.0f} MiB"
            )
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    if "translate" in workloads:
        lines += ["", "Translation without start-up (lines/s; start-up s from a one-line run):", ""]
        for a in allocs:
            for r in result["runs"]:
                if r["allocator"] == a and r["workload"] == "translate" and "value" in r:
                    steady = r["lines_per_s_without_startup"]
                    figure = f"{steady:,.1f} lines/s" if steady else "n/a (start-up >= run)"
                    lines.append(f"- {a}: {figure}, start-up {r['startup_s']:.1f} s")
    busy = [r for r in result["runs"] if (r.get("other_cores") or 0) > speed.OTHER_CORES_WARN]
    if busy:
        lines += [
            "",
            f"**Warning:** other processes kept more than {speed.OTHER_CORES_WARN} cores busy"
            f" during {len(busy)} of {len(result['runs'])} runs (see results.json, other_cores):"
            " those figures are low.",
        ]
    lines += ["", "## Allocators", ""]
    for a, info in result["allocators"].items():
        if not info["installed"]:
            lines.append(f"- {a}: not installed; install with `{info['install']}`")
            continue
        env = " ".join(f"{k}={v}" for k, v in info["env"].items())
        lines.append(
            f"- {a}: {info['version']}, `{info['library'] or 'nothing preloaded'}`"
            + (f", `{env}`" if env else "")
            + f" ({info['note']})"
        )
    lines += [
        "",
        "## Setup",
        "",
        f"- CPU: {machine.describe_cpu(hw)}; {hw['platform']}",
        f"- torch {result['versions'].get('torch')}, nmt {result['versions'].get('nmt')},"
        f" Python {hw['python']}",
        f"- Threads: {s['threads']} (OMP/MKL/OPENBLAS_NUM_THREADS, train.threads, --threads)",
        f"- Training: {s['steps']} updates, logged every {s['log_every']}, first interval left"
        f" out; batch tokens {s['batch_tokens'] or 'as in the config'}; Multi30k en->de,"
        f" tokenizer {s['spm_model']}",
        f"- Translation: {s['lines']} lines of test_2016_flickr.en, {s['translate_model']},"
        f" PyTorch backend, beam {TRANSLATE_BEAM}",
        f"- Repeats: {s['repeats']}, allocators in turn on each workload, order rotated per repeat",
        "- Every child: a fresh process, NMT_ALLOCATOR=system, the allocator in LD_PRELOAD",
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--allocators",
        default=DEFAULT_ALLOCATORS,
        help=f"comma-separated, of: {', '.join(ALLOCATORS)}",
    )
    p.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, of: {', '.join(WORKLOADS)}",
    )
    p.add_argument("--repeats", type=int, default=1, help="rounds over all allocators")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=80, help="training updates a run")
    p.add_argument("--log-every", type=int, default=10, help="updates per logged interval")
    p.add_argument("--batch-tokens", type=int, default=0, help="0: the config's (4096)")
    p.add_argument("--lines", type=int, default=500, help="lines to translate")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK} where not given",
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for results.json, README.md"
    )
    p.add_argument("--work-dir", type=Path, default=None, help="scratch (default: a temp folder)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per run")
    args = p.parse_args(argv)
    for name, value in QUICK.items() if args.quick else ():
        if getattr(args, name) == p.get_default(name):  # an explicit option still wins
            setattr(args, name, value)
    for option, names, known in (
        ("--allocators", args.allocators, ALLOCATORS),
        ("--workloads", args.workloads, WORKLOADS),
    ):
        unknown = [n for n in names.split(",") if n not in known]
        if unknown:
            p.error(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.steps < 2 * args.log_every:
        p.error("--steps must cover at least two logged intervals (the first is warm-up)")
    args.data_dir = args.data_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    names, workloads = args.allocators.split(","), args.workloads.split(",")
    allocs = resolve_allocators(names, args.threads)
    ready = [n for n in names if allocs[n]["installed"]]
    work_root = args.work_dir or Path(tempfile.mkdtemp(prefix="nmt_allocators_"))
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        order = ready[repeat % len(ready) :] + ready[: repeat % len(ready)] if ready else []
        for wname in workloads:
            for aname in order:
                alloc = ALLOCATORS[aname]
                env = allocator_env(alloc, allocs[aname]["library"], args.threads)
                work = work_root / f"r{repeat}" / wname / aname
                work.mkdir(parents=True, exist_ok=True)
                run: dict[str, Any] = {"allocator": aname, "workload": wname, "repeat": repeat}
                try:
                    if WORKLOADS[wname].config:
                        run.update(run_train(WORKLOADS[wname], env, args, work))
                    else:
                        run.update(run_translate(env, args, work))
                    log.info(
                        "%s / %s: %.1f %s, peak RSS %.0f MiB, %.1f s",
                        wname,
                        aname,
                        run["value"],
                        run["unit"],
                        run["peak_rss_mib"],
                        run["wall_s"],
                    )
                except (RuntimeError, OSError, ValueError, KeyError) as e:
                    run["error"] = str(e)
                    log.error("%s / %s failed: %s", wname, aname, e)
                runs.append(run)

    hw = machine.hardware("cpu")
    hw.pop("allocator", None)  # this parent's, not the children's
    result = {
        "benchmark": "memory allocators under nmt, CPU",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hw,
        "versions": machine.versions(),
        "settings": {
            "threads": args.threads,
            "steps": args.steps,
            "log_every": args.log_every,
            "batch_tokens": args.batch_tokens,
            "lines": args.lines,
            "beam": TRANSLATE_BEAM,
            "repeats": args.repeats,
            "quick": args.quick,
            "workloads": workloads,
            "spm_model": str(SPM_MODEL.relative_to(REPO_ROOT)),
            "translate_model": str(TRANSLATE_MODEL.relative_to(REPO_ROOT)),
            "data_dir": str(args.data_dir),
            "warmup_intervals_excluded": 1,
        },
        "allocators": allocs,
        "cells": summarise(runs, ready, workloads),
        "runs": runs,
        "total_wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(result, indent=2) + "\n")
    write_readme(result, args.out / "README.md")
    log.info("wrote %s/results.json and README.md in %.0f s", args.out, result["total_wall_s"])
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
