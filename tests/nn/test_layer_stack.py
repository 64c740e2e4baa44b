"""Layer stacks own the loop: each layer once, or one layer shared in depth (ALBERT), with a
decoding state per step and the attention of every step recorded."""

import pytest
import torch
from tolerance import assert_close_to_scale

from formers.models.transformer.builders import build_decoder, build_encoder
from formers.models.transformer.config import TransformerConfig
from formers.nn import AttentionRecorder, Decoder, Encoder
from formers.nn.layer_stack import LayerStack, SharedLayerStack

CFG = TransformerConfig(vocab_size=20, d_model=16, d_ff=32, num_heads=2, num_encoder_layers=1,
                        num_decoder_layers=1, dropout=0.0)  # fmt: skip


def shared_encoder(depth: int = 3) -> Encoder:
    (layer,) = build_encoder(CFG).layers
    return Encoder(SharedLayerStack(layer, depth)).double().eval()


def test_a_shared_layer_is_applied_depth_times_with_one_set_of_weights():
    encoder = shared_encoder(3)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        out = encoder(x)
        expected = x
        for _ in range(3):
            expected = encoder.layers[0](expected)
    assert_close_to_scale(out, expected)
    assert {key.split(".")[1] for key in encoder.state_dict()} == {"0"}  # layers.0 only
    assert encoder.layers.depth == 3 and len(list(encoder.layers.steps())) == 3
    assert isinstance(build_encoder(CFG).layers, LayerStack)  # plain lists become a stack
    with pytest.raises(ValueError, match="depth must be >= 1"):
        SharedLayerStack(encoder.layers[0], 0)


def test_a_shared_decoder_layer_has_a_state_per_step_and_decodes_with_a_cache():
    (layer,) = build_decoder(CFG).layers
    decoder = Decoder(SharedLayerStack(layer, 2)).double().eval()
    tgt = torch.randn(2, 6, 16, dtype=torch.float64)
    memory = torch.randn(2, 4, 16, dtype=torch.float64)
    cache = decoder.new_cache()
    assert len(cache.layers) == 2  # one per step: the same layer sees other keys at each depth
    with torch.no_grad():
        full = decoder(tgt, memory)
        steps = [decoder(tgt[:, i : i + 1], memory, cache=cache) for i in range(6)]
    assert_close_to_scale(torch.cat(steps, dim=1), full)


def test_the_attention_of_every_step_is_recorded_in_order():
    encoder = shared_encoder(3)
    x = torch.randn(1, 4, 16, dtype=torch.float64)
    attn = encoder.layers[0].self_attn
    with torch.no_grad(), AttentionRecorder(encoder) as recorder:
        encoder(x)
    maps = recorder.per_step(layer.self_attn for layer in encoder.layers.steps())
    assert len(maps) == 3 and maps == recorder.of(attn)
    assert not torch.equal(maps[0], maps[1])  # each depth attends over other states
    with pytest.raises(ValueError, match="ran 3 time"):
        recorder.per_step([attn] * 4)
