"""Multi-head attention (Vaswani et al. 2017, arXiv 1706.03762, section 3.2.2).

``MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O`` with
``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``. One class serves the three uses of the paper:

- self-attention: ``attn(x)``;
- masked self-attention (decoder): ``attn(x, causal=True)``;
- encoder-decoder (cross) attention: ``attn(x, memory)``.

The module owns the four projections and injects the rest: the *mechanism* that turns queries,
keys and values into the output (:mod:`formers.nn.mechanism`; the paper's softmax by default)
and the *position scheme* that brings positions in (:mod:`formers.nn.position_scheme`: RoPE
rotates queries and keys, relative schemes bias the scores). Beyond the paper: ``num_kv_heads``
shares each key/value head among several query heads (``num_kv_heads == num_heads`` is MHA,
``1 < num_kv_heads < num_heads`` is GQA, Ainslie et al. 2023, arXiv 2305.13245; ``1`` is MQA,
Shazeer 2019, arXiv 1911.02150); a ``scale`` other than ``1 / sqrt(d)`` (T5 uses 1); and a state
(the KV cache) for incremental decoding, made by the mechanism.

While an :class:`~formers.nn.recorder.AttentionRecorder` is active, each call also hands the
weights its mechanism computed to the recorder; otherwise nothing is kept.

Shapes: b batch, t query length, s key length, h query heads, g key/value heads, dh head dim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from formers.nn.kernels import AttentionKernel
from formers.nn.kv_cache import KVCache, StaticKVCache
from formers.nn.masks import AttentionMask
from formers.nn.mechanism import AttentionMechanism, SoftmaxAttention, get_mechanism
from formers.nn.position_scheme import Positions, PositionScheme

if TYPE_CHECKING:
    from formers.nn.recorder import AttentionRecorder


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    Args:
        d_model: width of the input and output.
        num_heads: number of query heads ``h``.
        num_kv_heads: number of key/value heads ``g`` (``h % g == 0``); defaults to ``h``.
        head_dim: per-head width; defaults to ``d_model // num_heads``.
        dropout: dropout on the attention weights.
        bias: whether the projections have biases (the paper's do).
        mechanism: an :class:`~formers.nn.mechanism.AttentionMechanism`, or the name of one
            (``"sdpa"`` and ``"eager"`` are the softmax kernels).
        kernel: instead of ``mechanism``, the softmax kernel: a name or a callable with the
            :class:`~formers.nn.kernels.AttentionKernel` signature.
        positions: the position scheme (e.g. a shared :class:`~formers.nn.positional.
            RotaryEmbedding`), or ``None``.
        scale: of the scores; ``None`` is ``1 / sqrt(head_dim)``.
        kv_dim: width of the memory for cross-attention, if it differs from ``d_model``.
        cross: this module attends to another sequence (its mechanism must be able to, and a
            position scheme must mean something there).

    Raises:
        MechanismError: the mechanism cannot do cross-attention and ``cross`` is set.
        ValueError: a bad shape, or a position scheme on cross-attention that has no meaning
            there.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        *,
        head_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        mechanism: str | AttentionMechanism | None = None,
        kernel: str | AttentionKernel | None = None,
        positions: PositionScheme | None = None,
        scale: float | None = None,
        kv_dim: int | None = None,
        cross: bool = False,
    ) -> None:
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if head_dim is None:
            if d_model % num_heads:
                raise ValueError(
                    f"d_model ({d_model}) must be divisible by num_heads ({num_heads})"
                )
            head_dim = d_model // num_heads
        if num_heads % num_kv_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})"
            )
        if mechanism is not None and kernel is not None:
            raise ValueError("give a mechanism or a softmax kernel, not both")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.scale = scale
        self.cross = cross
        self.mechanism = (
            SoftmaxAttention(kernel) if kernel is not None else get_mechanism(mechanism or "sdpa")
        )
        if cross:
            self.mechanism.require("cross")
        if positions is not None and cross and not positions.cross:
            raise ValueError(
                f"the {positions.name!r} position scheme has no meaning on cross-attention "
                "(the source and target positions are not on one axis); give it to "
                "self-attention only"
            )
        if positions is not None and positions.biases:
            self.mechanism.require("bias", f"the {positions.name!r} position scheme biases scores")
        if positions is not None and positions.values:
            self.mechanism.require("value", f"the {positions.name!r} position scheme adds values")
        self.positions = positions
        self.recorder: AttentionRecorder | None = None  # set while an AttentionRecorder runs
        kv_dim = d_model if kv_dim is None else kv_dim
        self.q_proj = nn.Linear(d_model, num_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, num_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, num_kv_heads * head_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * head_dim, d_model, bias=bias)

    def _split(self, x: Tensor, heads: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, heads, self.head_dim).transpose(1, 2)  # (b, heads, t, dh)

    def new_state(self) -> KVCache | StaticKVCache:
        """An empty state for incremental decoding, from the mechanism."""
        return self.mechanism.new_state(cross=self.cross)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: AttentionMask | Tensor | None = None,
        causal: bool = False,
        state: KVCache | StaticKVCache | None = None,
        positions: Positions | None = None,
    ) -> Tensor:
        """Attend from ``x`` to itself, or to ``memory`` (cross-attention).

        Args:
            x: ``(b, t, d_model)`` queries (and keys/values for self-attention).
            memory: ``(b, s, kv_dim)`` keys/values for cross-attention.
            mask: an :class:`~formers.nn.masks.AttentionMask`, or a boolean tensor
                broadcastable to ``(b, h, t, s)``, True = may attend.
            causal: mask future keys (bottom-right aligned, so it holds with a state too).
            state: this module's state from :meth:`new_state` (self-attention: new keys and
                values are appended; cross-attention: the memory is projected only once).
            positions: of the queries and keys, for the position scheme; by default the
                queries continue after the state's cached positions.

        Returns:
            ``(b, t, d_model)``.
        """
        b, t, _ = x.shape
        if state is not None and "incremental" not in self.mechanism.capabilities:
            self.mechanism.require("incremental")
        if self.recorder is not None:
            self.mechanism.require("weights", "an AttentionRecorder is recording")
        q = self._split(self.q_proj(x), self.num_heads)  # (b, h, t, dh)
        k = v = None
        if state is None or not state.complete:
            source = x if memory is None else memory
            k = self._split(self.k_proj(source), self.num_kv_heads)  # (b, g, s, dh)
            v = self._split(self.v_proj(source), self.num_kv_heads)
        bias = value = None
        if self.positions is not None:
            if positions is None:
                offset = state.length if isinstance(state, KVCache) else 0
                positions = Positions.contiguous(offset, t, x.device)
            if self.positions.rotates:  # new keys (self-attention) sit at the queries' positions
                q = self.positions.rotate(q, positions.queries, positions.offset)
                if k is not None:
                    k = self.positions.rotate(k, positions.queries, positions.offset)
            scheme, where = self.positions, positions
            if scheme.biases:
                scale = self.scale if self.scale is not None else self.head_dim**-0.5
                bias = lambda q_, k_: scheme.bias(q_, k_, where, scale)  # noqa: E731
            if scheme.values:
                value = lambda weights_: scheme.value(weights_, where)  # noqa: E731
        out, weights = self.mechanism(
            q, k, v, mask=AttentionMask.of(mask, causal), bias=bias, value=value, state=state,
            scale=self.scale, dropout_p=self.dropout if self.training else 0.0,
            need_weights=self.recorder is not None,
        )  # fmt: skip
        if self.recorder is not None:
            self.recorder.add(self, weights)
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)  # (b, t, h*dh)
        return self.out_proj(out)
