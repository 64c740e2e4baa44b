"""int8 inference (PyTorch dynamic quantization): every linear layer becomes int8, the float
model is left as it was, and the int8 model's predictions stay close to float32's; a device
without int8 kernels is refused before anything is loaded."""

from __future__ import annotations

import copy

import pytest
import torch

from formers.inference import int8 as int8_module
from formers.inference.gemm import row_product
from formers.inference.int8 import (
    Int8Error,
    Int8Linear,
    check_int8,
    count_parameters,
    decoding_device,
    engine_supported,
    fuse_int8,
    is_int8,
    quantize_int8,
    quantized_engine,
)
from formers.inference.translate import translate
from tests.export.helpers import TASK, char_gpt, sources, trained_translator

QuantizedLinear = torch.ao.nn.quantized.dynamic.Linear
needs_onednn_engine = pytest.mark.skipif(
    not engine_supported("onednn"), reason="this PyTorch build has no onednn quantized engine"
)


@pytest.fixture(scope="module")
def translator() -> torch.nn.Module:
    return trained_translator({}, steps=200)


def test_every_linear_is_int8_and_the_float_model_is_untouched(translator):
    before = copy.deepcopy(translator.state_dict())
    quantized = quantize_int8(translator)
    assert is_int8(quantized) and not is_int8(translator)
    linears = [m for m in quantized.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears  # all replaced, the tied output projection included
    # 2 encoder layers (q, k, v, out, up, down), 2 decoder layers (+ cross q, k, v, out), output
    assert sum(isinstance(m, QuantizedLinear) for m in quantized.modules()) == 2 * 6 + 2 * 10 + 1
    for name, tensor in translator.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert count_parameters(quantized) >= count_parameters(translator)  # tied copy counted


def test_int8_predictions_stay_close(translator):
    from formers.data.symbol_tokenizer import SymbolTokenizer

    tokenizer = SymbolTokenizer(TASK.num_symbols)
    quantized = quantize_int8(translator)
    lines = sources(48)
    src = torch.tensor([tokenizer.encode(lines[0])])
    tgt = torch.tensor([[translator.bos_id, *reversed(src[0].tolist())]])
    with torch.no_grad():
        a, b = translator(src, tgt).log_softmax(-1), quantized(src, tgt).log_softmax(-1)
    assert 0 < (a - b).abs().max() < 0.25  # quantized, and near
    ours = [h[0].tokens for h in translate(translator, tokenizer, lines, beam=4)]
    theirs = [h[0].tokens for h in translate(quantized, tokenizer, lines, beam=4)]
    # a briefly trained model holds near-ties; most outputs are still the same (41 of 48 here)
    assert sum(o == t for o, t in zip(ours, theirs, strict=True)) >= 0.75 * len(lines)


def test_int8_language_model_generates():
    from formers.inference.generate import generate

    model, tokenizer = char_gpt()
    prompt = tokenizer.encode("hello")
    out = generate(quantize_int8(model), prompt, max_new_tokens=8, temperature=0.0)
    assert len(out) == 8


def test_int8_is_refused_off_the_cpu():
    with pytest.raises(Int8Error, match="--int8 runs on a CPU only .* no cuda kernels"):
        check_int8("cuda:0")
    with pytest.raises(Int8Error, match="no meta kernels"):
        decoding_device("meta", int8=True)
    assert decoding_device("auto", int8=True) == torch.device("cpu")
    model = torch.nn.Linear(2, 2).to("meta")
    with pytest.raises(Int8Error, match="needs the model on a CPU"):
        quantize_int8(model)


@pytest.mark.parametrize("biases", [(True, True, True), (False, False, False), (True, False, True)])
@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("onednn_rows", [None, pytest.param(4, marks=needs_onednn_engine)])
def test_fused_int8_layers_equal_the_separate_ones(biases, rows, onednn_rows):
    """Query, key and value widths may differ (GQA): the fused output is the three side by
    side, bit for bit, under either engine (7 rows over ``onednn_rows=4``: oneDNN's)."""
    layers = torch.nn.Sequential(*(torch.nn.Linear(24, out, bias=b) for out, b in
                                   zip((16, 8, 8), biases, strict=True)))  # fmt: skip
    quantized = list(quantize_int8(layers, onednn_rows=onednn_rows))
    fused = fuse_int8(quantized)
    assert type(fused) is Int8Linear and fused.out_features == 32
    x = torch.randn(rows, 24) * 3
    with torch.inference_mode():
        assert torch.equal(fused(x), torch.cat([layer(x) for layer in quantized], dim=1))


def test_what_cannot_be_fused_is_refused():
    int8 = list(quantize_int8(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(6, 4))))
    assert fuse_int8(int8) is None  # two input widths
    assert fuse_int8(int8[:1]) is None  # nothing to fuse
    assert fuse_int8([torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)]) is None  # float layers


