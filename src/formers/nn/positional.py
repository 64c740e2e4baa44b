"""Position information: sinusoidal, learned absolute, and rotary.

- :class:`SinusoidalPositionalEncoding`: the paper's fixed encoding (Vaswani et al. 2017,
  arXiv 1706.03762, section 3.5): ``PE(pos, 2i) = sin(pos / 10000^(2i/d))``,
  ``PE(pos, 2i+1) = cos(pos / 10000^(2i/d))``, sines and cosines interleaved. With
  ``interleave=False`` the same values are laid out as ``[sin | cos]`` halves (the first
  ``d/2`` features are the sines, the last ``d/2`` the cosines), as in Marian (Junczys-Dowmunt
  et al. 2018, arXiv 1804.00344) and Hugging Face's ``MarianMTModel``. The two layouts differ only
  by a fixed permutation of the features, which a model trained from scratch absorbs; a
  converted checkpoint needs the layout it was trained with.
- :class:`LearnedPositionalEmbedding`: one trained vector per position (BERT, GPT-2); the
  paper found it "nearly identical" to the sinusoid (Table 3, row E).
- :class:`RotaryEmbedding`: RoPE (Su et al. 2021, arXiv 2104.09864) rotates query/key pairs
  by position-dependent angles inside attention, so it is injected into
  :class:`formers.nn.attention.MultiHeadAttention` instead of added to the embeddings. Pairs are
  the two halves of the head dimension (the GPT-NeoX / LLaMA layout), not adjacent features.

Shapes: b batch, t length, d model width, h heads, dh head dim.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from formers.nn.position_scheme import PositionScheme


def sinusoidal_table(
    positions: Tensor,
    d_model: int,
    base: float = 10000.0,
    *,
    interleave: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The paper's encoding for arbitrary positions: ``(...,) -> (..., d_model)``.

    Args:
        positions: integer positions, any shape.
        d_model: encoding width (even).
        base: the wavelength base (10,000 in the paper).
        interleave: sines at even and cosines at odd features (the paper); ``False`` puts all
            sines first and all cosines second (Marian's layout), with the same frequencies.
        dtype: computed in (float32 by default; float64 for float64 models).
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding needs an even d_model, got {d_model}")
    i2 = torch.arange(0, d_model, 2, device=positions.device, dtype=dtype)
    inv_freq = torch.exp(-math.log(base) * i2 / d_model)  # 1 / base^(2i/d)
    angles = positions.to(dtype)[..., None] * inv_freq  # (..., d/2)
    if not interleave:
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (..., d): [sin | cos]
    # interleave: even features sin, odd features cos
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal encodings, precomputed up to ``max_len`` and extended on demand.

    Args:
        d_model: model width (even).
        max_len: positions precomputed; longer inputs are computed on the fly.
        interleave: the paper's interleaved sines and cosines (True) or Marian's ``[sin | cos]``
            halves (False); see :func:`sinusoidal_table`.
    """

    def __init__(self, d_model: int, max_len: int = 1024, *, interleave: bool = True) -> None:
        super().__init__()
        self.d_model = d_model
        self.interleave = interleave
        table = sinusoidal_table(torch.arange(max_len), d_model, interleave=interleave)
        self.register_buffer("table", table, persistent=False)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """Encodings of positions ``offset .. offset + length - 1``: ``(length, d_model)``."""
        end = offset + length
        if end > self.table.size(0):
            positions = torch.arange(offset, end, device=self.table.device)
            table = sinusoidal_table(positions, self.d_model, interleave=self.interleave)
            return table.to(self.table.dtype)
        return self.table[offset:end]

    def at(self, positions: Tensor) -> Tensor:
        """Encodings of any integer ``positions``: ``(...,) -> (..., d_model)``."""
        if positions.numel() and int(positions.max()) >= self.table.size(0):
            table = sinusoidal_table(positions, self.d_model, interleave=self.interleave)
            return table.to(self.table.dtype)
        return self.table[positions]


class LearnedPositionalEmbedding(nn.Module):
    """A trained embedding per absolute position (at most ``max_len`` positions)."""

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """Embeddings of positions ``offset .. offset + length - 1``: ``(length, d_model)``."""
        end = offset + length
        if end > self.max_len:
            raise ValueError(
                f"position {end - 1} is beyond the {self.max_len} learned positions; "
                "use a shorter input or a model with larger max_positions"
            )
        return self.embedding.weight[offset:end]

    def at(self, positions: Tensor) -> Tensor:
        """Embeddings of ``positions`` (each below ``max_len``): ``(...,) -> (..., d_model)``."""
        if positions.numel() and int(positions.max()) >= self.max_len:
            raise ValueError(
                f"position {int(positions.max())} is beyond the {self.max_len} learned "
                "positions; use a shorter input or a model with larger max_positions"
            )
        return self.embedding(positions)


class RotaryEmbedding(PositionScheme):
    """Rotary position embedding applied to queries and keys: a :class:`~formers.nn.
    position_scheme.PositionScheme` that rotates (self-attention only; one instance is shared by
    the layers of a stack, since its tables are the same).

    Args:
        head_dim: per-head width (even).
        base: the angle base (10,000 in the RoPE paper; LLaMA 3 uses 500,000).
        max_len: positions whose cos/sin are precomputed; longer inputs are computed on the fly.
    """

    name = "rotary"
    rotates = True

    def __init__(self, head_dim: int, base: float = 10000.0, max_len: int = 2048) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dim, got {head_dim}")
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        cos, sin = self._angles(torch.arange(max_len))
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _angles(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        # float32 whatever the model's dtype (as Hugging Face's RoPE), so that angles computed
        # on the fly equal the precomputed table's, which .to(dtype) only casts
        inv_freq = self.inv_freq.to(device=positions.device, dtype=torch.float32)
        angles = positions.to(torch.float32)[..., None] * inv_freq
        angles = torch.cat([angles, angles], dim=-1)  # (..., dh): both halves share angles
        return angles.cos(), angles.sin()

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Rotate ``x`` of shape ``(b, h, t, dh)`` whose positions start at ``offset``."""
        end = offset + x.size(-2)
        if end > self.cos.size(0):
            cos, sin = self._angles(torch.arange(offset, end, device=x.device))
        else:
            cos, sin = self.cos[offset:end], self.sin[offset:end]  # (t, dh)
        return self._rotate(x, cos, sin)

    def rotate(self, x: Tensor, positions: Tensor, offset: int | None = None) -> Tensor:
        """Rotate ``x`` ``(b, h, t, dh)`` at ``positions`` ``(t,)`` or ``(b, t)``."""
        if offset is not None:
            return self(x, offset)
        if int(positions.max()) < self.cos.size(0):
            cos, sin = self.cos[positions], self.sin[positions]  # (t, dh) or (b, t, dh)
        else:
            cos, sin = self._angles(positions)
        if positions.dim() == 2:
            cos, sin = cos[:, None], sin[:, None]  # (b, 1, t, dh): the same for every head
        return self._rotate(x, cos, sin)

    @staticmethod
    def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)
        return x * cos + rotated * sin
