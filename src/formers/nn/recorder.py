"""Record the attention a model computes, without a ``need_weights`` argument in every call.

``with AttentionRecorder(model) as recorder: model(...)`` makes every
:class:`~formers.nn.attention.MultiHeadAttention` inside ``model`` ask its mechanism for the
weights it computes and hand them to the recorder; afterwards :meth:`AttentionRecorder.of` gives
a module's weights, one ``(b, h, queries, keys)`` tensor per call, in call order. The weights are
those of the computation the model ran (a softmax mechanism computes them with its eager kernel,
the same formula; a position bias is included), never a reconstruction.

Outside the block nothing is recorded and the default path does no extra work: each attention
module checks one attribute, which the recorder sets on entry and removes on exit, even on error.

Shapes: b batch, h heads.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

from torch import Tensor, nn


class AttentionRecorder:
    """Collects the attention weights of every attention module of ``model`` (see the module
    docstring).

    Args:
        model: any module containing :class:`~formers.nn.attention.MultiHeadAttention`.
    """

    def __init__(self, model: nn.Module) -> None:
        from formers.nn.attention import MultiHeadAttention  # attention.py imports this module

        self.modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
        self._weights: dict[int, list[Tensor]] = {}
        self.calls: list[tuple[nn.Module, Tensor]] = []  # every call, in order

    def __enter__(self) -> AttentionRecorder:
        for module in self.modules:
            if module.recorder is not None:
                raise RuntimeError("an attention module is already being recorded")
            module.recorder = self
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for module in self.modules:
            module.recorder = None

    def add(self, module: nn.Module, weights: Tensor) -> None:
        """Called by an attention module with the weights of one call."""
        self._weights.setdefault(id(module), []).append(weights)
        self.calls.append((module, weights))

    def of(self, module: nn.Module) -> list[Tensor]:
        """The weights ``module`` computed while recording, one tensor per call."""
        return self._weights.get(id(module), [])

    def per_step(self, modules: Iterable[nn.Module]) -> list[Tensor]:
        """The weights of ``modules`` listed in the order they ran, a module repeated for each
        of its calls (a shared layer's attention, once per depth): its k-th listing gets its
        k-th call's weights."""
        seen: dict[int, int] = {}
        out = []
        for module in modules:
            index = seen.get(id(module), 0)
            weights = self.of(module)
            if index >= len(weights):
                raise ValueError(
                    f"{type(module).__name__} ran {len(weights)} time(s) while recording, "
                    f"fewer than listed"
                )
            out.append(weights[index])
            seen[id(module)] = index + 1
        return out

    def last(self, module: nn.Module) -> Tensor:
        """The weights of ``module``'s last call (an error if it was not called)."""
        weights = self.of(module)
        if not weights:
            raise ValueError(f"{type(module).__name__} computed no attention while recording")
        return weights[-1]
