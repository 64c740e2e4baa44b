"""The decoders ``decode_attempts.py`` tries beside formers' own: the model's linear layers
multiplied by oneDNN-packed copies of their weights (:func:`pack_linears`), each self-attention's
query, key and value projections as one NumPy product (:func:`fuse_self_attention`), and a
decoding step over a key/value cache of fixed capacity written in place (:class:`StaticStep`,
:func:`static_greedy`), the form ``torch.compile`` specializes once. One-off experiments, not
library code: they are measured there and kept only as measurements."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.decoding.base import constrain
from formers.export.onnx_graphs import EncoderGraph
from formers.nn.kv_cache import DecoderCache, KVCache, LayerCache, StaticKVCache


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` (same parameters) that multiplies by a oneDNN-packed copy of its weight,
    made once: for inference only (the copy does not follow later changes to ``weight``)."""

    @classmethod
    def of(cls, linear: nn.Linear, rows: int) -> PackedLinear:
        packed = cls.__new__(cls)
        nn.Module.__init__(packed)
        packed.in_features, packed.out_features = linear.in_features, linear.out_features
        packed.weight, packed.bias = linear.weight, linear.bias
        packed.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        return packed

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def pack_linears(model: nn.Module, rows: int) -> nn.Module:
    """Replace every plain ``nn.Linear`` of ``model`` with a :class:`PackedLinear`, in place."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, name, PackedLinear.of(child, rows))
    return model


class FusedQKV(nn.Module):
    """Stands in for a self-attention's ``q_proj``: one NumPy product for its queries, keys and
    values. ``k_proj`` and ``v_proj`` become :class:`Handed` modules that return the keys and
    values of the same input (the attention calls them right after, on that tensor)."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        fused = torch.cat([p.weight.detach() for p in projections])  # (3d, d)
        self.weight_t = fused.t().contiguous()  # (d, 3d), NumPy's fastest operand
        self.bias = torch.cat([p.bias.detach() for p in projections])
        self.input: Tensor | None = None
        self.k = self.v = None
        attn.q_proj, attn.k_proj, attn.v_proj = self, Handed(self, "k"), Handed(self, "v")

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, x.size(-1)).contiguous()  # (N, d)
        qkv = torch.from_numpy(np.matmul(rows.numpy(), self.weight_t.numpy()))  # (N, 3d)
        qkv += self.bias
        q, self.k, self.v = (t.view(*x.shape[:-1], -1) for t in qkv.chunk(3, dim=-1))
        self.input = x
        return q


class Handed(nn.Module):
    """The keys or values :class:`FusedQKV` computed for the same input."""

    def __init__(self, fused: FusedQKV, which: str) -> None:
        super().__init__()
        self.fused, self.which = [fused], which  # a list: not a submodule (no cycle)

    def forward(self, x: Tensor) -> Tensor:
        fused = self.fused[0]
        assert x is fused.input, "called on the input its q_proj saw"
        return getattr(fused, self.which)


def fuse_self_attention(model: nn.Module) -> nn.Module:
    """Give every self-attention of ``model`` a :class:`FusedQKV`, in place."""
    from formers.nn.attention import MultiHeadAttention

    for module in list(model.modules()):
        if isinstance(module, MultiHeadAttention) and not module.cross:
            FusedQKV(module)
    return model


class SlotKVCache(KVCache):
    """Self-attention keys and values in buffers of fixed capacity ``(b, g, T, dh)``; each step
    writes its keys at ``slot`` (a ``(1,)`` tensor) in place and attends over the whole buffer
    (the step's mask hides the slots not yet written)."""

    def __init__(self, k: Tensor, v: Tensor, slot: Tensor) -> None:  # noqa: D107 (own storage)
        self.k, self.v, self.slot = k, v, slot

    @property
    def length(self) -> int:  # type: ignore[override]
        return self.k.size(2)

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k.index_copy_(2, self.slot, k)
        self.v.index_copy_(2, self.slot, v)
        return self.k, self.v


class StaticStep(nn.Module):
    """``(embedded token (b, 1, d), slot (1,), source mask (b, s), cross k/v, self buffers)`` ->
    ``(b, V)`` logits, with the self-attention buffers written in place: the same shapes at
    every step, so that a compiler specializes once."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, slot: Tensor, src_mask: Tensor, cross: list[Tensor],
                buffers: list[Tensor]) -> Tensor:  # fmt: skip
        layers = []
        for i in range(len(buffers) // 2):
            fixed = StaticKVCache()
            fixed.update(cross[2 * i], cross[2 * i + 1])
            layers.append(LayerCache(SlotKVCache(buffers[2 * i], buffers[2 * i + 1], slot), fixed))
        capacity = buffers[0].size(2)
        written = (torch.arange(capacity, device=slot.device) <= slot)[None, None, None, :]
        hidden = self.model.decoder(
            x, None, memory_mask=src_mask[:, None, None, :], self_mask=written,
            cache=DecoderCache(layers),
        )  # fmt: skip
        return self.model.generator(hidden)[:, -1]


def static_greedy(model: nn.Module, step: Callable[..., Tensor], src: Tensor, n: int) -> Tensor:
    """Greedy search by formers' rules (:func:`~formers.decoding.base.constrain`) over the
    static-cache ``step``; every row gets exactly ``n`` steps (no row leaves the batch, so the
    shapes never change): ``(b, n - 1)`` tokens before the forced EOS."""
    mask, *cross = EncoderGraph(model)(src)  # (b, s), then each layer's cross k and v
    b = src.size(0)
    g, dh = cross[0].size(1), cross[0].size(3)
    buffers = [cross[0].new_zeros(b, g, n, dh) for _ in cross]
    limits = torch.full((b,), n)
    token = torch.full((b, 1), model.bos_id)
    out = []
    for i in range(n):
        slot = torch.tensor([i])
        x = model.tgt_embed(token, positions=slot.expand(b, 1))  # (b, 1, d)
        lprobs = F.log_softmax(step(x, slot, mask, cross, buffers).float(), dim=-1)
        constrain(lprobs, i, limits, pad_id=model.pad_id, bos_id=model.bos_id,
                  eos_id=model.eos_id, min_len=n - 1)  # fmt: skip
        token = lprobs.argmax(dim=-1, keepdim=True)
        out.append(token)
    return torch.cat(out, dim=1)[:, : n - 1]
