"""Training on a CUDA GPU: bf16 and fp16 autocast, the fp16 loss scale, and resume.

These run only where ``torch.cuda.is_available()`` (the CPU suite skips them with that reason);
sessions lent a GPU run them with ``pytest tests/training/test_cuda.py``.
"""

import math

import pytest
import torch

from formers.training.trainer import Trainer
from training.test_trainer import N, corpus, experiment, train_losses  # noqa: F401 (corpus: a fixture)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_training_learns(corpus, tmp_path, precision):  # noqa: F811
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg = experiment(corpus, device="cuda", precision=precision, max_steps=4 * N)
    trainer = Trainer(cfg, tmp_path / precision, progress=False)
    assert trainer.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    trainer.fit()
    losses = train_losses(tmp_path / precision)
    assert all(math.isfinite(v) for v in losses.values())
    assert losses[4 * N] < 0.8 * losses[1]
    assert next(trainer.model.parameters()).dtype == torch.float32  # master weights stay fp32


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resume_on_cuda(corpus, tmp_path, precision):  # noqa: F811
    """2N steps straight against N + resume + N: the same losses up to GPU nondeterminism
    (atomic adds in backward), and for fp16 the same loss scale."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg = experiment(corpus, device="cuda", precision=precision)
    straight = Trainer(cfg, tmp_path / "straight", progress=False)
    straight.fit()
    half = experiment(corpus, device="cuda", precision=precision, max_steps=N)
    Trainer(half, tmp_path / "split", progress=False).fit()
    resumed = Trainer(cfg, tmp_path / "split", resume=True, progress=False)
    resumed.fit()
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()
    a, b = train_losses(tmp_path / "straight"), train_losses(tmp_path / "split")
    for step in range(N + 1, 2 * N + 1):
        assert a[step] == pytest.approx(b[step], rel=2e-2), step
