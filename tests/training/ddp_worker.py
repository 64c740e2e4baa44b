"""A torchrun worker for test_distributed.py: train, then write this rank's final weights.

``python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_worker.py CONFIG RUN_DIR
OUT_DIR [--resume] [--validate]`` trains like ``formers train`` and then saves every rank's
parameters to ``OUT_DIR/rank_R.pt``, so that the test can check that DDP kept the replicas
identical (the run directory only ever holds rank 0's). With ``--validate`` each rank then also
writes ``OUT_DIR/rank_R.json`` (see :func:`validate`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from formers.training.config import load_experiment
from formers.training.distributed import Distributed
from formers.training.trainer import Trainer


def validate(trainer: Trainer) -> dict:
    """The validation metrics as the ranks compute them together and as this rank computes them
    alone, with the module calls (forwards of the model and its submodules) each took."""
    calls = 0

    def count(module, args, output):
        nonlocal calls
        calls += 1

    result = {}
    with torch.nn.modules.module.register_module_forward_hook(count):
        for name, dist in (("shared", trainer.dist), ("alone", None)):
            calls = 0
            result[name] = trainer.task.validate(trainer.model, dist)
            result[f"{name}_calls"] = calls
    return result


def main(argv: list[str]) -> None:
    config, run_dir, out = argv[0], Path(argv[1]), Path(argv[2])
    distributed = Distributed.from_env()
    try:
        trainer = Trainer(
            load_experiment(config), run_dir, resume="--resume" in argv, progress=False,
            distributed=distributed,
        )  # fmt: skip
        trainer.fit()
        out.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        torch.save(weights, out / f"rank_{distributed.rank}.pt")
        if "--validate" in argv:
            (out / f"rank_{distributed.rank}.json").write_text(json.dumps(validate(trainer)))
    finally:
        distributed.destroy()


if __name__ == "__main__":
    main(sys.argv[1:])