@pytest.mark.parametrize("rows", [1, 7])
def test_the_int8_row_product_is_the_layers_forward(rows):
    """The decoding step calls the layer's op directly (``gemm.int8_product``): the same bits as
    the module, also after other weights are loaded into it."""
    layer, other = (quantize_int8(torch.nn.Sequential(torch.nn.Linear(24, 16)))[0] for _ in "ab")
    x = torch.randn(rows, 24) * 3
    product = row_product(layer, x)
    assert not isinstance(product, torch.nn.Module)
    with torch.inference_mode():
        assert torch.equal(product(x), layer(x))
        layer.load_state_dict(other.state_dict())
        assert torch.equal(product(x), other(x))
    assert row_product(layer, x.double()) is layer  # not float32: the module and its checks


@pytest.mark.parametrize("rows", [1, 7])
def test_int8_calls_give_pytorchs_own_layer_bits(rows):
    """The forward and the step's row product call the op without PyTorch's
    ``__torch_function__`` lookup on the packed weights (``int8.linear_dynamic``): the output of
    PyTorch's own dynamic layer (its forward, through the op's usual call), bit for bit."""
    linear = torch.nn.Linear(24, 16)
    ours = quantize_int8(torch.nn.Sequential(linear), onednn_rows=None)[0]
    theirs = _under_engine(quantized_engine(), linear)
    assert type(theirs) is torch.ao.nn.quantized.dynamic.Linear
    x = torch.randn(rows, 24) * 3
    with torch.inference_mode():
        assert torch.equal(ours(x), theirs(x))
        assert torch.equal(row_product(ours, x)(x), theirs(x))
        assert torch.equal(ours(x.view(1, rows, 24)), theirs(x.view(1, rows, 24)))


def test_an_input_subclass_keeps_its_torch_function():
    """``__torch_function__`` is off only for plain tensors' calls: an input of a subclass
    goes through PyTorch's layer, whose op call reaches the subclass's override."""

    class Seen(torch.Tensor):
        calls: list = []

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            cls.calls.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    layer = quantize_int8(torch.nn.Sequential(torch.nn.Linear(24, 16)))[0]
    x = torch.randn(2, 24)
    with torch.inference_mode():
        out = layer(x.as_subclass(Seen))
        assert torch.equal(out.as_subclass(torch.Tensor), layer(x))
    assert any("linear_dynamic" in str(func) for func in Seen.calls)


def _under_engine(engine: str, linear: torch.nn.Linear) -> torch.nn.Module:
    """PyTorch's own dynamic int8 layer of ``linear``, packed under ``engine``."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        return torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(linear), {torch.nn.Linear: torch.ao.quantization.
                                          per_channel_dynamic_qconfig}, dtype=torch.qint8,
        )[0]  # fmt: skip
    finally:
        torch.backends.quantized.engine = before


@needs_onednn_engine
def test_products_of_many_rows_run_under_the_onednn_engine():
    """From ``onednn_rows`` rows up the layer gives what PyTorch's layer packed under the onednn
    engine gives, bit for bit, in its forward and as the step's row product; below, fbgemm's
    (x86); weights loaded later are packed for oneDNN again."""
    first, second = torch.nn.Linear(48, 40), torch.nn.Linear(48, 40)
    layer = quantize_int8(torch.nn.Sequential(first), onednn_rows=4)[0]
    other = quantize_int8(torch.nn.Sequential(second), onednn_rows=4)[0]
    few, many = torch.randn(3, 48) * 3, torch.randn(9, 48) * 3
    with torch.inference_mode():
        assert torch.equal(layer(few), _under_engine(quantized_engine(), first)(few))
        assert layer not in int8_module._ONEDNN  # nothing packed for oneDNN yet
        exactly = torch.randn(4, 48) * 3  # onednn_rows itself is oneDNN's
        assert torch.equal(layer(exactly), _under_engine("onednn", first)(exactly))
        assert layer in int8_module._ONEDNN
        for run in (layer, row_product(layer, many)):
            assert torch.equal(run(many), _under_engine("onednn", first)(many))
            assert torch.equal(run(few), layer(few))
        assert layer in int8_module._ONEDNN
        assert torch.equal(layer(many.view(3, 3, 48)).view(9, 40), layer(many))  # rows, not dim 0
        layer.load_state_dict(other.state_dict())
        assert torch.equal(layer(many), _under_engine("onednn", second)(many))
    with pytest.raises(Int8Error, match="onednn"), pytest.MonkeyPatch.context() as patch:
        patch.setattr(int8_module, "engine_supported", lambda name: name != "onednn")
        quantize_int8(torch.nn.Sequential(first), onednn_rows=4)


def test_quantize_int8_leaves_pytorchs_engine_as_it_was():
    """The layers are packed for :func:`quantized_engine` (fbgemm/x86 kernels) whatever PyTorch's
    global quantized engine is, and that global is restored, also by fusing."""
    before, linear = torch.backends.quantized.engine, torch.nn.Linear(48, 40)
    x = torch.randn(3, 48) * 3
    try:
        torch.backends.quantized.engine = "qnnpack"
        layers = list(quantize_int8(torch.nn.Sequential(linear, copy.deepcopy(linear))))
        fused = fuse_int8(layers)
        assert torch.backends.quantized.engine == "qnnpack"
    finally:
        torch.backends.quantized.engine = before
    with torch.inference_mode():
        expected = _under_engine(quantized_engine(), linear)(x)
        assert torch.equal(layers[0](x), expected)
        assert torch.equal(fused(x)[:, :40], expected)
