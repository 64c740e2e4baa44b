"""The decoding step of the standard encoder-decoder as one flat function, for fast search.

:meth:`formers.nn.EncoderDecoder.decode_step` goes through every module of the decoder: per layer
and step, about 25 module calls and 65 tensor operations (masks, position checks, views for the
general case: padded prompts, relative schemes, recorders), around its 8 matrix products. On a
CPU that bookkeeping costs as much as a third of a base-sized model's step at batch 1
(``benchmarks/README.md``). :class:`FlatStepDecoder` wraps such a model and computes the same
step with what the common case needs: per layer the products, two calls of PyTorch's fused
attention, the residual merges and the activation. It is a
:class:`~formers.decoding.base.Decodable`, so every search takes it in place of the model:

    greedy_search(FlatStepDecoder(model), src)  # the same tokens as greedy_search(model, src)

It reuses the model's own parts and state: the state is the model's
:class:`~formers.nn.encoder_decoder.Seq2SeqState` (its caches, reordered as usual), the
embedding and non-standard layers are called as modules, the two standard residual
arrangements (post- and pre-norm) are the functional calls their modules make (any other is
called as its module), and the products run through
:func:`formers.inference.gemm.row_product` (NumPy's, checked once per decode rather than per
layer, where the model uses :class:`~formers.inference.gemm.NumpyLinear`, and oneDNN's packed
product for a :class:`~formers.inference.onednn.OneDnnLinear`). So outputs equal
the model's, bit for bit on the same backend (tested).

Deviations from ``decode_step``, none of which changes a result:

- the cross-attention keys and values of every layer are projected in :meth:`init_decoding`,
  not in the first step;
- in an int8 model (:func:`~formers.inference.int8.quantize_int8`) the query, key and value
  products of each self-attention run as one int8 layer (:func:`~formers.inference.int8.
  fuse_int8`, made once per weights; the same output bit for bit, one kernel call instead of
  three), and so do they where the model multiplies in oneDNN (:func:`~formers.inference.
  onednn.fuse_onednn`: one packed product of the three weights stacked, the same bits on the
  CPU measured, which the tests check where they run);
- a step of more than one token, a cache holding padded prompts, a model in training mode, or
  gradients enabled go to the model's own ``decode_step`` (the same state serves both).

:class:`FlatLMStep` does the same for a :class:`~formers.nn.DecoderOnlyLM`'s one-token
:meth:`~formers.nn.DecoderOnlyLM.decode` (no cross-attention); :func:`formers.inference.generate`
decodes with it (:func:`fast_lm_decode`).

Models it cannot run (named by :func:`flat_step_unsupported` and
:func:`flat_lm_unsupported`): decoder layers other than
:class:`~formers.nn.layers.DecoderLayer`, attention other than the softmax of
:class:`~formers.nn.attention.MultiHeadAttention` with the ``sdpa`` or ``eager`` kernel, or
attention with a position scheme (rotary, relative: T5, Shaw). :func:`fast_decodable` and
:func:`fast_lm_decode` give those models (their own step) back unchanged.

Shapes: b rows (sentences times beams), d model width, h query heads, g key/value heads, dh head
dim, s source length, t cached target length, V vocabulary.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.inference.gemm import row_product
from formers.inference.int8 import fuse_int8
from formers.inference.onednn import fuse_onednn
from formers.nn.attention import MultiHeadAttention
from formers.nn.decoder_only import DecoderOnlyLM
from formers.nn.encoder_decoder import EncoderDecoder, Seq2SeqState
from formers.nn.feed_forward import FeedForward, GatedFeedForward
from formers.nn.kernels import eager_attention
from formers.nn.kv_cache import (
    DecoderCache,
    KVCache,
    LayerCache,
    StaticKVCache,
    group_mask,
    group_queries,
    ungroup_queries,
)
from formers.nn.layers import DecoderLayer
from formers.nn.mechanism import SoftmaxAttention
from formers.nn.norms import PostNormResidual, PreNormResidual
from formers.nn.stacks import Decoder

Rows = Callable[[Tensor], Tensor]  # (N, in) -> (N, out)
Merge = Callable[[Tensor, Tensor], Tensor]  # (stream, sublayer output) -> stream
_KERNELS = ("sdpa", "eager")  # the softmax kernels (eq. 1)
_STEP_METHODS = ("decode_step", "decode", "decode_hidden", "init_decoding")
_LM_METHODS = ("decode", "_logits", "_hidden", "new_cache")


def flat_step_unsupported(model: nn.Module) -> str | None:
    """Why :class:`FlatStepDecoder` cannot run ``model``'s step, or ``None`` if it can."""
    if not isinstance(model, EncoderDecoder):
        return f"{type(model).__name__} is not an EncoderDecoder"
    return _methods_overridden(model, EncoderDecoder, _STEP_METHODS) or _decoder_unsupported(
        model.decoder
    )


