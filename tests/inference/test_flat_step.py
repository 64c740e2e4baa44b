"""The flat decoding step: the same tokens and scores as the model's own step, bit for bit, for
every arrangement it accepts; anything else goes to the model or is refused with the reason."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from formers.decoding import beam_search, greedy_search, sample
from formers.inference import gemm
from formers.inference.flat_step import (
    FlatLMStep,
    FlatState,
    FlatStepDecoder,
    fast_decodable,
    flat_lm_unsupported,
    flat_step_unsupported,
)
from formers.inference.int8 import engine_supported, quantize_int8
from formers.inference.layout import use_inference_layout
from formers.inference.onednn import fusion_checked, onednn_available, torch_rows
from formers.inference.translate import translate
from formers.nn.encoder_decoder import EncoderDecoder
from formers.nn.kernels import eager_attention
from formers.nn.norms import PostNormResidual
from inference.helpers import SENTENCES, WordTokenizer, tiny_gpt, tiny_model

# padded sources: the cross-attention needs the source mask
SRC = torch.tensor([[5, 6, 7, 8, 9, 2], [10, 11, 12, 2, 0, 0], [13, 5, 2, 0, 0, 0]])
FULL = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 11, 12, 2]])  # no padding: no mask

ARRANGEMENTS = {
    "paper": {},  # post-norm, ReLU, sinusoidal, shared and tied embeddings
    "pre-norm gelu": dict(norm_first=True, activation="gelu", num_decoder_layers=2),
    "rmsnorm swiglu no bias": dict(
        norm="rmsnorm", norm_first=True, activation="swiglu", bias=False
    ),
    "mqa learned positions": dict(num_heads=4, num_kv_heads=1, positions="learned"),
    "post-norm rmsnorm": dict(norm="rmsnorm", num_decoder_layers=2),
    "gqa untied eager": dict(
        num_heads=4,
        num_kv_heads=2,
        share_embeddings=False,
        tie_output=False,
        output_bias=True,
        kernel="eager",
        num_decoder_layers=2,
    ),  # fmt: skip
}


def _model(std: float = 0.4, **overrides) -> EncoderDecoder:
    """A tiny Transformer with large weights: decisive, source-dependent outputs."""
    model = tiny_model(vocab_size=40, seed=3, d_model=32, d_ff=64, **overrides)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=std)
    return model


def _searches(src: torch.Tensor):
    limits = dict(max_len_a=1.0, max_len_b=3)  # rows end at different steps: the batch shrinks
    return {
        "greedy": lambda m: greedy_search(m, src, **limits),
        "beam": lambda m: beam_search(m, src, beam_size=3, nbest=3, **limits),
        "sample": lambda m: sample(m, src, top_k=5, seed=7, **limits),
    }


def _same(ours, theirs) -> None:
    assert torch.equal(ours.tokens, theirs.tokens)
    assert torch.equal(ours.lengths, theirs.lengths)
    assert torch.equal(ours.scores, theirs.scores)
    for mine, yours in zip(ours.nbest or [], theirs.nbest or [], strict=True):
        assert [h.tokens.tolist() for h in mine] == [h.tokens.tolist() for h in yours]
        assert [h.log_prob for h in mine] == [h.log_prob for h in yours]


@pytest.fixture
def model_steps(monkeypatch) -> list[int]:
    """How many steps went through the model's own decode_step."""
    calls: list[int] = []
    real = EncoderDecoder.decode_step

    def spy(self, tokens, state):
        calls.append(tokens.size(1))
        return real(self, tokens, state)

    monkeypatch.setattr(EncoderDecoder, "decode_step", spy)
    return calls


@pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
@pytest.mark.parametrize("search", ["greedy", "beam", "sample"])
@pytest.mark.parametrize("src", [SRC, FULL], ids=["padded", "full"])
def test_flat_step_decodes_as_the_model(model_steps, arrangement, search, src):
    model = _model(**ARRANGEMENTS[arrangement])
    decode = _searches(src)[search]
    expected = decode(model)
    steps_of_the_model = len(model_steps)
    flat = FlatStepDecoder(model)
    _same(decode(flat), expected)
    assert len(model_steps) == steps_of_the_model  # every step was the flat one
    assert expected.tokens.size(1) > 1  # more than one step was compared


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_flat_step_with_numpy_products(monkeypatch, search):
    """Every layer multiplied by NumPy (the AMD default for large layers), once per call."""
    monkeypatch.setattr(gemm, "NUMPY_MIN_WEIGHTS", 0)
    model = use_inference_layout(_model(**ARRANGEMENTS["pre-norm gelu"]), "numpy")
    decode = _searches(SRC)[search]
    expected = decode(model)
    calls = []
    real = np.matmul
    monkeypatch.setattr(gemm.np, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    _same(decode(FlatStepDecoder(model)), expected)
    assert calls  # the flat step's products ran in NumPy


needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this PyTorch has no oneDNN")
needs_onednn_engine = pytest.mark.skipif(
    not engine_supported("onednn"), reason="this PyTorch has no onednn quantized engine"
)


@needs_onednn
@pytest.mark.parametrize("arrangement", sorted(ARRANGEMENTS))
@pytest.mark.parametrize("search", ["greedy", "beam"])
@pytest.mark.parametrize("few_rows", [None, "torch", "numpy"])
def test_flat_step_with_onednn_products(monkeypatch, arrangement, search, few_rows):
    """Every layer multiplied by oneDNN (the default on CPUs with AVX-512), each
    self-attention's three products fused into one: the same bits as the model's step; with a
    one-row product (Intel CPUs: PyTorch's; AMD CPUs: NumPy's) one source's greedy rows take
    it in both."""
    monkeypatch.setattr(gemm, "ONEDNN_MIN_WEIGHTS", 0)
    rule = {None: (1, torch_rows), "torch": (2, torch_rows), "numpy": (2, gemm.numpy_rows)}
    monkeypatch.setattr(gemm, "onednn_few_rows", lambda: rule[few_rows])
    model = use_inference_layout(_model(**ARRANGEMENTS[arrangement]), "onednn")
    flat = FlatStepDecoder(model)
    with torch.no_grad():
        fused = [layer.self_attn.qkv is not None for layer in flat.init_decoding(SRC).layers]
    assert all(fused) if fusion_checked() else not any(fused)
    calls: list[int] = []
    real = gemm.np.matmul
    monkeypatch.setattr(gemm.np, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    for src in (SRC, SRC[:1]):
        decode = _searches(src)[search]
        _same(decode(flat), decode(model))
    if few_rows != "numpy":
        assert not calls
    elif search == "greedy":
        assert calls, "one source's greedy rows multiplied in NumPy"


@pytest.mark.parametrize("arrangement", ["paper", "mqa learned positions"])
@pytest.mark.parametrize("onednn_rows", [None, pytest.param(2, marks=needs_onednn_engine)])
def test_flat_step_of_an_int8_model(arrangement, onednn_rows):
    """Its self-attention products fused into one int8 layer (exact, as tested in test_int8);
    with products of two rows or more under oneDNN (beam search, the batch), one row under
    fbgemm (greedy of one source), as in the model."""
    model = quantize_int8(_model(**ARRANGEMENTS[arrangement]), onednn_rows=onednn_rows)
    flat = FlatStepDecoder(model)
    assert all(layer.self_attn.qkv is not None for layer in flat.init_decoding(SRC).layers)
    for src in (SRC, SRC[:1]):
        for decode in _searches(src).values():
            _same(decode(flat), decode(model))


def test_new_int8_weights_are_fused_again():
    """Loading another int8 model's weights repacks them in place: the fused layer follows."""
    model, other = quantize_int8(_model()), quantize_int8(_model(std=0.6))
    flat, greedy = FlatStepDecoder(model), _searches(SRC)["greedy"]
    before = greedy(flat)
    model.load_state_dict(other.state_dict())
    after = greedy(flat)
    _same(after, greedy(other))
    assert not torch.equal(after.scores, before.scores)


def test_flat_step_of_a_shared_layer_stack():
    """A stack that applies one layer twice (ALBERT-style) has a cache per application."""
    from formers.nn.layer_stack import SharedLayerStack

    model = _model()
    model.decoder.layers = SharedLayerStack(model.decoder.layers[0], 3)
    for decode in _searches(SRC).values():
        _same(decode(FlatStepDecoder(model)), decode(model))


class _HalfResidual(PostNormResidual):
    """Another arrangement: ``norm(x + y / 2)``."""

    calls = 0

    def merge(self, x, y):
        _HalfResidual.calls += 1
        return super().merge(x, y / 2)


def test_another_residual_arrangement_is_called_as_its_module():
    """The standard arrangements are written out in the flat step; a subclass is not one of
    them and keeps its own merge."""
    model = _model()
    for layer in model.decoder.layers:
        old = layer.ff_residual
        layer.ff_residual = _HalfResidual(old.norm)
    expected = _searches(SRC)["greedy"](model)
    calls = _HalfResidual.calls
    _same(_searches(SRC)["greedy"](FlatStepDecoder(model)), expected)
    assert _HalfResidual.calls > calls  # the flat step called it
    assert not torch.equal(expected.scores, _searches(SRC)["greedy"](_model()).scores)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("onednn", marks=needs_onednn)])
