"""The model-output seam: auxiliary losses added by modules reach whoever runs the model (the
trainer adds them to the training loss), state comes back with the logits, and nothing happens
outside a collector."""

import json

import pytest
import torch
from torch import nn

from formers.models.transformer_xl import build_transformer_xl, preset_config
from formers.nn.model_output import AuxiliaryLosses, add_auxiliary_loss, run_model
from formers.training.config import experiment_from_dict
from formers.training.trainer import Trainer


def test_losses_are_summed_by_name_seen_by_nested_collectors_and_dropped_outside():
    add_auxiliary_loss("ignored", torch.tensor(5.0))  # no collector: nothing happens
    with AuxiliaryLosses() as outer:
        add_auxiliary_loss("ponder", torch.tensor(1.0))
        with AuxiliaryLosses() as inner:
            add_auxiliary_loss("ponder", torch.tensor(2.0))
            add_auxiliary_loss("balance", torch.tensor(0.5))
    assert {k: float(v) for k, v in inner.losses.items()} == {"ponder": 2.0, "balance": 0.5}
    assert {k: float(v) for k, v in outer.losses.items()} == {"ponder": 3.0, "balance": 0.5}
    assert float(outer.total()) == 3.5 and AuxiliaryLosses().total() is None
    with AuxiliaryLosses(), pytest.raises(ValueError, match="'ponder' must be a scalar"):
        add_auxiliary_loss("ponder", torch.ones(2))


def test_run_model_gives_logits_state_and_the_losses_of_the_call():
    model = build_transformer_xl(preset_config("xl_char_cpu", vocab_size=20, d_model=16,
                                               num_layers=2, num_heads=2, d_ff=32))  # fmt: skip
    layer = model.decoder.layers[1]
    layer.register_forward_hook(lambda m, args, out: add_auxiliary_loss("norm", out.pow(2).mean()))
    memory = model.new_memory()
    out = run_model(model, torch.randint(0, 20, (2, 5)), memory=memory)
    assert out.logits.shape == (2, 5, 20) and out.state is memory and memory.length == 5
    assert list(out.aux_losses) == ["norm"] and out.aux_losses["norm"].requires_grad


def test_the_trainer_adds_auxiliary_losses_to_the_training_loss(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("".join(f"to be or not to be, line {i % 7}.\n" for i in range(80)))
    table = {
        "task": "lm", "data": {"train": str(text)}, "tokenizer": {"kind": "char"},
        "model": dict(preset="nanogpt_char_cpu", d_model=16, num_layers=1, num_heads=2, d_ff=32,
                      context_length=8),
        "train": dict(batch_size=4, lr=1e-3, warmup=1, max_steps=2, log_every=1, threads=1,
                      device="cpu", label_smoothing=0.0),
    }  # fmt: skip
    losses = {}
    for name, weight in (("plain", 0.0), ("with_aux", 7.0)):
        trainer = Trainer(experiment_from_dict(table), tmp_path / name, progress=False)
        embedding: nn.Embedding = trainer.model.embed.token
        expected = weight * float(embedding.weight.detach().pow(2).mean())  # at step 1's weights
        if weight:  # a module that adds a weighted penalty in its forward, like ACT's
            def penalty(module, args, out, weight=weight):
                add_auxiliary_loss("penalty", weight * module.weight.pow(2).mean())

            embedding.register_forward_hook(penalty)
        trainer.fit()
        lines = (tmp_path / name / "log.jsonl").read_text().splitlines()
        losses[name] = [r for r in map(json.loads, lines) if r["type"] == "train"]
    first_plain, first_aux = losses["plain"][0], losses["with_aux"][0]
    assert first_aux["nll"] == pytest.approx(first_plain["nll"], abs=1e-6)  # same batch, weights
    assert first_aux["loss"] - first_plain["loss"] == pytest.approx(expected, abs=1e-6)
    # ... and it was trained on: the second step's weights differ
    assert losses["with_aux"][1]["nll"] != pytest.approx(losses["plain"][1]["nll"], abs=1e-9)