def flat_lm_unsupported(model: nn.Module) -> str | None:
    """Why :class:`FlatLMStep` cannot run ``model``'s step, or ``None`` if it can."""
    if not isinstance(model, DecoderOnlyLM):
        return f"{type(model).__name__} is not a DecoderOnlyLM"
    return _methods_overridden(model, DecoderOnlyLM, _LM_METHODS) or _decoder_unsupported(
        model.decoder
    )


def _methods_overridden(model: nn.Module, base: type, names: tuple[str, ...]) -> str | None:
    for name in names:
        if getattr(type(model), name) is not getattr(base, name):
            return f"{type(model).__name__} overrides {base.__name__}.{name}"
    return None


def _decoder_unsupported(decoder: nn.Module) -> str | None:
    if type(decoder) is not Decoder:
        return f"the decoder is a {type(decoder).__name__}, not a Decoder"
    for i, layer in enumerate(decoder.layers.steps()):
        if type(layer) is not DecoderLayer:
            return f"decoder layer {i} is a {type(layer).__name__}, not a DecoderLayer"
        for role in ("self_attn", "cross_attn"):
            attention = getattr(layer, role)
            reason = None if attention is None else _attention_unsupported(attention)
            if reason is not None:
                return f"decoder layer {i}'s {role}: {reason}"
    return None


def _refuse(reason: str | None) -> None:
    """Raise :class:`ValueError` with ``reason``, unless it is ``None`` (the model is supported)."""
    if reason is not None:
        raise ValueError(f"the flat decoding step cannot run this model: {reason}")


def _attention_unsupported(attention: nn.Module) -> str | None:
    if type(attention) is not MultiHeadAttention:
        return f"a {type(attention).__name__}, not a MultiHeadAttention"
    mechanism = attention.mechanism
    if type(mechanism) is not SoftmaxAttention or mechanism.kernel_name not in _KERNELS:
        return f"the {mechanism.name!r} mechanism, not softmax with a kernel in {list(_KERNELS)}"
    if attention.positions is not None:
        return f"the {attention.positions.name!r} position scheme"
    return None


