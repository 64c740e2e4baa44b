"""Text generation with a decoder-only model: greedy decoding against a from-scratch argmax
reference (inside and past the context), sampling controls, streaming, and option errors."""

from __future__ import annotations

import re

import pytest
import torch

from formers.inference.generate import generate, generate_stream
from formers.models.gpt import GPTConfig, build_gpt
from formers.nn.decoder_only import DecoderOnlyLM

VOCAB, BOS, EOS, CONTEXT = 40, 1, 2, 16
SHAPES = {
    "gpt2": {},
    "llama": dict(
        num_kv_heads=2, activation="swiglu", norm="rmsnorm", positions="rotary",
        tie_output=False, bias=False,
    ),
}  # fmt: skip


def _model(bos_id: int | None = BOS, eos_id: int | None = EOS, **overrides) -> DecoderOnlyLM:
    cfg = GPTConfig(
        vocab_size=VOCAB, d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.0,
        attention_dropout=0.0, context_length=CONTEXT, bos_id=bos_id, eos_id=eos_id,
        **overrides,
    )  # fmt: skip
    model = build_gpt(cfg).eval()
    with torch.no_grad():  # larger weights: peaky, varied next-token distributions
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.4)
    return model


@pytest.fixture(params=list(SHAPES))
def model(request) -> DecoderOnlyLM:
    # no EOS: every run produces exactly max_new_tokens, so lengths are comparable
    return _model(eos_id=None, **SHAPES[request.param])


@torch.no_grad()
def _greedy_reference(model: DecoderOnlyLM, prompt: list[int], n: int) -> list[int]:
    """Argmax of a full forward pass over the last ``context_length`` tokens, every step."""
    tokens = list(prompt)
    for _ in range(n):
        window = torch.tensor([tokens[-model.context_length :]])
        tokens.append(int(model(window)[0, -1].argmax()))
    return tokens[len(prompt) :]


def test_greedy_equals_argmax_of_the_full_forward(model):
    prompt = [3, 9, 4, 27]
    out = generate(model, prompt, max_new_tokens=10, temperature=0)
    assert out == _greedy_reference(model, prompt, 10)
    assert len(set(out)) > 2  # not a degenerate repetition that any bug would reproduce


def test_generation_past_the_context_slides_the_window(model):
    prompt = [5, 11, 7, 30, 8, 21, 14, 3, 9, 12]
    n = 3 * CONTEXT  # runs far past the 16 positions the model can see
    out = generate(model, prompt, max_new_tokens=n, temperature=0)
    assert len(out) == n
    assert out == _greedy_reference(model, prompt, n)


def test_a_prompt_that_fills_the_context_exactly(model):
    prompt = [(7 * i) % VOCAB for i in range(CONTEXT)]
    assert generate(model, prompt, max_new_tokens=5, temperature=0) == _greedy_reference(
        model, prompt, 5
    )


def test_the_prompt_is_read_in_one_pass_then_one_token_per_step(model):
    """Counted at the embedding, which every pass reads (the model's own and the flat step)."""
    lengths = []
    hook = model.embed.register_forward_hook(lambda m, args, out: lengths.append(out.size(1)))
    try:
        generate(model, [4, 5, 6, 7, 8], max_new_tokens=6, temperature=0)
    finally:
        hook.remove()
    assert lengths == [5, 1, 1, 1, 1, 1]  # the last token needs no forward pass


def test_streaming_yields_what_generate_returns(model):
    options = dict(max_new_tokens=12, temperature=0.9, top_k=10, top_p=0.9, seed=3)
    stream = generate_stream(model, [3, 4], **options)
    first = next(stream)
    assert isinstance(first, int)
    assert [first, *stream] == generate(model, [3, 4], **options)


