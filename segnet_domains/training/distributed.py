"""DistributedDataParallel under ``torchrun``: process group, device, rank-0 duties.

``torchrun --nproc_per_node N pipelines/atlas_lesion.py CONFIG`` (or any pipeline script) sets
``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; :func:`setup` then joins the group
(NCCL on CUDA, gloo on CPU), pins each process to ``cuda:LOCAL_RANK`` and the
engine uses a :class:`~torch.utils.data.DistributedSampler`, wraps the model
in DDP and lets rank 0 alone validate, log and write checkpoints. Without
``torchrun`` everything is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn

from segnet_domains.errors import InputError


@dataclass
class Context:
    """The process's place in the job.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes.
        device: the device this rank must use, or ``None`` to follow the config.
        initialized: this module started the process group (and will end it).
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP-wrap ``model`` when distributed (identity otherwise)."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()

    def mean(self, value: float) -> float:
        """Average a float over ranks."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        if torch_dist.get_backend() == "nccl":
            t = t.cuda()
        torch_dist.all_reduce(t)
        return float(t.item()) / self.world_size


def setup(device: str = "auto") -> Context:
    """Join the ``torchrun`` process group if there is one.

    Args:
        device: the training config's device. ``"cpu"`` trains on CPU with gloo even where CUDA exists;
            ``"auto"`` gives each process its own GPU (NCCL) when there are as many GPUs as processes on
            this node, else the CPU (gloo); ``"cuda"`` insists on one GPU per process.

    Raises:
        InputError: ``cuda`` was asked for but this node has fewer GPUs than processes.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(local + 1)))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    kind = torch.device(device).type if device != "auto" else ("cuda" if gpus >= per_node else "cpu")
    if kind == "cuda":
        if gpus < per_node:
            problem = f"{per_node} processes on this node but {gpus} GPU(s); use cpu or fewer processes"
            raise InputError("train.device", problem)
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    started = False
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend)
        started = True
    return Context(rank=rank, world_size=world, device=dev, initialized=started)


def teardown(ctx: Context) -> None:
    """End the process group this module started."""
    if ctx.initialized and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
