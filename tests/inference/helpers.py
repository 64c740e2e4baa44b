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
