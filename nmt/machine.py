"""What a measurement ran on: hardware, library versions, thread settings, memory probes.

Every benchmark record carries these, so that a number never travels without its machine.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("nmt", "torch", "ctranslate2", "onnxruntime", "sacrebleu", "sentencepiece", "numpy")
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "LD_PRELOAD",
    "NMT_BENCH_CPUS",
)


def thread_environment(threads: int) -> dict[str, str]:
    """Variables that pin the math libraries of a child process to `threads` threads."""
    return {name: str(threads) for name in THREAD_VARIABLES[:3]}


# The CPUs this process may use, read on import: before a cell pins itself (nmt.bench.cell
# pins right after importing this module), so that `hardware` describes the machine.
USABLE_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

# Set by the runner for a cell's process: the CPUs it is pinned to ("1" or "2,3").
PIN_VARIABLE = "NMT_BENCH_CPUS"


def cpus_to_pin(threads: int) -> list[int] | None:
    """The CPUs a cell of `threads` threads is pinned to: the last `threads` CPUs this
    process may use, leaving the first ones (where the system, the runner and other work
    land) to the rest of the machine; None when the cell needs them all or the platform
    cannot pin threads."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if threads >= len(allowed):
        return None
    return allowed[-threads:]


def pin_from_environment() -> list[int] | None:
    """Pin this process (and the threads it starts later) to the CPUs in PIN_VARIABLE;
    the CPUs it may run on afterwards (None where the platform cannot tell)."""
    value = os.environ.get(PIN_VARIABLE)
    if value and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu) for cpu in value.split(",")})
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def thread_cpus() -> list[int] | None:
    """The CPUs any thread of this process may run on (Linux; None elsewhere): after
    pinning, the proof that no library kept a thread outside the pinned CPUs."""
    cpus: set[int] = set()
    try:
        for task in Path("/proc/self/task").iterdir():
            for line in (task / "status").read_text(encoding="utf-8").splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    cpus |= _cpu_list(line.split(":", 1)[1])
    except (OSError, ValueError):
        return None
    return sorted(cpus) or None


def _cpu_list(text: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5}."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def cpu_jiffies(cpus: list[int] | None = None) -> tuple[int, int] | None:
    """(steal, total) time of `cpus` (all CPUs if None) since boot, in clock ticks, from
    /proc/stat (Linux; None elsewhere). Steal is time the hypervisor gave this virtual
    CPU's physical core to another machine: speed lost to neighbours, not to us."""
    wanted = {"cpu"} if cpus is None else {f"cpu{c}" for c in cpus}
    steal = total = 0
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] in wanted:
                    values = [int(v) for v in fields[1:9]]  # user .. softirq, steal
                    steal += values[7] if len(values) > 7 else 0
                    total += sum(values)
    except (OSError, ValueError):
        return None
    return (steal, total) if total else None


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the time between two `cpu_jiffies` readings that was stolen, in percent."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 2)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The instruction sets that decide CPU speed here: machines of one kind differ by them
# (AVX2 alone trains ~4x slower than AVX-512 with bf16 and AMX; int8 kernels differ too).
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_features() -> list[str]:
    """Those of CPU_FEATURES this CPU has (Linux /proc/cpuinfo; [] where unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [name for name in CPU_FEATURES if name in flags]
    except OSError:
        pass
    return []


def describe_cpu(hw: dict[str, Any]) -> str:
    """'AMD EPYC (2 CPUs; avx2)': the CPU of a hardware record, for reports."""
    cpus = hw.get("cpus_usable") or hw.get("cpus")
    features = hw.get("cpu_features")
    extra = f"; {', '.join(features)}" if features else ""
    return f"{hw.get('cpu')} ({cpus} CPUs{extra})"


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def allocator() -> str:
    """The memory allocator this process runs under: the one preloaded (nmt-train preloads
    TCMalloc when installed: nmt.allocator), else glibc's malloc."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if name in preload:
            return name
    return "glibc malloc"


def hardware(device: str) -> dict[str, Any]:
    """CPU model, its speed-deciding instruction sets, CPU counts, memory, OS and, on CUDA,
    the GPU."""
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "cpus": os.cpu_count(),
        "cpus_usable": USABLE_CPUS,  # the machine's, not the pinned cell's (record: cpus)
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "allocator": allocator(),
    }
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def versions() -> dict[str, str | None]:
    """Installed versions of the packages a measurement depends on (None: not installed)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# Switches of the engines and their math libraries: every variable so named is recorded.
ENGINE_PREFIXES = ("CT2_", "ORT_", "ONEDNN_", "DNNL_", "MKL_", "OMP_", "KMP_")


def environment() -> dict[str, str]:
    """The variables of this process that change how fast the engines run."""
    return {
        name: value
        for name, value in sorted(os.environ.items())
        if name in THREAD_VARIABLES or name.startswith(ENGINE_PREFIXES)
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process's own address
    space. Not `getrusage(RUSAGE_SELF).ru_maxrss`, which survives fork and exec: a child
    started from a parent holding 250 MB reports at least 250 MB, whatever it uses.
    """
    value = _proc_status_mb("VmHWM")
    if value is not None:
        return value
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def rss_mb() -> float | None:
    """Resident memory of this process now, in MiB (Linux; None elsewhere)."""
    return _proc_status_mb("VmRSS")


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


class CudaMemory:
    """GPU memory of one measurement: the device's used memory above what it was before
    the model was loaded (the CUDA context excluded; other processes on the GPU would be
    counted too), PyTorch's own peak allocation, and this process's usage as nvidia-smi
    reports it, where it can."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        torch.cuda.init()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.baseline = self._device_used()

    def _device_used(self) -> int:
        free, total = self.torch.cuda.mem_get_info()
        return total - free

    def report(self) -> dict[str, float | None]:
        self.torch.cuda.synchronize()
        return {
            "gpu_used_mb": round((self._device_used() - self.baseline) / 2**20, 1),
            "gpu_torch_peak_mb": round(self.torch.cuda.max_memory_allocated() / 2**20, 1),
            "gpu_process_mb": _nvidia_smi_process_mb(),
        }


def _nvidia_smi_process_mb() -> float | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        pid, _, used = (part.strip() for part in line.partition(","))
        if pid == str(os.getpid()) and used.endswith("MiB"):
            return float(used.removesuffix("MiB"))
    return None
