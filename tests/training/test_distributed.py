"""Data-parallel training with real processes: ``torchrun`` with 2 CPU ranks over gloo.

The reference invariant: 2 ranks with update_freq 1 make exactly the updates of 1 process with
update_freq 2 on the same batches (the gradient of the summed loss over the total count). Weight
decay makes Adam sensitive to the gradient's scale, and the logged gradient norm is compared too,
so that a wrong normalization fails as surely as a missing gradient sync.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from data.helpers import tiny_pairs, write_lines
from safetensors.torch import load_file

from formers.data.tokenizer import Tokenizer
from formers.training.checkpoint import list_checkpoints
from formers.training.config import load_experiment
from formers.training.trainer import Trainer

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this PyTorch build",
)

WORKER = Path(__file__).with_name("ddp_worker.py")
N = 4  # steps before the resume; an epoch is 11 batches, 5 steps of 2 batches (1 dropped)


def make_corpus(root: Path) -> dict[str, Path]:
    """A tiny parallel corpus (200 training and 20 validation pairs) and its tokenizer."""
    pairs = tiny_pairs(200, seed=0)
    valid = tiny_pairs(20, seed=1)
    files = {
        "train_src": write_lines(root / "train.en", [s for s, _ in pairs]),
        "train_tgt": write_lines(root / "train.de", [t for _, t in pairs]),
        "valid_src": write_lines(root / "valid.en", [s for s, _ in valid]),
        "valid_tgt": write_lines(root / "valid.de", [t for _, t in valid]),
    }
    Tokenizer.train([x for pair in pairs for x in pair], 60).save(root)
    return {**files, "tokenizer": root / "tokenizer.model"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def write_config(path: Path, corpus: dict, *, dropout: float, **train) -> Path:
    """A tiny translation recipe as TOML (the CLI reads files)."""
    settings = dict(
        max_tokens=400, lr=3e-3, warmup=4, max_steps=2 * N, max_epochs=0, validate_every=N,
        valid_bleu=False, log_every=1, device="cpu", threads=1, keep_last=10, clip_norm=1.0,
        weight_decay=0.01,
    )  # fmt: skip
    settings.update(train)
    model = dict(preset="transformer_tiny", d_model=32, d_ff=64, num_heads=2, dropout=dropout,
                 attention_dropout=dropout / 3, num_encoder_layers=1,
                 num_decoder_layers=2)  # fmt: skip
    data = {k: str(corpus[k]) for k in ("train_src", "train_tgt", "valid_src", "valid_tgt")}
    sections = {"data": data, "tokenizer": {"path": str(corpus["tokenizer"])}, "model": model,
                "train": settings}  # fmt: skip
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]  # JSON scalars are TOML
    path.write_text("\n".join(lines) + "\n")
    return path


def torchrun(*args: str | Path) -> None:
    """Launch 2 ranks on this machine; fail with their output if they fail."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", *map(str, args)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def formers_train(config: Path, run_dir: Path, *extra: str) -> None:
    torchrun("-m", "formers", "train", config, "--run-dir", run_dir, "--no-progress",
             *extra)  # fmt: skip


def worker(config: Path, run_dir: Path, out: Path, *extra: str) -> list[dict[str, torch.Tensor]]:
    """Train with ddp_worker.py; every rank's final weights."""
    torchrun(WORKER, config, run_dir, out, *extra)
    return [torch.load(out / f"rank_{r}.pt", weights_only=True) for r in range(2)]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def train_records(run_dir: Path) -> dict[int, dict]:
    return {r["step"]: r for r in records(run_dir) if r["type"] == "train"}


def weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step_{step:08d}" / "model.safetensors")


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.parametrize("update_freq", [1, 2])
def test_two_ranks_equal_one_process_with_twice_the_update_freq(corpus, tmp_path, update_freq):
    """(a) the reference invariant (update_freq 2 also exercises no_sync), and (c) rank 0 alone
    writes the run directory."""
    # the first epoch's 11 batches: one process would take the tail that 2 ranks drop
    steps = 5 if update_freq == 1 else 2
    config = write_config(tmp_path / "c.toml", corpus, dropout=0.0, max_steps=steps,
                          validate_every=3, update_freq=update_freq)  # fmt: skip
    ddp = tmp_path / "ddp"
    formers_train(config, ddp)
    reference = tmp_path / "reference"
    cfg = load_experiment(config, [f"train.update_freq={2 * update_freq}"])
    Trainer(cfg, reference, progress=False).fit()

    # Attention's key biases have a zero gradient in exact arithmetic (softmax ignores a shift
    # shared by all keys), so Adam turns the rounding noise of a different summation order
    # into updates of up to ~1e-5; everything else agrees to ~3e-8 (update_freq 1: exactly).
    a, b = weights(ddp, steps), weights(reference, steps)
    noise = {k for k in a if k.endswith("k_proj.bias")}
    difference = max_difference(
        {k: a[k] for k in a.keys() - noise}, {k: b[k] for k in b.keys() - noise}
    )
    assert difference <= 1e-6, difference
    assert max_difference({k: a[k] for k in noise}, {k: b[k] for k in noise}) <= 1e-4
    a, b = train_records(ddp), train_records(reference)
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    for step in a:
        for key in ("loss", "nll", "grad_norm", "tokens"):
            assert abs(a[step][key] - b[step][key]) <= 1e-5 * max(1.0, abs(b[step][key]))
    assert a[steps]["loss"] < a[1]["loss"]

    # (c) one record per event: a second writer would duplicate them
    logged = records(ddp)
    kinds = [(r["type"], r.get("split"), r.get("step")) for r in logged]
    assert len(kinds) == len(set(kinds)), kinds
    assert [r["split"] for r in logged if r["type"] == "data"] == ["train", "valid"]
    # every validate_every steps, and the final weights
    assert [r["step"] for r in logged if r["type"] == "valid"] == ([3, 5] if steps == 5 else [2])
    saved = {"best", "step_00000003", "step_00000005"} if steps == 5 else {"best", "step_00000002"}
    assert {p.name for p in (ddp / "checkpoints").iterdir()} == saved
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in reference.iterdir())
    last = f"step_{steps:08d}"
    state = json.loads((ddp / "checkpoints" / last / "trainer_state.json").read_text())
    assert len(state["rng_ranks"]) == 2 and state["rng"] == state["rng_ranks"][0]
    assert state["rng_ranks"][0]["torch"] != state["rng_ranks"][1]["torch"]  # own dropout
    assert "rng_ranks" not in json.loads(
        (reference / "checkpoints" / last / "trainer_state.json").read_text()
    )


def test_resume_under_two_ranks_continues_exactly(corpus, tmp_path):
    """(d) 2N steps straight == N steps, --resume, N more, with dropout on; (b) the ranks end
    with identical weights, also after the resume; the epoch's tail is dropped and logged."""
    config = write_config(tmp_path / "c.toml", corpus, dropout=0.3)
    straight = tmp_path / "straight"
    ranks_straight = worker(config, straight, tmp_path / "out_straight")
    split = tmp_path / "split"
    formers_train(config, split, "--set", f"train.max_steps={N}")
    ranks_split = worker(config, split, tmp_path / "out_split", "--resume")

    for ranks in (ranks_straight, ranks_split):  # (b) DDP kept the replicas identical
        assert max_difference(ranks[0], ranks[1]) == 0.0
    assert max_difference(ranks_straight[0], ranks_split[0]) <= 1e-6
    assert max_difference(weights(straight, 2 * N), weights(split, 2 * N)) <= 1e-6
    a, b = train_records(straight), train_records(split)
    assert sorted(a) == sorted(b) == list(range(1, 2 * N + 1))
    for step in range(N + 1, 2 * N + 1):
        assert abs(a[step]["loss"] - b[step]["loss"]) <= 1e-6, (step, a[step], b[step])
    assert [c.name for c in list_checkpoints(split)] == ["step_00000004", "step_00000008"]
    dropped = [r for r in records(straight) if r["type"] == "epoch"]
    assert [(r["epoch"], r["dropped_batches"]) for r in dropped] == [(0, 1)]
    assert (a[5]["epoch"], a[6]["epoch"]) == (0, 1)


def test_a_single_process_has_no_process_group(monkeypatch):
    from formers.training.distributed import Distributed

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    one = Distributed.from_env()
    assert (one.rank, one.world_size, one.enabled, one.is_main) == (0, 1, False, True)
    model = torch.nn.Linear(2, 2)
    assert one.init(torch.device("cpu")) == torch.device("cpu") and not dist.is_initialized()
    assert one.wrap(model) is model
    assert one.all_reduce_sum([1.5, 2.0]) == [1.5, 2.0] and one.gather("x") == ["x"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 must be in"):
        Distributed.from_env()


def test_unused_parameters_are_found_without_touching_the_random_state():
    from formers.training.distributed import unused_parameters

    model = torch.nn.ModuleDict({"used": torch.nn.Linear(3, 3), "pooler": torch.nn.Linear(3, 3)})
    x = torch.randn(4, 3)
    before = torch.get_rng_state()
    loss = lambda: torch.nn.functional.dropout(model["used"](x), 0.5).sum()  # noqa: E731
    assert unused_parameters(model, loss) == ["pooler.weight", "pooler.bias"]
    assert torch.equal(torch.get_rng_state(), before)
    assert all(p.grad is None for p in model.parameters())
