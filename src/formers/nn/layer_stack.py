"""How the layers of a stack repeat: a :class:`LayerStack` owns the loop over them.

- :class:`LayerStack`: each layer once, in order (the paper's stacks);
- :class:`SharedLayerStack`: one layer applied ``depth`` times with the same weights, as ALBERT
  shares its layers (Lan et al. 2019, arXiv 1909.11942) and the Universal Transformer recurs
  in depth (Dehghani et al. 2018, arXiv 1807.03819; its adaptive halting, ACT, would be a stack
  whose loop decides when to stop, as a reversible stack would be one that recomputes).

A stack is a :class:`torch.nn.ModuleList` of its distinct layers, so that checkpoint names stay
``layers.N``; :meth:`LayerStack.steps` is the sequence of applications (which may repeat a layer)
and :meth:`LayerStack.run` the loop, given what one step does. Each step has its own decoding
state (a shared layer attends to other keys at each depth).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from torch import Tensor, nn


class LayerStack(nn.ModuleList):
    """Each layer once, in order.

    Args:
        layers: the layers.
    """

    def __init__(self, layers: Iterable[nn.Module] = ()) -> None:
        super().__init__(layers)

    def steps(self) -> Iterator[nn.Module]:
        """The layers in the order they are applied (one per step)."""
        return iter(self)

    @property
    def depth(self) -> int:
        """Number of steps."""
        return len(self)

    def run(self, x: Tensor, step: Callable[[int, nn.Module, Tensor], Tensor]) -> Tensor:
        """Apply ``step(index, layer, x)`` for each step in order; return the last output."""
        for index, layer in enumerate(self.steps()):
            x = step(index, layer, x)
        return x


class SharedLayerStack(LayerStack):
    """One layer applied ``depth`` times (ALBERT's cross-layer sharing; the Universal
    Transformer without ACT).

    Args:
        layer: the shared layer.
        depth: how many times it is applied.
    """

    def __init__(self, layer: nn.Module, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        super().__init__([layer])
        self._depth = depth

    def steps(self) -> Iterator[nn.Module]:
        return iter([self[0]] * self._depth)

    @property
    def depth(self) -> int:
        return self._depth

    def extra_repr(self) -> str:
        return f"depth={self._depth}"
