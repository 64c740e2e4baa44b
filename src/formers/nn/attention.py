"""Multi-head attention (Vaswani et al. 2017, arXiv 1706.03762, section 3.2.2).

``MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O`` with
``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``. One class serves the three uses of the paper:

- self-attention: ``attn(x)``;
- masked self-attention (decoder): ``attn(x, causal=True)``;
- encoder-decoder (cross) attention: ``attn(x, memory)``.

Beyond the paper: ``num_kv_heads`` shares each key/value head among several query heads
(``num_kv_heads == num_heads`` is MHA, ``1 < num_kv_heads < num_heads`` is GQA, Ainslie et al.
2023, arXiv 2305.13245; ``1`` is MQA, Shazeer 2019, arXiv 1911.02150); an optional rotary
embedding; and a KV cache for incremental decoding.

Shapes: b batch, t query length, s key length, h query heads, g key/value heads, dh head dim.
"""

from __future__ import annotations

from torch import Tensor, nn

from formers.nn.kernels import AttentionKernel, eager_attention, get_kernel
from formers.nn.kv_cache import KVCache, StaticKVCache
from formers.nn.positional import RotaryEmbedding


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    Args:
        d_model: width of the input and output.
        num_heads: number of query heads ``h``.
        num_kv_heads: number of key/value heads ``g`` (``h % g == 0``); defaults to ``h``.
        head_dim: per-head width; defaults to ``d_model // num_heads``.
        dropout: dropout on the attention probabilities.
        bias: whether the projections have biases (the paper's do).
        kernel: name of a kernel in :mod:`formers.nn.kernels` (``"sdpa"`` or ``"eager"``) or a
            callable with that signature.
        rotary: optional rotary embedding applied to queries and keys (self-attention only).
        kv_dim: width of the memory for cross-attention, if it differs from ``d_model``.
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
        kernel: str | AttentionKernel = "sdpa",
        rotary: RotaryEmbedding | None = None,
        kv_dim: int | None = None,
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
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.kernel: AttentionKernel = get_kernel(kernel) if isinstance(kernel, str) else kernel
        self.rotary = rotary
        kv_dim = d_model if kv_dim is None else kv_dim
        self.q_proj = nn.Linear(d_model, num_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, num_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, num_kv_heads * head_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * head_dim, d_model, bias=bias)

    def _split(self, x: Tensor, heads: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, heads, self.head_dim).transpose(1, 2)  # (b, heads, t, dh)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | StaticKVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` to itself, or to ``memory`` (cross-attention).

        Args:
            x: ``(b, t, d_model)`` queries (and keys/values for self-attention).
            memory: ``(b, s, kv_dim)`` keys/values for cross-attention.
            mask: boolean, broadcastable to ``(b, h, t, s)``, True = may attend.
            causal: mask future keys (bottom-right aligned, so it holds with a cache too).
            cache: :class:`KVCache` for self-attention (new keys/values are appended) or
                :class:`StaticKVCache` for cross-attention (memory is projected only once).
            need_weights: also return the ``(b, h, t, s)`` attention probabilities; this uses
                the eager kernel, so the default path stays on the fast one.

        Returns:
            ``(out, weights)``: ``(b, t, d_model)`` and the probabilities or ``None``.
        """
        b, t, _ = x.shape
        # positions of the new queries continue after those in a growing (self-attention) cache
        offset = cache.length if isinstance(cache, KVCache) else 0
        q = self._split(self.q_proj(x), self.num_heads)  # (b, h, t, dh)
        if cache is not None and cache.complete:
            k, v = cache.get()
        else:
            source = x if memory is None else memory
            k = self._split(self.k_proj(source), self.num_kv_heads)  # (b, g, s, dh)
            v = self._split(self.v_proj(source), self.num_kv_heads)
            if self.rotary is not None:
                k = self.rotary(k, offset)
            if cache is not None:
                k, v = cache.update(k, v)
        if self.rotary is not None:
            q = self.rotary(q, offset)
        kernel = eager_attention if need_weights else self.kernel
        out, weights = kernel(
            q,
            k,
            v,
            mask=mask,
            causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights,
        )
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)  # (b, t, h*dh)
        return self.out_proj(out), weights
