"""Attention mechanisms: what turns queries, keys and values into the output.

The paper's mechanism is the softmax of scaled dot products (Vaswani et al. 2017, arXiv
1706.03762, eq. 1); the rest of the family replaces it (linear and kernel attention, LSH, Sinkhorn,
Synthesizer) or changes what it sees (relative positions enter as a bias on the scores). A
:class:`~formers.nn.attention.MultiHeadAttention` owns the projections and the position scheme,
and hands the rest to an injected :class:`AttentionMechanism`, which

- computes ``(out, weights)`` from ``q``, ``k``, ``v``, a mask (:class:`~formers.nn.masks.
  AttentionMask`), an optional additive bias on the scores and the scale;
- makes the per-layer state that incremental decoding carries (:meth:`new_state`: the KV cache
  is the softmax mechanism's) and reads and extends it;
- declares what it can do (:data:`CAPABILITIES`): asking for anything else is a
  :class:`MechanismError` that names the mechanism and the capability, never a silent fallback
  (a non-softmax model must not be *drawn* as softmax).

:class:`SoftmaxAttention` is the paper's, computed by a kernel of :mod:`formers.nn.kernels`
(``"sdpa"``, PyTorch's fused kernel, or ``"eager"``, the formula written out); when the weights
are asked for it computes them with the eager kernel, which is the same formula.

Shapes: b batch, h query heads, g key/value heads, t_q queries, t_k keys, d head dim.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from formers.nn.kernels import AttentionKernel, eager_attention, get_kernel
from formers.nn.kv_cache import (
    KVCache,
    StaticKVCache,
    group_mask,
    group_queries,
    ungroup_queries,
)
from formers.nn.masks import AttentionMask

# what a mechanism may be asked for, and how an error message says it
CAPABILITIES = {
    "causal": "mask future keys (causal attention)",
    "incremental": "decode incrementally with a state (a cache)",
    "cross": "attend to another sequence (cross-attention)",
    "weights": "return its attention weights",
    "bias": "add a position bias to its scores",
    "value": "add a position term to its output (from its weights)",
}
# a bias on the scores, from the queries and the keys attended to: (b|1, h, t_q, t_k)
ScoreBias = Callable[[Tensor, Tensor], Tensor]
# a term added to the output, from the weights: (b, h, t_q, t_k) -> (b, h, t_q, d)
ValueTerm = Callable[[Tensor], Tensor]


class MechanismError(ValueError):
    """A mechanism was asked for something it cannot do; the message names both."""


class AttentionMechanism(nn.Module):
    """The interface of every mechanism (see the module docstring).

    Subclasses set ``name`` and ``capabilities`` (a subset of :data:`CAPABILITIES`) and
    implement :meth:`forward` and, if incremental, :meth:`new_state`.
    """

    name: str = "mechanism"
    capabilities: frozenset[str] = frozenset()

    def require(self, capability: str, why: str = "") -> None:
        """Raise :class:`MechanismError` unless this mechanism has ``capability``."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}")
        if capability not in self.capabilities:
            able = ", ".join(sorted(self.capabilities)) or "nothing optional"
            raise MechanismError(
                f"the {self.name!r} attention mechanism cannot {CAPABILITIES[capability]}"
                f"{f' ({why})' if why else ''}; it supports: {able}"
            )

    def new_state(self, *, cross: bool) -> KVCache | StaticKVCache:
        """An empty per-layer state for incremental decoding (``cross``: of cross-attention)."""
        self.require("incremental")
        raise NotImplementedError

    def forward(
        self,
        q: Tensor,
        k: Tensor | None,
        v: Tensor | None,
        *,
        mask: AttentionMask | None = None,
        bias: ScoreBias | None = None,
        value: ValueTerm | None = None,
        state: KVCache | StaticKVCache | None = None,
        scale: float | None = None,
        dropout_p: float = 0.0,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend.

        Args:
            q: ``(b, h, t_q, d)`` queries.
            k, v: ``(b, g, t, d)`` new keys and values (``None`` when ``state`` already holds
                them all: a filled cross-attention cache).
            mask: which keys each query may see (over all keys, the state's included).
            bias: called with the queries and all the keys to add to the scaled scores.
            value: called with the weights, to add to the output.
            state: this layer's state from :meth:`new_state`, read and extended in place.
            scale: of the scores; ``None`` is ``1 / sqrt(d)``.
            dropout_p: dropout on the weights (pass 0.0 in eval mode).
            need_weights: also return the ``(b, h, t_q, t_k)`` weights it computed.

        Returns:
            ``(out, weights)``: ``(b, h, t_q, d)`` and the weights or ``None``.
        """
        raise NotImplementedError


class SoftmaxAttention(AttentionMechanism):
    """``softmax(Q K^T * scale + bias) V`` (eq. 1), by a kernel of :mod:`formers.nn.kernels`.

    Args:
        kernel: ``"sdpa"`` (fused, the fast path), ``"eager"``, or a callable with the
            :class:`~formers.nn.kernels.AttentionKernel` signature.
    """

    name = "softmax"
    capabilities = frozenset(CAPABILITIES)

    def __init__(self, kernel: str | AttentionKernel = "sdpa") -> None:
        super().__init__()
        self.kernel_name = kernel if isinstance(kernel, str) else getattr(kernel, "__name__", "")
        self.kernel: AttentionKernel = get_kernel(kernel) if isinstance(kernel, str) else kernel

    def extra_repr(self) -> str:
        return f"kernel={self.kernel_name!r}"

    def new_state(self, *, cross: bool) -> KVCache | StaticKVCache:
        """A growing :class:`KVCache` (self-attention) or a :class:`StaticKVCache` filled once
        from the encoder's output (cross-attention)."""
        return StaticKVCache() if cross else KVCache()

    def forward(
        self,
        q: Tensor,
        k: Tensor | None,
        v: Tensor | None,
        *,
        mask: AttentionMask | None = None,
        bias: ScoreBias | None = None,
        value: ValueTerm | None = None,
        state: KVCache | StaticKVCache | None = None,
        scale: float | None = None,
        dropout_p: float = 0.0,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        weigh = need_weights or value is not None  # a value term needs the weights
        grouped = isinstance(state, StaticKVCache) and state.group > 1
        if grouped and k is None and bias is None and not weigh:
            out = self._grouped(q, state, mask, scale, dropout_p)
            if out is not None:
                return out, None
        if state is not None:
            k, v = state.get() if k is None else state.update(k, v)
        if k is None or v is None:
            raise ValueError("no keys and values: pass them, or a state that holds them")
        t_q, t_k = q.size(-2), k.size(-2)
        dense, causal = (None, False) if mask is None else mask.for_kernel(t_q, t_k, q.device)
        kernel = eager_attention if weigh else self.kernel
        out, weights = kernel(
            q, k, v, mask=dense, causal=causal, bias=None if bias is None else bias(q, k),
            dropout_p=dropout_p, scale=scale, need_weights=weigh,
        )  # fmt: skip
        if value is not None:
            out = out + value(weights)
        return out, weights if need_weights else None

    def _grouped(
        self,
        q: Tensor,
        state: StaticKVCache,
        mask: AttentionMask | None,
        scale: float | None,
        dropout_p: float,
    ) -> Tensor | None:
        """Cross-attention over a cache whose rows each serve ``group`` query rows: each
        group's queries as one row (:func:`~formers.nn.kv_cache.group_queries`), so that its
        keys and values are read once. ``None`` where the mask differs between queries."""
        k, v, group = state.grouped()
        dense, causal = (None, False) if mask is None else mask.for_kernel(
            q.size(-2), k.size(-2), q.device
        )  # fmt: skip
        if causal or (dense is not None and dense.size(-2) != 1):
            return None
        out, _ = self.kernel(
            group_queries(q, group), k, v, mask=group_mask(dense, group, q.size(0)),
            causal=False, bias=None, dropout_p=dropout_p, scale=scale, need_weights=False,
        )  # fmt: skip
        return ungroup_queries(out, group)


# mechanisms by name, for configs and the CLI; "sdpa" and "eager" are the softmax kernels
MECHANISMS: dict[str, Callable[[], AttentionMechanism]] = {
    "sdpa": lambda: SoftmaxAttention("sdpa"),
    "eager": lambda: SoftmaxAttention("eager"),
}


def get_mechanism(name: str | AttentionMechanism) -> AttentionMechanism:
    """A mechanism by name (see :data:`MECHANISMS`), or ``name`` itself if it is one."""
    if isinstance(name, AttentionMechanism):
        return name
    if name not in MECHANISMS:
        raise ValueError(
            f"unknown attention mechanism {name!r}; choose one of {sorted(MECHANISMS)}"
        )
    return MECHANISMS[name]()
