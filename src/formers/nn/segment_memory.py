"""Segment memory: the state a recurrent Transformer carries from one segment to the next
(Transformer-XL, Dai et al. 2019, arXiv 1901.02860, section 3.2).

A model with segment recurrence reads a long text one segment at a time. Each layer's keys and
values are computed from its input over the *memory* (that layer's inputs at the last ``M``
positions before the segment, with the gradient stopped: ``SG(h^{n-1}_{tau-1})``) followed by the
segment, so that the context reaches ``M`` tokens back per layer (``O(N x M)`` over ``N`` layers)
at the cost of one segment. After the segment, each layer's memory becomes the last ``M`` of
memory + segment inputs, detached.

One :class:`SegmentMemory` is the state for everything that reads a stream: training (each batch
row reads consecutive segments of its own part of the text), evaluation (each segment once: the
paper's fast evaluation) and generation (one token at a time with the last ``M`` states). Its
length ``M`` belongs to the memory, not to the model, so that a model trained with one memory is
evaluated with another. :meth:`~SegmentMemory.tensors` and :meth:`~SegmentMemory.load_tensors`
put it in a checkpoint (safetensors), so that a resumed run continues with the memory it had.

Shapes: b batch, m memory length (``<= max_length``), t segment length, d model width.
"""

from __future__ import annotations

import torch
from torch import Tensor


class SegmentMemory:
    """Per-layer memories of a stack, and which of their positions are real (not padding).

    Args:
        max_length: ``M``, the most positions each layer remembers (0: none, every segment
            alone).
        num_layers: the layers of the stack (one memory each).

    Attributes:
        layers: ``num_layers`` tensors ``(b, m, d)``, or ``None`` before the first segment.
        keys: ``(b, m)`` True at real positions, or ``None`` while all are real.
    """

    def __init__(self, max_length: int, num_layers: int) -> None:
        if max_length < 0:
            raise ValueError(f"the memory length must be >= 0, got {max_length}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.max_length = max_length
        self.num_layers = num_layers
        self.layers: list[Tensor] | None = None
        self.keys: Tensor | None = None

    @property
    def length(self) -> int:
        """Positions remembered now (``m``)."""
        return 0 if self.layers is None else self.layers[0].size(1)

    def layer(self, index: int) -> Tensor | None:
        """Layer ``index``'s memory ``(b, m, d)``, or ``None`` while it is empty."""
        return None if self.layers is None or self.length == 0 else self.layers[index]

    def key_mask(self, real: Tensor | None, length: int, device: torch.device) -> Tensor | None:
        """``(b, m + t)`` True at real keys (memory, then the segment's ``real``: ``(b, t)``;
        ``None``: its ``length`` tokens are all real), or ``None`` while nothing is padded."""
        if real is None and self.keys is None:
            return None
        batch = (real if real is not None else self.keys).size(0)
        if real is None:
            real = torch.ones(batch, length, dtype=torch.bool, device=device)
        before = self.keys if self.keys is not None else real.new_ones(batch, self.length)
        return torch.cat([before.to(device), real], dim=1)

    def check_batch(self, batch: int) -> None:
        """Raise unless a segment of ``batch`` rows continues this memory."""
        if self.layers is not None and self.layers[0].size(0) != batch:
            raise ValueError(
                f"the memory holds {self.layers[0].size(0)} rows but the segment has {batch}: "
                "each row continues its own stream (reset the memory for another batch)"
            )

    def update(self, inputs: list[Tensor], keys: Tensor | None) -> None:
        """Remember the last ``M`` positions of memory + segment.

        Args:
            inputs: each layer's input over memory + segment, ``(b, m + t, d)``.
            keys: ``(b, m + t)`` True at real positions, or ``None`` (all real).
        """
        if len(inputs) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layers' inputs, got {len(inputs)}")
        keep = min(self.max_length, inputs[0].size(1))
        start = inputs[0].size(1) - keep
        self.layers = [x[:, start:].detach() for x in inputs]  # (b, keep, d), gradient stopped
        self.keys = None if keys is None or bool(keys[:, start:].all()) else keys[:, start:]

    def reset(self) -> None:
        """Forget everything (a new stream starts)."""
        self.layers, self.keys = None, None

    def reorder(self, indices: Tensor) -> None:
        """Select batch rows, ``indices`` ``(b_new,)``."""
        if self.layers is not None:
            self.layers = [x.index_select(0, indices) for x in self.layers]
        if self.keys is not None:
            self.keys = self.keys.index_select(0, indices)

    # --- checkpoints ---------------------------------------------------------------------------

    def tensors(self, prefix: str = "memory") -> dict[str, Tensor]:
        """The memory as named tensors (for safetensors); empty while it is empty."""
        if self.length == 0:
            return {}
        out = {f"{prefix}.{i}": x.contiguous() for i, x in enumerate(self.layers)}
        if self.keys is not None:
            out[f"{prefix}.keys"] = self.keys.contiguous()
        return out

    def load_tensors(self, tensors: dict[str, Tensor], prefix: str = "memory") -> None:
        """Restore what :meth:`tensors` gave (nothing under ``prefix``: the memory is empty).

        Raises:
            ValueError: the tensors are not this memory's (layers or length do not fit).
        """
        names = [f"{prefix}.{i}" for i in range(self.num_layers)]
        present = [name for name in names if name in tensors]
        if not present:
            self.reset()
            return
        if len(present) != len(names):
            missing = sorted(set(names) - set(present))
            raise ValueError(f"the saved memory lacks {', '.join(missing)}")
        layers = [tensors[name] for name in names]
        shapes = {tuple(x.shape) for x in layers}
        if len(shapes) != 1 or layers[0].dim() != 3 or layers[0].size(1) > self.max_length:
            raise ValueError(
                f"the saved memory's shapes {sorted(shapes)} are not (batch, <= "
                f"{self.max_length}, width) for every layer"
            )
        self.layers = layers
        self.keys = tensors.get(f"{prefix}.keys")