@dataclass
class _Attention:
    """One attention sublayer's products and shape, for a one-token step. ``qkv``: the query,
    key and value products as one, where they fuse exactly (int8,
    :func:`~formers.inference.int8.fuse_int8`)."""

    q: Rows
    k: Rows
    v: Rows
    o: Rows
    heads: int
    kv_heads: int
    head_dim: int
    scale: float | None
    eager: bool
    qkv: Rows | None = None  # int8 or oneDNN: the three products as one, the same bits

    @classmethod
    def of(cls, attention: MultiHeadAttention, like: Tensor, fuse: bool = False) -> _Attention:
        linears = (attention.q_proj, attention.k_proj, attention.v_proj, attention.out_proj)
        return cls(
            *(row_product(linear, like) for linear in linears), attention.num_heads,
            attention.num_kv_heads, attention.head_dim, attention.scale,
            attention.mechanism.kernel_name == "eager",
            _fused_qkv(attention, like) if fuse else None,
        )  # fmt: skip

    def split(self, rows: Tensor, heads: int) -> Tensor:
        """``(b, heads * dh)`` -> ``(b, heads, 1, dh)``: one position per row."""
        return rows.view(rows.size(0), heads, 1, self.head_dim)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """``(b, h, 1, dh)`` queries over ``(b, g, t, dh)`` keys -> ``(b, d)`` after the output
        projection. One query is the last position, so causality masks nothing."""
        out = self.attention(q, k, v, mask)  # (b, h, 1, dh)
        return self.o(out.transpose(1, 2).reshape(q.size(0), self.heads * self.head_dim))

    def attention(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """``(b, h, n, dh)`` queries over ``(b, g, t, dh)`` keys, unmasked but for ``mask``."""
        if self.eager:  # the model's own kernel, so that the results are the same to the bit
            return eager_attention(q, k, v, mask=mask, scale=self.scale)[0]
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=self.scale, enable_gqa=self.heads != self.kv_heads
        )

    def self_attention(self, x: Tensor, cache: KVCache) -> Tensor:
        """``(b, d)`` -> ``(b, d)``; the new key and value are appended to ``cache``."""
        if self.qkv is None:
            q, k, v = self.q(x), self.k(x), self.v(x)
        else:
            q, k, v = self.qkv(x).split(
                [self.heads * self.head_dim, *[self.kv_heads * self.head_dim] * 2], dim=1
            )  # (b, h * dh), (b, g * dh), (b, g * dh)
        k, v = cache.update(self.split(k, self.kv_heads), self.split(v, self.kv_heads))
        return self.attend(self.split(q, self.heads), k, v, None)

    def cross_attention(self, x: Tensor, cache: StaticKVCache, mask: Tensor | None) -> Tensor:
        """``(b, d)`` -> ``(b, d)``. Where the cache's rows each serve ``group`` rows (beam
        search), each group's queries attend as one row, as in the model's softmax attention
        (:class:`~formers.nn.kv_cache.StaticKVCache`)."""
        k, v, group = cache.grouped()  # (b / group, g, s, dh), projected by init_decoding
        q = self.split(self.q(x), self.heads)  # (b, h, 1, dh)
        if group == 1:
            return self.attend(q, k, v, mask)
        mask = group_mask(mask, group, q.size(0))
        out = self.attention(group_queries(q, group), k, v, mask)  # (b / group, h, group, dh)
        return self.o(ungroup_queries(out, group).reshape(q.size(0), self.heads * self.head_dim))


# attention -> (its q, k, v layers' packed weights, their fused layer): made once per weights.
# The packed weights are held, not their ids: loading a state dict packs new ones in place of
# the old, and an id could come back for other weights.
_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _packed(linear: nn.Module) -> object:
    """What changes when an int8 layer gets new weights: its packed weights (else the layer)."""
    params = getattr(linear, "_packed_params", None)
    return linear if params is None else params._packed_params


def _fused_qkv(attention: MultiHeadAttention, like: Tensor) -> Rows | None:
    linears = (attention.q_proj, attention.k_proj, attention.v_proj)
    onednn = fuse_onednn(linears, like)
    if onednn is not None:
        return onednn
    weights = tuple(_packed(m) for m in linears)
    known = _FUSED.get(attention)
    if known is None or any(a is not b for a, b in zip(known[0], weights, strict=True)):
        known = _FUSED[attention] = (weights, fuse_int8(linears))
    return None if known[1] is None else row_product(known[1], like)


def _feed_forward(module: nn.Module, like: Tensor) -> Rows:
    """The position-wise network as a function of ``(b, d)`` rows: the two standard kinds with
    their products, any other module as itself (its dropout is off in eval mode)."""
    if type(module) is FeedForward:
        up, down, act = (
            row_product(module.up, like),
            row_product(module.down, like),
            module.activation,
        )
        return lambda x: down(act(up(x)))
    if type(module) is GatedFeedForward:
        gate, up = row_product(module.gate, like), row_product(module.up, like)
        down, act = row_product(module.down, like), module.activation
        return lambda x: down(act(gate(x)) * up(x))
    return module


def _norm(module: nn.Module) -> Rows:
    """A norm as a function: PyTorch's ``LayerNorm`` and ``RMSNorm`` as the functional call
    their ``forward`` makes (with the module's parameters, so in-place changes show), any
    other module as itself."""
    if type(module) is nn.LayerNorm:
        shape, weight, bias, eps = module.normalized_shape, module.weight, module.bias, module.eps
        return lambda x: F.layer_norm(x, shape, weight, bias, eps)
    if type(module) is nn.RMSNorm:
        shape, weight, eps = module.normalized_shape, module.weight, module.eps
        return lambda x: F.rms_norm(x, shape, weight, eps)
    return module


@dataclass
class _Residual:
    """A residual arrangement (:mod:`formers.nn.norms`) as two functions, ``sublayer_input``
    (``None``: the stream itself) and ``merge``. The two standard ones are written out without
    their module calls and their dropout, which is the identity in eval mode (the flat step
    runs only then); any other arrangement is called as its module."""

    sublayer_input: Rows | None
    merge: Merge

    @classmethod
    def of(cls, residual: nn.Module) -> _Residual:
        if type(residual) is PostNormResidual:  # norm(x + dropout(y))
            norm = _norm(residual.norm)
            return cls(None, lambda x, y: norm(x + y))
        if type(residual) is PreNormResidual:  # x + dropout(y), the sublayer reads norm(x)
            return cls(_norm(residual.norm), torch.add)
        return cls(residual.sublayer_input, residual.merge)

    def around(self, x: Tensor, sublayer: Rows) -> Tensor:
        """``(b, 1, d)`` -> ``(b, 1, d)``: ``sublayer`` (of ``(b, d)`` rows) with its residual."""
        b, d = x.size(0), x.size(-1)
        h = x if self.sublayer_input is None else self.sublayer_input(x)
        return self.merge(x, sublayer(h.view(b, d)).view(b, 1, d))


@dataclass
class _Layer:
    self_attn: _Attention
    cross_attn: _Attention | None
    feed_forward: Rows
    residuals: tuple[_Residual, _Residual | None, _Residual]  # self, cross, feed-forward

    def step(self, x: Tensor, caches: LayerCache, memory_mask: Tensor | None) -> Tensor:
        """``(b, 1, d)`` -> ``(b, 1, d)``: the layer's residual arrangements around its three
        sublayers, as :meth:`DecoderLayer.forward` with a one-token cache."""
        self_res, cross_res, ff_res = self.residuals
        x = self_res.around(x, lambda h: self.self_attn.self_attention(h, caches.self_attn))
        if self.cross_attn is not None:
            x = cross_res.around(
                x, lambda h: self.cross_attn.cross_attention(h, caches.cross_attn, memory_mask)
            )
        return ff_res.around(x, self.feed_forward)


def _plan(decoder: Decoder, like: Tensor) -> list[_Layer]:
    """Each step of ``decoder``'s stack, its products bound to its weights as they are now."""
    return [
        _Layer(
            _Attention.of(layer.self_attn, like, fuse=True),
            None if layer.cross_attn is None else _Attention.of(layer.cross_attn, like),
            _feed_forward(layer.feed_forward, like),
            (
                _Residual.of(layer.self_residual),
                None if layer.cross_residual is None else _Residual.of(layer.cross_residual),
                _Residual.of(layer.ff_residual),
            ),
        )
        for layer in decoder.layers.steps()
    ]


def _run(layers: list[_Layer], cache: DecoderCache, x: Tensor, mask: Tensor | None) -> Tensor:
    """``(b, 1, d)`` through every layer, each with its own cache."""
    for layer, caches in zip(layers, cache.layers, strict=True):
        x = layer.step(x, caches, mask)
    return x


@dataclass
class FlatState(Seq2SeqState):
    """:class:`~formers.nn.encoder_decoder.Seq2SeqState` with the flat step's plan for this
    decode (the products, bound to the weights as they are when decoding starts)."""

    layers: list[_Layer] | None = None
    generator: Rows | None = None
    memory_padded: bool = True


class FlatStepDecoder:
    """A :class:`~formers.decoding.base.Decodable` computing ``model``'s one-token steps flat
    (module docstring); anything else goes to the model.

    Args:
        model: an :class:`~formers.nn.EncoderDecoder` the flat step supports.

    Raises:
        ValueError: a model it cannot run, with the reason (:func:`flat_step_unsupported`).
    """

    def __init__(self, model: EncoderDecoder) -> None:
        _refuse(flat_step_unsupported(model))
        self.model = model
        self.pad_id, self.bos_id, self.eos_id = model.pad_id, model.bos_id, model.eos_id

    def init_decoding(self, src: Tensor) -> FlatState:
        """Encode ``(b, s)`` sources (the model's own :meth:`~formers.nn.EncoderDecoder.
        init_decoding`) and project every layer's cross-attention keys/values."""
        model = self.model
        state = model.init_decoding(src)
        memory, cache = state.memory, state.cache
        for layer, caches in zip(model.decoder.layers.steps(), cache.layers, strict=True):
            cross = layer.cross_attn
            if cross is not None:
                k, v = (cross._split(proj(memory), cross.num_kv_heads)
                        for proj in (cross.k_proj, cross.v_proj))  # fmt: skip  # (b, g, s, dh)
                caches.cross_attn.update(k, v)
        return FlatState(
            None, state.memory_mask, state.src_lengths, cache,
            layers=_plan(model.decoder, memory), generator=row_product(model.generator, memory),
            memory_padded=not bool(state.memory_mask.all()),
        )  # fmt: skip

    def decode_step(self, tokens: Tensor, state: Seq2SeqState) -> Tensor:
        """Feed ``(b, t_new)`` tokens; return the ``(b, V)`` next-token logits."""
        model = self.model
        flat = (
            isinstance(state, FlatState) and tokens.size(1) == 1 and state.cache.keys is None
            and not model.training and not torch.is_grad_enabled()
        )  # fmt: skip
        if not flat:
            return model.decode_step(tokens, state)
        x = model.tgt_embed(tokens, state.cache.length)  # (b, 1, d)
        mask = state.memory_mask if state.memory_padded else None  # (b, 1, 1, s)
        x = model.decoder.final_norm(_run(state.layers, state.cache, x, mask))
        return state.generator(x.view(x.size(0), x.size(-1)))  # (b, V)


class FlatLMStep:
    """A :class:`~formers.nn.DecoderOnlyLM`'s :meth:`~formers.nn.DecoderOnlyLM.decode`, flat
    for one-token steps (as :class:`FlatStepDecoder`, without cross-attention): what
    :func:`formers.inference.generate` decodes with. The products are bound to the weights at
    the first one-token step; a step of several tokens (the prompt), a cache with padded
    prompts or segment memory, training mode or enabled gradients go to the model.

    Args:
        model: a ``DecoderOnlyLM`` the flat step supports.

    Raises:
        ValueError: a model it cannot run, with the reason (:func:`flat_lm_unsupported`).
    """

    def __init__(self, model: DecoderOnlyLM) -> None:
        _refuse(flat_lm_unsupported(model))
        self.model = model
        self._plan: tuple[list[_Layer], Rows] | None = None

    def decode(self, tokens: Tensor, cache: DecoderCache) -> Tensor:
        """``(b, t_new)`` new tokens -> ``(b, t_new, V)`` logits, ``cache`` updated."""
        model = self.model
        flat = (
            tokens.size(1) == 1 and type(cache) is DecoderCache and cache.keys is None
            and not model.training and not torch.is_grad_enabled()
        )  # fmt: skip
        if not flat:
            return model.decode(tokens, cache)
        model._check_length(cache.length + 1)
        x = model.embed(tokens, cache.length)  # (b, 1, d)
        if self._plan is None:
            self._plan = _plan(model.decoder, x), row_product(model.generator, x)
        layers, generator = self._plan
        x = model.decoder.final_norm(_run(layers, cache, x, None))
        return generator(x.view(x.size(0), x.size(-1))).unsqueeze(1)  # (b, 1, V)


def fast_decodable(model: nn.Module) -> nn.Module | FlatStepDecoder:
    """``model`` wrapped in a :class:`FlatStepDecoder` when it supports one, else ``model``."""
    return model if flat_step_unsupported(model) is not None else FlatStepDecoder(model)


def fast_lm_decode(model: nn.Module) -> Callable[[Tensor, DecoderCache], Tensor]:
    """``decode(tokens, cache)``: a :class:`FlatLMStep`'s when ``model`` supports one, else the
    model's own."""
    return model.decode if flat_lm_unsupported(model) is not None else FlatLMStep(model).decode
