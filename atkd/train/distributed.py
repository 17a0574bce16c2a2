"""Data-parallel training over processes with torch.distributed (one process per GPU, or per CPU core set).

`atkd train` runs as one process, or under a launcher that sets the torch.distributed environment
(`torchrun --nproc_per_node N`, `accelerate launch --multi_gpu --num_processes N`, or SLURM's srun with
those variables): then every process holds the full student (and teacher), takes its share of each
optimizer step's global batch, and the gradients are summed over processes before the step. Because the
loss of every micro-batch is divided by the step's global target-token count, that sum is exactly the
gradient of the whole global batch, so the result does not depend on the number of processes (up to
floating-point summation order; +ATKD splits each micro-batch's own tokens, as with gradient
accumulation). Backend: NCCL on CUDA, gloo on CPU (which is how the tests run two processes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist


class Processes:
    """The processes of one training run: rank, count, and the collectives the loop needs."""

    def __init__(self) -> None:
        self.size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.size > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)

    @property
    def main(self) -> bool:
        """Whether this process writes files (logs, checkpoints, the final model)."""
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        """This process's device: its own GPU (LOCAL_RANK) when several processes share a machine."""
        if self.size > 1 and requested.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return requested

    def share(self, items: Sequence[Any]) -> list[Any]:
        """This process's share of a step's global batch (every size-th item, starting at its rank)."""
        if len(items) % self.size:
            raise ValueError(
                f"the global batch ({len(items)} examples) must be divisible by the {self.size} processes"
            )
        return list(items[self.rank :: self.size])

    def sum(self, value: float | int, device: torch.device) -> float:
        """The sum of a number over processes."""
        if self.size == 1:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def sum_gradients(self, model: torch.nn.Module) -> None:
        """Sum every parameter's gradient over processes (one flat all-reduce per dtype)."""
        if self.size == 1:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:  # a parameter this step did not reach still takes part in the sum
                p.grad = torch.zeros_like(p)
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in params:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------------------
# Sharding (FSDP): for a student or teacher that does not fit one device.


def shard(model: torch.nn.Module, procs: Processes, device: torch.device) -> None:
    """Shard `model`'s parameters over the processes with FSDP (torch's `fully_shard`): every
    transformer block (the classes a Hugging Face model lists in `_no_split_modules`), then the rest.
    FSDP averages the gradients over processes, so the training loop scales each process's loss by the
    number of processes (`grad_scale`) to get their sum (the loss is already divided by the global
    target count). Each process then holds 1/N of the parameters, gradients and optimizer state."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    mesh = init_device_mesh(device.type, (procs.size,))
    blocks = set(getattr(model, "_no_split_modules", None) or [])
    if not blocks:
        raise ValueError(f"{type(model).__name__} names no transformer blocks (_no_split_modules) to shard")
    for module in list(model.modules()):
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    assert isinstance(model, FSDPModule)


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict]:
    """The full (unsharded) model and optimizer state dicts of a sharded model, on the CPU of process 0
    (other processes get empty dicts). A collective: every process must call it."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=options)
    optim_sd = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else {}
    return model_sd, optim_sd


def load_full_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_sd: dict, optim_sd: dict
) -> None:
    """Load full state dicts (from `full_state`, read by every process) into a sharded model."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_sd, options=options)
    set_optimizer_state_dict(model, optimizer, optim_sd, options=options)
