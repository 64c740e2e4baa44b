"""A tiny untrained model and a word-level stand-in for the SentencePiece tokenizer."""

from collections.abc import Sequence

import torch

from formers.models import TransformerConfig, build_transformer

WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]
SENTENCES = [
    "a b c",
    "d",
    "e f g h i j",
    "k l a",
    "b b b b b b b b b",
    "c d",
    "l k j i h",
    "g",
    "a l",
    "f e d c b a",
]


class WordTokenizer:
    """Whitespace words over a fixed vocabulary; the special ids of the real tokenizer."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Sequence[str] = WORDS) -> None:
        self.words = list(words)
        self.ids = {w: i + 4 for i, w in enumerate(self.words)}

    @property
    def vocab_size(self) -> int:
        return len(self.words) + 4

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(w, self.unk_id) for w in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        special = (self.pad_id, self.bos_id, self.eos_id)
        return " ".join(
            "<unk>" if i == self.unk_id else self.words[i - 4] for i in ids if i not in special
        )


def tiny_config(vocab_size: int = len(WORDS) + 4, **overrides) -> TransformerConfig:
    values = dict(
        vocab_size=vocab_size, d_model=16, d_ff=32, num_heads=2, num_encoder_layers=1,
        num_decoder_layers=1, dropout=0.0,
    )  # fmt: skip
    values.update(overrides)
    return TransformerConfig(**values)


def tiny_model(vocab_size: int = len(WORDS) + 4, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_transformer(tiny_config(vocab_size, **overrides)).eval()


def decisive_model(std: float = 0.3):
    """The tiny Transformer (vocabulary 40, 32 wide) with larger weights: decisive,
    source-dependent outputs, for comparing two ways of decoding."""
    model = tiny_model(vocab_size=40, seed=5, d_model=32, d_ff=64, num_heads=4)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=std)
    return model


def tiny_gpt(std: float | None = None):
    """A 2-layer GPT (vocabulary 50, 32 wide, context 32), seeded; ``std``: larger weights for
    decisive next-token choices."""
    from formers.models.gpt import GPTConfig, build_gpt

    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=50, d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.0,
        attention_dropout=0.0, context_length=32,
    )  # fmt: skip
    model = build_gpt(cfg).eval()
    if std is not None:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(std=std)
    return model


PARALLEL = [
    ("the cat sat on the mat", "die katze sitzt auf der matte"),
    ("a dog runs in the park", "ein hund rennt im park"),
    ("two men are playing football", "zwei männer spielen fußball"),
    ("a woman reads a book", "eine frau liest ein buch"),
]


def train_tokenizer(vocab_size: int = 40):
    """The real SentencePiece tokenizer, trained on a few sentences of both languages."""
    from formers.data.tokenizer import Tokenizer

    texts = [text for pair in PARALLEL for text in pair] * 3
    return Tokenizer.train(texts, vocab_size)


def assert_same_gradients(ref: torch.nn.Module, fast: torch.nn.Module, x: torch.Tensor) -> None:
    """``fast`` (a layer with another product at inference) computes ``ref``'s outputs and the
    same gradients, bit for bit, for the input and both parameters, on ``x`` (which needs a
    gradient)."""
    a, b = ref(x), fast(x)
    assert torch.equal(a, b)
    a.square().sum().backward()
    grads = (x.grad.clone(), ref.weight.grad, ref.bias.grad)
    x.grad = None
    b.square().sum().backward()
    for g, h in zip(grads, (x.grad, fast.weight.grad, fast.bias.grad), strict=True):
        assert torch.equal(g, h)


def assert_same_searches(ref, fast, src: torch.Tensor, tol: float) -> None:
    """Greedy and beam search (3) give ``ref``'s tokens with ``fast``, and its beam scores to
    ``tol``; the greedy outputs differ between sources (so that the comparison can fail)."""
    from formers.decoding import beam_search, greedy_search

    options = dict(max_len_a=1.0, max_len_b=6)
    a, b = greedy_search(ref, src, **options), greedy_search(fast, src, **options)
    assert torch.equal(a.tokens, b.tokens)
    assert len({tuple(row.tolist()) for row in a.tokens}) == len(src), "source-dependent"
    a, b = (
        beam_search(ref, src, beam_size=3, **options),
        beam_search(fast, src, beam_size=3, **options),
    )
    assert torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(a.scores, b.scores, rtol=tol, atol=tol)


def assert_falls_back(ref, fast, x: torch.Tensor, *, mixed_dtypes: bool) -> None:
    """At inference, ``fast`` computes ``F.linear`` exactly on ``x``, or refuses mixed dtypes as
    ``nn.Linear`` does."""
    import pytest
    from torch.nn import functional as F

    with torch.inference_mode():
        if mixed_dtypes:
            with pytest.raises(RuntimeError):
                fast(x)
        else:
            assert torch.equal(fast(x), F.linear(x, ref.weight, ref.bias))