def test_seed_makes_sampling_reproducible(model):
    runs = {seed: generate(model, [3], max_new_tokens=20, seed=seed) for seed in range(4)}
    assert generate(model, [3], max_new_tokens=20, seed=2) == runs[2]
    assert len({tuple(r) for r in runs.values()}) > 1  # different seeds, different samples
    before = torch.random.get_rng_state()
    generate(model, [3], max_new_tokens=5, seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is untouched


@pytest.mark.parametrize("controls", [dict(top_k=1), dict(top_p=1e-6), dict(temperature=1e-4)])
def test_sampling_controls_that_leave_one_token_equal_greedy(model, controls):
    greedy = generate(model, [3, 8], max_new_tokens=15, temperature=0)
    assert (
        generate(model, [3, 8], max_new_tokens=15, seed=0, **{"temperature": 1.5, **controls})
        == greedy
    )


def test_top_k_limits_the_choice():
    model = _model(eos_id=None)
    with torch.no_grad():
        logits = model(torch.tensor([[3, 8]]))[0, -1]
    allowed = set(logits.topk(3).indices.tolist())
    firsts = {generate(model, [3, 8], max_new_tokens=1, top_k=3, seed=s)[0] for s in range(40)}
    assert firsts <= allowed and len(firsts) > 1


def test_eos_stops_generation_and_is_yielded():
    model = _model(eos_id=None)
    first = generate(model, [3, 8], max_new_tokens=5, temperature=0)[0]
    with_eos = _model(eos_id=first)
    with_eos.load_state_dict(model.state_dict())
    assert generate(with_eos, [3, 8], max_new_tokens=5, temperature=0) == [first]
    assert len(generate(with_eos, [3, 8], max_new_tokens=5, temperature=0, stop_at_eos=False)) == 5


def test_an_empty_prompt_starts_from_bos():
    model = _model(eos_id=None)
    assert generate(model, [], max_new_tokens=6, temperature=0) == generate(
        model, [BOS], max_new_tokens=6, temperature=0
    )
    with pytest.raises(ValueError, match="prompt is empty and the model has no bos_id"):
        generate_stream(_model(bos_id=None), [], max_new_tokens=3)


def test_a_prompt_longer_than_the_context_is_refused():
    with pytest.raises(
        ValueError, match=re.escape("prompt has 17 tokens but the model's context_length is 16")
    ):
        generate_stream(_model(), [3] * 17, max_new_tokens=1)  # raised at the call, not at next()


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        (dict(max_new_tokens=0), r"max_new_tokens must be an integer in \[1, 100,000\], got 0"),
        (dict(max_new_tokens=2.5), r"max_new_tokens must be an integer in \[1, 100,000\]"),
        (dict(max_new_tokens=10**9), r"max_new_tokens must be an integer in \[1, 100,000\]"),
        (dict(max_new_tokens=3, temperature=-0.1), r"temperature must be a number in \[0.0, 100"),
        (dict(max_new_tokens=3, temperature=float("nan")), "temperature must be a finite number"),
        (dict(max_new_tokens=3, top_k=-1), r"top_k must be an integer in \[0, 1,000,000\]"),
        (dict(max_new_tokens=3, top_p=0.0), r"top_p must be a number in \(0.0, 1.0\]"),
        (dict(max_new_tokens=3, top_p=1.5), r"top_p must be a number in \(0.0, 1.0\]"),
        (dict(max_new_tokens=3, seed=2**64), r"seed must be an integer in"),
    ],
)
def test_bad_options_are_refused(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        generate_stream(_model(), [3], **options)


def test_prompt_ids_outside_the_vocabulary_are_refused():
    with pytest.raises(ValueError, match=r"prompt ids \[40\] are outside the vocabulary \[0, 40\)"):
        generate(_model(), [3, 40], max_new_tokens=1)


def test_training_mode_and_autograd_are_restored_between_tokens():
    model = _model()
    model.train()
    stream = generate_stream(model, [3, 4], max_new_tokens=4, temperature=0, stop_at_eos=False)
    for _ in stream:
        assert model.training
        assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    model.eval()
    assert generate(model, [3, 4], max_new_tokens=4, temperature=0, stop_at_eos=False) == generate(
        model.train(), [3, 4], max_new_tokens=4, temperature=0, stop_at_eos=False
    )
