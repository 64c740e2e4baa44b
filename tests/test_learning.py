"""The model learns: the copy task of the Annotated Transformer, trained briefly on the CPU.

Random sequences of the symbols 1..10 of length 10; after training, greedy decoding must
reproduce every held-out sequence exactly. Held-out sequences come from a different generator
seed; with 10^10 possible sequences, an overlap with the ~64,000 training sequences is unlikely
(and would not matter for a 100% criterion on 500 of them).
"""

import torch

from formers.data.synthetic import SyntheticTask
from formers.models import TransformerConfig, build_transformer
from formers.training.synthetic import exact_match, train_synthetic


def test_copy_task_reaches_full_exact_match():
    torch.set_num_threads(2)  # the shared fixture restores the previous setting
    task = SyntheticTask("copy", num_symbols=10, min_len=10, max_len=10)
    torch.manual_seed(0)
    # the paper's post-norm ReLU model, scaled down
    config = TransformerConfig(
        vocab_size=task.vocab_size, d_model=64, d_ff=128, num_heads=4,
        num_encoder_layers=2, num_decoder_layers=2, dropout=0.0,
    )  # fmt: skip
    model = build_transformer(config)
    untrained = exact_match(model, task, n=500, seed=123)
    losses = train_synthetic(
        model, task, steps=1000, batch_size=64, peak_lr=3e-3, warmup=100,
        label_smoothing=0.1, seed=0,
    )  # fmt: skip
    assert untrained == 0.0
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50 / 3
    assert exact_match(model, task, n=500, seed=123) == 1.0
