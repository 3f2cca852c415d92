"""Training on several processes: the process group that `torchrun` describes, and the few
collectives the trainer needs.

`torchrun --nproc_per_node N -m nmt train ...` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; `init` joins them into a process group: NCCL on
CUDA (process LOCAL_RANK drives GPU LOCAL_RANK), gloo on CPU. Without those variables (plain
`nmt-train`, or torchrun with one process) there is no group: `world_size()` is 1, `rank()`
0, and every helper here returns its input unchanged, so one process runs exactly the
single-process code.

Small things (stop flags, the tokenizer, the resume state, RNG states) travel over a gloo
group on the CPU, also next to NCCL: they never wait on a GPU's queue, and gloo's timeout
(30 minutes) covers rank 0 validating or writing a checkpoint while the others wait.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

_cpu_group: Any = None  # the gloo group for objects and flags; None: the default group is gloo


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "auto") -> bool:
    """Join the process group of torchrun's environment (`device`: train.device, which picks
    NCCL or gloo). False, and nothing done, outside torchrun or when a group exists already
    (whoever made that one ends it)."""
    global _cpu_group
    if not launched() or dist.is_initialized():
        return False
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank()))
        _cpu_group = dist.new_group(backend="gloo")
    else:
        dist.init_process_group("gloo")
        _cpu_group = None
    return True


def cleanup() -> None:
    """Leave the process group (if any)."""
    global _cpu_group
    if dist.is_initialized():
        dist.destroy_process_group()
    _cpu_group = None


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[None]:
    """`init` on entry, and `cleanup` on exit of the group this made."""
    started = init(device)
    try:
        yield
        barrier()  # a normal end: every rank is done before any tears the group down
    finally:
        if started:
            cleanup()


def rank() -> int:
    """This process's rank: in the process group, else as the launcher set it (known before
    the group exists, so that a CLI can quiet the other ranks' logging early), else 0."""
    if dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    """The number of processes in the group; 1 without one."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the process that validates, logs and writes the run folder."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_device(device: torch.device) -> torch.device:
    """`device`, with CUDA made this process's GPU (LOCAL_RANK) in a process group."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    if world_size() > 1:
        dist.barrier(group=_cpu_group)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the ranks, in place (on its device: NCCL for CUDA tensors)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def max_over_ranks(value: int) -> int:
    """The largest of every rank's `value`: a flag (0/1) raised on any rank, or a signal
    number received by any, so that all ranks decide alike at the same step."""
    if world_size() == 1:
        return value
    flag = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_cpu_group)
    return int(flag)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank `src`'s `obj` (picklable) on every rank; the others' `obj` is ignored."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_cpu_group)
    return box[0]


def gather_object(obj: Any) -> list[Any] | None:
    """Every rank's `obj`, by rank, on rank 0; None on the others."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size() if is_main() else None
    dist.gather_object(obj, gathered, dst=0, group=_cpu_group)
    return gathered


def on_main(fn: Callable[[], T]) -> T:
    """`fn()` run on rank 0 only, its result shared with every rank. An exception on rank 0
    is raised on every rank (the others get one of the same class and message), so that no
    rank waits for a result that will never come."""
    if world_size() == 1:
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as e:
            error = e
    described = error and (type(error).__module__, type(error).__qualname__, str(error))
    result, described = broadcast_object((result, described))
    if error is not None:
        raise error
    if described is not None:
        raise _rebuilt(*described)
    return result


def _rebuilt(module: str, name: str, message: str) -> Exception:
    """An exception of rank 0's class (a built-in one or nmt's own) with its message; any
    other class becomes a RuntimeError that names it."""
    if module == "builtins" or module.startswith("nmt."):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(message)
            except Exception:
                pass
    return RuntimeError(f"rank 0 failed: {name}: {message}")
