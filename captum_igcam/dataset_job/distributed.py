"""Running the data-set job under ``torchrun``: process group, ranks, devices.

:func:`process_group` joins torchrun's process group (or does nothing in a
single process) and gives each rank its device; the other helpers are what
:func:`~captum_igcam.dataset_job.explainer.explain_dataset` needs to work the
same in one process and in many.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@contextlib.contextmanager
def process_group(device: str | torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group if there is one; yield this rank's device.

    Outside torchrun (no ``WORLD_SIZE`` above 1 in the environment) this is
    a single process on ``device``. Under torchrun it initialises
    :mod:`torch.distributed` from torchrun's environment variables, with
    NCCL and the GPU of the process's ``LOCAL_RANK`` for a CUDA ``device``
    and gloo on the CPU, and destroys the group when the block ends.

    Args:
        device (str or torch.device): ``"cpu"`` or ``"cuda"``.

    Yields:
        torch.device: The device this process explains on.

    Raises:
        ValueError: If a process has no GPU of its own.

    Example::

        >>> with process_group("cuda") as device:
        ...     bundle = MethodSettings(device="cuda").load_model()  # this rank's GPU
        ...     summary = explain_dataset(bundle, "photos", "maps")
    """
    device = torch.device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield device
        return
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"device: process with LOCAL_RANK {local_rank} has no GPU of its "
                f"own ({torch.cuda.device_count()} visible); start at most that "
                "many processes per node"
            )
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        device = torch.device("cuda", local_rank)
    else:
        dist.init_process_group("gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` alone)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if rank_and_world_size()[1] > 1:
        dist.barrier()


def from_rank_zero(value: T) -> T:
    """Rank 0's ``value`` on every rank (picklable; the value itself alone)."""
    if rank_and_world_size()[1] == 1:
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]
