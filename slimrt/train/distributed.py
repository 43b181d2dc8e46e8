"""Data-parallel training under ``torchrun``: process-group setup, DDP wrapping, batch sharding, metric reduction.

The same ``slimrt train`` command runs single-process or as ``torchrun --nproc_per_node=N -m slimrt train ...``.
Every rank draws the *same* global batch (same seeded permutation and augmentation generator, same sub-net
sampler seed) and keeps its own slice of it (:func:`shard`); DDP averages the gradients, so N ranks take the
step one process would take with per-slice BatchNorm statistics. Only the main rank writes files.

Everything here is a no-op when the torchrun environment variables are absent (``WORLD_SIZE`` unset or 1).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimrt.errors import ConfigError

__all__ = [
    "DistInfo",
    "init_distributed",
    "current",
    "device_for",
    "wrap",
    "unwrap",
    "shard",
    "all_reduce_sum",
    "reduce_metrics",
    "broadcast_object",
    "barrier",
    "cleanup",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes (1 when not distributed).
        local_rank: rank on this machine (picks the GPU).
        is_main: True on rank 0, the only rank that logs progress and writes files.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    is_main: bool = True

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


_SINGLE = DistInfo()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def current() -> DistInfo:
    """The :class:`DistInfo` of the initialised process group, or the single-process one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return _SINGLE
    rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, world, _env_int("LOCAL_RANK", rank), rank == 0)


def init_distributed(device: str = "cpu", backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_*`` variables.

    Without those variables (or with ``WORLD_SIZE=1``) nothing is initialised and rank 0 of 1 is returned.
    Calling it again after the group is up returns the current info.

    Args:
        device: ``"cpu"`` or ``"cuda"``; picks the backend (gloo / NCCL) and, on CUDA, the GPU ``cuda:LOCAL_RANK``.
        backend: force a backend (``"gloo"``, ``"nccl"``).
        timeout_s: collective timeout.

    Raises:
        ConfigError: inconsistent environment, or NCCL asked for without CUDA.
    """
    import torch.distributed as dist

    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return _SINGLE
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    if dist.is_initialized():
        return current()
    rank = _env_int("RANK", -1)
    local_rank = _env_int("LOCAL_RANK", rank)
    if not 0 <= rank < world:
        raise ConfigError(f"RANK must be in [0, {world}) when WORLD_SIZE={world}, got {rank}; launch with torchrun")
    on_cuda = str(device).startswith("cuda")
    if backend is None:
        backend = "nccl" if on_cuda else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ConfigError("the NCCL backend needs CUDA; use --device cpu (gloo) on this machine")
        torch.cuda.set_device(local_rank % max(1, torch.cuda.device_count()))
    dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=_dt.timedelta(seconds=timeout_s))
    log.info("distributed: rank %d of %d (local %d), backend %s", rank, world, local_rank, backend)
    return DistInfo(rank, world, local_rank, rank == 0)


def device_for(info: DistInfo, device: str) -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` for CUDA runs, else ``device`` as given."""
    if str(device).startswith("cuda") and info.enabled and torch.cuda.is_available():
        return torch.device("cuda", info.local_rank % torch.cuda.device_count())
    return torch.device(device)


def wrap(net: nn.Module, info: DistInfo | None = None) -> nn.Module:
    """Wrap ``net`` in DistributedDataParallel when distributed, else return it unchanged.

    Call the *returned* module for forward passes (its backward all-reduces gradients) and keep selecting
    sub-nets on the inner network (``net.use(spec)``): the width state lives in ``net``'s layers, which the
    wrapper shares. DDP broadcasts rank 0's parameters and buffers at construction, so every rank starts
    equal. Every parameter must take part in each backward (true for sub-nets: slices still get gradients).
    """
    info = info or current()
    if not info.enabled:
        return net
    from torch.nn.parallel import DistributedDataParallel

    dev = next(net.parameters()).device
    ids = [dev.index] if dev.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (or ``module`` itself)."""
    return getattr(module, "module", module) if type(module).__name__ == "DistributedDataParallel" else module


def shard(*tensors: torch.Tensor, info: DistInfo | None = None) -> tuple[torch.Tensor, ...]:
    """This rank's contiguous slice of each global-batch tensor (rank r of N takes the r-th of N near-equal parts).

    Every rank must draw the same global batch (same generator seed) before sharding. When the batch has fewer
    rows than ranks, some ranks get an empty slice; callers should then skip the step on every rank (use
    ``drop_last`` or a global batch of at least ``world_size``).
    """
    info = info or current()
    if not info.enabled:
        return tensors
    return tuple(torch.tensor_split(t, info.world_size)[info.rank] for t in tensors)


def all_reduce_sum(values: Mapping[str, float] | torch.Tensor | float, info: DistInfo | None = None) -> Any:
    """Sum a float, a tensor or a mapping of floats over all ranks (identity when not distributed)."""
    info = info or current()
    if isinstance(values, Mapping):
        keys = list(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        t = all_reduce_sum(t, info)
        return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}
    if not info.enabled:
        return values
    import torch.distributed as dist

    is_tensor = isinstance(values, torch.Tensor)
    t = values.detach().clone() if is_tensor else torch.tensor(float(values), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    if is_tensor:
        return t.to(values.device)
    return float(t.item())


def reduce_metrics(
    sums: Mapping[str, float], count_key: str = "count", info: DistInfo | None = None
) -> dict[str, float]:
    """Sum per-rank totals (e.g. ``{"correct": 91, "loss": 12.3, "count": 100}``) and divide by the global count.

    Returns every key except ``count_key`` as a global mean, plus ``count_key`` as the global count.
    """
    total = all_reduce_sum(dict(sums), info)
    n = total.get(count_key, 0.0)
    out = {k: (v / n if n else 0.0) for k, v in total.items() if k != count_key}
    out[count_key] = n
    return out


def broadcast_object(obj: Any, info: DistInfo | None = None, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (e.g. a search decision); identity when not distributed."""
    info = info or current()
    if not info.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(info: DistInfo | None = None) -> None:
    """Wait for every rank (no-op when not distributed)."""
    info = info or current()
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def cleanup() -> None:
    """Leave the process group if one was initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
