"""The few multi-process facts shared by `flowhf reproduce` and the TRL baseline runners.

Launchers (``torchrun``, ``accelerate launch``) set ``RANK`` / ``WORLD_SIZE``; one process
(rank 0) writes files, every process trains. Helpers are no-ops in a single process.
"""

from __future__ import annotations

import os

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def process_group():
    """torch.distributed when a process group is initialised, else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def init_process_group() -> None:
    """(Re)build accelerate's process state when launched with several processes.

    Called before every `flowhf reproduce` stage: a finished TRL trainer can leave accelerate's
    shared state saying "one process" while the torch process group lives on, and the next
    trainer would then train (and write logs) as if it were alone.
    """
    if world_size() <= 1:
        return
    from accelerate import PartialState
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    dist = process_group()
    if dist is not None:
        dist.barrier()


def all_max(value: int) -> int:
    """The largest ``value`` over all processes (the value itself in a single process)."""
    dist = process_group()
    if dist is None:
        return value
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    tensor = torch.tensor([value], device=device, dtype=torch.long)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())
