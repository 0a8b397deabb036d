"""Distributed data parallel under ``torchrun``: one process per rank, gloo on CPU, nccl on CUDA.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) everything here is a no-op on a single
process, so the same training code runs both ways. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["is_main_process", "DistContext", "setup_distributed", "teardown_distributed", "all_reduce_sum", "all_gather_objects", "barrier"]


def is_main_process() -> bool:
    """False only on the non-zero ranks of a torchrun job (only rank 0 prints summaries and writes reports)."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # this context joined the process group (and so leaves it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def setup_distributed(device: str = "auto") -> DistContext:
    """Join the process group that torchrun describes in the environment (if any) and pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = _pick_device(device, local_rank)
    owns = world_size > 1 and not dist.is_initialized()
    if owns:
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen, owns_group=owns)


def teardown_distributed(context: DistContext) -> None:
    """Leave the process group if :func:`setup_distributed` joined it."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Sum ``values`` over ranks (returns them unchanged on one process)."""
    if context.distributed:
        values = values.to(context.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values.cpu()


def all_gather_objects(value: object, context: DistContext) -> list[object]:
    """``[value of rank 0, value of rank 1, ...]`` on every rank."""
    if not context.distributed:
        return [value]
    gathered: list[object] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(context: DistContext) -> None:
    if context.distributed:
        dist.barrier()