def test_weights_changed_between_decodes_are_seen(monkeypatch, backend):
    """The products are bound to the weights when a decode starts: weights loaded in place, or
    given new storage, count from the next decode."""
    monkeypatch.setattr(gemm, "NUMPY_MIN_WEIGHTS", 0)
    monkeypatch.setattr(gemm, "ONEDNN_MIN_WEIGHTS", 0)
    model = use_inference_layout(_model(), backend)
    flat, greedy = FlatStepDecoder(model), _searches(SRC)["greedy"]
    before = greedy(flat)
    other = _model(std=0.6)
    model.load_state_dict(other.state_dict())  # in place
    loaded = greedy(flat)
    _same(loaded, greedy(model))
    assert not torch.equal(loaded.scores, before.scores)
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data * 1.5  # new storage
    _same(greedy(flat), greedy(model))
    assert not torch.equal(greedy(flat).scores, loaded.scores)


def test_other_steps_go_to_the_model(model_steps):
    """Two tokens at once, then one: the first is the model's step, the second the flat one,
    on the same state; logits equal the model's throughout."""
    model = _model()
    flat = FlatStepDecoder(model)
    with torch.inference_mode():
        ours, theirs = flat.init_decoding(SRC), model.init_decoding(SRC)
        assert isinstance(ours, FlatState)
        two = torch.tensor([[1, 7], [1, 8], [1, 9]])
        assert torch.equal(flat.decode_step(two, ours), model.decode_step(two, theirs))
        assert model_steps == [2, 2]
        one = torch.tensor([[5], [6], [7]])
        assert torch.equal(flat.decode_step(one, ours), model.decode_step(one, theirs))
        assert model_steps == [2, 2, 1]


def test_training_mode_and_gradients_go_to_the_model(model_steps):
    model = _model()
    flat = FlatStepDecoder(model)
    state = flat.init_decoding(SRC)
    one = torch.tensor([[1], [1], [1]])
    with torch.enable_grad():
        flat.decode_step(one, state)
    model.train()
    with torch.no_grad():
        flat.decode_step(one, state)
    assert model_steps == [1, 1]


def _rotary():
    return _model(positions="rotary")


def _t5():
    from formers.models.t5 import T5Config, build_t5

    return build_t5(T5Config(vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2))


def _own_kernel():
    model = _model()
    for layer in model.decoder.layers:
        layer.self_attn.mechanism.kernel_name = eager_attention.__name__  # a callable kernel
    return model


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_rotary, "decoder layer 0's self_attn: the 'rotary' position scheme"),
        (_t5, "position scheme"),
        (_own_kernel, "not softmax with a kernel in ['sdpa', 'eager']"),
        (lambda: tiny_gpt(), "DecoderOnlyLM is not an EncoderDecoder"),
    ],
    ids=["rotary", "t5", "own kernel", "gpt"],
)
def test_unsupported_models_are_named_and_kept(make, reason):
    model = make()
    assert reason in flat_step_unsupported(model)
    with pytest.raises(ValueError, match="the flat decoding step cannot run this model"):
        FlatStepDecoder(model)
    assert fast_decodable(model) is model


