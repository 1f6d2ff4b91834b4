"""Process-group set-up for ``torchrun`` launches, shared by both bundles' ``multi_gpu_train.json``."""

from __future__ import annotations

import os

import ignite.distributed as idist
import torch
import torch.distributed as dist
from torch import nn

__all__ = ["init_distributed", "is_rank0", "local_device", "wrap_ddp"]


def init_distributed() -> bool:
    """Join the process group that ``torchrun`` describes (nccl on GPU, gloo on CPU).

    Returns ``True`` when running distributed. Calling it again, or without ``torchrun``, is harmless.
    """
    if dist.is_initialized():
        return True
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    # Ignite sets up its own distributed context lazily with a collective call; doing it here, on every
    # rank, keeps a handler that exists on rank 0 only (stats, TensorBoard) from hanging that rank.
    idist.sync()
    return True


def local_device() -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when GPUs exist, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def is_rank0() -> bool:
    """Whether this process writes files (checkpoints, logs, predictions)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def wrap_ddp(network: nn.Module, device: torch.device | str, find_unused_parameters: bool = False) -> nn.Module:
    """Move ``network`` to ``device`` and wrap it in ``DistributedDataParallel`` when distributed.

    ``find_unused_parameters`` is needed when some parameters get no gradient (the VKD baseline never
    uses its posterior head).
    """
    device = torch.device(device)
    network = network.to(device)
    if not dist.is_initialized():
        return network
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        network, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )
