"""Data-parallel training over several processes (PyTorch DDP), as launched by ``torchrun``.

``torchrun --nproc_per_node N -m formers train CONFIG`` starts N processes and tells
each its place through the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, and the
rendezvous address). :class:`Distributed` reads that, joins the process group (``gloo`` on the
CPU, ``nccl`` with one GPU per local rank on CUDA) and offers the few collectives the trainer
needs. Without those variables, or with ``WORLD_SIZE=1``, it describes a single process: no
process group is created and every helper returns its input, so that a single-process run
behaves exactly as it did before distributed training existed.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from formers.training.rng import capture_rng_state, restore_rng_state

T = TypeVar("T")


@dataclass
class Distributed:
    """One process's place in a data-parallel run.

    Attributes:
        rank: this process's index among all processes (0 is the main one).
        world_size: the number of processes.
        local_rank: this process's index on its machine (picks its GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # rank 0's setup (tokenizer training, encoding a large corpus) can outlast the collectives'
    # default timeout (10 min for nccl): the others wait for it on a gloo group of its own
    setup_timeout: datetime.timedelta = datetime.timedelta(hours=6)
    _setup_group: Any = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> Distributed:
        """The place ``torchrun`` describes in the environment; a single process without it.

        Raises:
            ValueError: the variables are inconsistent (e.g. RANK >= WORLD_SIZE).
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"torchrun environment: RANK={rank} must be in [0, WORLD_SIZE={world_size}); "
                "launch with torchrun --nproc_per_node N, or unset RANK and WORLD_SIZE"
            )
        return cls(rank, world_size, local_rank)

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process (a process group, a DDP wrapper)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, which writes the logs, caches and checkpoints."""
        return self.rank == 0

    def init(self, device: torch.device) -> torch.device:
        """Join the process group (once) and return this process's device.

        Args:
            device: the device the config asks for; on CUDA this process takes
                ``cuda:LOCAL_RANK`` and the ``nccl`` backend, elsewhere ``gloo``.

        Returns:
            The device to train on (``device`` itself for a single process).
        """
        if not self.enabled:
            self.device = device
            return device
        if not dist.is_available():
            raise RuntimeError(
                f"WORLD_SIZE={self.world_size}, but this PyTorch has no torch.distributed"
            )
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, rank=self.rank, world_size=self.world_size)
        if self._setup_group is None:
            self._setup_group = dist.new_group(backend="gloo", timeout=self.setup_timeout)
        return device

    def destroy(self) -> None:
        """Leave the process group (a no-op without one)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        """Wait until every process is here."""
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the body on rank 0 first, then on the others (which can then read what rank 0
        wrote: a tokenizer, a data cache). The others wait up to ``setup_timeout``."""
        if not self.enabled:
            yield
            return
        if not self.is_main:
            dist.barrier(group=self._setup_group)
        yield
        if self.is_main:
            dist.barrier(group=self._setup_group)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """The sums of ``values`` over all processes (in float64), element by element."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any] | None:
        """Every process's ``value`` (picklable), in rank order, on rank 0; ``None`` elsewhere."""
        if not self.enabled:
            return [value]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def all_gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order, on every process."""
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share of ``items``: every N-th from the r-th (``items[r::N]``), the
        way the ranks split a validation set (all of ``items`` for one process)."""
        return list(items[self.rank :: self.world_size])

    def unshard(self, share: list[T]) -> list[T]:
        """Every process's ``share`` (of :meth:`shard`'s items, e.g. their translations) put
        back in the order of the items, on every process (``share`` itself for one process)."""
        return interleave(self.all_gather(share))

    def gather_rng_states(self) -> list[dict[str, Any]] | None:
        """Every rank's RNG states (:func:`formers.training.rng.capture_rng_state`) on rank 0,
        in rank order, for the checkpoint; ``None`` elsewhere."""
        return self.gather(capture_rng_state())

    def restore_rng_states(
        self, states: list[dict[str, Any]] | None, seed: Callable[[int], None]
    ) -> None:
        """Restore this rank's RNG states from a checkpoint's per-rank list (a no-op for one
        process: the checkpoint's ``"rng"`` is its own).

        Args:
            states: what :meth:`gather_rng_states` gave when the checkpoint was saved, or
                ``None`` if a single process saved it.
            seed: seeds every generator; called with a fresh seed when the checkpoint has no
                state for this rank (it was saved by fewer processes), so that the rank still
                draws its own random numbers (e.g. dropout masks).
        """
        if not self.enabled:
            return
        if states is not None and self.rank < len(states):
            restore_rng_state(states[self.rank])
        elif self.rank > 0:  # drawn from rank 0's restored state, which every rank now has
            seed(int(torch.randint(0, 2**62, ())) + self.rank)

    def wrap(self, model: torch.nn.Module, *, find_unused: bool = False) -> torch.nn.Module:
        """``model`` in a DistributedDataParallel wrapper (``model`` itself for one process).

        DDP copies rank 0's parameters and buffers to the others here, and averages the
        gradients over the processes during ``backward`` of a loss computed through the
        wrapper's ``forward``.

        Args:
            model: the model, on this process's device.
            find_unused: some parameters get no gradient from the loss (DDP then looks for
                them after every forward, instead of waiting for their gradients forever).
        """
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=find_unused
        )


def interleave(shares: list[list[T]]) -> list[T]:
    """The inverse of sharding: ``shares[r]`` holds items ``r, r + N, r + 2N, ...`` of a list of
    ``N = len(shares)`` shares; return that list.

    Raises:
        ValueError: the share sizes cannot come from one list split by :meth:`Distributed.shard`.
    """
    n, total = len(shares), sum(len(share) for share in shares)
    out: list[Any] = [None] * total
    for rank, share in enumerate(shares):
        if len(share) != len(range(rank, total, n)):
            raise ValueError(f"share sizes {[len(s) for s in shares]} do not split one list")
        out[rank::n] = share
    return out


def unused_parameters(model: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> list[str]:
    """The names of the parameters that ``loss()`` leaves without a gradient, from one forward
    and backward; random states are left as they were, and the gradients are cleared.

    DDP must be told of such parameters (``find_unused_parameters``), or it fails at the second
    step waiting for their gradients; one process does not care.
    """
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices):
        loss().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return unused