def test_translate_decodes_with_the_flat_step(monkeypatch, model_steps):
    tokenizer, model = WordTokenizer(), tiny_model()
    flat_steps = []
    real = FlatStepDecoder.decode_step

    def spy(self, tokens, state):
        flat_steps.append(tokens.size(1))
        return real(self, tokens, state)

    monkeypatch.setattr(FlatStepDecoder, "decode_step", spy)
    for beam in (1, 4):
        ours = translate(model, tokenizer, SENTENCES, beam=beam)
        assert flat_steps and model_steps == []  # every step was the flat one
        with monkeypatch.context() as without:
            without.setattr(
                sys.modules["formers.inference.translate"], "fast_decodable", lambda m: m
            )
            theirs = translate(model, tokenizer, SENTENCES, beam=beam)
        assert model_steps  # the model's own steps, this time
        assert [[t.text for t in hyps] for hyps in ours] == [[t.text for t in h] for h in theirs]
        flat_steps.clear(), model_steps.clear()


# --- decoder-only models: FlatLMStep, what generate decodes with ---------------------------


def _lm(std: float = 0.4, **overrides):
    from formers.models.gpt import GPTConfig, build_gpt

    torch.manual_seed(1)
    cfg = GPTConfig(
        vocab_size=40, d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.0,
        attention_dropout=0.0, context_length=24, bos_id=1, eos_id=None, **overrides,
    )  # fmt: skip
    model = build_gpt(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=std)
    return model


LM_ARRANGEMENTS = {
    "gpt2": {},
    "llama without rotary": dict(
        num_kv_heads=2, activation="swiglu", norm="rmsnorm", tie_output=False, bias=False
    ),
}


@pytest.mark.parametrize("arrangement", sorted(LM_ARRANGEMENTS))
@pytest.mark.parametrize(
    "kind", ["float", "numpy", pytest.param("onednn", marks=needs_onednn), "int8"]
)
def test_flat_lm_step_decodes_as_the_model(monkeypatch, arrangement, kind):
    """Logits of a prompt, then of one token at a time, equal the model's own bit for bit."""
    monkeypatch.setattr(gemm, "NUMPY_MIN_WEIGHTS", 0)
    monkeypatch.setattr(gemm, "ONEDNN_MIN_WEIGHTS", 0)
    model = _lm(**LM_ARRANGEMENTS[arrangement])
    model = {"float": lambda m: m, "numpy": lambda m: use_inference_layout(m, "numpy"),
             "onednn": lambda m: use_inference_layout(m, "onednn"),
             "int8": quantize_int8}[kind](model)  # fmt: skip
    flat = FlatLMStep(model)
    model_steps = []
    real = type(model).decode
    monkeypatch.setattr(
        type(model), "decode", lambda s, t, c: model_steps.append(t.size(1)) or real(s, t, c)
    )
    prompt, steps = (
        torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]]),
        torch.tensor([[3, 4], [5, 6], [7, 8]]),
    )
    with torch.inference_mode():
        ours, theirs = model.new_cache(), model.new_cache()
        assert torch.equal(flat.decode(prompt, ours), real(model, prompt, theirs))
        for step in steps:
            assert torch.equal(flat.decode(step[:, None], ours), real(model, step[:, None], theirs))
    assert model_steps == [4]  # the prompt went to the model, the single tokens did not


def test_generate_decodes_with_the_flat_step(monkeypatch):
    from formers.inference.generate import generate

    model = _lm()
    flat_steps = []
    real = FlatLMStep.decode
    monkeypatch.setattr(
        FlatLMStep, "decode", lambda s, t, c: flat_steps.append(t.size(1)) or real(s, t, c)
    )
    for options in (dict(temperature=0), dict(temperature=0.9, top_k=10, seed=3)):
        ours = generate(model, [1, 5, 6], max_new_tokens=12, **options)
        with monkeypatch.context() as without:
            without.setattr(
                sys.modules["formers.inference.generate"], "fast_lm_decode", lambda m: m.decode
            )
            assert generate(model, [1, 5, 6], max_new_tokens=12, **options) == ours
    assert flat_steps.count(1) == 2 * 11  # every token after the prompt's


def test_lm_models_the_flat_step_cannot_run_are_named_and_kept():
    from formers.inference.flat_step import fast_lm_decode

    model = _lm(positions="rotary")
    assert "'rotary' position scheme" in flat_lm_unsupported(model)
    with pytest.raises(ValueError, match="cannot run this model"):
        FlatLMStep(model)
    assert fast_lm_decode(model) == model.decode
    assert "EncoderDecoder is not a DecoderOnlyLM" in flat_lm_unsupported(_model())
    assert "DecoderOnlyLM is not an EncoderDecoder" in flat_step_unsupported(_lm())
