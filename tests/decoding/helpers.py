"""Tiny models and sources shared by the decoding tests."""

import torch

from formers.models import TransformerConfig, build_transformer


def tiny_model(vocab_size: int = 11, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    values = dict(
        vocab_size=vocab_size, d_model=32, d_ff=64, num_heads=4, num_encoder_layers=2,
        num_decoder_layers=2, dropout=0.0,
    )  # fmt: skip
    values.update(overrides)
    return build_transformer(TransformerConfig(**values)).eval()


def random_sources(n: int, vocab_size: int, max_len: int = 7, seed: int = 0) -> torch.Tensor:
    """Right-padded sources of different lengths (ids 3.. are real tokens)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, vocab_size, (n, max_len), generator=g)
    lengths = torch.randint(1, max_len + 1, (n,), generator=g)
    lengths[0] = max_len
    src[torch.arange(max_len)[None, :] >= lengths[:, None]] = 0
    return src


def sequence_log_prob(model, src: torch.Tensor, out: torch.Tensor) -> float:
    """Teacher-forced total log-probability of ``out`` (ending with EOS) given one source."""
    tgt_in = torch.cat([torch.tensor([model.bos_id]), out[:-1]])[None]
    with torch.no_grad():
        lprobs = model(src[None], tgt_in).log_softmax(-1)[0]
    return float(lprobs.gather(1, out[:, None]).sum())
