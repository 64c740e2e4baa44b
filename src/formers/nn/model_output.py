"""What a model's call gives: logits, the state after it, and auxiliary losses.

``forward`` returns the logits, a tensor (what users, DDP and the converters expect). The other
two outputs each have one place, so that no level threads them through its signature:

- *state*: a decoding cache (:class:`~formers.nn.kv_cache.DecoderCache`) or a segment memory
  (:class:`~formers.nn.segment_memory.SegmentMemory`) is an object the caller owns and passes in;
  the call updates it in place (beam search reorders it, checkpoints save a memory).
- *auxiliary losses* (the Universal Transformer's ACT ponder cost, a mixture of experts' balance
  loss, ...): a module calls :func:`add_auxiliary_loss` in its forward; an active
  :class:`AuxiliaryLosses` collects them (summed by name over the layers) for whoever runs the
  model, and outside one the call does nothing. The trainer runs every training loss inside one
  and adds their total to it (:meth:`AuxiliaryLosses.total`).

:func:`run_model` gathers the three into one :class:`ModelOutput` for code that wants them
together.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from torch import Tensor, nn

_ACTIVE: ContextVar[tuple[AuxiliaryLosses, ...]] = ContextVar("auxiliary_losses", default=())


class AuxiliaryLosses:
    """Collects the auxiliary losses that modules add while it is active (see the module
    docstring). Collectors nest, and each active one sees every loss (the trainer's and a
    task's own :func:`run_model` both do).

    Attributes:
        losses: name -> the sum of the values added under that name.
    """

    def __init__(self) -> None:
        self.losses: dict[str, Tensor] = {}
        self._token: Any = None

    def __enter__(self) -> AuxiliaryLosses:
        self._token = _ACTIVE.set((*_ACTIVE.get(), self))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _ACTIVE.reset(self._token)

    def add(self, name: str, value: Tensor) -> None:
        if value.dim() != 0:
            raise ValueError(
                f"the auxiliary loss {name!r} must be a scalar, got shape {tuple(value.shape)}"
            )
        self.losses[name] = value if name not in self.losses else self.losses[name] + value

    def total(self) -> Tensor | None:
        """The sum of every auxiliary loss, or ``None`` when none was added."""
        values = list(self.losses.values())
        return None if not values else sum(values[1:], values[0])


def add_auxiliary_loss(name: str, value: Tensor) -> None:
    """Add a scalar ``value`` to the auxiliary loss ``name`` of the active collector (a module
    calls this in its forward, already weighted; nothing happens when no collector is active)."""
    for collector in _ACTIVE.get():
        collector.add(name, value)


@dataclass
class ModelOutput:
    """Logits, the state after the call (``None`` for a stateless call) and the auxiliary
    losses added during it."""

    logits: Tensor
    state: Any = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


def run_model(model: nn.Module, *args: Any, **kwargs: Any) -> ModelOutput:
    """Call ``model(*args, **kwargs)`` and return all it gave: the logits, the state it was
    given as ``memory`` (updated in place) and the auxiliary losses added during the call."""
    with AuxiliaryLosses() as aux:
        logits = model(*args, **kwargs)
    return ModelOutput(logits, kwargs.get("memory"), aux.losses)
