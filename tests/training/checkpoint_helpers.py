"""Tiny models, a few training steps and a tiny tokenizer, for the checkpoint tests."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from formers.models import TransformerConfig, build_transformer

VOCAB = 24  # the tiny tokenizer's size
TEXTS = [
    "the cat sat on the mat",
    "der hund sitzt auf der matte",
    "a dog and a cat",
    "ein hund und eine katze",
]


def tiny_config(**overrides: Any) -> TransformerConfig:
    values: dict[str, Any] = dict(
        vocab_size=VOCAB, d_model=16, d_ff=32, num_heads=2,
        num_encoder_layers=1, num_decoder_layers=1, dropout=0.0,
    )  # fmt: skip
    return TransformerConfig(**{**values, **overrides})


def tiny_model(seed: int = 0, **overrides: Any):
    torch.manual_seed(seed)
    return build_transformer(tiny_config(**overrides))


def tiny_tokenizer(vocab_size: int = VOCAB):
    from formers.data.tokenizer import Tokenizer

    return Tokenizer.train(TEXTS * 3, vocab_size)


def sample_batch(vocab_size: int = VOCAB) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch from the global generator, as a training loop would draw it."""
    return torch.randint(4, vocab_size, (3, 6)), torch.randint(4, vocab_size, (3, 5))


def logits(model, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (2, 7), generator=generator)
    tgt = torch.randint(4, VOCAB, (2, 5), generator=generator)
    with torch.no_grad():
        return model(src, tgt)


def adam_with_schedule(model) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    """The paper's Adam with a warmup schedule (a lambda: its state is plain numbers)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.98), eps=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 4))
    return optimizer, scheduler


def train_step(model, optimizer, scheduler) -> float:
    model.train()
    src, tgt = sample_batch()
    out = model(src, tgt[:, :-1])
    loss = F.cross_entropy(out.reshape(-1, out.size(-1)), tgt[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


def assert_same_tree(a: Any, b: Any, path: str = "") -> None:
    """Equal values of equal types all the way down (tensors: dtype, shape and values)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{a.shape}"
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} vs {list(b)}"
        for key in a:
            assert_same_tree(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{path}.{i}")
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
