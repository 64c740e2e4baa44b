"""Small trained models for the export tests.

Models are trained briefly on the reverse task (a few seconds each) so that their greedy and
beam outputs vary from source to source and hold near-ties between hypotheses: a comparison of
two runtimes' outputs on an untrained model, which repeats one token, would prove little.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from formers.data.symbol_tokenizer import SymbolTokenizer
from formers.data.synthetic import SyntheticTask
from formers.models import TransformerConfig, build_transformer
from formers.training.checkpoint import save_checkpoint
from formers.training.synthetic import train_synthetic

TASK = SyntheticTask("reverse", num_symbols=12, min_len=3, max_len=9)

# option sets that CTranslate2 and ONNX must both reproduce
TRANSLATION_OPTIONS = {
    "paper": {},  # post-norm, ReLU, interleaved sinusoids, three-way tying
    "prenorm_rmsnorm_swiglu": dict(norm_first=True, norm="rmsnorm", activation="swiglu"),
    "rotary_gqa_gelu_bias": dict(
        positions="rotary", num_kv_heads=2, activation="gelu", output_bias=True
    ),
    "marian_like": dict(
        positions="sinusoidal_halves",
        share_embeddings=False,
        tie_output=False,
        activation="silu",
        scale_embeddings=False,
    ),  # fmt: skip
    "learned_geglu_nobias": dict(
        positions="learned", activation="geglu", bias=False, norm_first=True
    ),
}


def trained_translator(options: dict, steps: int = 150, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    values = dict(
        vocab_size=TASK.vocab_size, d_model=32, d_ff=64, num_heads=4, num_encoder_layers=2,
        num_decoder_layers=2, dropout=0.0, max_positions=64,
    )  # fmt: skip
    cfg = TransformerConfig(**{**values, **options})
    model = build_transformer(cfg)
    train_synthetic(model, TASK, steps=steps, batch_size=32, peak_lr=3e-3, warmup=30, seed=seed)
    return model.eval()


def save(directory: Path, model: torch.nn.Module, tokenizer) -> Path:
    save_checkpoint(directory, model, model.config.to_dict(), tokenizer=tokenizer)
    return directory


def sources(n: int = 48, seed: int = 7) -> list[str]:
    """Source lines of the reverse task (symbols separated by spaces)."""
    generator = torch.Generator().manual_seed(seed)
    batch = TASK.sample(n, generator)
    tokenizer = SymbolTokenizer(TASK.num_symbols)
    return [tokenizer.decode([t for t in row.tolist() if t]) for row in batch.src]


CHAR_TEXT = "hello world, naive cafe: ok!\n" * 4


def char_gpt(**options) -> tuple[torch.nn.Module, Any]:
    """A character GPT with weights drawn large, so that its predictions vary."""
    from formers.data.char_tokenizer import CharTokenizer
    from formers.models.gpt import GPTConfig, build_gpt

    tokenizer = CharTokenizer.train(CHAR_TEXT)
    torch.manual_seed(3)
    values = dict(
        vocab_size=tokenizer.vocab_size, d_model=32, num_layers=2, num_heads=4, d_ff=64,
        dropout=0.0, attention_dropout=0.0, context_length=24,
    )  # fmt: skip
    cfg = GPTConfig(**{**values, **options})
    model = build_gpt(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.4)
    return model, tokenizer
